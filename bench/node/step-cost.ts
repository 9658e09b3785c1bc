/**
 * What one coordinator step costs (`coordinatorStep`: `nextTopology`, then the hand-back rule) at
 * 3 nodes, one backup: the step that drops a node of a settled cluster (it writes a record with
 * the auto-adjust pending: the baseline waits `softTimeoutMs`), and the same step taken again on
 * that record with the same live nodes, which finds nothing to write. Before ADR 0003's amendment
 * on tick cost the coordinator took that second step on every 50 ms tick for the whole soft
 * timeout; now a tick steps only when its inputs changed or the adjust is due. Pure computation in
 * this process, no control plane: median and range of ROUNDS timed steps per shape.
 *
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json NODE_ENV=production npx tsx bench/node/step-cost.ts
 *   ROUNDS=5 PARTITIONS=65536 npx tsx bench/node/step-cost.ts
 */
import type { LeaseRecord } from '@gridlink/node';
import { coordinatorStep, initialTopology, nextTopology } from '@gridlink/node/internal';
import { table } from '../shared/measure.js';

const ROUNDS = Number(process.env.ROUNDS ?? 9);
const PARTITIONS = (process.env.PARTITIONS ?? '1024,16384,65536').split(',').map(Number);

const lease = (i: number): LeaseRecord => ({ id: `gridlink-${i}`, epoch: `e${i}`, host: `gridlink-${i}.gridlink`, port: 10800, synced: {} });

const rows: (string | number)[][] = [
  ['partitions', 'step that drops a node, ms (median, range)', 'again while the adjust is pending, ms (median, range)', 'that, on every 50 ms tick: % of a CPU'],
];

/** Median and range (ms) of ROUNDS calls after one warm-up call. */
function timed(step: () => void): { median: number; text: string } {
  const times: number[] = [];
  for (let r = 0; r < ROUNDS + 1; r++) {
    const t0 = process.hrtime.bigint();
    step();
    if (r > 0) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  return { median, text: `${median.toFixed(1)} (${times[0]!.toFixed(1)}–${times[times.length - 1]!.toFixed(1)})` };
}

for (const partitions of PARTITIONS) {
  const leases = [lease(0), lease(1), lease(2)];
  const first = initialTopology({ clusterId: 'gridlink', partitions, backups: 1, leases });
  const settled = nextTopology(first, leases, 1) ?? first;
  const alive = leases.slice(0, 2);
  let dropped = settled;
  const drop = timed(() => {
    const next = coordinatorStep(settled, alive, 2);
    if (next === null || next.adjust === null) throw new Error('expected a step that drops the node with an adjust pending');
    dropped = next;
  });
  const again = timed(() => {
    if (coordinatorStep(dropped, alive, 1000) !== null) throw new Error('expected nothing to write while the adjust is pending');
  });
  rows.push([partitions, drop.text, again.text, Math.min(100, (again.median / 50) * 100).toFixed(0)]);
}
console.log(`### One coordinator step, 3 nodes, backups 1 (${ROUNDS} rounds after one warm-up)\n`);
console.log(table(rows));
