/**
 * Grid operations while the NATS stream leader is killed: three gridlink-node processes on a
 * 3-server NATS (R3 bucket), the common workload through @gridlink/client (one sequential
 * put + get worker per key), kill -9 of the KV stream leader. Reports failed operations, the
 * longest pause of writes (every partition depends on the control plane, so every key counts),
 * how long the KV refused writes, whether any member was declared gone, and ops/s and errors per
 * 100 ms around the fault.
 *
 *   tsx bench/cluster/grid-nats-leader.ts      # just this, with operationTimeout 10 s and 30 s
 */
import { GridClient, bytesSerializer } from '@gridlink/client';
import { ProcessCluster } from '@gridlink/testkit';
import { delay } from '../shared/measure.js';
import { GRID_CLIENT } from './grid-faults.js';
import { perTenthTable, timelineOf, type ScenarioResult } from './scenario.js';
import { Workload, keyNames } from './workload.js';

export interface GridNatsLeaderResult extends ScenarioResult {
  /** The KV accepted writes again this long after the kill (ms); -1 if not within 15 s. */
  kvStallMs: number;
  /** Some member's epoch changed (it was declared gone) during the run. */
  declaredGone: boolean;
}

export interface GridNatsLeaderOptions {
  operationTimeout?: number;
  workers?: number;
  /** Load kept running after the KV accepts writes again (ms). */
  tailMs?: number;
}

export async function gridNatsLeader(opts: GridNatsLeaderOptions = {}): Promise<GridNatsLeaderResult> {
  const cluster = await ProcessCluster.start({ nodes: 3, natsServers: 3, partitions: 64 });
  try {
    const client = await GridClient.connect({ endpoints: cluster.endpoints, ...GRID_CLIENT, operationTimeout: opts.operationTimeout ?? GRID_CLIENT.operationTimeout });
    const cache = client.cache<string, Uint8Array>('nats-leader', { serializer: bytesSerializer });
    const keys = keyNames('n', opts.workers ?? 16);
    const w = new Workload(cache, keys, new Uint8Array(64).fill(2));
    try {
      await w.flowing();
      const cp = await cluster.controlPlane();
      const epochs = async (): Promise<string> => {
        const topo = await cluster.topology();
        return JSON.stringify(Object.entries(topo?.members ?? {}).map(([id, m]) => [id, m.epoch]).sort());
      };
      const before = await epochs();
      const leader = (await cp.bucketStatus()).leader;
      const victim = cluster.nats.servers.find((s) => s.name === leader);
      if (!victim) throw new Error(`no NATS server named ${String(leader)} (the stream leader)`);
      const from = Date.now();
      await delay(1000);
      const t0 = Date.now();
      await victim.kill();
      let kvStallMs = -1;
      while (Date.now() - t0 < 15_000) {
        try {
          await cp.put('bench.probe', Date.now());
          kvStallMs = Date.now() - t0;
          break;
        } catch {
          await delay(100); // still electing: poll again
        }
      }
      const kvBack = Date.now();
      await delay(opts.tailMs ?? 2000);
      const to = Date.now();
      const declaredGone = (await epochs()) !== before;
      const all = keys.map((_, i) => i);
      return {
        name: 'grid: kill -9 of the NATS stream leader (3 NATS servers)',
        slug: 'grid-nats-leader',
        ...timelineOf(w, from, to, [
          { at: t0, label: `kill -9 NATS leader ${leader ?? ''}` },
          { at: kvBack, label: kvStallMs < 0 ? 'KV still refusing writes' : 'KV accepts writes again' },
        ]),
        keys: keys.length,
        affectedKeys: keys.length,
        pauseMs: w.writePause(all, t0, to),
        unrecovered: false,
        notes: [`KV refused writes for ${kvStallMs < 0 ? '> 15000' : kvStallMs} ms`, `a member was declared gone: ${declaredGone ? 'yes' : 'no'}`],
        kvStallMs,
        declaredGone,
      };
    } finally {
      await w.stop();
      await client.close();
    }
  } finally {
    await cluster.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const operationTimeout of [10_000, 30_000]) {
    const r = await gridNatsLeader({ operationTimeout });
    console.log(
      `operationTimeout ${operationTimeout}: ok ${r.ok}, failed ${r.failed} (${r.firstError || '—'}), longest write pause ${r.pauseMs} ms, KV stalled ${r.kvStallMs} ms, member declared gone: ${r.declaredGone ? 'yes' : 'no'}`,
    );
    console.log(perTenthTable(r));
  }
}
