/**
 * The load the process-level tests run through a fault: 32 workers, each writing its own keys,
 * reading back its last acknowledged write and incrementing one shared counter. After the fault
 * the checks are the same in every scenario: no operation failed, every acknowledged write is
 * readable, and the counter equals the acknowledged increments.
 */
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { GridClient, GridClosedError } from '@gridlink/client';
import { ProcessCluster, trackedPids, trackedTempDirs, waitFor, type NatsServer, type ProcessClusterOptions } from '@gridlink/testkit';

export const WORKERS = 32;

/**
 * The client every process-level fault test uses: heartbeats that notice a dead or hung node in
 * about 1.5 s, a 1 s request timeout retried within a 20 s operation budget, no re-resolution.
 */
export function connectClient(cluster: ProcessCluster): Promise<GridClient> {
  return GridClient.connect({
    endpoints: cluster.endpoints,
    heartbeatInterval: 200,
    heartbeatTimeout: 1500,
    requestTimeout: 1000,
    operationTimeout: 20_000,
    reResolveInterval: 0,
  });
}

/**
 * One ProcessCluster and a connectClient() client for a whole test file: started in beforeAll,
 * closed in afterAll, which then checks that every process the kit started is gone and every
 * directory it made removed.
 */
export function processClusterFixture(options: ProcessClusterOptions): { readonly cluster: ProcessCluster; readonly client: GridClient } {
  let cluster: ProcessCluster | undefined;
  let client: GridClient | undefined;
  beforeAll(async () => {
    cluster = await ProcessCluster.start(options);
    client = await connectClient(cluster);
  }, 90_000);
  reportOnFailure(() => cluster);
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
    expect(trackedPids()).toEqual([]);
    expect(trackedTempDirs()).toEqual([]);
  });
  return {
    get cluster(): ProcessCluster {
      if (!cluster) throw new Error('the process cluster has not started');
      return cluster;
    },
    get client(): GridClient {
      if (!client) throw new Error('the client has not connected');
      return client;
    },
  };
}

/**
 * After a failed test: what each node logged (its last lines) and the topology, so a failure on a
 * CI machine says what the grid was doing.
 */
export async function reportCluster(cluster: ProcessCluster): Promise<void> {
  const lines: string[] = [];
  for (const n of cluster.nodes) {
    const log = n.log.trimEnd().split('\n').slice(-40);
    lines.push(`--- ${n.id} (${n.running ? 'running' : `exited ${String(n.exitCode)}`}), last ${log.length} log lines:`, ...log);
  }
  try {
    const t = await Promise.race([cluster.topology(), new Promise<null>((r) => setTimeout(() => r(null), 3000))]);
    if (t) {
      const owners: Record<string, number> = {};
      for (const o of t.owners) owners[o.join(',')] = (owners[o.join(',')] ?? 0) + 1;
      lines.push(`--- topology v${t.version}: members ${JSON.stringify(t.members)}, lost ${JSON.stringify(t.lost)}, syncing ${t.syncing.filter((x) => x.length > 0).length} partitions, owners ${JSON.stringify(owners)}`);
    } else lines.push('--- topology: none read within 3 s');
  } catch (err) {
    lines.push(`--- topology unreadable: ${String(err)}`);
  }
  console.error(lines.join('\n'));
}

/** The nats-server that leads the KV bucket's stream now (throws when none of the cluster's does). */
export async function streamLeader(cluster: ProcessCluster): Promise<NatsServer> {
  const leader = (await (await cluster.controlPlane()).bucketStatus()).leader;
  const server = cluster.nats.servers.find((s) => s.name === leader);
  if (server === undefined) throw new Error(`no nats-server of the cluster leads the KV stream (leader: ${String(leader)})`);
  return server;
}

/** After each failed test of the file (or describe block): `reportCluster` of the cluster running then. */
export function reportOnFailure(current: () => ProcessCluster | undefined): void {
  afterEach(async (ctx) => {
    const cluster = current();
    if (ctx.task.result?.state === 'fail' && cluster) await reportCluster(cluster);
  });
}

export interface LoadResult {
  ops: number;
  failures: string[];
  /** Last acknowledged value per key. */
  acked: Map<string, number>;
  /** Acknowledged increments of `counter`. */
  increments: number;
}

export interface Load {
  /** Stops the workers and resolves with what they did. */
  stop(): Promise<LoadResult>;
  ops(): number;
}

/** Starts the workers on cache `cacheName` (one writer per key, keys `w<worker>-k<0..7>`). */
export function startLoad(client: GridClient, cacheName: string, workers = WORKERS): Load {
  const cache = client.cache<string, number>(cacheName);
  const acked = new Map<string, number>();
  const failures: string[] = [];
  let increments = 0;
  let ops = 0;
  let stopping = false;
  const worker = async (w: number): Promise<void> => {
    for (let n = 0; !stopping; n++) {
      const key = `w${w}-k${n % 8}`;
      try {
        await cache.put(key, n);
        acked.set(key, n);
        ops++;
        const back = await cache.get(key);
        // Each key has one writer: a read after its acknowledged write sees that write.
        if (back !== n) failures.push(`read ${key}: ${String(back)} != ${n}`);
        ops++;
        await cache.increment('counter');
        increments++;
        ops++;
      } catch (err) {
        failures.push(`${key}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
        // A closed client rejects at once: looping on would spin without yielding to timers and
        // fill memory until the test worker dies (a test that failed before stopping its load).
        if (err instanceof GridClosedError) return;
      }
    }
  };
  const all = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  return {
    ops: () => ops,
    async stop() {
      stopping = true;
      await all;
      return { ops, failures, acked, increments };
    },
  };
}

/** Every acknowledged write is readable and the counter is exact. */
export async function expectAcknowledged(client: GridClient, cacheName: string, r: LoadResult): Promise<void> {
  const cache = client.cache<string, number>(cacheName);
  for (const [k, v] of r.acked) expect(await cache.get(k)).toBe(v);
  expect(await cache.get('counter')).toBe(r.increments);
}

/** Runs the load through `fault`, then checks: no failure, every acknowledged write readable, counter exact. */
export async function throughFault(client: GridClient, cacheName: string, fault: () => Promise<void>): Promise<LoadResult> {
  const load = startLoad(client, cacheName);
  let r: LoadResult;
  try {
    await waitFor('load warmed up', () => load.ops() >= 300, 30_000);
    await fault();
    const after = load.ops();
    await waitFor('load running after the fault', () => load.ops() >= after + 600, 45_000);
  } finally {
    r = await load.stop();
  }
  expect(r.failures).toEqual([]);
  await expectAcknowledged(client, cacheName, r);
  return r;
}
