/**
 * bench/cluster: multi-process cluster measurements.
 * - nats-faults.ts: the NATS control plane (3 servers, R3) under leader kill, leader hang and
 *   follower kill; repetitions: GRIDLINK_BENCH_REPS (default 2).
 * - grid-nats-leader.ts: grid operations through three gridlink-node processes while the KV
 *   stream leader is killed.
 */
import { gridNatsLeader, printPerTenth } from './grid-nats-leader.js';
import { natsFaults, printNatsFaults } from './nats-faults.js';

const reps = Number(process.env['GRIDLINK_BENCH_REPS'] ?? 2);
printNatsFaults(await natsFaults(reps));

console.log('\n### Grid operations through a NATS stream-leader kill (3 nodes, 3 NATS servers, 16 workers)\n');
console.log('| client operationTimeout | ok ops | failed ops | first error | longest pause (ms) | KV stall (ms) | member declared gone |');
console.log('|---|---|---|---|---|---|---|');
const timelines: string[] = [];
for (const timeout of [10_000, 30_000]) {
  const r = await gridNatsLeader(timeout);
  console.log(`| ${timeout} ms | ${r.ok} | ${r.failed} | ${r.firstError || '—'} | ${r.longestPauseMs} | ${r.kvStallMs} | ${r.declaredGone ? 'yes' : 'no'} |`);
  timelines.push(`\nops/s and errors per 100 ms (operationTimeout ${timeout} ms):\n\n${printPerTenth(r.perTenth)}`);
}
for (const t of timelines) console.log(t);
