/**
 * The gridlink command as a process: exit codes and errors as a shell sees them, and (when this
 * @gridlink/node ships NatsControlPlane) every read verb against a real nats-server with two
 * real grid nodes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import * as nodePackage from '@gridlink/node';
import { NatsControlPlane, startNode, type ControlPlane, type GridNode, type TopologyRecord } from '@gridlink/node';
import { NatsCluster, ProcessCluster } from '@gridlink/testkit';
import { Kvm } from '@nats-io/kv';
import { connect as natsConnect } from '@nats-io/transport-node';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const children = new Set<ChildProcess>();
const killAll = (): void => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
};
process.on('exit', killAll);
afterAll(killAll);

/**
 * The command as a package manager links it: the committed launcher, which runs the built CLI
 * (`pnpm test` builds first). Starting it from source through tsx cost about a second a run,
 * most of this file's time.
 */
const BIN = 'packages/admin/bin/gridlink.mjs';
beforeAll(() => {
  if (!existsSync(join(root, 'packages/admin/dist/cli.js'))) throw new Error('packages/admin/dist/cli.js is missing: build the workspace first (pnpm build)');
});

/** Runs `gridlink <args>`. */
function gridlink(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: root,
      env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, out, err });
    });
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('gridlink as a process', () => {
  it('no verb: usage on stderr, exit 1', async () => {
    const r = await gridlink([]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('usage: gridlink');
  });

  it('a bad --control-plane from the environment is a usage error naming it', async () => {
    const r = await gridlink(['status'], { GRIDLINK_CONTROL_PLANE: 'http://example' });
    expect(r.code).toBe(1);
    expect(r.err).toContain('--control-plane');
  });

  it('with --json, errors in the command line itself are JSON error objects too', async () => {
    const cases: [string[], string][] = [
      [['frobnicate', '--json'], 'verb: unknown verb "frobnicate"'],
      [['status', '--bogus', '--json'], '--bogus:'],
      [['--json', 'status', '--output', 'yaml'], '--output: must be table or json, got "yaml"'],
      [['status', '--timeout', 'soon', '--output', 'json'], '--timeout: expected a duration'],
      [['status', '-o', 'json', '--timeout', '0'], '--timeout: must be longer than 0'],
      [['--json'], 'verb: missing'],
    ];
    const runs = await Promise.all(cases.map(([args]) => gridlink(args)));
    runs.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.out, args.join(' ')).toBe('');
      const e = JSON.parse(r.err) as { error: { code: string; message: string; retryable: boolean } };
      expect(e.error.code, args.join(' ')).toBe('ADMIN_USAGE');
      expect(e.error.retryable).toBe(false);
      expect(e.error.message.startsWith(message), `${args.join(' ')}: ${e.error.message}`).toBe(true);
    });
    // Without --json they stay text.
    const text = await gridlink(['status', '--bogus']);
    expect(text.code).toBe(1);
    expect(text.err).toMatch(/^gridlink: --bogus: /);
  });

  it("an option the verb does not take, or one missing its value, says which, naming the option and the verb (was: \"argument missing\" for another verb's option)", async () => {
    const cases: [string[], string][] = [
      // --port is the dashboard's: for status it is no option, with or without a value.
      [['status', '--port'], '--port: not an option of "gridlink status" (see gridlink status --help)'],
      [['status', '--port', '5'], '--port: not an option of "gridlink status" (see gridlink status --help)'],
      [['status', '--bogus'], '--bogus: not an option of "gridlink status" (see gridlink status --help)'],
      [['safe', '-x'], '-x: not an option of "gridlink safe" (see gridlink safe --help)'],
      [['status', '--sample'], '--sample: needs a value (gridlink status --sample <value>)'],
      [['caches', '--auth-token', '--skip-sizes'], '--auth-token: needs a value (gridlink caches --auth-token <value>; got the option --skip-sizes)'],
      [['dashboard', '--port'], '--port: needs a value (gridlink dashboard --port <value>)'],
      [['dashboard', '--port', '-1'], '--port: needs a value (gridlink dashboard --port <value>; a value that starts with - is written --port=-1)'],
      [['--timeout'], '--timeout: needs a value (gridlink --timeout <value>)'],
      [['status', '--json=yes'], '--json: takes no value (gridlink status --json)'],
    ];
    const runs = await Promise.all(cases.map(([args]) => gridlink(args)));
    runs.forEach((r, i) => {
      const [args, message] = cases[i]!;
      expect({ args, code: r.code, out: r.out, err: r.err }).toEqual({ args, code: 1, out: '', err: `gridlink: ${message}\n` });
    });
  });

  it('a --control-plane or --http URL with no valid host:port is a usage error naming it, before connecting (was: exit 3, "could not connect", retryable, after the whole --timeout)', async () => {
    const port = await freePort();
    const cp = ['--control-plane', `nats://127.0.0.1:${port}`];
    const cases: [string[], Record<string, string>, string][] = [
      [['status', '--control-plane', 'nats://127.0.0.1:99999'], {}, '--control-plane'],
      [['status', '--control-plane', 'nats://127.0.0.1:42x2'], {}, '--control-plane'],
      [['safe', '--control-plane', `nats://127.0.0.1:${port},nats://:4222`], {}, '--control-plane'],
      [['caches', '--skip-sizes'], { GRIDLINK_CONTROL_PLANE: 'tls://nats.example:0' }, '--control-plane'],
      // A node's HTTP URL with a port that is none: its READY was "no", from the operator's typo.
      [['status', ...cp, '--http', 'node-1=http://127.0.0.1:80800'], {}, '--http'],
      [['dashboard', ...cp, '--http', 'node-1=http://:8080'], {}, '--http'],
    ];
    const runs = await Promise.all(cases.map(([args, env]) => gridlink([...args, '--timeout', '5s'], env)));
    runs.forEach((r, i) => {
      const [args, , option] = cases[i]!;
      expect({ args, code: r.code, out: r.out }).toEqual({ args, code: 1, out: '' });
      expect(r.err, args.join(' ')).toMatch(new RegExp(`^gridlink: ${option}: expected `));
    });
  });

  it('--json with --output table is a usage error naming both, before connecting (was: JSON, the table request dropped without a word)', async () => {
    const port = await freePort();
    const cp = ['--control-plane', `nats://127.0.0.1:${port}`, '--timeout', '1s'];
    const conflicting = [['status', '--json', '--output', 'table'], ['caches', '-o', 'table', '--json'], ['safe', '--output=table', '--json']];
    // Agreeing, they are one request (the last run).
    const runs = await Promise.all([...conflicting, ['status', '--json', '-o', 'json']].map((args) => gridlink([...args, ...cp])));
    conflicting.forEach((args, i) => {
      const r = runs[i]!;
      expect({ args, code: r.code, out: r.out }).toEqual({ args, code: 1, out: '' });
      // --json was given: the error is JSON, as every command line error with it is.
      const e = JSON.parse(r.err) as { error: { code: string; message: string } };
      expect(e.error).toMatchObject({ code: 'ADMIN_USAGE', message: '--json: conflicts with --output table (--json is short for --output json): give one of them' });
    });
    const same = runs[conflicting.length]!;
    expect(same.code).toBe(3);
  });

  it('reset-lost calls its argument <partition> in the command\'s help, its own and its errors, as §9 does (was: "p" and "<partitions>")', async () => {
    const [top, verb, bad] = await Promise.all([gridlink(['--help']), gridlink(['reset-lost', '--help']), gridlink(['reset-lost', '3,x', '--yes'])]);
    expect(top.out).toMatch(/^ {2}reset-lost \[<partition>\.\.\.\]\s/m);
    expect(verb.out.split('\n')[0]).toBe('usage: gridlink reset-lost [<partition>...] --yes');
    expect({ code: bad.code, err: bad.err }).toEqual({ code: 1, err: 'gridlink: <partition>: "x" is not a partition number\n' });
  });

  it('an unreachable control plane: exit 3', async () => {
    const port = await freePort();
    const r = await gridlink(['status', '--control-plane', `nats://127.0.0.1:${port}`, '--timeout', '1500ms', '--json']);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.err).error.code).toBe('ADMIN_CONTROL_PLANE_UNREACHABLE');
  });

  it('a bucket name NATS cannot hold is a usage error naming --bucket (exit 1), found before connecting', async () => {
    const port = await freePort();
    const cp = `nats://127.0.0.1:${port}`;
    const [flag, env] = await Promise.all([
      gridlink(['status', '--control-plane', cp, '--bucket', 'grid link', '--timeout', '1s']),
      gridlink(['caches', '--control-plane', cp, '--timeout', '1s', '--json'], { GRIDLINK_BUCKET: 'a.b' }),
    ]);
    expect(flag.code).toBe(1);
    expect(flag.err).toMatch(/^gridlink: --bucket: "grid link" /);
    expect(env.code).toBe(1);
    const e = JSON.parse(env.err) as { error: { code: string; message: string } };
    expect(e.error.code).toBe('ADMIN_USAGE');
    expect(e.error.message).toContain('GRIDLINK_BUCKET');
  });

  it('a --nats-creds file it cannot read or that holds no credentials is a usage error naming it (exit 1), found before connecting (was: exit 3, "could not connect")', async () => {
    const port = await freePort();
    const cp = ['--control-plane', `nats://127.0.0.1:${port}`, '--timeout', '1s'];
    const tmp = mkdtempSync(join(tmpdir(), 'gridlink-admin-creds-'));
    try {
      const junk = join(tmp, 'junk.creds');
      writeFileSync(junk, 'not a creds file\n');
      const [missing, bad, env] = await Promise.all([
        gridlink(['status', ...cp, '--nats-creds', join(tmp, 'missing.creds')]),
        gridlink(['safe', ...cp, '--nats-creds', junk]),
        gridlink(['caches', ...cp, '--json'], { GRIDLINK_NATS_CREDS: join(tmp, 'missing.creds') }),
      ]);
      expect({ code: missing.code, out: missing.out }).toEqual({ code: 1, out: '' });
      expect(missing.err).toMatch(/^gridlink: --nats-creds: cannot read .*missing\.creds/);
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/^gridlink: --nats-creds: no NATS credentials .*junk\.creds/);
      expect(env.code).toBe(1);
      expect((JSON.parse(env.err) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'ADMIN_USAGE', message: expect.stringMatching(/^--nats-creds: .*\(from GRIDLINK_NATS_CREDS\)$/) });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('a server that accepts but never answers: exit 3 once --timeout has passed, not a hang', async () => {
    // What a firewall or a wrong port with something else listening looks like: the connection
    // opens, NATS never says hello. The connection attempt given up on must not keep the process.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const started = Date.now();
      const r = await gridlink(['status', '--control-plane', `nats://127.0.0.1:${port}`, '--timeout', '1s', '--json']);
      expect(r.code).toBe(3);
      expect(JSON.parse(r.err).error.code).toBe('ADMIN_CONTROL_PLANE_UNREACHABLE');
      // 1 s of timeout plus starting node; it used to stay until the server went away.
      expect(Date.now() - started).toBeLessThan(8000);
    } finally {
      silent.close();
      await new Promise<void>((r) => {
        silent.getConnections(() => r());
      });
    }
  }, 30_000);
});

type NatsModule = { NatsControlPlane?: { connect(o: { servers: string[] }): Promise<ControlPlane & { close(): Promise<void> }> } };
const Nats = (nodePackage as NatsModule).NatsControlPlane;

describe.skipIf(Nats === undefined)('gridlink against NATS and two grid nodes', () => {
  let dir: string;
  let server: ChildProcess;
  let url: string;
  const nodes: GridNode[] = [];
  const planes: (ControlPlane & { close(): Promise<void> })[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gridlink-admin-nats-'));
    const port = await freePort();
    url = `nats://127.0.0.1:${port}`;
    server = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(server);
    let log = '';
    server.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    await until('nats-server', async () => log.includes('Server is ready') || (server.exitCode !== null ? Promise.reject(new Error(log)) : false));
    for (const id of ['node-1', 'node-2']) {
      const cp = await Nats!.connect({ servers: [url] });
      planes.push(cp);
      nodes.push(await startNode({ id, controlPlane: cp, port: 0, httpPort: 0, partitions: 16, backups: 1, bootstrapNodes: 2 }));
    }
    const cp = planes[0]!;
    await until('the cluster to form', async () => {
      const t = (await cp.get<TopologyRecord>('topology'))?.value;
      return t !== undefined && Object.keys(t.members).length === 2 && t.syncing.every((s) => s.length === 0);
    });
  });

  afterAll(async () => {
    for (const n of nodes) n.kill();
    for (const p of planes) await p.close().catch(() => undefined);
    if (server?.pid !== undefined && server.exitCode === null) process.kill(server.pid, 'SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('dashboard: SIGTERM or SIGINT as soon as it prints its URL ends it with exit 0, closed', async () => {
    // A supervisor stops it once it is up; a signal that came before its handlers would kill it.
    // Four dashboards at once, each on its own port, each stopped by its own signal.
    const stopped = (['SIGTERM', 'SIGINT', 'SIGTERM', 'SIGINT'] as const).map(async (signal) => {
      const child = spawn(process.execPath, [BIN, 'dashboard', '--control-plane', url, '--port', '0'], {
        cwd: root,
        env: { PATH: process.env['PATH'] ?? '', HOME: process.env['HOME'] ?? '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      let out = '';
      let sent = false;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (!sent && out.includes('(Ctrl-C to stop)')) {
          sent = true;
          child.kill(signal);
        }
      });
      const [code, killedBy] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('close', (c, s) => r([c, s])));
      children.delete(child);
      return { signal, out, code, killedBy };
    });
    for (const { signal, out, code, killedBy } of await Promise.all(stopped)) {
      expect(out).toMatch(/^gridlink dashboard on http:\/\/127\.0\.0\.1:\d+\/ \(Ctrl-C to stop\)$/m);
      expect([code, killedBy], signal).toEqual([0, null]);
    }
  }, 60_000);

  it('status, baseline show, caches and safe over the NATS control plane', async () => {
    const http = nodes.flatMap((n) => ['--http', `${n.id}=http://127.0.0.1:${n.httpPort}`]);
    const [status, show, caches, safe] = await Promise.all([
      gridlink(['status', '--control-plane', url, '--json', ...http]),
      gridlink(['baseline', 'show', '--json'], { GRIDLINK_CONTROL_PLANE: url }),
      gridlink(['caches', '--control-plane', url, '--skip-sizes']),
      gridlink(['safe', '--control-plane', url, ...http]),
    ]);
    expect(status.err).toBe('');
    expect(status.code).toBe(0);
    const s = JSON.parse(status.out);
    expect(s.members.map((m: { id: string; ready: boolean }) => [m.id, m.ready])).toEqual([
      ['node-1', true],
      ['node-2', true],
    ]);
    expect(JSON.parse(show.out).baseline.map((n: { id: string }) => n.id)).toEqual(['node-1', 'node-2']);
    expect(caches.code).toBe(0);
    expect(safe.code).toBe(0);
  });
});

describe('gridlink caches against nodes that require an auth token', () => {
  const token = 'caches-test-token';
  let cluster: ProcessCluster;
  let client: GridClient;

  beforeAll(async () => {
    cluster = await ProcessCluster.start({ nodes: 2, partitions: 16, controlPlaneProxies: false, nodeArgs: ['--auth-token', token] });
    client = await GridClient.connect({ endpoints: cluster.endpoints, auth: { token } });
    const sessions = client.cache<string, string>('sessions');
    await sessions.create({ ttlMs: 60_000 });
    await Promise.all(['a', 'b', 'c', 'd', 'e'].map((k) => sessions.put(k, k)));
    await client.cache<string, number>('empty').create({ backups: 0 });
  });

  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('--auth-token reaches the nodes: real sizes, not "-"', async () => {
    const url = cluster.natsUrls.join(',');
    const [json, table] = await Promise.all([
      gridlink(['caches', '--control-plane', url, '--auth-token', token, '--json']),
      gridlink(['caches', '--control-plane', url, '--auth-token', token]),
    ]);
    expect(json.err).toBe('');
    expect(json.code).toBe(0);
    const list = JSON.parse(json.out) as { name: string; size: number | null }[];
    expect(list.map((c) => [c.name, c.size])).toEqual([
      ['empty', 0],
      ['sessions', 5],
    ]);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/sessions\s+1\s+READ_WRITE_SAFE\s+-\s+\{"ttlMs":60000\}\s+5\n/);
  });

  it('nodes refusing the client are not hidden behind "-": a usage error naming --auth-token', async () => {
    const url = cluster.natsUrls.join(',');
    const refused = [[], ['--auth-token', 'not-the-token']];
    // Told not to ask the nodes, it lists the caches without sizes (the last run).
    const runs = await Promise.all([...refused, ['--skip-sizes', '--json']].map((args) => gridlink(['caches', '--control-plane', url, ...args])));
    refused.forEach((args, i) => {
      const r = runs[i]!;
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.out).toBe('');
      expect(r.err).toMatch(/^gridlink: --auth-token: the nodes refused the client \(127\.0\.0\.1:\d+: handshake refused: authentication failed\)/);
    });
    const skip = runs[refused.length]!;
    expect(skip.code).toBe(0);
    expect((JSON.parse(skip.out) as { size: number | null }[]).map((c) => c.size)).toEqual([null, null]);
  });
});

describe('gridlink caches when sizes cannot be read', () => {
  let cluster: ProcessCluster;

  beforeAll(async () => {
    cluster = await ProcessCluster.start({ nodes: 2, partitions: 16, backups: 1, controlPlaneProxies: false });
    const client = await GridClient.connect({ endpoints: cluster.endpoints });
    try {
      const kept = client.cache<string, string>('kept');
      await kept.create({});
      const solo = client.cache<string, string>('solo');
      await solo.create({ backups: 0 });
      await Promise.all(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].flatMap((k) => [kept.put(k, k), solo.put(k, k)]));
    } finally {
      await client.close();
    }
  });

  afterAll(async () => {
    await cluster?.close();
  });

  type Listed = { name: string; size: number | null; sizeError: { code: string; message: string; retryable: boolean } | null };

  it('each failed size shows its reason (table and JSON); the listing still exits 0', async () => {
    const url = cluster.natsUrls.join(',');
    // node-2 dies: the cache without backups has lost partitions (the node refuses to count it),
    // the one with a backup still answers.
    await cluster.node('node-2').kill();
    await cluster.waitForGone('node-2');
    const [json, table] = await Promise.all([gridlink(['caches', '--control-plane', url, '--json']), gridlink(['caches', '--control-plane', url])]);
    expect(json.err).toBe('');
    expect(json.code).toBe(0);
    const list = JSON.parse(json.out) as Listed[];
    expect(list.find((c) => c.name === 'kept')).toMatchObject({ size: 8, sizeError: null });
    const solo = list.find((c) => c.name === 'solo')!;
    expect(solo.size).toBeNull();
    expect(solo.sizeError?.code).toBe('GRID_PARTITION_LOST');
    expect(solo.sizeError?.message).toMatch(/^partition \d+ is lost/);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/\nkept\s+1\s+READ_WRITE_SAFE\s+-\s+\{\}\s+8\n/);
    expect(table.out).toMatch(/\nsolo\s+0\s+READ_WRITE_SAFE\s+[\d,]+\s+\{"backups":0\}\s+\? partition-lost\n/);
    expect(table.out).toMatch(/\nsizes not read:\n {2}solo: GRID_PARTITION_LOST: partition \d+ is lost/);

    // node-1 hangs (SIGSTOP): no handshake is answered within --timeout; one reason stands for
    // every cache.
    cluster.node('node-1').hang();
    try {
      const [hung, text] = await Promise.all([
        gridlink(['caches', '--control-plane', url, '--timeout', '1500ms', '--json']),
        gridlink(['caches', '--control-plane', url, '--timeout', '1500ms']),
      ]);
      expect(hung.err).toBe('');
      expect(hung.code).toBe(0);
      const listed = JSON.parse(hung.out) as Listed[];
      expect(listed.map((c) => c.size)).toEqual([null, null]);
      for (const c of listed) {
        expect(c.sizeError?.code).toBe('GRID_CONNECTION');
        expect(c.sizeError?.message).toMatch(/^could not connect to any endpoint within 1500 ms: 127\.0\.0\.1:\d+ \(no answer within 1500 ms\)/);
      }
      expect(text.code).toBe(0);
      expect(text.out).toMatch(/\nsizes not read:\n {2}kept, solo: GRID_CONNECTION: could not connect to any endpoint within 1500 ms: /);
    } finally {
      cluster.node('node-1').resume();
    }

    // Both dead, the topology record still lists node-1: its address refuses the connection.
    await cluster.node('node-1').kill();
    const [dead, text, skip] = await Promise.all([
      gridlink(['caches', '--control-plane', url, '--json']),
      gridlink(['caches', '--control-plane', url]),
      // Told not to ask, nothing is reported as failed.
      gridlink(['caches', '--control-plane', url, '--skip-sizes', '--json']),
    ]);
    expect(dead.code).toBe(0);
    const gone = JSON.parse(dead.out) as Listed[];
    for (const c of gone) {
      expect(c.sizeError?.code).toBe('GRID_CONNECTION');
      expect(c.sizeError?.message).toContain('ECONNREFUSED');
      expect(c.sizeError?.retryable).toBe(true);
    }
    expect(text.out).toMatch(/\s\? connection\n/);
    expect((JSON.parse(skip.out) as Listed[]).map((c) => [c.size, c.sizeError])).toEqual([
      [null, null],
      [null, null],
    ]);
  });
});

describe('gridlink against a NATS no node has used', () => {
  let nats: NatsCluster;
  beforeAll(async () => {
    nats = await NatsCluster.start({ servers: 1 });
  });
  afterAll(async () => {
    await nats?.close();
  });

  /** The KV buckets on the server, listed with the NATS KV API. */
  async function buckets(): Promise<string[]> {
    const nc = await natsConnect({ servers: nats.urls });
    try {
      const names: string[] = [];
      for await (const st of new Kvm(nc).list()) names.push(st.bucket);
      return names.sort();
    } finally {
      await nc.close();
    }
  }

  it('a bucket that does not exist is refused (exit 4) naming it, and is not created', async () => {
    const url = nats.urls[0]!;
    const [wrong, json] = await Promise.all([
      gridlink(['status', '--control-plane', url, '--bucket', 'gridlnk']),
      // Before the first node starts: the default bucket is not created with the CLI's one replica either.
      gridlink(['baseline', 'show', '--json'], { GRIDLINK_CONTROL_PLANE: url }),
    ]);
    expect(wrong.code).toBe(4);
    expect(wrong.out).toBe('');
    expect(wrong.err).toBe(`gridlink: bucket "gridlnk" does not exist on ${url}: no gridlink node has used it (check --bucket)\n`);
    expect(json.code).toBe(4);
    expect(JSON.parse(json.err)).toEqual({ error: { code: 'ADMIN_NO_BUCKET', message: `bucket "gridlink" does not exist on ${url}: no gridlink node has used it (check --bucket)`, retryable: false } });
    expect(await buckets()).toEqual([]);
    // A bucket a node created is opened as it is (here one no cluster has formed in yet).
    const node = await NatsControlPlane.connect({ servers: [url], bucket: 'made' });
    await node.close();
    const empty = await gridlink(['status', '--control-plane', url, '--bucket', 'made', '--json']);
    expect(empty.code).toBe(4);
    expect(JSON.parse(empty.err).error.code).toBe('ADMIN_NO_TOPOLOGY');
    expect(await buckets()).toEqual(['made']);
  });

  it('a --control-plane URL ending in a slash, which it takes, connects as without one (was: exit 3, "not a nats:// or tls:// URL", retryable)', async () => {
    const url = nats.urls[0]!;
    const runs = await Promise.all([`${url}/`, `${url}/,${url}`, url].map((cp) => gridlink(['status', '--control-plane', cp, '--bucket', 'never-used', '--json'])));
    for (const r of runs) {
      // It reached the server: the bucket is not there.
      expect({ code: r.code, out: r.out }).toEqual({ code: 4, out: '' });
      expect((JSON.parse(r.err) as { error: { code: string } }).error.code).toBe('ADMIN_NO_BUCKET');
    }
  });

  it('a topology record that cannot be read is refused naming the problem (exit 4), not a crash', async () => {
    const url = nats.urls[0]!;
    // A topology record that is not one (no members, owners, baseline).
    const cp = await NatsControlPlane.connect({ servers: [url], bucket: 'broken' });
    try {
      await cp.put('topology', { version: 3 });
    } finally {
      await cp.close();
    }
    const [text, json] = await Promise.all([
      gridlink(['status', '--sample', '0', '--control-plane', url, '--bucket', 'broken']),
      gridlink(['baseline', 'show', '--json', '--control-plane', url, '--bucket', 'broken']),
    ]);
    expect(text.code).toBe(4);
    expect(text.out).toBe('');
    expect(text.err).toMatch(/^gridlink: the topology record \(revision \d+\) cannot be read: clusterId: not a string\./);
    expect(json.code).toBe(4);
    const e = JSON.parse(json.err) as { error: { code: string; message: string; retryable: boolean } };
    expect(e.error.code).toBe('ADMIN_MALFORMED_TOPOLOGY');
    expect(e.error.retryable).toBe(true);
  });
});
