/**
 * bench/cluster: the multi-process grid against Redis, in one run.
 *
 * 1. Throughput and latency: @gridlink/client → three gridlink-node processes (one nats-server)
 *    vs ioredis → one redis-server vs ioredis → a 3-master Redis Cluster; get and put, 64 B and
 *    1 KiB values, p50/p99 at 1 in flight, ops/s at 1, 16, 256 in flight (throughput.ts).
 * 2. Failover timelines under one sequential put + get worker per key (workload.ts): kill -9 and
 *    SIGSTOP of a grid node, a rolling restart of all three (grid-faults.ts), kill -9 of the NATS
 *    stream leader with 3 NATS servers (grid-nats-leader.ts), kill -9 of a Redis Cluster master
 *    with 3 replicas at cluster-node-timeout 2000 and at its default 15000 (redis-faults.ts). Each:
 *    a summary row, ops/s and errors per 100 ms, and docs/cluster-<scenario>.svg.
 * 3. The targets beside the measured values.
 * 4. The control plane alone under faults (nats-faults.ts; GRIDLINK_BENCH_REPS repetitions).
 *
 *   pnpm bench cluster                          # full run (about 5 minutes)
 *   GRIDLINK_BENCH_QUICK=1 pnpm bench cluster   # about a minute: short windows, fewer keys,
 *                                               # one node of the rolling restart, no NATS leader
 *                                               # kill, no Redis default timeout, no charts written
 * Knobs: GRIDLINK_BENCH_SECONDS (throughput window, s; default 1, quick 0.3),
 * GRIDLINK_BENCH_ROUNDS (throughput rounds per cell, the systems taking turns; medians; default 3,
 * quick 1; each system is first warmed up for 1 s per op and concurrency, quick 0.3 s),
 * GRIDLINK_BENCH_WORKERS (failover workers = keys; default 32), GRIDLINK_BENCH_TAIL_MS (load kept
 * after recovery; default 1500, quick 500), GRIDLINK_BENCH_REPS (control-plane fault repetitions;
 * default 1, quick 0), GRIDLINK_BENCH_CHARTS (1: write the SVGs in quick mode too).
 */
import { cpus, loadavg } from 'node:os';
import { ProcessCluster } from '@gridlink/testkit';
import { RedisClusterProcesses, redisAvailable, startRedisServer } from '../shared/redis-servers.js';
import { gridFaults, type GridFaultResults } from './grid-faults.js';
import { gridNatsLeader } from './grid-nats-leader.js';
import { natsFaults, printNatsFaults } from './nats-faults.js';
import { redisClusterKill } from './redis-faults.js';
import { perTenthTable, writeChart, type ScenarioResult } from './scenario.js';
import { SYSTEMS, throughput, throughputTable, type Cell } from './throughput.js';

const env = process.env;
const quick = env['GRIDLINK_BENCH_QUICK'] === '1';
const seconds = Number(env['GRIDLINK_BENCH_SECONDS'] ?? (quick ? 0.3 : 1));
const rounds = Number(env['GRIDLINK_BENCH_ROUNDS'] ?? (quick ? 1 : 3));
const workers = Number(env['GRIDLINK_BENCH_WORKERS'] ?? 32);
const tailMs = Number(env['GRIDLINK_BENCH_TAIL_MS'] ?? (quick ? 500 : 1500));
const reps = Number(env['GRIDLINK_BENCH_REPS'] ?? (quick ? 0 : 1));
const charts = !quick || env['GRIDLINK_BENCH_CHARTS'] === '1';
for (const [name, v] of [['GRIDLINK_BENCH_SECONDS', seconds], ['GRIDLINK_BENCH_WORKERS', workers], ['GRIDLINK_BENCH_TAIL_MS', tailMs], ['GRIDLINK_BENCH_REPS', reps], ['GRIDLINK_BENCH_ROUNDS', rounds]] as const) {
  if (!Number.isFinite(v) || v < 0 || (name === 'GRIDLINK_BENCH_WORKERS' && (v < 3 || !Number.isInteger(v))) || (name === 'GRIDLINK_BENCH_ROUNDS' && (v < 1 || !Number.isInteger(v)))) {
    console.error(`${name}: not a valid value (${String(env[name])})`);
    process.exit(2);
  }
}

const startedAt = Date.now();
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(`${cpus().length} CPUs, load average at start ${load()}${quick ? ' — QUICK mode' : ''}`);
const withRedis = redisAvailable();
if (!withRedis) console.log('redis-server / redis-cli not installed: the Redis columns and scenarios are skipped');

// 1. Throughput and latency.
let cells: Cell[] = [];
let gridResults: GridFaultResults;
{
  // --http-port 0: each node its own ephemeral HTTP port, for /health/ready and /health/safe.
  const grid = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 64, nodeArgs: ['--http-port', '0'] });
  try {
    if (withRedis) {
      const redis = await startRedisServer();
      const rc = await RedisClusterProcesses.start({ masters: 3 });
      try {
        cells = await throughput(grid, redis.port, rc, seconds * 1000, quick ? 2000 : 10_000, rounds, quick ? 300 : 1000);
      } finally {
        await redis.close();
        await rc.close();
      }
      console.log(`\n### Throughput and latency (median of ${rounds} round(s) of ${seconds} s windows per figure, the systems taking turns)\n`);
      console.log(throughputTable(cells));
    }
    // 2a. Grid node faults on the same cluster.
    gridResults = await gridFaults(grid, { workers, tailMs, http: true, ...(quick ? { rollingNodes: 1 } : {}) });
  } finally {
    await grid.close();
  }
}

// 2b. NATS leader kill, Redis Cluster master kill.
const scenarios: ScenarioResult[] = [gridResults.kill, gridResults.hang, gridResults.rolling];
const natsLeader = quick ? undefined : await gridNatsLeader({ workers, tailMs: Math.max(tailMs, 2000) });
if (natsLeader) scenarios.push(natsLeader);
const redisKills: ScenarioResult[] = [];
if (withRedis) {
  for (const timeout of quick ? [2000] : [2000, undefined]) redisKills.push(await redisClusterKill(timeout, { workers, tailMs }));
}
scenarios.push(...redisKills);

const ms = (v: number | null, unrecovered = false): string => (v === null ? 'n/a' : `${unrecovered ? '> ' : ''}${v} ms`);
console.log(`\n### Failover (${workers} sequential put + get workers, one key each, 64 B values)\n`);
console.log('| scenario | failed ops | ok ops | keys on the faulty part | longest write pause on them | first error | notes |');
console.log('|---|---|---|---|---|---|---|');
for (const s of scenarios) {
  console.log(`| ${s.name} | ${s.failed} | ${s.ok} | ${s.affectedKeys} of ${s.keys} | ${ms(s.pauseMs, s.unrecovered)} | ${s.firstError || '—'} | ${s.notes.join('; ') || '—'} |`);
}

console.log('\n### Rolling restart: per node (SIGTERM → exited → started → member, /health/ready, every node /health/safe)\n');
console.log(
  '| node | keys it was primary of | SIGTERM → exited | SIGTERM → ready again | stall of its keys while it stopped | of any key while it stopped | of its keys while it rejoined | of any key while it rejoined | any key, the second before SIGTERM | failed ops |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const n of gridResults.rolling.nodes) {
  console.log(
    `| ${n.id} | ${n.affectedKeys} | ${n.stopMs} ms | ${n.readyMs} ms | ${n.stallMs} ms | ${n.stallAnyMs} ms | ${n.rejoinStallOwnMs} ms | ${n.rejoinStallMs} ms | ${n.calmMs} ms | ${n.failed} |`,
  );
}
// The target is about the partitions that change hands: the node's own, handed off as it stops
// and back as it rejoins. Any key's longest pause is printed beside it, with the calm second.
const rollingStall = Math.max(...gridResults.rolling.nodes.map((n) => n.stallMs));
const rejoinStall = Math.max(...gridResults.rolling.nodes.map((n) => n.rejoinStallOwnMs));
const rejoinStallAny = Math.max(...gridResults.rolling.nodes.map((n) => n.rejoinStallMs));
console.log(
  `\nLongest per-node stall of the rolling restart, on the keys that changed hands: ${rollingStall} ms while a node stopped (handoff), ${rejoinStall} ms while it rejoined (any key: ${rejoinStallAny} ms); next to the kill -9 pause: ${ms(gridResults.kill.pauseMs, gridResults.kill.unrecovered)}`,
);

// 3. Targets.
const grid = SYSTEMS[0];
const redisName = SYSTEMS[1];
const ratioAt = (size: number, op: 'get' | 'put'): number | null => {
  const c = cells.find((x) => x.size === size && x.op === op && x.inFlight === 256);
  return c ? c.results[grid].opsPerSec / c.results[redisName].opsPerSec : null;
};
const gridFaultList = [gridResults.kill, gridResults.hang, gridResults.rolling, ...(natsLeader ? [natsLeader] : [])];
const yes = (b: boolean | null): string => (b === null ? 'not measured' : b ? 'met' : 'NOT met');
const targets: [string, string, boolean | null][] = [
  [
    '0 failed ops through every grid fault',
    gridFaultList.map((s) => `${s.slug.replace('grid-', '')}: ${s.failed}`).join(', '),
    gridFaultList.every((s) => s.failed === 0),
  ],
  ['writes resume ≤ 1.5 s after kill -9 of a node', ms(gridResults.kill.pauseMs, gridResults.kill.unrecovered), !gridResults.kill.unrecovered && (gridResults.kill.pauseMs ?? Infinity) <= 1500],
  ['NATS leader kill costs no failed op', natsLeader ? `${natsLeader.failed} failed` : 'skipped (quick)', natsLeader ? natsLeader.failed === 0 : null],
  [
    'rolling restart: writes to handed-off partitions stall ≤ 100 ms (per node)',
    `${Math.max(rollingStall, rejoinStall)} ms (handoff ${rollingStall} ms, handback ${rejoinStall} ms; any key while rejoining ${rejoinStallAny} ms; kill -9: ${ms(gridResults.kill.pauseMs)})`,
    Math.max(rollingStall, rejoinStall) <= 100,
  ],
];
for (const size of [64, 1024]) {
  const put = ratioAt(size, 'put');
  const get = ratioAt(size, 'get');
  targets.push([`put ops/s at 256 in flight ≥ 1.0× one redis-server (${size} B)`, put === null ? 'n/a' : `${put.toFixed(2)}×`, put === null ? null : put >= 1.0]);
  targets.push([`get ops/s at 256 in flight ≥ 1.5× one redis-server (${size} B)`, get === null ? 'n/a' : `${get.toFixed(2)}×`, get === null ? null : get >= 1.5]);
}
console.log('\n### Targets\n');
console.log('| target | measured | |');
console.log('|---|---|---|');
for (const [t, m, ok] of targets) console.log(`| ${t} | ${m} | ${yes(ok)} |`);

// Timelines and charts.
console.log('\n### ops/s and errors per 100 ms, per scenario (t = 0 is 1 s before the fault)');
const written: string[] = [];
for (const s of scenarios) {
  console.log(`\n#### ${s.name}\n`);
  console.log(perTenthTable(s));
  if (charts) written.push(writeChart(s, `${workers} workers`));
}
if (written.length > 0) console.log(`\nwrote ${written.map((f) => `docs/${f}`).join(', ')}`);

// 4. The control plane alone.
if (reps > 0) {
  console.log('');
  printNatsFaults(await natsFaults(reps));
}
console.log(`\nload average at the end ${load()}; total ${((Date.now() - startedAt) / 1000).toFixed(0)} s`);
