/**
 * The dashboard's Host check (DNS rebinding): on a loopback address it answers only requests
 * whose Host is a loopback name with its port (421 and a plain message otherwise, the event
 * stream included); elsewhere any Host unless allowed hosts are given. Real HTTP requests with
 * the Host header set explicitly, to dashboards on 127.0.0.1 and on a non-loopback address.
 */
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { LEASE_PREFIX, MemoryControlPlane, TOPOLOGY_KEY } from '@gridlink/node';
import { initialTopology } from '@gridlink/node/internal';
import { waitFor } from '@gridlink/testkit';
import { AdminUsageError, ExitCode, runCli, startDashboard, type Dashboard, type DashboardOptions } from '@gridlink/admin';

let cp: MemoryControlPlane;

beforeAll(async () => {
  cp = new MemoryControlPlane();
  const lease = { id: 'node-1', epoch: 'e-node-1', host: '127.0.0.1', port: 1, synced: {} };
  await cp.put(TOPOLOGY_KEY, initialTopology({ clusterId: 'c', partitions: 4, backups: 0, leases: [lease] }));
  await cp.put(LEASE_PREFIX + lease.id, lease);
});

interface Answer {
  status: number;
  type: string | undefined;
  body: string;
}

/**
 * A request to `address`:`port` with the Host header `host`. Without one (null: HTTP/1.0) or with
 * an empty one (node:http would put its own in), written on a raw socket, closed after the answer.
 * An event stream is read until its first topology event, then dropped.
 */
function ask(address: string, port: number, path: string, host: string | null, method = 'GET'): Promise<Answer> {
  if (host === null || host === '') {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, address);
      let text = '';
      s.on('data', (b: Buffer) => (text += b.toString('utf8')));
      s.on('error', reject);
      s.on('end', () => {
        const [head = '', body = ''] = text.split('\r\n\r\n');
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
        resolve({ status, type: /^content-type: (.*)$/im.exec(head)?.[1], body });
      });
      s.end(`${method} ${path} HTTP/1.0\r\n${host === null ? '' : 'Host: \r\n'}\r\n`);
    });
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address, port, path, method, headers: { host }, agent: false }, (res) => {
      res.setEncoding('utf8');
      let body = '';
      const answer = (): Answer => ({ status: res.statusCode ?? 0, type: res.headers['content-type'], body });
      res.on('data', (t: string) => {
        body += t;
        if (res.headers['content-type'] === 'text/event-stream' && body.includes('event: topology\n')) {
          resolve(answer());
          req.destroy();
        }
      });
      res.on('end', () => resolve(answer()));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function withDashboard(options: Omit<DashboardOptions, 'controlPlane'>, run: (d: Dashboard) => Promise<void>): Promise<void> {
  const d = await startDashboard({ controlPlane: cp, port: 0, scrapeIntervalMs: 60_000, ...options });
  try {
    await run(d);
  } finally {
    await d.close();
  }
}

function expectRefused(a: Answer): void {
  expect(a.status).toBe(421);
  expect(a.type).toBe('text/plain; charset=utf-8');
  expect(a.body).toMatch(/^misdirected request: /);
  expect(a.body).not.toContain('event:');
  expect(a.body).not.toContain('clusterId');
}

/** An IPv4 address of this machine that is not a loopback one, else 0.0.0.0 (every address). */
function nonLoopbackAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const i of list ?? []) if (i.family === 'IPv4' && !i.internal) return i.address;
  }
  return '0.0.0.0';
}

describe('a dashboard on a loopback address', () => {
  it('answers localhost, 127.0.0.1 and [::1] at its port, on every path and the event stream', async () => {
    await withDashboard({}, async (d) => {
      for (const host of [`127.0.0.1:${d.port}`, `localhost:${d.port}`, `LocalHost:${d.port}`, `[::1]:${d.port}`, `[0:0:0:0:0:0:0:1]:${d.port}`, `127.0.0.2:${d.port}`]) {
        const page = await ask('127.0.0.1', d.port, '/', host);
        expect({ host, status: page.status }).toEqual({ host, status: 200 });
        expect(page.body).toContain('<html');
        const api = await ask('127.0.0.1', d.port, '/api/topology', host);
        expect(api.status).toBe(200);
        expect(JSON.parse(api.body)).toMatchObject({ clusterId: 'c' });
        const events = await ask('127.0.0.1', d.port, '/events', host);
        expect(events.status).toBe(200);
        expect(events.type).toBe('text/event-stream');
        expect(events.body).toContain('event: topology\n');
      }
    });
  });

  it('refuses any other Host with 421 and a plain message, the event stream included (DNS rebinding)', async () => {
    await withDashboard({}, async (d) => {
      const refused = [
        `rebind.attacker.example:${d.port}`, // a name the attacker resolves to 127.0.0.1
        'rebind.attacker.example',
        `localhost:${d.port + 1 > 65535 ? 1 : d.port + 1}`, // the right name, another port
        'localhost', // no port: 80
        `localhost.:${d.port}`,
        `sub.localhost:${d.port}`,
        `10.0.0.1:${d.port}`,
        `[::2]:${d.port}`,
        `localhost:${d.port}@evil`,
        '',
        'a b',
      ];
      for (const host of refused) {
        for (const path of ['/', '/events', '/api/topology', '/app.js', '/nope']) {
          const a = await ask('127.0.0.1', d.port, path, host);
          expect({ host, path, status: a.status }).toEqual({ host, path, status: 421 });
          expectRefused(a);
        }
      }
      // The refusal names what it got, for the operator.
      expect((await ask('127.0.0.1', d.port, '/', 'rebind.attacker.example')).body).toContain('"rebind.attacker.example"');
      // HEAD and other methods too, before the method is looked at.
      expect((await ask('127.0.0.1', d.port, '/events', 'rebind.attacker.example', 'HEAD')).status).toBe(421);
      expect((await ask('127.0.0.1', d.port, '/', 'rebind.attacker.example', 'POST')).status).toBe(421);
      // No Host at all (HTTP/1.0): no browser sends that, and it is no loopback name.
      const none = await ask('127.0.0.1', d.port, '/events', null);
      expectRefused(none);
      expect(none.body).toContain('no Host header');
      // The dashboard goes on answering its own.
      expect((await ask('127.0.0.1', d.port, '/events', `127.0.0.1:${d.port}`)).body).toContain('event: topology\n');
    });
  });

  it('answers the allowed hosts as well (a reverse proxy on the same machine), and no others', async () => {
    await withDashboard({ allowedHosts: ['dash.example.com', 'proxy.example:8443'] }, async (d) => {
      expect((await ask('127.0.0.1', d.port, '/', 'dash.example.com')).status).toBe(200);
      expect((await ask('127.0.0.1', d.port, '/', 'DASH.example.com:443')).status).toBe(200);
      expect((await ask('127.0.0.1', d.port, '/events', 'proxy.example:8443')).body).toContain('event: topology\n');
      expect((await ask('127.0.0.1', d.port, '/', `localhost:${d.port}`)).status).toBe(200);
      expectRefused(await ask('127.0.0.1', d.port, '/', 'proxy.example:8444'));
      expectRefused(await ask('127.0.0.1', d.port, '/events', 'proxy.example'));
      expectRefused(await ask('127.0.0.1', d.port, '/', 'rebind.attacker.example'));
    });
  });
});

describe('a dashboard on a non-loopback address', () => {
  const address = nonLoopbackAddress();
  /** Where a request to it goes: its own address, or 127.0.0.1 when it listens on every address. */
  const target = address === '0.0.0.0' ? '127.0.0.1' : address;

  it('answers any Host when no allowed hosts are given', async () => {
    await withDashboard({ host: address }, async (d) => {
      for (const host of ['dashboard.internal', `${target}:${d.port}`, 'anything.example:1']) {
        expect((await ask(target, d.port, '/', host)).status).toBe(200);
        expect((await ask(target, d.port, '/events', host)).body).toContain('event: topology\n');
      }
    });
  });

  it('answers only the allowed hosts (and the loopback names at its port) when given', async () => {
    await withDashboard({ host: address, allowedHosts: ['dashboard.internal', `${target}:1234`] }, async (d) => {
      expect((await ask(target, d.port, '/', 'dashboard.internal:8090')).status).toBe(200);
      expect((await ask(target, d.port, '/events', 'dashboard.internal')).body).toContain('event: topology\n');
      expect((await ask(target, d.port, '/', `localhost:${d.port}`)).status).toBe(200);
      expectRefused(await ask(target, d.port, '/', `${target}:${d.port}`));
      expectRefused(await ask(target, d.port, '/events', 'anything.example'));
    });
  });
});

describe('the allowed hosts option', () => {
  it('refuses what is no host with an AdminUsageError naming allowedHosts, before anything is opened', async () => {
    for (const bad of ['dash.example', null, {}, [''], ['a b'], ['x:0'], ['x:65536'], ['x:'], [5], ['[::1'], ['[nope]'], ['http://x'], ['x/y'], ['user@x']]) {
      const err = await startDashboard({ controlPlane: cp, port: 0, allowedHosts: bad } as unknown as DashboardOptions).then(
        async (d) => {
          await d.close();
          return 'started';
        },
        (e: unknown) => e,
      );
      const what = JSON.stringify(bad);
      expect(err, what).toBeInstanceOf(AdminUsageError);
      expect((err as AdminUsageError).argument, what).toBe('allowedHosts');
      expect((err as Error).message, what).toMatch(/^allowedHosts: must be .*, got /);
    }
  });

  it('gridlink dashboard --allowed-host: checked as a usage error, and passed on', async () => {
    let err = '';
    const never = new Proxy({}, { get: () => () => Promise.reject(new Error('connected')) }) as never;
    expect(await runCli(['dashboard', '--port', '0', '--allowed-host', 'a b'], { stdout: () => undefined, stderr: (t) => (err += t) }, { controlPlane: never, env: {}, signal: AbortSignal.abort() })).toBe(ExitCode.USAGE);
    expect(err).toMatch(/^gridlink: --allowed-host: must be .*, got "a b"/);

    const abort = new AbortController();
    let url = '';
    const running = runCli(['dashboard', '--port', '0', '--allowed-host', 'dash.example', '--allowed-host', 'other.example:99'], { stdout: () => undefined, stderr: () => undefined }, { controlPlane: cp, env: {}, signal: abort.signal, onDashboard: (u) => (url = u) });
    try {
      await waitFor('the dashboard to listen', () => url !== '', 10_000);
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      const port = Number(new URL(url).port);
      expect((await ask('127.0.0.1', port, '/events', 'dash.example')).body).toContain('event: topology\n');
      expect((await ask('127.0.0.1', port, '/', 'other.example:99')).status).toBe(200);
      expectRefused(await ask('127.0.0.1', port, '/', 'other.example:98'));
      expectRefused(await ask('127.0.0.1', port, '/events', 'rebind.attacker.example'));
    } finally {
      abort.abort();
      expect(await running).toBe(ExitCode.OK);
    }
  });
});
