/**
 * The bounds of a node's HTTP listener (/health, /metrics), met with real sockets on 127.0.0.1: a
 * request whose headers or body dribble in, a connection that sends nothing, an idle keep-alive
 * connection, a connection beyond the cap. Before, none was bounded: each held its socket for
 * ever. The listener (ServerEdge.listenHttp) is run with small bounds here so that each test
 * takes a second or so; a real node runs with HTTP_LIMITS, whose connection cap is checked on one.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster, MemoryControlPlane } from '@gridlink/node';
import { HTTP_LIMITS, type HttpLimits } from '@gridlink/node/internal';
import { resolveNodeOptions } from '../src/config.js';
import { silentLogger } from '../src/logger.js';
import { Scheduler } from '../src/scheduler.js';
import { ServerEdge } from '../src/server/listener.js';

const LIVE = 'GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n';

/** A raw client connection: what it received, and when the other side closed it. */
interface Conn {
  readonly socket: net.Socket;
  readonly openedAt: number;
  text(): string;
  closedAt(): number | undefined;
}

function open(port: number): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let closedAt: number | undefined;
    socket.on('data', (b: Buffer) => chunks.push(b));
    socket.on('error', () => {}); // a reset is a close too
    socket.once('close', () => (closedAt = performance.now()));
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve({ socket, openedAt: performance.now(), text: () => Buffer.concat(chunks).toString('latin1'), closedAt: () => closedAt });
    });
    socket.once('error', reject);
  });
}

/** Polls `cond` every 10 ms; throws naming `what` after `ms`. */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Sends a /health/live request on `c` and waits for its whole answer (the n-th on `c`). */
async function live(c: Conn, n = 1): Promise<void> {
  c.socket.write(LIVE);
  await until(() => (c.text().match(/"live":true[^}]*\}/g) ?? []).length >= n || c.closedAt() !== undefined, 'an answer');
  expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
  expect((c.text().match(/HTTP\/1\.1 200 /g) ?? []).length).toBe(n);
}

/** Writes `text` a byte every `everyMs` until it is all sent or the connection is closed. */
function dribble(c: Conn, text: string, everyMs: number): void {
  let i = 0;
  const t = setInterval(() => {
    if (i >= text.length || c.closedAt() !== undefined || c.socket.destroyed) {
      clearInterval(t);
      return;
    }
    c.socket.write(text[i++]!);
  }, everyMs);
  c.socket.once('close', () => clearInterval(t));
}

describe('the HTTP listener bounds what a client can hold (small bounds)', () => {
  let edge: ServerEdge | undefined;
  let scheduler: Scheduler | undefined;
  const conns: Conn[] = [];

  afterEach(() => {
    for (const c of conns.splice(0)) c.socket.destroy();
    edge?.close(true);
    scheduler?.stop();
    edge = undefined;
  });

  async function listen(limits: Partial<HttpLimits>): Promise<number> {
    const opts = resolveNodeOptions({ id: 'n', controlPlane: new MemoryControlPlane(), port: 0, httpPort: 0, logger: silentLogger });
    scheduler = new Scheduler();
    edge = new ServerEdge(opts, scheduler, silentLogger, () => true, () => {});
    const registry = new Registry();
    await edge.listenHttp({ id: 'n', registry, isReady: () => true, topologyVersion: () => 1, unsafeReason: () => null }, { ...HTTP_LIMITS, checkIntervalMs: 50, ...limits });
    return edge.httpPort!;
  }
  const connect = async (port: number): Promise<Conn> => {
    const c = await open(port);
    conns.push(c);
    return c;
  };
  const closedWithin = async (c: Conn, ms: number, what: string): Promise<number> => {
    await until(() => c.closedAt() !== undefined, what, ms);
    return c.closedAt()! - c.openedAt;
  };

  it('headers that have not all arrived headersTimeoutMs after the connection opened: 408 and closed; also for a connection that sends nothing, or a byte at a time. A whole request meanwhile is answered', async () => {
    const port = await listen({ headersTimeoutMs: 400, requestTimeoutMs: 400 });
    const partial = await connect(port);
    partial.socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'); // never the blank line
    const silent = await connect(port);
    const slow = await connect(port);
    dribble(slow, LIVE, 40); // 38 bytes, 1.5 s
    const whole = await connect(port);
    await live(whole);
    for (const [c, what] of [
      [partial, 'the partial request'],
      [silent, 'the silent connection'],
      [slow, 'the dribbling request'],
    ] as const) {
      const after = await closedWithin(c, 3000, `${what} to be closed`);
      // Not before the bound (less the client's own connect time), and not long after it.
      expect([what, after >= 350, after < 1500]).toEqual([what, true, true]);
    }
    expect(partial.text()).toMatch(/^HTTP\/1\.1 408 /);
    expect(slow.text()).not.toMatch(/HTTP\/1\.1 200/);
    // The listener serves on.
    await live(await connect(port));
  });

  it('a body that has not all arrived requestTimeoutMs after its request began: the connection is closed', async () => {
    const port = await listen({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const c = await connect(port);
    c.socket.write('POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n');
    dribble(c, 'x'.repeat(100), 40); // 4 s
    const after = await closedWithin(c, 3000, 'the request with a dribbling body to be closed');
    expect(after).toBeGreaterThanOrEqual(550);
    // Answered as soon as its headers were in (a POST is refused); the connection then waited for the body.
    expect(c.text()).toMatch(/^HTTP\/1\.1 405 /);
  });

  it('an idle keep-alive connection is closed keepAliveTimeoutMs after its last answer', async () => {
    const port = await listen({ keepAliveTimeoutMs: 300 });
    const c = await connect(port);
    await live(c);
    await live(c, 2); // kept alive: a second request on it
    const answered = performance.now();
    await until(() => c.closedAt() !== undefined, 'the idle connection to be closed', 3000);
    expect(c.closedAt()! - answered).toBeGreaterThanOrEqual(250);
  });

  it('a connection on which no byte moves either way for idleTimeoutMs is closed, whatever the other bounds', async () => {
    const port = await listen({ idleTimeoutMs: 300, headersTimeoutMs: 60_000, requestTimeoutMs: 60_000, checkIntervalMs: 60_000 });
    const c = await connect(port);
    const after = await closedWithin(c, 3000, 'the silent connection to be closed');
    expect(after).toBeGreaterThanOrEqual(250);
  });

  it('beyond maxConnections a connection is closed as it is accepted, answered nothing; those open are served on, and a freed place is taken again', async () => {
    const port = await listen({ maxConnections: 3 });
    const held = [await connect(port), await connect(port), await connect(port)];
    for (const c of held) await live(c);
    const extra = await connect(port);
    extra.socket.write(LIVE);
    await closedWithin(extra, 3000, 'the connection beyond the cap to be closed');
    expect(extra.text()).toBe('');
    for (const c of held) await live(c, 2);
    held[0]!.socket.destroy();
    // The listener learns of the close asynchronously: a new connection is accepted once it has.
    let served: Conn | undefined;
    for (const deadline = performance.now() + 5000; served === undefined; ) {
      const c = await connect(port);
      c.socket.write(LIVE);
      await until(() => c.closedAt() !== undefined || /"live":true/.test(c.text()), 'an answer or a close');
      if (/"live":true/.test(c.text())) served = c;
      else if (performance.now() > deadline) throw new Error('no connection accepted after one closed');
    }
    for (const c of held.slice(1)) await live(c, 3);
  });
});

describe("a node's HTTP listener runs with HTTP_LIMITS", () => {
  let cluster: LocalCluster | undefined;
  const conns: Conn[] = [];
  afterEach(async () => {
    for (const c of conns.splice(0)) c.socket.destroy();
    await cluster?.stop();
    cluster = undefined;
  });

  it('at most HTTP_LIMITS.maxConnections connections: one more is closed unanswered while the others are served', async () => {
    cluster = await LocalCluster.start({ nodes: 1, partitions: 8, backups: 0, http: true });
    const port = cluster.node(cluster.nodeIds[0]!).httpPort!;
    for (let i = 0; i < HTTP_LIMITS.maxConnections; i++) conns.push(await open(port));
    // Each answered once (so each is counted by the listener), then kept alive.
    await Promise.all(conns.map((c) => live(c)));
    const extra = await open(port);
    conns.push(extra);
    extra.socket.write(LIVE);
    await until(() => extra.closedAt() !== undefined, 'the connection beyond the cap to be closed', 3000);
    expect(extra.text()).toBe('');
    await live(conns[0]!, 2);
  });

  it('docs/node.md states the bounds HTTP_LIMITS holds', () => {
    const text = readFileSync(new URL('../../../docs/node.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
    const s = (ms: number): string => `${ms / 1000} s`;
    expect(text).toContain(
      `The HTTP listener is bounded (\`HTTP_LIMITS\`): at most ${HTTP_LIMITS.maxConnections} connections at once (one more is closed as it is accepted; those open are served on); ` +
        `a request's headers must have arrived ${s(HTTP_LIMITS.headersTimeoutMs)} after it began (or the connection opened), the whole request ${s(HTTP_LIMITS.requestTimeoutMs)} after, ` +
        `else the node answers 408 and closes the connection (checked every ${s(HTTP_LIMITS.checkIntervalMs)}, so up to ${s(HTTP_LIMITS.checkIntervalMs)} later); ` +
        `an idle keep-alive connection is closed ${s(HTTP_LIMITS.keepAliveTimeoutMs)} after its last answer, and one on which no byte moves either way for ${s(HTTP_LIMITS.idleTimeoutMs)} is closed.`,
    );
  });
});
