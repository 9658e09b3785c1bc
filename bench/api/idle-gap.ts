/**
 * Why one grid round trip inside an HTTP request costs more than one in a tight loop: what a
 * single operation's latency does when the processes it crosses were idle just before it. Each
 * sample is one operation at one in flight, issued
 *   - back to back (right after the previous answer),
 *   - after a 300 µs gap during which this process spins (the server side idles),
 *   - after a 2 ms timer gap (every process idles, as between two HTTP requests at low load),
 * against the grid `bench/api` uses (three nodes in one process, backups 1) and against one
 * redis-server through ioredis. The difference between the columns is the cost of waking the
 * server (and, in the last column, this process) from idle: the operations are the same.
 *
 *   npx tsx bench/api/idle-gap.ts        (after pnpm build, with TSX_TSCONFIG_PATH=bench/tsconfig.json)
 *   IDLE_GAP_SAMPLES=2000 npx tsx bench/api/idle-gap.ts
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { GridClient } from '@gridlink/client';
import { Redis } from 'ioredis';
import { percentile, table } from '../shared/measure.js';
import { startCluster, startRedis } from '../shared/processes.js';

const SAMPLES = Number(process.env.IDLE_GAP_SAMPLES ?? 1500);

type Gap = 'none' | 'spin' | 'sleep';
const GAPS: [Gap, string][] = [
  ['none', 'back to back'],
  ['spin', 'after 300 µs (server idle)'],
  ['sleep', 'after 2 ms (all idle)'],
];

function spin(us: number): void {
  const end = process.hrtime.bigint() + BigInt(us * 1000);
  while (process.hrtime.bigint() < end);
}

async function p50(op: (i: number) => Promise<unknown>, gap: Gap): Promise<number> {
  const t: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    if (gap === 'spin') spin(300);
    else if (gap === 'sleep') await sleep(2);
    const s = process.hrtime.bigint();
    await op(i);
    t.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  return percentile(t, 50);
}

const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
const redisChild = await startRedis();
const grid = await GridClient.connect({ endpoints: cluster.endpoints });
const redis = redisChild ? new Redis({ port: redisChild.port, host: '127.0.0.1', lazyConnect: true }) : null;
try {
  await redis?.connect();
  const cache = grid.cache<string, unknown>('idle-gap');
  const locks = grid.cache<string, unknown>('idle-gap-locks');
  const value = { id: 'b3f1c2d4-5e6f-4a7b-8c9d-0e1f2a3b4c5d', sku: 'book', qty: 1 };
  const json = JSON.stringify(value);
  let lockN = 0;
  const ops: [string, string, (i: number) => Promise<unknown>][] = [
    ['grid', 'put (replicated)', (i) => cache.put(`k${i % 500}`, value)],
    ['grid', 'get', (i) => cache.get(`k${i % 500}`)],
    [
      'grid',
      'lock attemptGet + putAndRelease (the middleware\'s pair)',
      async () => {
        const a = await grid.lock(`dedupe:idle:${lockN++}`).attemptGet(locks, { leaseMs: 10_000, ifAbsent: true });
        if (a.acquired) await a.handle.putAndRelease(locks, value, { ttlMs: 60_000 });
      },
    ],
  ];
  if (redis) {
    ops.push(['redis-server', 'SET', (i) => redis.set(`k${i % 500}`, json)]);
    ops.push(['redis-server', 'GET', (i) => redis.get(`k${i % 500}`)]);
  }
  // Warm-up: V8 optimizes the paths of both processes under a few seconds of load.
  for (const [, , op] of ops) for (let i = 0; i < 3000; i++) await op(i);
  const rows: (string | number)[][] = [];
  for (const [system, name, op] of ops) {
    const cells: number[] = [];
    for (const [gap] of GAPS) cells.push(await p50(op, gap));
    rows.push([system, name, ...cells.map((c) => Math.round(c)), `+${Math.round(cells[2]! - cells[0]!)}`]);
  }
  console.log(`One operation at a time, p50 µs over ${SAMPLES} samples per cell; grid: 3 nodes in one process, backups 1.\n`);
  console.log(table([['system', 'operation', ...GAPS.map(([, label]) => label), 'idle cost (µs)'], ...rows]));
} finally {
  redis?.disconnect();
  await grid.close();
  await redisChild?.stop();
  await cluster.stop();
}
