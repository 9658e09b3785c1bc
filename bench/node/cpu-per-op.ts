/**
 * Cluster CPU per put and per get, on a fixed number of operations: a repeatable measure of the
 * node's request path that depends little on how busy the machine is (wall-clock throughput on a
 * shared machine moves by tens of percent from run to run; CPU time per op moves much less).
 *
 * Starts a LocalCluster (3 nodes, backups = 1) in its own process, prefills the keys, then runs
 * rounds that alternate put and get (64 B values, requests sent to each key's primary), each a
 * fixed count of operations at a fixed number in flight, and reads the cluster process's CPU
 * time (user + system, /proc) around each. Prints the median over the rounds: cluster CPU µs per
 * op, the put/get CPU ratio, p50 latency at 1 in flight (wall clock, the noisier column) and
 * the cluster's read + write system calls per op at 1 in flight (/proc/<pid>/io, exact).
 *
 *   npx tsx bench/node/cpu-per-op.ts
 *   CPU_OPS=40000 CPU_ROUNDS=5 npx tsx bench/node/cpu-per-op.ts
 *   CPU_SIZE=1024 npx tsx bench/node/cpu-per-op.ts     (value size in bytes; default 64)
 */
import { percentile, processCpuSplitUs, processSyscalls, table } from '../shared/measure.js';
import { startCluster } from '../shared/processes.js';
import { benchKeys, fixedCount, wireOps } from './load.js';
import { WireClient } from './wire-client.js';

const OPS = Number(process.env.CPU_OPS ?? 30_000);
const LATENCY_OPS = Number(process.env.CPU_LATENCY_OPS ?? 3_000);
const ROUNDS = Number(process.env.CPU_ROUNDS ?? 5);
const KEYS = 10_000;
const keys = benchKeys(KEYS);
const SIZE = Number(process.env.CPU_SIZE ?? 64);
const value = new Uint8Array(SIZE).fill(7);
const cache = 'cpu';

const median = (xs: number[]): number => percentile(xs, 50);

const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
const client = new WireClient(cluster.endpoints);
const pid = cluster.proc.pid!;
try {
  await client.connect();
  const ops = wireOps(client, cache, keys);
  const put = ops.put(value);
  const get = ops.get;
  // Prefill, and warm the JIT on both paths outside the measurement.
  await fixedCount(put, KEYS * 2, 64);
  await fixedCount(get, KEYS, 64);
  await fixedCount(put, 2_000, 1);
  await fixedCount(get, 2_000, 1);

  const kernel = { put256: [] as number[], get256: [] as number[], put1: [] as number[], get1: [] as number[] };
  const cpu = { put256: [] as number[], get256: [] as number[], put1: [] as number[], get1: [] as number[] };
  const sys = { put: [] as number[], get: [] as number[] };
  const p50 = { put1: [] as number[], get1: [] as number[] };
  const rate = { put256: [] as number[], get256: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, op] of [
      ['put', put],
      ['get', get],
    ] as const) {
      let c0 = processCpuSplitUs(pid);
      const t0 = performance.now();
      await fixedCount(op, OPS, 256);
      const ms = performance.now() - t0;
      let c1 = processCpuSplitUs(pid);
      cpu[`${name}256`].push((c1.user + c1.system - c0.user - c0.system) / OPS);
      kernel[`${name}256`].push((c1.system - c0.system) / (c1.user + c1.system - c0.user - c0.system));
      rate[`${name}256`].push((OPS * 1000) / ms);
      c0 = processCpuSplitUs(pid);
      const s0 = processSyscalls(pid);
      const lat = await fixedCount(op, LATENCY_OPS, 1);
      c1 = processCpuSplitUs(pid);
      cpu[`${name}1`].push((c1.user + c1.system - c0.user - c0.system) / LATENCY_OPS);
      kernel[`${name}1`].push((c1.system - c0.system) / (c1.user + c1.system - c0.user - c0.system));
      p50[`${name}1`].push(percentile(lat, 50));
      const s1 = processSyscalls(pid);
      sys[name].push((s1.r - s0.r + s1.w - s0.w) / LATENCY_OPS);
    }
  }
  const pct = (xs: number[]): string => `${Math.round(100 * median(xs))} %`;
  const m = (xs: number[]): number => Math.round(median(xs) * 10) / 10;
  console.log(`### Cluster CPU per op (3 nodes in one process, backups = 1, ${SIZE} B, median of ${ROUNDS} rounds)\n`);
  console.log(
    table([
      ['in flight', 'put CPU µs/op', 'get CPU µs/op', 'put / get', 'put kernel %', 'get kernel %', 'put ops/s', 'get ops/s', 'put p50 µs', 'get p50 µs', 'put syscalls/op', 'get syscalls/op'],
      [256, m(cpu.put256), m(cpu.get256), (median(cpu.put256) / median(cpu.get256)).toFixed(2), pct(kernel.put256), pct(kernel.get256), Math.round(median(rate.put256)), Math.round(median(rate.get256)), '', '', '', ''],
      [1, m(cpu.put1), m(cpu.get1), (median(cpu.put1) / median(cpu.get1)).toFixed(2), pct(kernel.put1), pct(kernel.get1), '', '', Math.round(median(p50.put1)), Math.round(median(p50.get1)), median(sys.put).toFixed(1), median(sys.get).toFixed(1)],
    ]),
  );
} finally {
  client.close();
  await cluster.stop();
}
