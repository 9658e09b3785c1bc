/**
 * Where an app's CPU goes per request, mode against mode: each mode's app (bench/api/app-server.ts)
 * runs in its own process under V8's CPU profiler against one grid process (three nodes, one
 * backup), warms up under autocannon, then takes a measured load; only the profile's samples
 * inside that load count, divided by the requests it completed. Prints µs per request by where
 * the time was spent (the sampled function's package or Node module), side by side, and the
 * functions whose time grew most against the first mode.
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/api/profile.ts   (after pnpm build)
 *   PROFILE_MODES (default two-puts,gridlink), PROFILE_SECONDS (10), PROFILE_CONNECTIONS (16),
 *   PROFILE_TOP (25): rows of the function table.
 * The profiler's own cost (a sample every 250 µs) is in every mode alike.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCluster } from '../shared/processes.js';
import { table } from '../shared/measure.js';
import { appStats, postOrders, startApp, stopApp } from './app-process.js';

const modes = (process.env.PROFILE_MODES ?? 'two-puts,gridlink').split(',').filter((m) => m !== '');
const seconds = Number(process.env.PROFILE_SECONDS ?? 10);
const connections = Number(process.env.PROFILE_CONNECTIONS ?? 16);
const top = Number(process.env.PROFILE_TOP ?? 25);

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; parent?: number; children?: number[] }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a sampled function belongs: a gridlink package, an npm package, a Node module, or V8. */
function groupOf(url: string, fn: string): string {
  const ours = /packages\/([a-z-]+)\//.exec(url);
  if (ours !== null) return `@gridlink/${ours[1]}`;
  const npm = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (npm !== null) return npm[1] as string;
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/').slice(0, 2).join('/');
  if (url.includes('/examples/') || url.includes('/bench/')) return 'the app (example, bench)';
  if (url === '') return fn.startsWith('(') ? fn : `native ${fn}`;
  return url;
}

interface Tally {
  requests: number;
  windowUs: number;
  byGroup: Map<string, number>;
  byFunction: Map<string, number>;
}

function tally(profile: CpuProfile, from: number, to: number, requests: number): Tally {
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const byGroup = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    // A sample stands for the interval up to the next one.
    const d = profile.timeDeltas[i + 1] ?? 0;
    if (t < from || t >= to) continue;
    const n = nodes.get(profile.samples[i] as number);
    if (n === undefined || n.callFrame.functionName === '(idle)') continue;
    const { url, functionName, lineNumber } = n.callFrame;
    const g = groupOf(url, functionName);
    byGroup.set(g, (byGroup.get(g) ?? 0) + d);
    const f = `${functionName || '(anonymous)'} ${g}${url === '' ? '' : `:${lineNumber + 1}`}`;
    byFunction.set(f, (byFunction.get(f) ?? 0) + d);
  }
  return { requests, windowUs: to - from, byGroup, byFunction };
}

async function load(base: string, durationS: number, tag: string): Promise<number> {
  let n = 0;
  return (await postOrders(base, connections, durationS, () => `${tag}-${n++}`)).requests.total;
}

const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
const root = await mkdtemp(join(tmpdir(), 'gridlink-profile-'));
const tallies = new Map<string, Tally>();
try {
  for (const mode of modes) {
    const dir = join(root, mode);
    const app = await startApp(mode, cluster.endpoints, undefined, ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250']);
    try {
      await load(app.base, 5, `${mode}-warm`);
      const from = (await appStats(app)).now;
      const requests = await load(app.base, seconds, mode);
      const to = (await appStats(app)).now;
      await stopApp(app); // the app exits on SIGTERM, which writes the profile
      // The main thread's profile: thread 0 in Node's file name CPU.<date>.<time>.<pid>.<thread>.<seq>
      // (tsx's loader thread writes one too).
      const main = (await readdir(dir)).find((f) => /^CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/.test(f));
      if (main === undefined) throw new Error(`${mode}: no profile of the main thread written`);
      const profile = JSON.parse(await readFile(join(dir, main), 'utf8')) as CpuProfile;
      tallies.set(mode, tally(profile, from, to, requests));
    } finally {
      if (app.proc.exitCode === null && app.proc.signalCode === null) app.proc.kill('SIGKILL');
    }
  }
} finally {
  await cluster.stop();
  await rm(root, { recursive: true, force: true });
}

const first = tallies.get(modes[0] as string)!;
const per = (t: Tally, us: number | undefined): number => (us ?? 0) / t.requests;
const fmt = (x: number): string => x.toFixed(1);
console.log(`App CPU per request by where it was spent (main thread, profiled samples; ${connections} connections, ${seconds} s after 5 s of warm-up).\n`);
console.log(table([['mode', 'requests', 'req/s', 'µs/req'], ...modes.map((m) => {
  const t = tallies.get(m)!;
  let sum = 0;
  for (const v of t.byGroup.values()) sum += v;
  return [m, t.requests, Math.round(t.requests / (t.windowUs / 1e6)), fmt(sum / t.requests)];
})]));
const groups = new Set<string>();
for (const t of tallies.values()) for (const g of t.byGroup.keys()) groups.add(g);
const groupRows = [...groups]
  .map((g) => [g, ...modes.map((m) => per(tallies.get(m)!, tallies.get(m)!.byGroup.get(g)))] as [string, ...number[]])
  .filter((r) => r.slice(1).some((v) => (v as number) >= 0.5))
  .sort((a, b) => (b[b.length - 1] as number) - (a[a.length - 1] as number));
console.log('\n' + table([['where', ...modes.map((m) => `${m} µs/req`)], ...groupRows.map((r) => [r[0], ...r.slice(1).map((v) => fmt(v as number))])]));
const last = tallies.get(modes[modes.length - 1] as string)!;
const fnRows = [...new Set([...last.byFunction.keys(), ...first.byFunction.keys()])]
  .map((f) => [f, per(first, first.byFunction.get(f)), per(last, last.byFunction.get(f))] as const)
  .sort((a, b) => b[2] - b[1] - (a[2] - a[1]))
  .slice(0, top);
console.log(`\nFunctions whose time per request grew most, ${modes[modes.length - 1]} against ${modes[0]} (self time):\n`);
console.log(table([['function', `${modes[0]} µs/req`, `${modes[modes.length - 1]} µs/req`, 'added'], ...fnRows.map(([f, a, b]) => [f, fmt(a), fmt(b), fmt(b - a)])]));
