import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { partitionOf } from '@gridlink/affinity';
import { ALL_FEATURES, Feature, Op, validateRequest } from '@gridlink/protocol';
import { GridAbortError, GridClient, GridConnectionError, GridServerError, GridTimeoutError, PartitionLostError, dnsAddressFinder, staticAddressFinder } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('address finders', () => {
  it('dnsAddressFinder returns A then AAAA records with the port, stable order', async () => {
    const finder = dnsAddressFinder('grid.default.svc', {
      port: 10900,
      resolver: {
        resolve4: async () => ['10.0.0.2', '10.0.0.1'],
        resolve6: async () => ['fd00::1'],
      },
    });
    expect(await finder.resolve()).toEqual(['10.0.0.1:10900', '10.0.0.2:10900', '[fd00::1]:10900']);
  });

  it('dnsAddressFinder tolerates one family failing and fails when both do', async () => {
    const nx = Object.assign(new Error('queryAaaa ENODATA'), { code: 'ENODATA' });
    const only4 = dnsAddressFinder('svc', { resolver: { resolve4: async () => ['10.0.0.1'], resolve6: () => Promise.reject(nx) } });
    expect(await only4.resolve()).toEqual(['10.0.0.1:10800']);
    const none = dnsAddressFinder('svc', { resolver: { resolve4: () => Promise.reject(nx), resolve6: () => Promise.reject(nx) } });
    await expect(none.resolve()).rejects.toThrow(/no A\/AAAA records/);
  });

  it('a client connects through a static finder', async () => {
    const cl = await LocalCluster.start({ nodes: 1, partitions: 16 });
    cleanups.push(() => cl.stop());
    const client = await GridClient.connect({ addressFinder: staticAddressFinder(cl.endpoints) });
    cleanups.push(() => client.close());
    await client.cache<string, number>('f').put('x', 1);
  });

  it('a finder that never answers costs connect one connectTimeout, and later re-resolutions still run', async () => {
    const cl = await LocalCluster.start({ nodes: 1, partitions: 16 });
    cleanups.push(() => cl.stop());
    // A lookup that hangs (a discovery service that accepts and never answers) until the client
    // gives up on it, then answers from the next call on.
    const signals: AbortSignal[] = [];
    let hang = true;
    const finder = {
      resolve: (signal?: AbortSignal): Promise<string[]> => {
        if (signal !== undefined) signals.push(signal);
        return hang ? new Promise<string[]>(() => undefined) : Promise.resolve(cl.endpoints);
      },
    };
    // Alone: connect fails within its connectTimeout instead of waiting for good.
    const t0 = performance.now();
    const err = await GridClient.connect({ addressFinder: finder, connectTimeout: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GridConnectionError);
    expect((err as GridConnectionError).message).toMatch(/did not answer within 300 ms/);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(signals[0]?.aborted).toBe(true);
    // Beside endpoints: connect goes on with them, and the finder is asked again later.
    const client = await GridClient.connect({ addressFinder: finder, endpoints: cl.endpoints, connectTimeout: 300, reResolveInterval: 50 });
    cleanups.push(() => client.close());
    await client.cache<string, number>('f').put('y', 1);
    const asked = signals.length;
    await waitFor(() => signals.length > asked + 1, 5000, 'the finder asked again after a hung call');
    hang = false;
    const answered = signals.length;
    await waitFor(() => signals.length > answered + 1, 5000, 'a re-resolution after the finder recovered');
  });
});

describe('connect', () => {
  it('waits for the first partition map at most connectTimeout when the node hangs after its handshake', async () => {
    // Handshakes and heartbeats answered, the map request never.
    const node = await new ScriptedNode('no-map', 8, (req) => (req.op === Op.HEARTBEAT ? { payload: {} } : undefined)).start();
    cleanups.push(() => node.close());
    const t0 = performance.now();
    const client = await GridClient.connect({ endpoints: [node.endpoint], connectTimeout: 300, requestTimeout: 3000 });
    const elapsed = performance.now() - t0;
    cleanups.push(() => client.close());
    // It waited a requestTimeout per ask of the map (3000 ms, up to five asks).
    expect(elapsed).toBeLessThan(2500);
    expect(client.topology().version).toBeNull();
    expect(node.count(Op.TOPOLOGY)).toBeGreaterThanOrEqual(1);
  });
});

describe('auth and graceful node stop', () => {
  it('a wrong token is refused with the node error as the endpoint cause', async () => {
    const cl = await LocalCluster.start({ nodes: 1, partitions: 16, authToken: 'secret' });
    cleanups.push(() => cl.stop());
    const err = (await GridClient.connect({ endpoints: cl.endpoints, auth: { token: 'wrong' }, connectTimeout: 2000 }).catch((e: unknown) => e)) as GridConnectionError;
    expect(err).toBeInstanceOf(GridConnectionError);
    expect(err.endpoints[0]!.cause).toMatch(/refused/);
    // The node's refusal itself, typed; and a retry would not change it.
    expect(err.endpoints[0]!.error).toBeInstanceOf(GridServerError);
    expect((err.endpoints[0]!.error as GridServerError).code).toBe('GRID_AUTH_FAILED');
    expect(err.retryable).toBe(false);
    // With an endpoint where no node listens (yet) among them, trying again may still help.
    const closedPort = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const mixed = (await GridClient.connect({ endpoints: [`127.0.0.1:${closedPort}`, ...cl.endpoints], auth: { token: 'wrong' }, connectTimeout: 2000 }).catch((e: unknown) => e)) as GridConnectionError;
    expect(mixed).toBeInstanceOf(GridConnectionError);
    expect(mixed.endpoints[0]!.error).toBeInstanceOf(Error);
    expect(mixed.endpoints[0]!.error).not.toBeInstanceOf(GridServerError);
    expect(mixed.endpoints[1]!.error).toBeInstanceOf(GridServerError);
    expect(mixed.retryable).toBe(true);
    const ok = await GridClient.connect({ endpoints: cl.endpoints, auth: { token: 'secret' } });
    cleanups.push(() => ok.close());
    await ok.cache<string, number>('a').put('k', 1);
  });

  it('a node stopping gracefully loses no operation', async () => {
    const cl = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 32 });
    cleanups.push(() => cl.stop());
    const client = await GridClient.connect({ endpoints: cl.endpoints });
    cleanups.push(() => client.close());
    await waitFor(() => client.stats().nodes.filter((n) => n.connected).length === 3, 10_000, 'all connected');
    const cache = client.cache<number, number>('graceful');
    let stopping = false;
    const writer = (async () => {
      let i = 0;
      while (!stopping || i < 50) {
        await cache.put(i, i);
        i++;
      }
      return i;
    })();
    await cl.stopNode(cl.nodeIds[0]!);
    stopping = true;
    const n = await writer;
    const values = await cache.getAll(Array.from({ length: n }, (_, i) => i));
    expect(values).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(client.stats().failedOperations).toBe(0);
  });
});

describe('events', () => {
  it('nodeDown/disconnected on a kill, topologyChanged as the cluster reacts, nodeUp after restart, retry while failing over', async () => {
    const cl = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 32 });
    cleanups.push(() => cl.stop());
    const client = await GridClient.connect({ endpoints: cl.endpoints, reconnect: { minDelay: 20, maxDelay: 200 } });
    cleanups.push(() => client.close());
    await waitFor(() => client.stats().nodes.filter((n) => n.connected).length === 3, 10_000, 'all connected');
    const seen: string[] = [];
    client.on('nodeDown', (e) => seen.push(`down:${e.nodeId}`));
    client.on('disconnected', (e) => seen.push(`disc:${e.nodeId}`));
    client.on('nodeUp', (e) => seen.push(`up:${e.nodeId}`));
    let retries = 0;
    client.on('retry', () => retries++);
    const versions: number[] = [];
    client.on('topologyChanged', (e) => versions.push(e.version));
    const victim = cl.nodeIds[0]!;
    const v0 = client.topology().version!;
    const cache = client.cache<number, number>('events');
    // Keep writing through the kill so some attempts fail over.
    let stop = false;
    const load = (async () => {
      let i = 0;
      while (!stop) await cache.put(i++ % 64, i);
    })();
    await cl.kill(victim);
    await waitFor(() => seen.includes(`down:${victim}`) && seen.includes(`disc:${victim}`), 10_000, 'nodeDown');
    await waitFor(() => versions.some((v) => v > v0), 10_000, 'topologyChanged');
    await cl.restart(victim);
    await waitFor(() => seen.includes(`up:${victim}`), 10_000, 'nodeUp after restart');
    stop = true;
    await load;
    expect(client.stats().failedOperations).toBe(0);
    expect(client.stats().retries).toBe(retries);
  });
});

describe('lost partitions', () => {
  it('an operation on a partition with no live owner fails fast with PartitionLostError, others keep working', async () => {
    const cl = await LocalCluster.start({ nodes: 2, backups: 0, partitions: 16 });
    cleanups.push(() => cl.stop());
    const client = await GridClient.connect({ endpoints: cl.endpoints, operationTimeout: 5000 });
    cleanups.push(() => client.close());
    await cl.kill(cl.nodeIds[0]!);
    const t = await cl.waitForTopology((t) => t.lost.length > 0, 10_000);
    const lost = new Set(t.lost);
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const lostKey = keys.find((k) => lost.has(partitionOf(k, 16)))!;
    const liveKey = keys.find((k) => !lost.has(partitionOf(k, 16)))!;
    const cache = client.cache<string, number>('lost');
    const t0 = performance.now();
    const err = await cache.put(lostKey, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PartitionLostError);
    expect((err as PartitionLostError).retryable).toBe(false);
    // Not retried until the deadline: it fails as soon as the node says so.
    expect(performance.now() - t0).toBeLessThan(5000);
    await cache.put(liveKey, 2);
    expect(await cache.get(liveKey)).toBe(2);
  });
});

describe('deadlines and aborts', () => {
  async function slowNode(delayMs: number): Promise<ScriptedNode> {
    const node = await new ScriptedNode('slow', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      return { payload: { value: null }, delayMs };
    }).start();
    cleanups.push(() => node.close());
    return node;
  }

  it('an abort during a request rejects at once with GridAbortError carrying the reason', async () => {
    const node = await slowNode(60_000);
    const client = await GridClient.connect({ endpoints: [node.endpoint] });
    cleanups.push(() => client.close());
    const ac = new AbortController();
    const p = client.cache('x').get('k', { signal: ac.signal });
    await waitFor(() => node.count(Op.CACHE_GET) === 1, 5000, 'request sent');
    ac.abort(new Error('caller gave up'));
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GridAbortError);
    expect(((err as GridAbortError).cause as Error).message).toBe('caller gave up');
  });

  it('an unanswered operation fails with GridTimeoutError at its deadline after retrying', async () => {
    const node = await slowNode(60_000);
    const client = await GridClient.connect({ endpoints: [node.endpoint], requestTimeout: 100, heartbeatInterval: 50, heartbeatTimeout: 5000 });
    cleanups.push(() => client.close());
    const t0 = performance.now();
    const err = await client.cache('x').get('k', { timeoutMs: 800 }).catch((e: unknown) => e);
    const elapsed = performance.now() - t0;
    expect(err).toBeInstanceOf(GridTimeoutError);
    expect((err as GridTimeoutError).code).toBe('GRID_TIMEOUT');
    expect(elapsed).toBeGreaterThanOrEqual(750);
    expect(node.count(Op.CACHE_GET)).toBeGreaterThan(1); // attempts expired and were retried
    expect(client.stats().retries).toBeGreaterThan(0);
  });
});

describe('features a node did not grant', () => {
  it('attemptGet({ ifAbsent }) reaches a node without LOCK_GET_IF_ABSENT as a plain acquire-get; a node with it gets the flag', async () => {
    const lockNode = async (features: number): Promise<ScriptedNode> => {
      const node = new ScriptedNode(`f${features}`, 8, (req, n) => {
        if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
        if (req.op === Op.HEARTBEAT) return { payload: {} };
        if (req.op === Op.LOCK_TRY_ACQUIRE_GET) return { payload: { acquired: true, token: 4, value: null } };
        return { payload: { released: true } };
      });
      node.features = features;
      await node.start();
      cleanups.push(() => node.close());
      return node;
    };
    for (const [features, sent] of [
      [Feature.TOPOLOGY_PUSH | Feature.LOCKS, false],
      [ALL_FEATURES, true],
    ] as const) {
      const node = await lockNode(features);
      const client = await GridClient.connect({ endpoints: [node.endpoint] });
      cleanups.push(() => client.close());
      const r = await client.lock('job').attemptGet(client.cache('state'), { ifAbsent: true });
      // The older node took the lock (it knows no other way): the caller sees it and owns it.
      expect(r.acquired).toBe(true);
      const req = node.requests.find((q) => q.op === Op.LOCK_TRY_ACQUIRE_GET)!;
      expect('ifAbsent' in (req.payload as object)).toBe(sent);
      expect(() => validateRequest(req)).not.toThrow();
      if (r.acquired) await r.handle.release();
    }
  });
});
