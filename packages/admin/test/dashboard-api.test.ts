/**
 * startDashboard as a library call: its options checked as the CLI checks its own, close()
 * releasing what a scrape under way holds, and every request it serves answered. Real HTTP on
 * 127.0.0.1, the node package's MemoryControlPlane holding a topology record.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LEASE_PREFIX, MemoryControlPlane, TOPOLOGY_KEY } from '@gridlink/node';
import { initialTopology } from '@gridlink/node/internal';
import { waitFor } from '@gridlink/testkit';
import { AdminUsageError, ExitCode, startDashboard, type DashboardOptions } from '@gridlink/admin';
import { MAX_UNSENT_BYTES } from '../src/dashboard/server.js';

/** A control plane holding a formed one-member cluster (node-1, its grid address unused here). */
async function formedControlPlane(): Promise<MemoryControlPlane> {
  const cp = new MemoryControlPlane();
  const lease = { id: 'node-1', epoch: 'e-node-1', host: '127.0.0.1', port: 1, synced: {} };
  await cp.put(TOPOLOGY_KEY, initialTopology({ clusterId: 'c', partitions: 4, backups: 0, leases: [lease] }));
  await cp.put(LEASE_PREFIX + lease.id, lease);
  return cp;
}

describe('startDashboard options', () => {
  /** The error startDashboard refuses `options` with; a dashboard it started anyway is closed. */
  async function refusal(options: unknown): Promise<unknown> {
    return startDashboard(options as DashboardOptions).then(
      async (d) => {
        await d.close();
        return `started on ${d.url}`;
      },
      (err: unknown) => err,
    );
  }

  it('refuses an empty host (it listened on every address), and every other invalid value, with an AdminUsageError naming the option', async () => {
    const cp = new MemoryControlPlane();
    const cases: [unknown, string][] = [
      [{ controlPlane: cp, port: 0, host: '' }, 'host'],
      [{ controlPlane: cp, port: 0, host: '  ' }, 'host'],
      [{ controlPlane: cp, port: 0, host: null }, 'host'],
      [{ controlPlane: cp, port: 0, host: 127 }, 'host'],
      [{ controlPlane: cp, port: null }, 'port'],
      [{ controlPlane: cp, port: '0' }, 'port'],
      [{ controlPlane: cp, port: -1 }, 'port'],
      [{ controlPlane: cp, port: 65_536 }, 'port'],
      [{ controlPlane: cp, port: 80.5 }, 'port'],
      [{ controlPlane: cp, port: Number.NaN }, 'port'],
      [{ controlPlane: cp, port: 0, scrapeIntervalMs: null }, 'scrapeIntervalMs'],
      [{ controlPlane: cp, port: 0, scrapeIntervalMs: '1s' }, 'scrapeIntervalMs'],
      [{ controlPlane: cp, port: 0, scrapeIntervalMs: 99 }, 'scrapeIntervalMs'],
      // a longer Node.js timer fires at once: a scrape loop with no pause
      [{ controlPlane: cp, port: 0, scrapeIntervalMs: 2 ** 31 }, 'scrapeIntervalMs'],
      [{ controlPlane: cp, port: 0, timeoutMs: 0 }, 'timeoutMs'],
      [{ controlPlane: cp, port: 0, timeoutMs: null }, 'timeoutMs'],
      [{ controlPlane: cp, port: 0, timeoutMs: Number.POSITIVE_INFINITY }, 'timeoutMs'],
      [{ controlPlane: cp, port: 0, http: 'http://127.0.0.1:8080' }, 'http'],
      [{ port: 0 }, 'controlPlane'],
      [{ controlPlane: null, port: 0 }, 'controlPlane'],
      [{ controlPlane: {}, port: 0 }, 'controlPlane'],
      [null, 'options'],
      [undefined, 'options'],
    ];
    for (const [options, option] of cases) {
      const err = await refusal(options);
      const what = `${JSON.stringify(options, (_k, v: unknown) => (v === cp ? 'cp' : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v))}`;
      expect(err, what).toBeInstanceOf(AdminUsageError);
      expect({ argument: (err as AdminUsageError).argument, exitCode: (err as AdminUsageError).exitCode }, what).toEqual({ argument: option, exitCode: ExitCode.USAGE });
      expect((err as Error).message, what).toMatch(new RegExp(`^${option}: must be .*, got `));
    }
    // The message shows the value given, an empty one visibly.
    expect(((await refusal({ controlPlane: cp, host: '' })) as Error).message).toBe('host: must be a host name or address to listen on, got ""');
  });

  it('takes the values it documents: a host to listen on, port 0 for a free one, the defaults when left out', async () => {
    const d = await startDashboard({ controlPlane: new MemoryControlPlane(), host: '127.0.0.1', port: 0, scrapeIntervalMs: 100, timeoutMs: 1 });
    try {
      expect(d.url).toBe(`http://127.0.0.1:${d.port}/`);
      expect((await fetch(d.url)).status).toBe(200);
    } finally {
      await d.close();
    }
  });
});

describe('the dashboard server', () => {
  let cp: MemoryControlPlane;
  /** Stands for a member's HTTP port: answers nothing, holds each request until it is closed. */
  let held: http.Server;
  let heldPort: number;
  const open = new Set<http.ServerResponse>();
  let received = 0;

  beforeAll(async () => {
    cp = await formedControlPlane();
    held = http.createServer((_req, res) => {
      received++;
      open.add(res);
      res.on('close', () => open.delete(res));
    });
    await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
    heldPort = (held.address() as AddressInfo).port;
  });

  afterAll(async () => {
    held.closeAllConnections();
    await new Promise<void>((r) => held.close(() => r()));
  });

  it('close() aborts the requests a scrape under way has open to the members (they stayed open for up to an interval, past close)', async () => {
    // A long interval: a probe is given up on after an interval, so it would stay open a minute.
    const d = await startDashboard({ controlPlane: cp, port: 0, scrapeIntervalMs: 60_000, http: () => `http://127.0.0.1:${heldPort}` });
    let closed = false;
    try {
      // The first scrape asks node-1's /health/ready and /metrics, and waits.
      await waitFor('the scrape to ask the member', () => open.size === 2, 10_000);
      await d.close();
      closed = true;
      await waitFor('the scrape requests to be aborted', () => open.size === 0, 3000);
    } finally {
      if (!closed) await d.close();
      held.closeAllConnections();
    }
    expect(received).toBe(2);
  });

  it('answers HEAD /events with the stream headers and ends it (it never answered: no headers go out for HEAD before the end)', async () => {
    const d = await startDashboard({ controlPlane: cp, port: 0 });
    try {
      const head = await fetch(new URL('/events', d.url), { method: 'HEAD', signal: AbortSignal.timeout(5000) });
      expect(head.status).toBe(200);
      expect(head.headers.get('content-type')).toBe('text/event-stream');
      // GET still streams: the current topology at once.
      const ac = new AbortController();
      const get = await fetch(new URL('/events', d.url), { signal: ac.signal });
      const reader = get.body!.getReader();
      let text = '';
      while (!text.includes('event: topology\n')) {
        const { value, done } = await reader.read();
        if (done) break;
        text += Buffer.from(value).toString('utf8');
      }
      expect(text).toContain('event: topology\n');
      ac.abort();
      await reader.cancel().catch(() => undefined);
    } finally {
      await d.close();
    }
  });

  it('drops a page that reads nothing instead of keeping every event for it in memory as long as its connection lives (an EventSource reconnects); pages that read are kept', async () => {
    // Large events at little cost: each lease reports 1024 long ids unreachable (ADR 0065), which
    // every topology event carries (and its banner line repeats): some 800 KB an event.
    const big = new MemoryControlPlane();
    const unreachable = Array.from({ length: 1024 }, (_, i) => `${'x'.repeat(120)}-${i}`);
    const leases = ['node-1', 'node-2', 'node-3'].map((id) => ({ id, epoch: `e-${id}`, host: '127.0.0.1', port: 1, synced: {}, unreachable }));
    let rec = initialTopology({ clusterId: 'c', partitions: 16, backups: 1, leases });
    await big.put(TOPOLOGY_KEY, rec);
    for (const l of leases) await big.put(LEASE_PREFIX + l.id, l);
    const d = await startDashboard({ controlPlane: big, port: 0, scrapeIntervalMs: 60_000 });
    // A page that stops reading once its stream has started: its socket is paused.
    const stuck = net.connect(d.port, '127.0.0.1');
    let stuckBytes = 0;
    let stuckEnded = false;
    const started = new Promise<void>((resolve) => stuck.once('data', () => resolve()));
    stuck.on('data', (b: Buffer) => (stuckBytes += b.length));
    stuck.on('close', () => (stuckEnded = true));
    stuck.on('error', () => undefined);
    stuck.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1:${d.port}\r\n\r\n`);
    await started;
    stuck.pause();
    // A page that reads everything; it counts the events it has read whole (each ends in a blank line).
    const reader = http.get(new URL('/events', d.url));
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => reader.once('response', resolve).once('error', reject));
    res.setEncoding('utf8');
    let readBytes = 0;
    let readEvents = 0;
    let readEnded = false;
    let carry = '';
    let wake: (() => void) | undefined;
    res.on('data', (text: string) => {
      readBytes += Buffer.byteLength(text);
      const parts = (carry + text).split('\n\n');
      carry = parts.pop()!;
      readEvents += parts.length;
      wake?.();
    });
    res.on('close', () => (readEnded = true));
    try {
      // New topology versions, each read whole by the reading page before the next is written:
      // far more than the stuck page's socket buffers and the limit hold.
      await waitFor('the reading page to have the current topology', () => readEvents >= 2, 10_000);
      // (Linux lets the two sockets' buffers grow to tens of MB: net.ipv4.tcp_rmem, tcp_wmem.)
      const target = MAX_UNSENT_BYTES + 48 * 1024 * 1024;
      while (readBytes < target) {
        const before = readEvents;
        rec = { ...rec, version: rec.version + 1 };
        await big.put(TOPOLOGY_KEY, rec);
        while (readEvents === before && !readEnded) await new Promise<void>((resolve) => (wake = resolve));
        expect(readEnded).toBe(false);
      }
      expect(readEnded).toBe(false);
      stuck.resume();
      await waitFor('the stuck page to be dropped', () => stuckEnded, 10_000);
      // What it was sent before it was dropped is what the sockets held: far less than was written.
      expect(stuckBytes).toBeLessThan(target);
      expect(readEnded).toBe(false);
    } finally {
      stuck.destroy();
      reader.destroy();
      await d.close();
    }
  }, 60_000);
});
