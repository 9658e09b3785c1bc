/**
 * Soak: random faults, one after another, on a real multi-process grid while clients keep
 * working, then the same checks as the process-level tests (packages/testkit/test), over the whole
 * run: no operation failed, every acknowledged write is readable, the counter equals the
 * acknowledged increments (and the increments' results are 1..n, each returned once: a gap or a
 * repeat is reported with when it showed), lock holders never overlapped and fencing tokens only
 * grew.
 *
 * The suite runs each fault once, alone, on a cluster that was calm; this runs many, drawn at
 * random (seeded: the seed is printed and `SOAK_SEED` repeats a schedule), each as soon as the
 * previous one has healed (every node back, a member, `/health/safe`), on 3 nats-servers (R3) and
 * 4 grid nodes with one backup: a node killed (-9) and restarted empty, hung and resumed, stopped
 * gracefully and restarted, cut off from its peers (with or without NATS) and healed, cut off from NATS and healed; a
 * nats-server killed or hung; and, now and then, a node fault and a nats-server fault together.
 *
 *   pnpm bench soak                      # SOAK_SECONDS=180 by default
 *   SOAK_SECONDS=900 SOAK_SEED=42 pnpm bench soak
 *   SOAK_ONLY='two nodes stopped together|node kill' pnpm bench soak   # only these faults
 *   SOAK_PRELOAD=20000 pnpm bench soak   # that many 1 KiB entries first, so that every re-sync
 *                                        # moves data (ADR 0074); checked at the end
 *
 * Exits 1 when a check fails or the cluster did not heal within 60 s of a fault; the nodes' logs
 * (`SOAK_LOG_LEVEL`, default info) are then written to a temp directory whose path is printed
 * (also with `SOAK_KEEP_LOGS=1`), with `topology.jsonl`: every topology record of the run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { GridClient, bytesSerializer } from '@gridlink/client';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TopologyRecord as TopologyRecordT } from '@gridlink/node';
import { ProcessCluster, loopbackAliasesUsable, waitFor, type GridNodeProcess } from '@gridlink/testkit';
import { delay, table } from '../shared/measure.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 180);
const SEED = Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** Entries of 1 KiB written before the faults (in their own cache) and read back at the end. */
const PRELOAD = Number(process.env.SOAK_PRELOAD ?? 0);
const ballastValue = (i: number): Uint8Array => new Uint8Array(1024).fill(i % 251);
const WORKERS = 32;
const NODES = 4;

/** A small seeded generator (xorshift32), so a schedule can be repeated. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}
const random = rng(SEED);
const startedAt = Date.now();
/** Milliseconds since the soak started (failures and faults are stamped with it). */
const since = (): number => Date.now() - startedAt;
const between = (lo: number, hi: number): number => Math.round(lo + random() * (hi - lo));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

/** Each node's log (stderr) of its earlier runs: the kit keeps the current run's only. */
const earlierLogs = new Map<string, string[]>();
function startAgain(n: GridNodeProcess): Promise<void> {
  const logs = earlierLogs.get(n.id) ?? [];
  logs.push(n.log);
  earlierLogs.set(n.id, logs);
  return n.start();
}

/**
 * The topology, read again while the control plane answers "unavailable" (a JetStream election
 * after a nats-server fault can refuse reads for longer than one read's retries), for up to 60 s.
 */
async function topologyOf(c: ProcessCluster): Promise<Awaited<ReturnType<ProcessCluster['topology']>>> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await c.topology();
    } catch (err) {
      if ((err as { code?: unknown } | null)?.code !== 'GRID_CONTROL_PLANE_UNAVAILABLE' || Date.now() > deadline) throw err;
      await delay(250);
    }
  }
}

interface Fault {
  name: string;
  weight: number;
  /** Runs the fault and its repair; resolves once the repair was started. */
  run(c: ProcessCluster): Promise<string>;
}

const nodeFaults: Fault[] = [
  {
    name: 'node kill -9, restart empty',
    weight: 3,
    async run(c) {
      const n = pick(c.nodes);
      await n.kill();
      const gap = between(0, 2500);
      await delay(gap);
      await startAgain(n);
      return `${n.id}, restarted after ${gap} ms`;
    },
  },
  {
    name: 'node hung (SIGSTOP), resumed',
    weight: 3,
    async run(c) {
      const n = pick(c.nodes);
      const ms = between(300, 4000);
      n.hang();
      await delay(ms);
      n.resume();
      return `${n.id}, ${ms} ms`;
    },
  },
  {
    name: 'node stopped (SIGTERM), restarted',
    weight: 2,
    async run(c) {
      const n = pick(c.nodes);
      await n.stop();
      await startAgain(n);
      return n.id;
    },
  },
  {
    // ADR 0067: partitions both own are pulled by a node that stays before either goes.
    name: 'two nodes stopped together (SIGTERM), restarted',
    weight: 1,
    async run(c) {
      const a = pick(c.nodes);
      const b = pick(c.nodes.filter((n) => n !== a));
      await Promise.all([a.stop(), b.stop()]);
      await Promise.all([startAgain(a), startAgain(b)]);
      return `${a.id} and ${b.id}`;
    },
  },
  {
    name: 'node cut off from NATS, healed',
    weight: 2,
    async run(c) {
      const n = pick(c.nodes);
      const ms = between(500, 5000);
      c.isolateFromControlPlane(n.id);
      await delay(ms);
      c.healControlPlane(n.id);
      return `${n.id}, ${ms} ms`;
    },
  },
];

const partitionFaults: Fault[] = [
  {
    name: 'node cut off from its peers and NATS, healed',
    weight: 2,
    async run(c) {
      const n = pick(c.nodes);
      const ms = between(1000, 6000);
      c.isolate(n.id); // from NATS too
      await delay(ms);
      c.heal(n.id);
      return `${n.id}, ${ms} ms`;
    },
  },
  {
    name: 'node cut off from its peers (not NATS), healed',
    weight: 2,
    async run(c) {
      const n = pick(c.nodes);
      const ms = between(500, 6000);
      c.isolate(n.id, { controlPlane: false });
      await delay(ms);
      c.heal(n.id);
      return `${n.id}, ${ms} ms`;
    },
  },
  {
    name: 'two nodes cut from each other (both reach the rest), healed',
    weight: 2,
    async run(c) {
      const a = pick(c.nodes);
      const b = pick(c.nodes.filter((n) => n !== a));
      const ms = between(500, 7000);
      c.cut(a.id, b.id);
      await delay(ms);
      c.healCut(a.id, b.id);
      return `${a.id} and ${b.id}, ${ms} ms`;
    },
  },
];

const natsFaults: Fault[] = [
  {
    name: 'nats-server kill -9, restarted',
    weight: 2,
    async run(c) {
      const s = pick(c.nats.servers);
      await s.kill();
      const gap = between(0, 3000);
      await delay(gap);
      await s.start();
      return `${s.name}, restarted after ${gap} ms`;
    },
  },
  {
    name: 'nats-server hung, resumed',
    weight: 1,
    async run(c) {
      const s = pick(c.nats.servers);
      const ms = between(500, 6000);
      s.hang();
      await delay(ms);
      s.resume();
      return `${s.name}, ${ms} ms`;
    },
  },
];

const together: Fault = {
  name: 'a node fault and a nats-server fault together',
  weight: 1,
  async run(c) {
    const [a, b] = await Promise.all([pick(nodeFaults).run(c), pick(natsFaults).run(c)]);
    return `${a}; ${b}`;
  },
};

function draw(faults: Fault[]): Fault {
  const total = faults.reduce((s, f) => s + f.weight, 0);
  let r = random() * total;
  for (const f of faults) if ((r -= f.weight) < 0) return f;
  return faults[faults.length - 1]!;
}

/** 32 workers: each writes its own keys, reads its last acknowledged write back, increments one counter. */
function startLoad(client: GridClient) {
  const cache = client.cache<string, number>('soak');
  const acked = new Map<string, number>();
  const failures: string[] = [];
  let increments = 0;
  /** Each acknowledged increment's result and when it came (ms since the start), flat. */
  const counted: number[] = [];
  let ops = 0;
  let longest = 0;
  let longestAt = 0;
  let longestWhat = '';
  let stopping = false;
  const timed = async <T>(what: string, op: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await op();
    } finally {
      const took = performance.now() - t;
      if (took > longest) {
        longest = took;
        longestAt = Date.now() - took;
        longestWhat = what;
      }
      ops++;
    }
  };
  const worker = async (w: number): Promise<void> => {
    for (let n = 0; !stopping; n++) {
      const key = `w${w}-k${n % 8}`;
      try {
        await timed(`put ${key}`, () => cache.put(key, n));
        acked.set(key, n);
        const back = await timed(`get ${key}`, () => cache.get(key));
        if (back !== n) failures.push(`${since()} ms: read ${key}: ${String(back)} != ${n}`);
        const v = await timed('increment counter', () => cache.increment('counter'));
        counted.push(v, since());
        increments++;
      } catch (err) {
        failures.push(`${since()} ms: ${key}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      }
    }
  };
  const all = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));
  return {
    cache,
    ops: () => ops,
    /** Longest single operation since the last call: ms, when it started (epoch ms), which. */
    takeLongest(): { ms: number; at: number; what: string } {
      const l = { ms: longest, at: longestAt, what: longestWhat };
      longest = 0;
      return l;
    },
    async stop() {
      stopping = true;
      await all;
      return { acked, failures, increments, counted };
    },
  };
}

interface Hold {
  token: number;
  start: number;
  end: number;
}

/**
 * What the increments' results say (each acknowledged increment returns the counter after it, so
 * they are 1..n, each once): a value returned twice means an increment applied to a stale copy
 * (one was lost), a value nobody got means one applied twice (a retry not recognised). Each with
 * when it showed: the first acknowledgement that returned the value, or the one after the gap.
 */
function counterAnomalies(flat: number[]): string[] {
  const byValue = new Map<number, number[]>();
  for (let i = 0; i < flat.length; i += 2) {
    const seen = byValue.get(flat[i]!);
    if (seen) seen.push(flat[i + 1]!);
    else byValue.set(flat[i]!, [flat[i + 1]!]);
  }
  const out: string[] = [];
  const values = [...byValue.keys()].sort((a, b) => a - b);
  let expected = 1;
  for (const v of values) {
    const at = byValue.get(v)!;
    if (v > expected) out.push(`increments: ${v - expected} value(s) ${expected}..${v - 1} returned to nobody (applied twice?), next acknowledged at ${Math.min(...at)} ms`);
    if (at.length > 1) out.push(`increments: value ${v} returned ${at.length} times (a stale copy?), at ${at.join(', ')} ms`);
    expected = v + 1;
  }
  return out.slice(0, 20);
}

/** Two client processes handing one lock back and forth (the process tests' lock worker). */
function startLockers(endpoints: string[]): { holds: Hold[]; errors: string[]; stop(): Promise<void> } {
  const worker = fileURLToPath(new URL('../../packages/testkit/test/fixtures/lock-worker.mjs', import.meta.url));
  const holds: Hold[] = [];
  const errors: string[] = [];
  const procs: ChildProcess[] = [0, 1].map(() => {
    const child = spawn(process.execPath, [worker, JSON.stringify(endpoints), 'soak-lock'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, i)) as { token?: number; start?: number; end?: number; error?: string };
        buf = buf.slice(i + 1);
        if (line.error !== undefined) errors.push(`${since()} ms: ${line.error}`);
        else if (line.token !== undefined) holds.push({ token: line.token, start: line.start!, end: line.end! });
      }
    });
    return child;
  });
  // Also when this process ends some other way (an exception, Ctrl-C: the kit ends its own).
  process.once('exit', () => procs.forEach((p) => p.exitCode === null && p.signalCode === null && p.kill('SIGKILL')));
  const ended = (p: ChildProcess): Promise<void> => (p.exitCode !== null || p.signalCode !== null ? Promise.resolve() : new Promise((r) => p.once('exit', () => r())));
  return {
    holds,
    errors,
    async stop() {
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      const late = setTimeout(() => procs.forEach((p) => p.kill('SIGKILL')), 30_000);
      await Promise.all(procs.map(ended));
      clearTimeout(late);
    },
  };
}

/** Every node running, a member, nothing syncing, and every node's /health/safe 200. */
async function healed(c: ProcessCluster): Promise<void> {
  await waitFor('every node running', () => c.nodes.every((n) => n.running), 60_000);
  await c.waitForMembers(c.nodes.map((n) => n.id), 60_000);
  await c.waitForSafe(60_000);
}

const partitionable = await loopbackAliasesUsable();
const allFaults = [...nodeFaults, ...(partitionable ? partitionFaults : []), ...natsFaults, together];
// SOAK_ONLY: draw only the faults whose names contain one of these |-separated parts.
const only = process.env.SOAK_ONLY?.split('|');
const faults = only ? allFaults.filter((f) => only.some((o) => f.name.includes(o))) : allFaults;
if (faults.length === 0) throw new Error(`SOAK_ONLY=${process.env.SOAK_ONLY}: no fault's name contains any of it`);
console.log(`seed ${SEED} (SOAK_SEED=${SEED} repeats this schedule), ${SECONDS} s, ${NODES} grid nodes, 3 nats-servers (R3), ${WORKERS} workers and two lock-holding processes${partitionable ? '' : '; no network-partition faults: 127.0.1.x is not routed to loopback here'}\n`);

const logLevel = (process.env.SOAK_LOG_LEVEL ?? 'info') as 'debug' | 'info' | 'warn' | 'error';
const cluster = await ProcessCluster.start({ nodes: NODES, natsServers: 3, partitions: 64, backups: 1, http: true, partitionable, logLevel });
let exitCode = 0;
let lockers: ReturnType<typeof startLockers> | undefined;
/** Every topology record (owners, pulls, members with `-L` when leaving), written beside the logs. */
const history: string[] = [];
const recorder = await cluster.controlPlane();
const stopRecording = recorder.watch('topology', (e) => {
  if (e.type !== 'put') return;
  const t = e.value as TopologyRecordT;
  history.push(JSON.stringify({ at: since(), wall: new Date().toISOString(), v: t.version, members: Object.fromEntries(Object.entries(t.members).map(([id, m]) => [id, m.epoch.slice(0, 6) + (m.leaving ? '-L' : '')])), owners: t.owners, syncing: t.syncing, lost: t.lost }));
});
try {
  const client = await GridClient.connect({
    endpoints: cluster.endpoints,
    heartbeatInterval: 200,
    heartbeatTimeout: 1500,
    requestTimeout: 1000,
    operationTimeout: 20_000,
    reResolveInterval: 0,
  });
  const ballast = client.cache<string, Uint8Array>('ballast', { serializer: bytesSerializer });
  for (let i = 0; i < PRELOAD; i += 200) await Promise.all(Array.from({ length: Math.min(200, PRELOAD - i) }, (_, j) => ballast.put(`b${i + j}`, ballastValue(i + j))));
  if (PRELOAD > 0) console.log(`${PRELOAD} entries of 1 KiB written first`);
  const load = startLoad(client);
  const lk = startLockers(cluster.endpoints);
  lockers = lk;
  const rows: string[][] = [];
  const problems: string[] = [];
  await waitFor('load running', () => load.ops() >= 300 && lk.holds.length >= 5, 30_000);
  const end = Date.now() + SECONDS * 1000;
  for (let i = 1; Date.now() < end; i++) {
    const fault = draw(faults);
    const before = { ops: load.ops(), holds: lk.holds.length };
    load.takeLongest();
    const members = (await topologyOf(cluster))?.members ?? {};
    const t0 = Date.now();
    let what: string;
    try {
      what = await fault.run(cluster);
    } catch (err) {
      // A process that would not start again, say: the run stops here, the checks still run.
      problems.push(`fault ${i} (${fault.name}) failed: ${err instanceof Error ? err.message : String(err)}`);
      rows.push([String(i), fault.name, 'failed', '-', '-', '-', '-', '-']);
      break;
    }
    const repaired = Date.now();
    try {
      await healed(cluster);
    } catch (err) {
      problems.push(`after fault ${i} (${fault.name}: ${what}): ${err instanceof Error ? err.message : String(err)}`);
      rows.push([String(i), fault.name, what, '-', 'did not heal in 60 s', '-', '-', '-']);
      break;
    }
    const healMs = Date.now() - repaired;
    // Enough work after the fault that its aftermath is exercised too.
    await waitFor('load after the fault', () => load.ops() >= before.ops + 600 && lk.holds.length >= before.holds + 3, 45_000).catch((err: unknown) => {
      problems.push(`after fault ${i}: ${err instanceof Error ? err.message : String(err)}`);
    });
    const now = (await topologyOf(cluster))?.members ?? {};
    // Nodes that came back under another epoch: declared gone (or restarted) meanwhile.
    const rejoined = Object.keys(members).filter((id) => now[id] !== undefined && now[id].epoch !== members[id]!.epoch);
    const longest = load.takeLongest();
    rows.push([String(i), fault.name, what, String(repaired - t0), String(healMs), rejoined.join(' ') || '-', `${Math.round(longest.ms)} (${longest.what}, at ${Math.round(longest.at - t0)})`, String(load.ops() - before.ops)]);
    console.log(`${i}. at ${t0 - startedAt} ms: ${fault.name}: ${what}; healed ${healMs} ms after the repair; new epoch: ${rejoined.join(' ') || 'none'}; longest op ${Math.round(longest.ms)} ms (${longest.what}, started ${Math.round(longest.at - t0)} ms after the fault began)`);
    if (problems.length > 0) break;
  }
  const r = await load.stop();
  await lk.stop();

  // The checks, over the whole run.
  const read = async (k: string): Promise<unknown> => {
    try {
      return await load.cache.get(k);
    } catch (err) {
      return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    }
  };
  for (const [k, v] of r.acked) {
    const got = await read(k);
    if (got !== v) problems.push(`acknowledged write lost: ${k} = ${String(got)}, acknowledged ${v}`);
  }
  let ballastBad = 0;
  for (let i = 0; i < PRELOAD; i++) {
    const got = await ballast.get(`b${i}`).catch((err: unknown) => String(err));
    const want = ballastValue(i);
    if (!(got instanceof Uint8Array) || !Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(want)) {
      if (ballastBad++ < 20) problems.push(`preloaded entry b${i} lost or wrong: ${got instanceof Uint8Array ? `${got.length} bytes of ${got[0]}` : String(got)}`);
    }
  }
  if (ballastBad > 20) problems.push(`… and ${ballastBad - 20} more preloaded entries lost or wrong`);
  const counter = await read('counter');
  if (counter !== r.increments) problems.push(`counter ${String(counter)} != ${r.increments} acknowledged increments`);
  problems.push(...counterAnomalies(r.counted));
  problems.push(...r.failures.slice(0, 20).map((f) => `operation failed: ${f}`));
  if (r.failures.length > 20) problems.push(`… and ${r.failures.length - 20} more failed operations`);
  problems.push(...lk.errors.slice(0, 20).map((e) => `lock worker: ${e}`));
  const holds = [...lk.holds].sort((a, b) => a.start - b.start);
  for (let i = 1; i < holds.length; i++) {
    if (holds[i]!.start < holds[i - 1]!.end) problems.push(`lock holders overlapped: ${JSON.stringify(holds[i - 1])} and ${JSON.stringify(holds[i])}`);
    if (holds[i]!.token <= holds[i - 1]!.token) problems.push(`fencing token did not grow: ${holds[i - 1]!.token} then ${holds[i]!.token}`);
  }
  await client.close();

  console.log('');
  console.log(table([['#', 'fault', 'detail', 'fault ms', 'healed ms after repair', 'new epoch', 'longest op ms (which, start from fault)', 'ops during'], ...rows]));
  console.log(`\n${rows.length} faults, ${load.ops()} operations, ${r.acked.size} keys and ${r.increments} increments checked${PRELOAD > 0 ? `, ${PRELOAD} preloaded entries read back` : ''}, ${holds.length} lock holds`);
  if (problems.length > 0) {
    exitCode = 1;
    console.log(`\nFAILED (seed ${SEED}):`);
    for (const p of problems) console.log(`- ${p}`);
  } else console.log('no failed operation, no lost write, counter exact, lock holds exclusive with growing fencing tokens');
  if (problems.length > 0 || process.env.SOAK_KEEP_LOGS === '1') {
    // The nodes' logs, for the diagnosis (left in place on purpose: the path is printed).
    const dir = mkdtempSync(join(tmpdir(), 'gridlink-soak-'));
    for (const n of cluster.nodes) writeFileSync(join(dir, `${n.id}.log`), [...(earlierLogs.get(n.id) ?? []), n.log].join(''));
    writeFileSync(join(dir, 'topology.jsonl'), history.join('\n'));
    console.log(`\nnode logs (${logLevel}): ${dir}`);
  }
} finally {
  stopRecording();
  await lockers?.stop();
  await cluster.close();
}
// Exits explicitly: after a failed run, Node 20 was seen spinning at full CPU in its exit-time
// handle cleanup (node::Environment::CleanupHandles, in perf) with every JavaScript task done.
process.exit(exitCode);
