/**
 * Profiles the cluster process under load: starts bench/shared/cluster-process.ts with
 * --cpu-prof, drives one op (PROFILE_OP=put|get, PROFILE_INFLIGHT, PROFILE_SECONDS) against it,
 * stops it and prints the functions with the most self time.
 *
 *   npx tsx bench/node/profile.ts [profile-dir]
 *   PROFILE_OP=put PROFILE_INFLIGHT=256 PROFILE_SIZE=1024 PROFILE_DIST=1 npx tsx bench/node/profile.ts
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { encodeKey } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { closedLoop, processCpuUs, table } from '../shared/measure.js';
import { WireClient } from './wire-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const dir = resolve(process.argv[2] ?? 'cpu-profile');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const op = process.env.PROFILE_OP ?? 'put';
const inFlight = Number(process.env.PROFILE_INFLIGHT ?? 256);
const seconds = Number(process.env.PROFILE_SECONDS ?? 3);

const profiling = process.env.PROFILE_CPU !== '0';
// PROFILE_DIST=1: the cluster runs the built packages (build first), so the table names real lines.
const fromDist = process.env.PROFILE_DIST === '1';
const child = fromDist ? [join(here, 'cluster-gc.ts')] : [join(here, '../shared/cluster-process.ts'), '{"nodes":3}'];
const proc = spawn(process.execPath, [...(profiling ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []), '--import', 'tsx', ...child], {
  stdio: ['pipe', 'pipe', 'inherit'],
  env: fromDist ? { ...process.env, CLUSTER_FROM_DIST: '1' } : process.env,
});
const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
const first = await lines.next();
const { endpoints } = JSON.parse(String(first.value)) as { endpoints: string[] };
const client = new WireClient(endpoints);
await client.connect();
const keys = Array.from({ length: 10_000 }, (_, i) => encodeKey(`key-${i}`));
const value = new Uint8Array(Number(process.env.PROFILE_SIZE ?? 64)).fill(7);
// Puts carry `ack`, the lowest seq still in flight, as @gridlink/client's do.
let low = 1;
const settled = new Set<number>();
const put = async (key: Uint8Array): Promise<unknown> => {
  const seq = client.nextSeq();
  try {
    return await client.call(Op.CACHE_PUT, { cache: 'c', key, value, seq, ack: low }, key);
  } finally {
    settled.add(seq);
    while (settled.delete(low)) low++;
  }
};
const run = (durationMs: number): ReturnType<typeof closedLoop> =>
  closedLoop(
    (i) => {
      const key = keys[(i * 7919) % keys.length]!;
      return op === 'get' ? client.call(Op.CACHE_GET, { cache: 'c', key }, key) : put(key);
    },
    { inFlight, durationMs, warmupMs: 0 },
  );
await run(1000); // warm-up (JIT, prefill) outside the CPU measurement
const cpu0 = processCpuUs(proc.pid!);
const t0 = performance.now();
const r = await run(seconds * 1000);
const cpu = processCpuUs(proc.pid!) - cpu0;
const ops = (r.opsPerSec * (performance.now() - t0)) / 1000;
// CPU per op of the cluster process depends less on how fast the load generator gets scheduled.
console.log(`${op} ×${inFlight}: ${Math.round(r.opsPerSec)} ops/s, p50 ${Math.round(r.p50us)} µs, cluster CPU ${Math.round(cpu / ops)} µs/op`);
client.close();
proc.stdin.write('stop\n');
await new Promise((res) => proc.once('exit', res));

if (!profiling) process.exit(0);

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
// The loader's worker thread writes a profile too: the main thread's is the largest.
const file = readdirSync(dir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .map((f) => ({ f, size: statSync(join(dir, f)).size }))
  .sort((a, b) => b.size - a.size)[0]!.f;
const prof = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
let total = 0;
prof.samples.forEach((id, i) => {
  const n = byId.get(id)!;
  const dt = prof.timeDeltas[i] ?? 0;
  total += dt;
  const cf = n.callFrame;
  const name = `${cf.functionName || '(anon)'} ${cf.url.replace(/^.*\/(packages|node_modules)\//, '$1/')}:${cf.lineNumber + 1}`;
  self.set(name, (self.get(name) ?? 0) + dt);
});
const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROFILE_TOP ?? 40));
console.log(table([['function', 'self ms', '%'], ...top.map(([k, v]) => [k, Math.round(v / 1000), ((100 * v) / total).toFixed(1)])]));
