/**
 * Where an operation's cost lies when the grid runs as processes: for @gridlink/client → three
 * gridlink-node processes (one nats-server, backups = 1) and for ioredis → one redis-server, at
 * a fixed number of requests in flight, the CPU time, the read/write system calls and the
 * context switches and the minor page faults that each process spends per operation (Linux /proc:
 * stat, io, status),
 * beside the throughput. On a small machine these columns explain the throughput table of
 * `pnpm bench cluster`: a replicated put crosses four process boundaries (client → primary →
 * backup → primary → client), a redis SET two; each crossing is a write that wakes another
 * process. CPU time and system calls per op move much less with the machine's load than ops/s.
 *
 *   npx tsx bench/cluster/per-process.ts                 # 64 B and 1 KiB, 256 in flight
 *   SIZES=64 INF=16 SECONDS=3 npx tsx bench/cluster/per-process.ts
 *   OPS=put SIZES=1024 npx tsx bench/cluster/per-process.ts   # one operation only (default put,get)
 *   PROXIES=1 npx tsx bench/cluster/per-process.ts       # NATS through the test kit's proxies
 *   WARMUP_MS=500 npx tsx bench/cluster/per-process.ts   # warm-up before each cell (default 3 s)
 *   V8FLAGS="--max-semi-space-size=4 --single-threaded-gc" npx tsx bench/cluster/per-process.ts
 *                                                        # the nodes' V8 flags (default: NODE_V8_FLAGS)
 *
 * (Run from the repository root with TSX_TSCONFIG_PATH=bench/tsconfig.json after `pnpm build`, as
 * `pnpm bench` does, so that the built packages are measured.)
 */
import { GridClient, bytesSerializer } from '@gridlink/client';
import { ProcessCluster } from '@gridlink/testkit';
import { Redis } from 'ioredis';
import { closedLoop, fmt, processContextSwitches, processCpuSplitUs, processMinorFaults, processSyscalls, table } from '../shared/measure.js';
import { redisAvailable, startRedisServer } from '../shared/redis-servers.js';

const SIZES = (process.env.SIZES ?? '64,1024').split(',').map(Number);
const OPS = (process.env.OPS ?? 'put,get').split(',') as ('put' | 'get')[];
const IN_FLIGHT = Number(process.env.INF ?? 256);
const SECONDS = Number(process.env.SECONDS ?? 2);
const WARMUP_MS = Number(process.env.WARMUP_MS ?? 3000);
const KEYS = 10_000;

interface Sample {
  cpuUs: number;
  sysUs: number;
  syscalls: number;
  switches: number;
  faults: number;
}

/** CPU time (µs; of it in the kernel), read + write system calls and context switches of a process so far (Linux). */
function sample(pid: number): Sample {
  const cpu = processCpuSplitUs(pid);
  const io = processSyscalls(pid);
  return { cpuUs: cpu.user + cpu.system, sysUs: cpu.system, syscalls: io.r + io.w, switches: processContextSwitches(pid), faults: processMinorFaults(pid) };
}

interface Row {
  system: string;
  size: number;
  op: string;
  opsPerSec: number;
  /** Per process role: client, server(s) summed. */
  clientCpu: number;
  serverCpu: number;
  /** Share of the servers' CPU time spent in the kernel. */
  serverKernel: number;
  syscalls: number;
  switches: number;
  faults: number;
}

/** Measures `fn` at IN_FLIGHT after a warm-up; per-op costs of `client` and the summed `servers`. */
async function measure(system: string, size: number, op: string, fn: (i: number) => Promise<unknown>, servers: number[]): Promise<Row> {
  // Warm-up: V8 optimizes what each process runs only after seconds of load (longer at low rates).
  await closedLoop(fn, { inFlight: IN_FLIGHT, durationMs: WARMUP_MS, warmupMs: 0 });
  const pids = [process.pid, ...servers];
  const before = pids.map(sample);
  const r = await closedLoop(fn, { inFlight: IN_FLIGHT, durationMs: SECONDS * 1000, warmupMs: 0 });
  const after = pids.map(sample);
  // The load runs on until its last operations settle: count them all (what the /proc samples saw).
  const ops = Math.max(1, r.ops);
  const d = (i: number, k: keyof Sample): number => (after[i]![k] - before[i]![k]) / ops;
  const sum = (k: keyof Sample, from: number): number => pids.slice(from).reduce((s, _, i) => s + d(i + from, k), 0);
  return {
    system,
    size,
    op,
    opsPerSec: r.opsPerSec,
    clientCpu: d(0, 'cpuUs'),
    serverCpu: sum('cpuUs', 1),
    serverKernel: sum('sysUs', 1) / sum('cpuUs', 1),
    syscalls: sum('syscalls', 0),
    switches: sum('switches', 0),
    faults: sum('faults', 0),
  };
}

const rows: Row[] = [];
const keyOf = (i: number): string => `key-${(i % KEYS).toString().padStart(8, '0')}`;
// PROXIES=1: the nodes reach NATS through the test kit's fault proxies (in this process), as the
// tests that cut a node off from the control plane need; by default they dial it directly.
// V8FLAGS: the node processes' V8 flags instead of @gridlink/node's NODE_V8_FLAGS (space-separated).
const v8Flags = process.env.V8FLAGS?.split(' ').filter(Boolean);
const grid = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 64, controlPlaneProxies: process.env.PROXIES === '1', ...(v8Flags !== undefined ? { v8Flags } : {}) });
const redisServer = redisAvailable() ? await startRedisServer() : null;
try {
  const client = await GridClient.connect({ endpoints: grid.endpoints });
  const redis = redisServer === null ? null : new Redis({ host: '127.0.0.1', port: redisServer.port });
  try {
    const cache = client.cache<string, Uint8Array>('per-process', { serializer: bytesSerializer });
    const nodePids = grid.nodes.map((n) => n.pid!);
    for (const size of SIZES) {
      const value = new Uint8Array(size).fill(7);
      const buf = Buffer.from(value);
      for (let i = 0; i < KEYS; i += 200) {
        await Promise.all(Array.from({ length: 200 }, (_, j) => cache.put(keyOf(i + j), value)));
        if (redis !== null) await Promise.all(Array.from({ length: 200 }, (_, j) => redis.set(keyOf(i + j), buf)));
      }
      for (const op of OPS) {
        const g = op === 'put' ? (i: number) => cache.put(keyOf(i), value) : (i: number) => cache.get(keyOf(i));
        rows.push(await measure('gridlink (3 node processes)', size, op, g, nodePids));
        if (redis !== null) {
          const r = op === 'put' ? (i: number) => redis.set(keyOf(i), buf) : (i: number) => redis.getBuffer(keyOf(i));
          rows.push(await measure('redis-server', size, op, r, [redisServer!.pid!]));
        }
        process.stderr.write(`  ${size} B ${op} done\n`);
      }
    }
  } finally {
    await client.close();
    redis?.disconnect();
  }
  // Graceful stops, so that `--cpu-prof` in V8FLAGS writes every node's profile.
  if (v8Flags?.includes('--cpu-prof') === true) for (const n of grid.nodes) await n.stop();
} finally {
  await grid.close();
  await redisServer?.close();
}

const f1 = (n: number): string => n.toFixed(1);
const f3 = (n: number): string => n.toFixed(3);
console.log(`### Cost per operation by process, ${IN_FLIGHT} in flight, ${SECONDS} s per cell (client: this process)\n`);
console.log(
  table([
    ['value', 'op', 'system', 'ops/s', 'client CPU µs/op', 'server CPU µs/op', 'of it kernel', 'all CPU µs/op', 'syscalls/op (all)', 'context switches/op (all)', 'page faults/op (all)'],
    ...rows.map((r) => [`${r.size} B`, r.op, r.system, fmt(r.opsPerSec), f1(r.clientCpu), f1(r.serverCpu), `${Math.round(100 * r.serverKernel)} %`, f1(r.clientCpu + r.serverCpu), f3(r.syscalls), f3(r.switches), f3(r.faults)]),
  ]),
);
console.log('\nserver CPU: the three node processes summed (gridlink), or redis-server; NATS is not counted (idle between lease renewals).');
