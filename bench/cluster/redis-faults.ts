/**
 * Redis Cluster failover for comparison: 3 masters + 3 replicas (Debian's redis-server in cluster
 * mode), ioredis `Cluster`, the same workload as the grid scenarios, kill -9 of one master. The
 * replica of that master takes over once the others flag it as failed, after
 * `cluster-node-timeout`; writes to its slots fail or wait until then.
 */
import { Cluster } from 'ioredis';
import { delay } from '../shared/measure.js';
import { RedisClusterProcesses } from '../shared/redis-servers.js';
import { timelineOf, type ScenarioResult } from './scenario.js';
import { Workload, keyNames } from './workload.js';

/** ioredis settings: every command gives up after 1 s, slots re-read every second. */
export const REDIS_CLUSTER_CLIENT = {
  redisOptions: { commandTimeout: 1000 },
  slotsRefreshInterval: 1000,
} as const;

export async function redisClusterKill(nodeTimeoutMs: number | undefined, opts: { workers: number; tailMs: number }): Promise<ScenarioResult> {
  const rc = await RedisClusterProcesses.start({ masters: 3, replicas: 1, ...(nodeTimeoutMs !== undefined ? { nodeTimeoutMs } : {}) });
  try {
    const masters = await rc.masters();
    const client = new Cluster(
      masters.map((m) => ({ host: '127.0.0.1', port: m.port })),
      { redisOptions: { ...REDIS_CLUSTER_CLIENT.redisOptions }, slotsRefreshInterval: REDIS_CLUSTER_CLIENT.slotsRefreshInterval },
    );
    const store = {
      put: (k: string, v: Uint8Array) => client.set(k, Buffer.from(v.buffer, v.byteOffset, v.byteLength)),
      get: (k: string) => client.getBuffer(k),
    };
    const keys = keyNames('f', opts.workers);
    const slots = await rc.keySlots(keys);
    const w = new Workload(store, keys, new Uint8Array(64).fill(3));
    try {
      await w.flowing();
      const victim = masters[0]!;
      const affected = keys.flatMap((_, i) => (victim.slots.some(([a, b]) => slots[i]! >= a && slots[i]! <= b) ? [i] : []));
      const from = Date.now();
      await delay(1000);
      const t0 = Date.now();
      await rc.node(victim.port).kill();
      const limit = (nodeTimeoutMs ?? 15_000) * 2 + 10_000;
      const rec = await w.recovered(affected, t0, limit);
      const back = Date.now();
      await delay(opts.tailMs);
      const to = Date.now();
      const label = nodeTimeoutMs === undefined ? 'default 15000' : String(nodeTimeoutMs);
      return {
        name: `Redis Cluster: kill -9 of a master (cluster-node-timeout ${label})`,
        slug: `redis-cluster-kill-${nodeTimeoutMs === undefined ? 'default' : nodeTimeoutMs}`,
        ...timelineOf(w, from, to, [
          { at: t0, label: 'kill -9 master' },
          { at: back, label: rec === null ? `not recovered in ${limit / 1000} s` : 'its keys written again' },
        ]),
        keys: keys.length,
        affectedKeys: affected.length,
        pauseMs: w.writePause(affected, t0, to),
        unrecovered: rec === null,
        notes: [],
      };
    } finally {
      await w.stop();
      client.disconnect();
    }
  } finally {
    await rc.close();
  }
}
