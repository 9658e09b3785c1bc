/**
 * The node process's young generation (ADR 0046), side by side in one run: three
 * `gridlink-node` processes (one nats-server, backups = 1) started with V8's default young
 * generation and with the node's NODE_V8_FLAGS (`--max-semi-space-size=4`), taking turns, the
 * same client load for each (256 in flight unless INF says otherwise, 10,000 keys). Per cell:
 * ops/s, the p50 and p99 latency, and the CPU time the three node processes and the client spend per
 * operation (Linux /proc), which moves much less with the machine's load than ops/s does.
 *
 *   npx tsx bench/cluster/young-gen.ts                       # 64 B and 1 KiB, put and get, 3 rounds (about 4 minutes)
 *   SIZES=1024 OPS=put ROUNDS=3 npx tsx bench/cluster/young-gen.ts
 *   INF=1 SIZES=64 OPS=put npx tsx bench/cluster/young-gen.ts   # at one request in flight
 *   VARIANTS="--max-semi-space-size=4;--max-semi-space-size=64" npx tsx bench/cluster/young-gen.ts
 *
 * (From the repository root with TSX_TSCONFIG_PATH=bench/tsconfig.json after `pnpm build`.)
 */
import { GridClient, bytesSerializer } from '@gridlink/client';
import { NODE_V8_FLAGS } from '@gridlink/node';
import { ProcessCluster } from '@gridlink/testkit';
import { closedLoop, fmt, percentile, processCpuUs, table } from '../shared/measure.js';

const SIZES = (process.env.SIZES ?? '64,1024').split(',').map(Number);
const OPS = (process.env.OPS ?? 'put,get').split(',') as ('put' | 'get')[];
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECONDS = Number(process.env.SECONDS ?? 4);
const WARMUP_MS = Number(process.env.WARMUP_MS ?? 3000);
const IN_FLIGHT = Number(process.env.INF ?? 256);
const KEYS = 10_000;
// VARIANTS: the nodes' flag sets to compare instead, `;`-separated, each space-separated
// (`VARIANTS="--max-semi-space-size=4;--max-semi-space-size=64"`; an empty one is V8's defaults).
const VARIANTS: { name: string; flags: readonly string[] }[] =
  process.env.VARIANTS === undefined
    ? [
        { name: 'V8 default', flags: [] },
        { name: NODE_V8_FLAGS.join(' '), flags: NODE_V8_FLAGS },
      ]
    : process.env.VARIANTS.split(';').map((v) => {
        const flags = v.split(' ').filter(Boolean);
        return { name: flags.length === 0 ? 'V8 default' : flags.join(' '), flags };
      });

interface Sample {
  opsPerSec: number;
  p50us: number;
  p99us: number;
  nodeCpu: number;
  clientCpu: number;
}

/** One fresh cluster with `flags`, one op and size: warm-up, then one measured window. */
async function measure(flags: readonly string[], size: number, op: 'put' | 'get'): Promise<Sample> {
  const grid = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 64, controlPlaneProxies: false, v8Flags: flags });
  try {
    const client = await GridClient.connect({ endpoints: grid.endpoints });
    try {
      const cache = client.cache<string, Uint8Array>('young-gen', { serializer: bytesSerializer });
      const value = new Uint8Array(size).fill(7);
      const keyOf = (i: number): string => `key-${(i % KEYS).toString().padStart(8, '0')}`;
      for (let i = 0; i < KEYS; i += 200) await Promise.all(Array.from({ length: 200 }, (_, j) => cache.put(keyOf(i + j), value)));
      const fn = op === 'put' ? (i: number) => cache.put(keyOf(i), value) : (i: number) => cache.get(keyOf(i));
      await closedLoop(fn, { inFlight: IN_FLIGHT, durationMs: WARMUP_MS, warmupMs: 0 });
      const pids = grid.nodes.map((n) => n.pid!);
      const nodesCpu = (): number => pids.reduce((s, p) => s + processCpuUs(p), 0);
      const own = (): number => {
        const u = process.cpuUsage();
        return u.user + u.system;
      };
      const n0 = nodesCpu();
      const c0 = own();
      const r = await closedLoop(fn, { inFlight: IN_FLIGHT, durationMs: SECONDS * 1000, warmupMs: 0 });
      const ops = Math.max(1, r.ops);
      return { opsPerSec: r.opsPerSec, p50us: r.p50us, p99us: r.p99us, nodeCpu: (nodesCpu() - n0) / ops, clientCpu: (own() - c0) / ops };
    } finally {
      await client.close();
    }
  } finally {
    await grid.close();
  }
}

const rows: (string | number)[][] = [];
for (const size of SIZES) {
  for (const op of OPS) {
    const samples = VARIANTS.map(() => [] as Sample[]);
    for (let r = 0; r < ROUNDS; r++) {
      // The variants take turns, in alternating order.
      for (let j = 0; j < VARIANTS.length; j++) {
        const v = (j + r) % VARIANTS.length;
        samples[v]!.push(await measure(VARIANTS[v]!.flags, size, op));
      }
    }
    const med = (xs: Sample[], pick: (s: Sample) => number): number => percentile(xs.map(pick), 50);
    const base = med(samples[0]!, (s) => s.opsPerSec);
    VARIANTS.forEach((v, i) => {
      const xs = samples[i]!;
      rows.push([
        `${size} B`,
        op,
        v.name,
        fmt(Math.round(med(xs, (s) => s.opsPerSec))),
        `${(med(xs, (s) => s.opsPerSec) / base).toFixed(2)}×`,
        fmt(med(xs, (s) => s.p50us)),
        fmt(med(xs, (s) => s.p99us)),
        med(xs, (s) => s.nodeCpu).toFixed(1),
        med(xs, (s) => s.clientCpu).toFixed(1),
        xs.map((s) => fmt(Math.round(s.opsPerSec))).join(' / '),
        xs.map((s) => s.nodeCpu.toFixed(1)).join(' / '),
      ]);
    });
    process.stderr.write(`  ${size} B ${op} done\n`);
  }
}
console.log(`### Node processes' young generation: ${IN_FLIGHT} in flight, ${SECONDS} s per window after ${WARMUP_MS} ms of warm-up, median of ${ROUNDS} rounds\n`);
console.log(
  table([['value', 'op', 'node runtime flags', 'ops/s', VARIANTS[0]?.name === 'V8 default' ? 'vs default' : 'vs the first', 'p50 µs', 'p99 µs', 'node CPU µs/op (3 processes)', 'client CPU µs/op', 'ops/s per round', 'node CPU per round'], ...rows]),
);
// Ends here even if a handle were left open (Node 20 can also spin at exit: nodejs/node#47748).
process.exit(0);
