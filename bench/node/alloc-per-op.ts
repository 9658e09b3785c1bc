/**
 * Heap bytes allocated, GC time and CPU time per put and per get in a LocalCluster (3 nodes,
 * backups = 1) in its own process (bench/node/cluster-gc.ts), for 64 B and 1 KiB values at 256
 * and 1 in flight. Bytes allocated per op is the steadiest measure of per-op garbage on a busy
 * machine (it does not depend on scheduling); CPU µs/op is printed beside it. Median over rounds.
 *
 *   npx tsx bench/node/alloc-per-op.ts
 *   ALLOC_OPS=20000 ALLOC_ROUNDS=3 ALLOC_SIZES=64,1024 npx tsx bench/node/alloc-per-op.ts
 */
import { percentile, table } from '../shared/measure.js';
import { benchKeys, fixedCount, startGcCluster, wireOps } from './load.js';
import { WireClient } from './wire-client.js';

const OPS = Number(process.env.ALLOC_OPS ?? 20_000);
const LATENCY_OPS = Number(process.env.ALLOC_LATENCY_OPS ?? 2_000);
const ROUNDS = Number(process.env.ALLOC_ROUNDS ?? 3);
const SIZES = (process.env.ALLOC_SIZES ?? '64,1024').split(',').map(Number);
const KEYS = 10_000;
const keys = benchKeys(KEYS);
const cache = 'alloc';

interface Mark {
  allocated: number;
  gcMs: number;
  gcs: number;
  cpuUs: number;
}

const gc = await startGcCluster();
const mark = async (): Promise<Mark> => JSON.parse(await gc.command('mark')) as Mark;

const client = new WireClient(gc.endpoints);
const rows: (string | number)[][] = [['value', 'op', 'in flight', 'bytes alloc/op', 'GC µs/op', 'CPU µs/op']];
try {
  await client.connect();
  const ops = wireOps(client, cache, keys);
  for (const size of SIZES) {
    const put = ops.put(new Uint8Array(size).fill(7));
    const get = ops.get;
    await fixedCount(put, KEYS * 2, 64);
    await fixedCount(get, KEYS, 64);
    const res = new Map<string, { a: number[]; g: number[]; c: number[] }>();
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, op] of [
        ['put', put],
        ['get', get],
      ] as const) {
        for (const inFlight of [256, 1]) {
          const n = inFlight === 1 ? LATENCY_OPS : OPS;
          const m0 = await mark();
          await fixedCount(op, n, inFlight);
          const m1 = await mark();
          const k = `${name} ${inFlight}`;
          const e = res.get(k) ?? { a: [], g: [], c: [] };
          e.a.push((m1.allocated - m0.allocated) / n);
          e.g.push(((m1.gcMs - m0.gcMs) * 1000) / n);
          e.c.push((m1.cpuUs - m0.cpuUs) / n);
          res.set(k, e);
        }
      }
    }
    for (const [k, e] of res) {
      const [name, inFlight] = k.split(' ');
      rows.push([size, name!, inFlight!, Math.round(percentile(e.a, 50)), percentile(e.g, 50).toFixed(1), percentile(e.c, 50).toFixed(1)]);
    }
  }
  console.log(`### Cluster allocation and CPU per op (3 nodes in one process, backups = 1, median of ${ROUNDS} rounds)\n`);
  console.log(table(rows));
} finally {
  client.close();
  await gc.stop();
}
