/**
 * Two builds of gridlink-node side by side: a cluster of three node processes (one nats-server,
 * backups = 1) per build, both started at once, the same load on each in turns of SECONDS (A, B,
 * A, B…), so that the machine's drift between runs — larger here than most single changes —
 * falls on both alike. Prints, per value size and op, each turn's throughput and the nodes' CPU
 * time per operation (summed over the three processes, from /proc), and the medians.
 *
 *   # keep a build of the base: git stash; pnpm build; cp -r packages/node/dist packages/node/dist-base; git stash pop; pnpm build
 *   CLI_B=packages/node/dist-base/cli.js npx tsx bench/cluster/ab.ts
 *   CLI_B=… SIZES=64,1024 OPS=put,get ROUNDS=8 SECONDS=2 INF=256 npx tsx bench/cluster/ab.ts
 *
 * A is this workspace's build (packages/node/dist/cli.js) unless CLI_A names another. Both use
 * the same client (this process). Run from the repository root with
 * TSX_TSCONFIG_PATH=bench/tsconfig.json after `pnpm build`, as `pnpm bench` does.
 */
import { resolve } from 'node:path';
import { GridClient, bytesSerializer, type GridCache } from '@gridlink/client';
import { ProcessCluster } from '@gridlink/testkit';
import { closedLoop, fmt, median, processCpuUs, table } from '../shared/measure.js';

const CLI_B = process.env.CLI_B;
if (CLI_B === undefined) {
  console.error('CLI_B: the path of the other build’s dist/cli.js (see the comment at the top)');
  process.exit(2);
}
const builds = [
  { name: 'A', cli: resolve(process.env.CLI_A ?? 'packages/node/dist/cli.js') },
  { name: 'B', cli: resolve(CLI_B) },
];
const SIZES = (process.env.SIZES ?? '1024').split(',').map(Number);
const OPS = (process.env.OPS ?? 'put').split(',') as ('put' | 'get')[];
const IN_FLIGHT = Number(process.env.INF ?? 256);
const SECONDS = Number(process.env.SECONDS ?? 2);
const ROUNDS = Number(process.env.ROUNDS ?? 6);
const WARMUP_MS = Number(process.env.WARMUP_MS ?? 3000);
const KEYS = 10_000;
const keyOf = (i: number): string => `key-${(i % KEYS).toString().padStart(8, '0')}`;

interface Side {
  name: string;
  cli: string;
  grid: ProcessCluster;
  client: GridClient;
  cache: GridCache<string, Uint8Array>;
  pids: number[];
}

const sides: Side[] = [];
try {
  for (const b of builds) {
    const grid = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 64, cliPath: b.cli });
    const client = await GridClient.connect({ endpoints: grid.endpoints }).catch(async (e: unknown) => {
      await grid.close();
      throw e;
    });
    sides.push({ ...b, grid, client, cache: client.cache<string, Uint8Array>('ab', { serializer: bytesSerializer }), pids: grid.nodes.map((n) => n.pid!) });
  }
  for (const size of SIZES) {
    const value = new Uint8Array(size).fill(7);
    for (const s of sides) for (let i = 0; i < KEYS; i += 200) await Promise.all(Array.from({ length: 200 }, (_, j) => s.cache.put(keyOf(i + j), value)));
    for (const op of OPS) {
      const fn = (s: Side) => (op === 'put' ? (i: number) => s.cache.put(keyOf(i), value) : (i: number) => s.cache.get(keyOf(i)));
      for (const s of sides) await closedLoop(fn(s), { inFlight: IN_FLIGHT, durationMs: WARMUP_MS, warmupMs: 0 });
      const turns: { side: string; opsPerSec: number; nodeCpu: number; clientCpu: number }[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        // Alternate which build goes first, so that neither always follows the other.
        for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
          const cpu0 = s.pids.reduce((a, p) => a + processCpuUs(p), 0);
          const res = await closedLoop(fn(s), { inFlight: IN_FLIGHT, durationMs: SECONDS * 1000, warmupMs: 0 });
          const cpu = s.pids.reduce((a, p) => a + processCpuUs(p), 0) - cpu0;
          turns.push({ side: s.name, opsPerSec: res.opsPerSec, nodeCpu: cpu / Math.max(1, res.ops), clientCpu: res.cpuUsPerOp });
        }
      }
      console.log(`\n### ${op} ${size} B, ${IN_FLIGHT} in flight, ${ROUNDS} turns of ${SECONDS} s per build (A: ${builds[0]!.cli}, B: ${builds[1]!.cli})\n`);
      console.log(
        table([
          ['build', 'ops/s per turn', 'median ops/s', 'node CPU µs/op per turn', 'median node CPU µs/op', 'median client CPU µs/op'],
          ...sides.map((s) => {
            const mine = turns.filter((t) => t.side === s.name);
            return [
              s.name,
              mine.map((t) => fmt(t.opsPerSec)).join(' '),
              fmt(median(mine.map((t) => t.opsPerSec))),
              mine.map((t) => t.nodeCpu.toFixed(1)).join(' '),
              median(mine.map((t) => t.nodeCpu)).toFixed(1),
              median(mine.map((t) => t.clientCpu)).toFixed(1),
            ];
          }),
        ]),
      );
    }
  }
} finally {
  for (const s of sides) {
    await s.client.close();
    await s.grid.close();
  }
}
// Exit at once rather than wind down: Node 20 can spin forever in its exit-time handle cleanup
// after a run of real processes (nodejs/node#47748; see bench/run.ts) — two of four short runs
// of this script did before this line.
process.exit(process.exitCode ?? 0);
