/**
 * Leaks of a long-running client under churn, against a real embedded cluster on 127.0.0.1:
 * whatever the churn put into the client's tables, timers, sockets and listeners — and into the
 * nodes' per-client state — is gone again once the churn is over. Every check polls its
 * condition under a deadline; nothing waits a fixed time for something to happen.
 *
 * - Many clients that connect, work and close leave no connection on the nodes, no socket,
 *   server or referenced timer in the process (process.getActiveResourcesInfo()) and no timer of
 *   the client's or the node's sources at all, referenced or not (async_hooks).
 * - One client through a hang, a kill and a restart, request timeouts, retries, aborted
 *   operations and locks (released, left to run out, renewed across the failovers) comes back to
 *   its idle bookkeeping (GridClient.bookkeeping(), internal): no pending request, open seq,
 *   scheduled renewal, waiter, timer or extra listener; a long-lived AbortSignal passed to every
 *   operation keeps no listener; the nodes keep at most one outcome of it each.
 * - Connects that fail (refused, silent endpoints) leave no socket or timer behind.
 */
import { getEventListeners, setMaxListeners } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster, type LocalClusterOptions } from '@gridlink/node';
import { GridClient, GridError, type GridClientConfig, type LockHandle } from '@gridlink/client';
import { SilentServer } from '@gridlink/testkit';
import { resourceBaseline, resources, trackTimers, withinBaseline } from './helpers/resources.js';

/** Polls `pred` every 10 ms until it holds; after `timeoutMs` throws with `state()` of the moment. */
async function eventually(pred: () => boolean, timeoutMs: number, what: string, state: () => unknown): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!pred()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; now: ${JSON.stringify(state())}`);
    await new Promise<void>((r) => setTimeout(r, 10));
  }
}

function clusterFixture(): (options: LocalClusterOptions) => Promise<LocalCluster> {
  const started: LocalCluster[] = [];
  afterEach(async () => {
    for (const c of started.splice(0)) await c.stop();
  });
  return async (options) => {
    const c = await LocalCluster.start(options);
    started.push(c);
    return c;
  };
}

describe('many clients connect, work and close', () => {
  const start = clusterFixture();

  it('200 clients: no connection left on the nodes, no socket or timer in the process', async () => {
    const cluster = await start({ nodes: 3, backups: 1, partitions: 64 });
    const connections = (): number[] => cluster.nodeIds.map((id) => cluster.node(id).clientConnections());
    // Warm-up: replication and forwarding open the nodes' peer links, which stay.
    const warm = await GridClient.connect({ endpoints: cluster.endpoints });
    const w = warm.cache<string, number>('warm');
    for (let i = 0; i < 64; i++) await w.put(`w${i}`, i);
    await warm.close();
    await eventually(() => connections().every((n) => n === 0), 10_000, 'the warm-up client gone from the nodes', connections);
    const base = await resourceBaseline();
    const baseNodes = cluster.nodeIds.map((id) => cluster.node(id).bookkeeping());
    const timers = trackTimers();

    const WAVES = 10;
    const PER_WAVE = 20;
    let peak = 0;
    try {
      for (let wave = 0; wave < WAVES; wave++) {
        const clients = await Promise.all(Array.from({ length: PER_WAVE }, () => GridClient.connect({ endpoints: cluster.endpoints })));
        peak = Math.max(peak, connections().reduce((a, b) => a + b, 0));
        await Promise.all(
          clients.map(async (c, i) => {
            const cache = c.cache<string, number>('churn');
            await cache.put(`k${wave}-${i}`, i);
            expect(await cache.get(`k${wave}-${i}`)).toBe(i);
            const h = await c.lock(`lock-${wave}-${i}`).tryAcquire({ leaseMs: 2000, autoRenew: true });
            await h!.release();
            // Closed with an operation in flight: close() drains it.
            const inflight = cache.increment('count');
            await c.close();
            await inflight;
          }),
        );
      }
      // The churn reached the nodes.
      expect(peak).toBeGreaterThanOrEqual(PER_WAVE);

      await eventually(() => connections().every((n) => n === 0), 10_000, 'no client connection on the nodes', connections);
      const nodeState = (): unknown => cluster.nodeIds.map((id) => cluster.node(id).bookkeeping());
      await eventually(
        () =>
          cluster.nodeIds.every((id, i) => {
            const b = cluster.node(id).bookkeeping();
            const b0 = baseNodes[i]!;
            return b.peerConnections === b0.peerConnections && b.peerLinks === b0.peerLinks && b.timeouts <= b0.timeouts && b.locks === 0;
          }),
        10_000,
        `the nodes' idle bookkeeping (${JSON.stringify(baseNodes)})`,
        nodeState,
      );
      await eventually(() => withinBaseline(base), 10_000, `sockets and timers back to ${JSON.stringify(base)}`, resources);
      // Unreferenced timers too: none made by the client's or the node's code is still pending.
      await eventually(() => Object.keys(timers.live()).length === 0, 10_000, 'no timer of the sources pending', () => timers.live());
    } finally {
      timers.stop();
    }
    const check = await GridClient.connect({ endpoints: cluster.endpoints });
    expect(await check.cache<string, number>('churn').get('count')).toBe(WAVES * PER_WAVE);
    await check.close();
  });
});

describe('one client through failovers, timeouts, retries, aborts and locks', () => {
  const start = clusterFixture();

  it('comes back to its idle bookkeeping, and the nodes keep at most one outcome of it each', async () => {
    const cluster = await start({ nodes: 3, backups: 1, partitions: 64 });
    const config: GridClientConfig = {
      endpoints: cluster.endpoints,
      heartbeatInterval: 100,
      heartbeatTimeout: 600,
      connectTimeout: 500,
      requestTimeout: 300,
      operationTimeout: 8000,
      reconnect: { minDelay: 20, maxDelay: 200 },
    };
    const client = await GridClient.connect(config);
    client.on('error', () => undefined); // lost locks are expected here
    const retryCodes = new Map<string, number>();
    client.on('retry', ({ error }) => retryCodes.set(error.code, (retryCodes.get(error.code) ?? 0) + 1));
    const cache = client.cache<string, number>('work');
    await cache.put('warm', 0);
    await eventually(() => client.bookkeeping().connections === 3 && !client.bookkeeping().mapRefresh, 10_000, 'connections to the three nodes', () => client.bookkeeping());
    const base = client.bookkeeping();
    const events = ['connected', 'disconnected', 'nodeUp', 'nodeDown', 'topologyChanged', 'retry', 'error'] as const;
    const clientListeners = (): number[] => events.map((e) => client.listenerCount(e));
    const baseListeners = clientListeners();
    const timers = trackTimers();
    const clientTimers = (): Record<string, number> => timers.live((site) => site.startsWith('client/'));

    // One signal for the life of the app (a shutdown signal) passed to every operation: each
    // operation's listener on it must go when the operation settles.
    const shutdown = new AbortController();
    const signal = shutdown.signal;
    setMaxListeners(64, signal); // an operation in flight holds one: 16 at once is no leak

    let stop = false;
    let ok = 0;
    const failures = new Map<string, number>();
    const fail = (e: unknown): void => {
      const code = e instanceof GridError ? e.code : String(e);
      failures.set(code, (failures.get(code) ?? 0) + 1);
    };
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const k = `k${(w * 31 + i) % 200}`;
        try {
          switch (i % 6) {
            case 0:
              await cache.put(k, i, { signal });
              break;
            case 1:
              await cache.get(k, { signal });
              break;
            case 2:
              await cache.increment(`n${i % 20}`, 1, { signal });
              break;
            case 3:
              await cache.putAll([[k, i], [`${k}x`, i]], { signal });
              break;
            case 4:
              await cache.getAll([k, `${k}x`, `n${i % 20}`], { signal });
              break;
            default: {
              // An operation with a signal of its own, aborted while it may still be in flight.
              const ac = new AbortController();
              const p = cache.put(k, i, { signal: ac.signal });
              setTimeout(() => ac.abort(), i % 3);
              await p;
            }
          }
          ok++;
        } catch (e) {
          fail(e);
        }
      }
    };
    const dropped: LockHandle[] = [];
    const lockWorker = async (w: number): Promise<void> => {
      for (let i = 0; !stop; i++) {
        try {
          if (i % 4 === 3) {
            // Taken and dropped without release: its lease runs out on the node.
            const h = await client.lock(`dropped-${w}-${i}`).tryAcquire({ leaseMs: 200, signal });
            if (h !== null) dropped.push(h);
          } else {
            // Contended between the two lock workers; renewed automatically every other time.
            const key = `lock-${i % 5}`;
            const h = await client.lock(key).acquire({ leaseMs: 500, waitMs: 2000, autoRenew: i % 2 === 0, signal });
            await cache.get(key, { signal });
            await h.release();
          }
        } catch (e) {
          fail(e);
        }
      }
    };
    const work = Promise.all([...Array.from({ length: 14 }, (_, w) => worker(w)), lockWorker(0), lockWorker(1)]);
    const progress = async (n: number, what: string): Promise<void> => {
      const target = ok + n;
      await eventually(() => ok >= target, 20_000, what, () => ({ ok, failures: [...failures] }));
    };

    try {
      await progress(500, 'a steady start');
      // A hung node: attempts on it time out and are retried elsewhere; the cluster declares it
      // gone; it rejoins when resumed.
      cluster.hang('node-2');
      await eventually(() => (retryCodes.get('GRID_REQUEST_TIMEOUT') ?? 0) > 0, 10_000, 'attempts timing out on the hung node', () => [...retryCodes]);
      await eventually(() => cluster.topology().members['node-2'] === undefined, 10_000, 'the hung node declared gone', () => cluster.topologyVersion);
      await progress(300, 'operations without the hung node');
      cluster.resume('node-2');
      await cluster.waitForStable(20_000);
      await progress(300, 'operations after the resume');
      // A killed node: its connection fails at once, its requests are retried on the new primaries.
      await cluster.kill('node-3');
      await eventually(() => (retryCodes.get('GRID_CONNECTION') ?? 0) > 0, 10_000, 'attempts failing on the killed node', () => [...retryCodes]);
      await progress(300, 'operations without the killed node');
      await cluster.restart('node-3');
      await cluster.waitForStable(20_000);
      await eventually(() => client.bookkeeping().connections === 3, 10_000, 'the client connected to the restarted node', () => client.bookkeeping());
      await progress(500, 'operations after the restart');
    } finally {
      stop = true;
      await work;
    }
    // Only what an aborted operation or a contended or lost lock may end with.
    for (const code of failures.keys()) expect(['GRID_ABORTED', 'GRID_LOCK_TIMEOUT', 'GRID_LOCK_NOT_HELD']).toContain(code);
    expect(failures.get('GRID_ABORTED') ?? 0).toBeGreaterThan(0);
    expect(dropped.length).toBeGreaterThan(0);

    // Every seq has settled; these writes tell every node so (as primary or backup).
    for (let i = 0; i < 30; i++) await cache.put(`final${i}`, i);

    // Idle as before the churn: the same connections, addresses and listeners; nothing pending,
    // open, scheduled or waiting (a heartbeat may be in flight at any moment: polled).
    const idle = {
      ...base,
      ...{ pendingRequests: 0, connecting: 0, reconnectTimers: 0, connectionWaiters: 0 },
      ...{ operations: 0, openSeqs: 0, renewals: 0, renewalTimer: false, mapRefresh: false },
    };
    await eventually(() => JSON.stringify({ ...client.bookkeeping() }) === JSON.stringify(idle), 10_000, `the idle bookkeeping ${JSON.stringify(idle)}`, () => client.bookkeeping());
    expect(clientListeners()).toEqual(baseListeners);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    // Of the timers the client made during the churn only its connections' heartbeats run on.
    const heartbeats = (): boolean => Object.entries(clientTimers()).every(([site, n]) => site.endsWith('startHeartbeats') && n <= base.connections);
    await eventually(heartbeats, 10_000, 'no client timer but heartbeats', clientTimers);
    // The nodes: no lock once the dropped ones' leases ran out, and (with ack) at most the
    // outcome of the last write of this client that each one saw.
    const nodeState = (): unknown => cluster.nodeIds.map((id) => cluster.node(id).bookkeeping());
    await eventually(() => cluster.nodeIds.every((id) => cluster.node(id).bookkeeping().locks === 0), 10_000, 'every lock freed on the nodes', nodeState);
    for (const id of cluster.nodeIds) expect(cluster.node(id).bookkeeping().outcomes, id).toBeLessThanOrEqual(1);

    await client.close();
    try {
      await eventually(() => Object.keys(clientTimers()).length === 0, 10_000, 'no client timer after close', clientTimers);
    } finally {
      timers.stop();
    }
  });
});

describe('connects that fail', () => {
  it('refused and silent endpoints: nothing is left behind', async () => {
    // A port nobody listens on.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const refused = `127.0.0.1:${(probe.address() as net.AddressInfo).port}`;
    await new Promise<void>((r) => probe.close(() => r()));
    const silent = await SilentServer.start();
    const timers = trackTimers();
    try {
      const base = await resourceBaseline();
      let failed = 0;
      for (let i = 0; i < 30; i++) {
        const endpoints = i % 3 === 0 ? [silent.endpoint, refused] : [refused];
        await GridClient.connect({ endpoints, connectTimeout: 150, connectStagger: 50 }).then(
          (c) => c.close(),
          () => failed++,
        );
      }
      expect(failed).toBe(30);
      await eventually(() => silent.connections === 0, 10_000, 'every attempt on the silent server closed', () => silent.connections);
      await eventually(() => withinBaseline(base), 10_000, `sockets and timers back to ${JSON.stringify(base)}`, resources);
      await eventually(() => Object.keys(timers.live()).length === 0, 10_000, 'no timer of the client pending', () => timers.live());
    } finally {
      timers.stop();
      await silent.close();
    }
  });
});
