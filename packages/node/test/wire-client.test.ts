/**
 * The protocol's WireClient against a real node (requests, error responses, pushes) and
 * against a scripted TCP server on 127.0.0.1 (timeouts, closes, refused and silent handshakes,
 * out-of-order responses).
 */
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { encodeKey } from '@gridlink/affinity';
import {
  Op,
  ResponseFlag,
  WireClient,
  WireClientError,
  WireResponseError,
  type RequestFrame,
} from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { ScriptedNode } from '@gridlink/testkit';

const clients: WireClient[] = [];
function client(port: number, extra: Partial<ConstructorParameters<typeof WireClient>[0]> = {}): WireClient {
  const c = new WireClient({ host: '127.0.0.1', port, sessionId: 's', ...extra });
  clients.push(c);
  return c;
}
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

describe('WireClient against a real node', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, partitions: 16, caches: { c: {} } });
  });
  afterAll(async () => {
    await cluster.stop();
  });

  it('handshakes, answers requests by payload or whole frame, rejects error responses with a typed error', async () => {
    const c = client(cluster.node(cluster.nodeIds[0]!).port);
    const hs = await c.ready;
    expect(hs.nodeId).toBe(cluster.nodeIds[0]);
    expect(c.open).toBe(true);
    const key = encodeKey('k');
    await c.request(Op.CACHE_PUT, { cache: 'c', key, value: new Uint8Array([1, 2]), seq: 1 }, 3000);
    const got = (await c.request(Op.CACHE_GET, { cache: 'c', key }, 3000)) as { value: Uint8Array };
    expect([...got.value]).toEqual([1, 2]);
    const f = await c.requestFrame(Op.CACHE_GET, { cache: 'c' }, 3000);
    expect(f.flags & ResponseFlag.ERROR).not.toBe(0);
    const err: unknown = await c.request(Op.CACHE_GET, { cache: 'c' }, 3000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireResponseError);
    expect(err).toMatchObject({ code: 'GRID_BAD_REQUEST', retryable: false });
    expect(c.inFlight).toBe(0);
  });
});

describe('WireClient against a scripted server', () => {
  const fake = new ScriptedNode('fake', 8);
  beforeAll(() => fake.start());
  afterAll(() => fake.close());
  afterEach(() => {
    fake.handshake = 'ok';
    fake.handler = () => undefined;
  });

  it('times a request out on its own and ignores its late answer', async () => {
    let late: (() => void) | null = null;
    fake.handler = (f, n, s) => {
      if ((f.payload as { n: number }).n === 1) late = () => n.answer(s, f, { n: 1 });
      else n.answer(s, f, f.payload);
      return undefined;
    };
    const c = client(fake.port);
    await c.ready;
    const err: unknown = await c.request(Op.HEARTBEAT, { n: 1 }, 50).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WireClientError);
    expect(err).toMatchObject({ code: 'GRID_WIRE_TIMEOUT', retryable: true });
    late!();
    expect(await c.request(Op.HEARTBEAT, { n: 2 }, 3000)).toEqual({ n: 2 });
    expect(c.inFlight).toBe(0);
  });

  it('fails every pending request when the server closes, then refuses new ones at once', async () => {
    fake.handler = (_f, _n, s) => {
      if (c.inFlight === 3) s.destroy();
      return undefined;
    };
    const c = client(fake.port);
    await c.ready;
    const pending = [1, 2, 3].map((n) => c.request(Op.HEARTBEAT, { n }).catch((e: unknown) => e));
    for (const e of await Promise.all(pending)) expect(e).toMatchObject({ code: 'GRID_WIRE_CLOSED' });
    await c.closedPromise;
    expect(c.closed).toBe(true);
    await expect(c.request(Op.HEARTBEAT, {})).rejects.toMatchObject({ code: 'GRID_WIRE_CLOSED' });
  });

  it('close(reason) rejects pending requests with the reason', async () => {
    const c = client(fake.port);
    await c.ready;
    const p = c.request(Op.HEARTBEAT, {});
    const reason = new Error('bye');
    c.close(reason);
    await expect(p).rejects.toBe(reason);
    await c.closedPromise;
  });

  it('reports a refused handshake, a silent one and an unreachable address with typed errors', async () => {
    fake.handshake = 'refuse';
    await expect(client(fake.port).ready).rejects.toMatchObject({ code: 'GRID_WIRE_REFUSED', retryable: false });
    fake.handshake = 'silent';
    await expect(client(fake.port, { handshakeTimeoutMs: 50 }).ready).rejects.toMatchObject({ code: 'GRID_WIRE_HANDSHAKE_TIMEOUT' });
    const closedPort = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    await expect(WireClient.connect({ host: '127.0.0.1', port: closedPort, sessionId: 's' })).rejects.toMatchObject({ code: 'GRID_WIRE_UNREACHABLE' });
  });

  it('matches responses to requests by id whatever order they come back in', async () => {
    const c = client(fake.port);
    await c.ready;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 30 }).chain((n) => fc.shuffledSubarray([...Array(n).keys()], { minLength: n, maxLength: n })), async (order) => {
        const held: { f: RequestFrame; s: net.Socket }[] = [];
        const all = new Promise<void>((resolve) => {
          fake.handler = (f, _n, s) => {
            held.push({ f, s });
            if (held.length === order.length) resolve();
            return undefined;
          };
        });
        const replies = order.map((_, i) => c.request(Op.HEARTBEAT, { i }, 5000));
        await all;
        for (const k of order) fake.answer(held[k]!.s, held[k]!.f, { echo: (held[k]!.f.payload as { i: number }).i });
        const got = await Promise.all(replies);
        got.forEach((r, i) => expect(r).toEqual({ echo: i }));
      }),
      { numRuns: 25 },
    );
  });
});
