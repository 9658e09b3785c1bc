/**
 * What the middleware's pair of grid operations costs against two plain puts, without HTTP: a
 * grid of three nodes (one backup) in its own process, this process's client running either
 * `attemptGet(ifAbsent)` + `putAndRelease` of a stored-response-sized record (what @gridlink/dedupe
 * does per fresh key) or `put` + `put` of the same record, 16 pairs in flight, the two taking
 * turns in 2 s windows. Prints pairs/s, this process's CPU per pair and the grid process's.
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/api/lock-pair.ts   (after pnpm build)
 *   LOCK_PAIR_ROUNDS (default 6, after 2 warm-up rounds)
 */
import { GridClient } from '@gridlink/client';
import { startCluster } from '../shared/processes.js';
import { closedLoop, processCpuUs, table } from '../shared/measure.js';

const rounds = Number(process.env.LOCK_PAIR_ROUNDS ?? 6);
const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
const client = await GridClient.connect({ endpoints: cluster.endpoints });
try {
  const marks = client.cache<string, number>('lock-pair-marks');
  const records = client.cache<string, unknown>('lock-pair-records');
  // About what the middleware stores for the orders example's 201.
  const record = {
    v: 1,
    fp: 'x'.repeat(43),
    status: 201,
    headers: [
      ['content-type', 'application/json; charset=utf-8'],
      ['location', '/orders/abc'],
    ],
    body: new Uint8Array(80),
    at: Date.now(),
  };
  let window = 0;
  const pairs = {
    'attemptGet + putAndRelease': async (i: number): Promise<void> => {
      const a = await client.lock(`lock-pair:${window}-${i}`).attemptGet(records, { leaseMs: 30_000, autoRenew: true, ifAbsent: true });
      if (a.acquired) await a.handle.putAndRelease(records, record, { ttlMs: 60_000 });
    },
    'put + put': async (i: number): Promise<void> => {
      await marks.put(`mark:${window}-${i}`, 1);
      await records.put(`record:${window}-${i}`, record);
    },
  };
  const results = new Map<string, { rate: number; client: number; grid: number }[]>(Object.keys(pairs).map((k) => [k, []]));
  for (let r = 0; r < rounds + 2; r++) {
    for (const [name, fn] of Object.entries(pairs)) {
      window++;
      const grid0 = processCpuUs(cluster.proc.pid!);
      const res = await closedLoop(fn, { inFlight: 16, durationMs: 2000, warmupMs: 300 });
      const grid = (processCpuUs(cluster.proc.pid!) - grid0) / Math.max(1, res.ops);
      if (r >= 2) results.get(name)!.push({ rate: res.opsPerSec, client: res.cpuUsPerOp, grid });
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const range = (xs: number[]): string => `${Math.round(median(xs))} (${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))})`;
  console.log(`16 pairs in flight, ${rounds} windows of 2 s each (medians, ranges in brackets)\n`);
  console.log(
    table([
      ['pair', 'pairs/s', 'client CPU µs/pair', 'grid CPU µs/pair (3 nodes, one process)'],
      ...[...results].map(([name, rs]) => [name, range(rs.map((x) => x.rate)), range(rs.map((x) => x.client)), range(rs.map((x) => x.grid))]),
    ]),
  );
} finally {
  await client.close();
  await cluster.stop();
}
