/**
 * One focused test per client behaviour of the connection architecture this client follows:
 * ordered endpoints, early return, background connections, heartbeat failure detection,
 * re-resolution, stale maps, the refresh flag, a full cluster restart, an unstable network, and
 * blackholed endpoints at startup.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster, MemoryControlPlane, startNode, type GridNode } from '@gridlink/node';
import { Op, ResponseFlag, type PartitionMap } from '@gridlink/protocol';
import { FaultProxy, SilentServer } from '@gridlink/testkit';
import { partitionOf } from '@gridlink/affinity';
import { ClusterMismatchError, GridClient, GridConnectionError, type AddressFinder, type GridClientConfig } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { nextEvent, waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cluster(opts: Parameters<typeof LocalCluster.start>[0] = {}): Promise<LocalCluster> {
  const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 64, ...opts });
  cleanups.push(() => c.stop());
  return c;
}

async function connect(config: GridClientConfig): Promise<GridClient> {
  const client = await GridClient.connect(config);
  cleanups.push(() => client.close());
  return client;
}

/** Logger that records "connected" addresses in order (events before connect() returns included). */
function connectLog(): { logger: GridClientConfig['logger']; connected: string[] } {
  const connected: string[] = [];
  return {
    connected,
    logger: {
      info: (msg, fields) => {
        if (msg === 'connected') connected.push(String(fields?.address));
      },
    },
  };
}

const connectedIds = (c: GridClient): string[] => c.stats().nodes.filter((n) => n.connected).map((n) => n.nodeId).sort();

describe('connecting', () => {
  it('tries endpoints in the given order', async () => {
    const cl = await cluster();
    const order = [...cl.endpoints].reverse();
    const log = connectLog();
    // A large stagger: only the first endpoint is tried before it answers.
    await connect({ endpoints: order, connectStagger: 2000, logger: log.logger });
    expect(log.connected[0]).toBe(order[0]);
  });

  it('moves on to the next endpoint at once when one refuses', async () => {
    const cl = await cluster({ nodes: 1 });
    const refused = await SilentServer.start();
    const refusedEndpoint = refused.endpoint;
    await refused.close(); // nothing listens there any more: connection refused
    const log = connectLog();
    const t0 = performance.now();
    await connect({ endpoints: [refusedEndpoint, cl.endpoints[0]!], connectStagger: 5000, connectTimeout: 10_000, logger: log.logger });
    expect(log.connected[0]).toBe(cl.endpoints[0]);
    // Not the stagger, not the connect timeout: a refusal starts the next endpoint immediately.
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('returns once the first node is connected, before the others; they come up in the background', async () => {
    const cl = await cluster();
    const [n1, n2, n3] = cl.nodeIds as [string, string, string];
    // n2 and n3 accept TCP but cannot answer a handshake while hung.
    cl.hang(n2);
    cl.hang(n3);
    const client = await connect({ endpoints: cl.endpoints, connectStagger: 20, connectTimeout: 5000 });
    expect(connectedIds(client)).toEqual([n1]);
    cl.resume(n2);
    cl.resume(n3);
    await waitFor(() => connectedIds(client).length === 3, 10_000, 'background connections to every node');
    expect(connectedIds(client)).toEqual([n1, n2, n3].sort());
  });

  it('connects in the background to every node the topology names, given one endpoint', async () => {
    const cl = await cluster();
    const client = await connect({ endpoints: [cl.endpoints[0]!] });
    await waitFor(() => connectedIds(client).length === 3, 10_000, 'connections to all topology nodes');
  });

  it('a blackholed configured endpoint does not hold back connections to the topology nodes', async () => {
    const cl = await cluster();
    const silent = await SilentServer.start();
    cleanups.push(() => silent.close());
    const connectTimeout = 8000;
    const t0 = performance.now();
    const client = await connect({ endpoints: [cl.endpoints[0]!, silent.endpoint], connectTimeout, connectStagger: 100 });
    await waitFor(() => connectedIds(client).length === 3, connectTimeout, 'connections to all topology nodes');
    // Held back for one stagger at most, not until the silent endpoint's attempt times out.
    expect(performance.now() - t0).toBeLessThan(connectTimeout / 2);
    expect(silent.connections).toBeGreaterThanOrEqual(1);
  });

  it('startup with the first two endpoints blackholed succeeds well inside one connect timeout', async () => {
    const cl = await cluster({ nodes: 1 });
    const b1 = await SilentServer.start();
    const b2 = await SilentServer.start();
    cleanups.push(() => b1.close(), () => b2.close());
    const connectTimeout = 4000;
    const t0 = performance.now();
    const client = await connect({ endpoints: [b1.endpoint, b2.endpoint, cl.endpoints[0]!], connectTimeout, connectStagger: 100 });
    const elapsed = performance.now() - t0;
    expect(connectedIds(client)).toEqual(cl.nodeIds);
    expect(elapsed).toBeLessThan(connectTimeout / 2);
    // The blackholed endpoints were really tried (in order) and never answered.
    expect(b1.connections).toBeGreaterThanOrEqual(1);
    expect(b2.connections).toBeGreaterThanOrEqual(1);
  });

  it('fails with GridConnectionError naming each endpoint and its cause', async () => {
    const b1 = await SilentServer.start();
    cleanups.push(() => b1.close());
    const gone = await SilentServer.start();
    const goneEndpoint = gone.endpoint;
    await gone.close();
    const err = await GridClient.connect({ endpoints: [b1.endpoint, goneEndpoint], connectTimeout: 300, connectStagger: 50 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GridConnectionError);
    const e = err as GridConnectionError;
    expect(e.endpoints.map((x) => x.endpoint)).toEqual([b1.endpoint, goneEndpoint]);
    expect(e.endpoints[0]!.cause).toMatch(/no (answer|handshake)/);
    expect(e.endpoints[1]!.cause).toMatch(/ECONNREFUSED/);
  });

  it('two addresses of one node share one connection', async () => {
    const cl = await cluster({ nodes: 1 });
    const proxy = await FaultProxy.start({ target: cl.endpoints[0]! });
    cleanups.push(() => proxy.close());
    const client = await connect({ endpoints: [cl.endpoints[0]!, proxy.endpoint] });
    // The proxied address is reached, identified as the same node, and its connection closed.
    await waitFor(() => proxy.stats().accepted >= 1 && proxy.stats().open === 0, 10_000, 'duplicate connection closed');
    expect(connectedIds(client)).toEqual(cl.nodeIds);
  });

  it('refuses a node of another cluster', async () => {
    const a = await cluster({ nodes: 1, clusterId: 'alpha' });
    const b = await cluster({ nodes: 1, clusterId: 'beta' });
    // alpha answers first (large stagger); beta is then reached in the background and refused.
    const client = await connect({ endpoints: [a.endpoints[0]!, b.endpoints[0]!], connectStagger: 2000 });
    const err = await nextEvent(client, 'error', (e) => e instanceof ClusterMismatchError, 10_000);
    expect(err.message).toMatch(/beta/);
    expect(client.topology().clusterId).toBe('alpha');
    expect(connectedIds(client)).toEqual(a.nodeIds);
    // Operations are served by alpha only.
    await client.cache<string, string>('x').put('k', 'v');
    expect(client.stats().nodes.map((n) => n.nodeId)).toEqual(a.nodeIds);
  });
});

describe('failure detection and re-resolution', () => {
  it('a hung node is dropped within the heartbeat timeout and operations go on', async () => {
    const cl = await cluster();
    const client = await connect({ endpoints: cl.endpoints, heartbeatInterval: 100, heartbeatTimeout: 500 });
    await waitFor(() => connectedIds(client).length === 3, 10_000, 'all connected');
    const victim = cl.nodeIds[1]!;
    const dropped = nextEvent(client, 'disconnected', (e) => e.nodeId === victim, 5000);
    const t0 = performance.now();
    cl.hang(victim);
    const e = await dropped;
    expect(e.error?.message).toMatch(/heartbeat timeout/);
    // Generous: within the timeout plus scheduling slack, far below the node's lease-based view.
    expect(performance.now() - t0).toBeLessThan(500 + 1500);
    const cache = client.cache<string, number>('hb');
    for (let i = 0; i < 20; i++) await cache.put(`k${i}`, i);
    cl.resume(victim);
  });

  it('requests waiting on a node the cluster declares gone are retried on the new primary', async () => {
    const cl = await cluster();
    // Heartbeats cannot rescue the request here, and its one attempt may take the whole deadline:
    // only dropping the node when the topology declares it gone lets the operation succeed.
    const client = await connect({
      endpoints: cl.endpoints,
      heartbeatInterval: 1000,
      heartbeatTimeout: 60_000,
      requestTimeout: 15_000,
      operationTimeout: 15_000,
    });
    await waitFor(() => connectedIds(client).length === 3, 10_000, 'all connected');
    const cache = client.cache<string, number>('declared-gone');
    const victim = cl.nodeIds[0]!;
    let key = '';
    for (let i = 0; key === ''; i++) {
      if (cl.primaryOf(partitionOf(`k${i}`, 64)) === victim) key = `k${i}`;
    }
    await cache.put(key, 1);
    const dropped = nextEvent(client, 'disconnected', (e) => e.nodeId === victim, 15_000);
    cl.hang(victim);
    await cache.put(key, 2); // sent to the hung primary, answered by its promoted backup
    expect((await dropped).error?.message).toMatch(/declared gone/);
    expect(await cache.get(key)).toBe(2);
    cl.resume(victim);
  });

  it('re-resolution on connection loss picks up a changed address', async () => {
    const first = await cluster({ nodes: 1, clusterId: 'moving' });
    const second = await cluster({ nodes: 1, clusterId: 'moving' });
    let answer = [first.endpoints[0]!];
    const finder: AddressFinder = { resolve: async () => answer };
    const client = await connect({ addressFinder: finder, reResolveInterval: 0, reconnect: { minDelay: 20, maxDelay: 200 } });
    const cache = client.cache<string, string>('moving');
    await cache.put('a', '1');
    answer = [second.endpoints[0]!];
    const moved = nextEvent(client, 'connected', (e) => e.address === second.endpoints[0], 10_000);
    await first.stop();
    await moved;
    await cache.put('b', '2');
    expect(await cache.get('b')).toBe('2');
  });

  it('survives a full cluster restart with new node ids on the same addresses', async () => {
    const cl = await cluster();
    const ports = cl.endpoints.map((e) => Number(e.split(':')[1]));
    const client = await connect({ endpoints: cl.endpoints, reconnect: { minDelay: 20, maxDelay: 200 }, operationTimeout: 20_000 });
    const cache = client.cache<string, number>('restart');
    await cache.put('before', 1);
    const oldIds = [...cl.nodeIds];
    await cl.stop();
    await waitFor(() => connectedIds(client).length === 0, 10_000, 'every connection lost');
    // A new cluster on the same ports with new node ids (and a fresh control plane).
    const controlPlane = new MemoryControlPlane();
    const nodes: GridNode[] = await Promise.all(
      ports.map((port, i) => startNode({ id: `reborn-${i}`, controlPlane, host: '127.0.0.1', port, partitions: 64, backups: 1, bootstrapNodes: 3 })),
    );
    cleanups.push(() => nodes.forEach((n) => n.kill()));
    await cache.put('after', 2);
    expect(await cache.get('after')).toBe(2);
    await waitFor(() => connectedIds(client).length === 3, 10_000, 'connected to the new nodes');
    expect(connectedIds(client).some((id) => oldIds.includes(id))).toBe(false);
    expect(client.topology().nodes.map((n) => n.id).sort()).toEqual(['reborn-0', 'reborn-1', 'reborn-2']);
  });
});

describe('partition map', () => {
  it('an older map never replaces a newer one', async () => {
    let mapVersion = 5;
    const node = await new ScriptedNode('s1', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(mapVersion) };
      if (req.op === Op.CACHE_GET) return { payload: { value: null }, topologyVersion: 7 };
      return { payload: {} };
    }).start();
    node.topologyVersion = 5;
    cleanups.push(() => node.close());
    const client = await connect({ endpoints: [node.endpoint] });
    expect(client.topology().version).toBe(5);
    // The response says version 7 exists; the node then answers the refresh with a stale map.
    mapVersion = 3;
    const refreshes = node.count(Op.TOPOLOGY);
    await client.cache('m').get('k');
    await waitFor(() => node.count(Op.TOPOLOGY) > refreshes, 5000, 'a refresh request');
    await waitFor(() => client.stats().mapRefreshes >= 2, 5000, 'refresh answered');
    expect(client.topology().version).toBe(5);
    // A newer map is installed.
    mapVersion = 7;
    const changed = nextEvent(client, 'topologyChanged', () => true, 5000);
    await client.cache('m').get('k');
    expect((await changed).version).toBe(7);
    expect(client.topology().version).toBe(7);
  });

  it('a refresh waiting on a hung node does not hold back a newer map another node announces', async () => {
    let aHung = false;
    const twoNodeMap = (version: number, primary: number): PartitionMap => ({
      version,
      partitions: 8,
      backups: 0,
      nodes: [
        { id: 'sA', host: '127.0.0.1', port: a.port, alive: true },
        { id: 'sB', host: '127.0.0.1', port: b.port, alive: true },
      ],
      primaries: new Array<number>(8).fill(primary),
    });
    const a: ScriptedNode = await new ScriptedNode('sA', 8, (req) => {
      if (req.op === Op.TOPOLOGY) return aHung ? { payload: twoNodeMap(6, 0), delayMs: 60_000 } : { payload: twoNodeMap(5, 0) };
      if (req.op === Op.CACHE_GET) return { payload: { value: null }, topologyVersion: aHung ? 6 : 5 };
      return { payload: {} };
    }).start();
    const b: ScriptedNode = await new ScriptedNode('sB', 8, (req) => {
      if (req.op === Op.TOPOLOGY) return { payload: twoNodeMap(7, 1), topologyVersion: 7 };
      return { payload: {} };
    }).start();
    a.topologyVersion = 5;
    b.topologyVersion = 5;
    cleanups.push(() => a.close(), () => b.close());
    // Long attempt timeouts: only asking the announcing node can bring the new map in time.
    const client = await connect({ endpoints: [a.endpoint, b.endpoint], requestTimeout: 30_000, operationTimeout: 30_000 });
    await waitFor(() => connectedIds(client).length === 2 && client.topology().version === 5, 5000, 'both connected, map 5');
    aHung = true;
    const asked = a.count(Op.TOPOLOGY);
    await client.cache('m').get('k'); // A answers, announcing version 6: the refresh goes to A, which hangs
    await waitFor(() => a.count(Op.TOPOLOGY) > asked, 5000, 'refresh sent to A');
    const changed = nextEvent(client, 'topologyChanged', (e) => e.version === 7, 5000);
    b.pushTopologyChanged(7);
    expect((await changed).version).toBe(7);
    expect(client.topology().version).toBe(7);
    // Closing does not wait for the map request still hanging on A (no user operation is in flight).
    const closed = await Promise.race([
      client.close().then(() => 'closed'),
      new Promise<string>((resolve) => setTimeout(() => resolve('still waiting'), 10_000).unref()),
    ]);
    expect(closed).toBe('closed');
  });

  it('refreshes are single-flight: many responses announcing a newer version cause one TOPOLOGY request', async () => {
    let mapVersion = 1;
    const node = await new ScriptedNode('s1', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(mapVersion), delayMs: mapVersion === 1 ? 0 : 100 };
      return { payload: { value: null }, topologyVersion: 9 };
    }).start();
    cleanups.push(() => node.close());
    const client = await connect({ endpoints: [node.endpoint] });
    expect(client.topology().version).toBe(1);
    mapVersion = 9;
    const before = node.count(Op.TOPOLOGY);
    const cache = client.cache('m');
    await Promise.all(Array.from({ length: 20 }, (_, i) => cache.get(`k${i}`)));
    await waitFor(() => client.topology().version === 9, 5000, 'map 9 installed');
    expect(node.count(Op.TOPOLOGY) - before).toBe(1);
  });

  it('the REFRESH_MAP flag triggers a refresh even without a newer version', async () => {
    const node = await new ScriptedNode('s1', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      return { payload: { value: null }, flags: ResponseFlag.REFRESH_MAP };
    }).start();
    cleanups.push(() => node.close());
    const client = await connect({ endpoints: [node.endpoint] });
    const before = node.count(Op.TOPOLOGY);
    await client.cache('m').get('k');
    await waitFor(() => node.count(Op.TOPOLOGY) === before + 1, 5000, 'a TOPOLOGY request after the flagged response');
  });

  it('against the real node, misrouted requests are forwarded and make the client refresh', async () => {
    const cl = await cluster();
    const client = await connect({ endpoints: cl.endpoints, partitionAware: false });
    await waitFor(() => connectedIds(client).length === 3, 10_000, 'all connected');
    const before = client.stats().mapRefreshes;
    const cache = client.cache<number, number>('fwd');
    for (let i = 0; i < 30; i++) await cache.put(i, i);
    expect(client.stats().forwarded).toBeGreaterThan(0);
    await waitFor(() => client.stats().mapRefreshes > before, 5000, 'a map refresh');
  });
});

describe('unstable network', () => {
  for (const n of [2, 3]) {
    it(`serves every operation while every ${n === 2 ? '2nd' : '3rd'} request is dropped`, async () => {
      const cl = await cluster();
      const proxies = await Promise.all(cl.endpoints.map((e) => FaultProxy.start({ target: e })));
      cleanups.push(() => Promise.all(proxies.map((p) => p.close())).then(() => undefined));
      const client = await connect({
        endpoints: proxies.map((p) => p.endpoint),
        requestTimeout: 100,
        operationTimeout: 10_000,
        heartbeatInterval: 1000,
        heartbeatTimeout: 5000,
      });
      await waitFor(() => connectedIds(client).length === 3, 10_000, 'all connected through the proxies');
      for (const p of proxies) p.dropEveryNthRequest(n);
      const cache = client.cache<string, number>(`unstable-${n}`);
      const N = 15;
      for (let i = 0; i < N; i++) {
        await cache.put(`k${i}`, i);
        expect(await cache.increment('counter')).toBe(i + 1);
      }
      expect(await cache.getAll(Array.from({ length: N }, (_, i) => `k${i}`))).toEqual(Array.from({ length: N }, (_, i) => i));
      const dropped = proxies.reduce((s, p) => s + p.stats().droppedRequests, 0);
      expect(dropped).toBeGreaterThan(5);
      expect(client.stats().retries).toBeGreaterThan(0);
      // Every increment applied exactly once despite retries.
      for (const p of proxies) p.heal();
      expect(await cache.get('counter')).toBe(N);
    });
  }
});
