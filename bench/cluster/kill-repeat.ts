/**
 * The kill -9 target alone, repeated: three `gridlink-node` processes (one nats-server, 64
 * partitions, backups = 1) under the failover workload (workload.ts, one sequential put + get
 * worker per key, GRID_CLIENT settings), then N times: kill -9 of a node, wait until every key it
 * was primary of is written again, restart it empty, wait until it is a member again. Prints, per
 * kill, the longest write pause on its keys and where that time went: until the client installed
 * a partition map that moved them (the lease running out, the coordinator, the control plane, the
 * push), and from that map to the last of its keys written again.
 *
 *   npx tsx bench/cluster/kill-repeat.ts            # KILLS=5 by default (about a minute)
 *   GRIDLINK_BENCH_KILLS=10 npx tsx bench/cluster/kill-repeat.ts
 */
import { partitionOf } from '@gridlink/affinity';
import { GridClient, bytesSerializer } from '@gridlink/client';
import { ProcessCluster } from '@gridlink/testkit';
import { delay, median } from '../shared/measure.js';
import { GRID_CLIENT } from './grid-faults.js';
import { Workload, keyNames } from './workload.js';

const kills = Number(process.env['GRIDLINK_BENCH_KILLS'] ?? 5);
const workers = Number(process.env['GRIDLINK_BENCH_WORKERS'] ?? 32);
if (!Number.isInteger(kills) || kills < 1 || !Number.isInteger(workers) || workers < 3) {
  console.error('GRIDLINK_BENCH_KILLS must be an integer ≥ 1 and GRIDLINK_BENCH_WORKERS one ≥ 3');
  process.exit(2);
}

const cluster = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 64 });
const rows: { victim: string; keys: number; pauseMs: number; mapMs: number | null; afterMapMs: number | null; failed: number }[] = [];
try {
  const client = await GridClient.connect({ endpoints: cluster.endpoints, ...GRID_CLIENT });
  const maps: number[] = [];
  client.on('topologyChanged', (e) => {
    if (e.changedPartitions > 0) maps.push(Date.now());
  });
  const cache = client.cache<string, Uint8Array>('failover', { serializer: bytesSerializer });
  const keys = keyNames('f', workers);
  const w = new Workload(cache, keys, new Uint8Array(64).fill(1));
  try {
    await w.flowing();
    const ids = cluster.nodes.map((n) => n.id);
    for (let i = 0; i < kills; i++) {
      const victim = ids[i % ids.length]!;
      await delay(1000);
      const topo = await cluster.topology();
      if (!topo) throw new Error('no topology');
      const affected = keys.flatMap((k, j) => (topo.owners[partitionOf(k, topo.partitions)]?.[0] === victim ? [j] : []));
      const failedBefore = w.failedAt.length;
      const t0 = Date.now();
      await cluster.node(victim).kill();
      const rec = await w.recovered(affected, t0, 15_000);
      const end = Date.now();
      const mapAt = maps.find((t) => t >= t0);
      rows.push({
        victim,
        keys: affected.length,
        pauseMs: w.writePause(affected, t0, end),
        mapMs: mapAt === undefined ? null : mapAt - t0,
        afterMapMs: mapAt === undefined || rec === null ? null : Math.max(...affected.map((k) => w.putAcks[k]!.find((t) => t > mapAt) ?? NaN)) - mapAt,
        failed: w.failedAt.length - failedBefore,
      });
      await cluster.node(victim).start();
      await cluster.waitForMembers(ids, 30_000);
    }
  } finally {
    await w.stop();
    await client.close();
  }
} finally {
  await cluster.close();
}

console.log('\n| kill | node | its keys | longest write pause on them | kill → client has the new map | new map → last of them written | failed ops |');
console.log('|---|---|---|---|---|---|---|');
rows.forEach((r, i) => console.log(`| ${i + 1} | ${r.victim} | ${r.keys} | ${r.pauseMs} ms | ${r.mapMs ?? '—'} ms | ${r.afterMapMs ?? '—'} ms | ${r.failed} |`));
const pauses = rows.map((r) => r.pauseMs);
console.log(`\nlongest write pause: median ${median(pauses)} ms, worst ${Math.max(...pauses)} ms (target ≤ 1500 ms); new map → written again: median ${median(rows.flatMap((r) => (r.afterMapMs === null ? [] : [r.afterMapMs])))} ms`);
