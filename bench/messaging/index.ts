/**
 * Messaging benchmark: @gridlink/messaging single jobs beside BullMQ (redis-server) and JetStream.
 *
 *   1. jobs/s with three worker processes (trivial handler)
 *   2. resume latency: SIGKILL the worker running a job; time until another worker starts it
 *      — gridlink with default settings (1.5 s lease), BullMQ with its default stalled-job settings
 *        (lockDuration 30 s, stalledInterval 30 s) and tuned (lockDuration 1 s, stalledInterval
 *        500 ms), JetStream redelivery on AckWait alone (default 30 s)
 *   3. double applications: jobs whose effect ran to the end more than once
 *   4. idempotent consumers over JetStream: messages/s and grid operations per message, fresh
 *      ids and duplicates (bench/messaging/idempotent.ts)
 *
 * Every process runs on 127.0.0.1; each is killed by pid at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { GridClient } from '@gridlink/client';
import { JobQueue } from '@gridlink/messaging';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import { Queue } from 'bullmq';
import { NatsCluster } from '@gridlink/testkit';
import { startCluster, startRedis } from '../shared/processes.js';
import { idempotentBench } from './idempotent.js';
import { percentile, table } from '../shared/measure.js';

const here = dirname(fileURLToPath(import.meta.url));
const THROUGHPUT_JOBS = Number(process.env.MSG_BENCH_JOBS ?? 2000);
/** Jobs run through the same workers before the measured ones (JIT warm-up of every process). */
const WARM_JOBS = Number(process.env.MSG_BENCH_WARM_JOBS ?? 1000);
const HOLD_MS = 2000;
const quick = process.env.MSG_BENCH_QUICK === '1';

interface Line {
  w: string;
  at: number;
  ev: string;
  jobId?: string;
}

const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) process.kill(p.pid, 'SIGKILL');
});

class WorkerProc {
  readonly lines: Line[] = [];
  private readonly waiters = new Set<() => void>();
  constructor(
    readonly id: string,
    readonly proc: ChildProcess,
  ) {
    started.add(proc);
    proc.once('exit', () => started.delete(proc));
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      try {
        this.lines.push(JSON.parse(l) as Line);
      } catch {
        return;
      }
      for (const w of this.waiters) w();
    });
  }
  static spawn(id: string, env: Record<string, string>): WorkerProc {
    const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'worker.ts')], {
      env: { ...process.env, ...env, WORKER_ID: id },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return new WorkerProc(id, proc);
  }
  onLine(f: () => void): () => void {
    this.waiters.add(f);
    return () => this.waiters.delete(f);
  }
  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null || this.proc.pid === undefined) return;
    const exited = once(this.proc, 'exit');
    process.kill(this.proc.pid, 'SIGKILL');
    await exited;
  }
}

/** Resolves when pred holds over the workers' lines (checked on every new line), or rejects. */
function until<T>(workers: WorkerProc[], pred: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const offs: (() => void)[] = [];
    const done = (): void => offs.forEach((o) => o());
    const check = (): void => {
      const v = pred();
      if (v !== undefined) {
        clearTimeout(timer);
        done();
        resolve(v);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    for (const w of workers) offs.push(w.onLine(check));
    check();
  });
}

interface System {
  name: string;
  env: Record<string, string>;
  submit(ids: string[]): Promise<void>;
  resumeTrials: number;
  resumeTimeoutMs: number;
  reset?(): Promise<void>;
}

async function throughput(sys: System, prefix: string): Promise<number> {
  const workers = [1, 2, 3].map((i) => WorkerProc.spawn(`${prefix}-t${i}`, { ...sys.env, HOLD_MS: '0' }));
  try {
    await until(workers, () => (workers.every((w) => w.lines.some((l) => l.ev === 'ready')) ? true : undefined), 30_000, 'workers ready');
    const applied = new Set<string>();
    const run = async (ids: string[]): Promise<number> => {
      const t0 = Date.now();
      await sys.submit(ids);
      await until(
        workers,
        () => {
          for (const w of workers) for (const l of w.lines) if (l.ev === 'applied' && l.jobId) applied.add(l.jobId);
          return ids.every((id) => applied.has(id)) ? true : undefined;
        },
        120_000,
        `${ids.length} jobs`,
      );
      return (ids.length / (Date.now() - t0)) * 1000;
    };
    // Warm-up: fresh worker processes run their first jobs with code V8 has not optimized yet.
    if (WARM_JOBS > 0) await run(Array.from({ length: WARM_JOBS }, (_, i) => `${prefix}-w${i}`));
    return await run(Array.from({ length: THROUGHPUT_JOBS }, (_, i) => `${prefix}-${i}`));
  } finally {
    for (const w of workers) await w.kill();
  }
}

async function resume(sys: System, prefix: string): Promise<{ resumes: number[]; doubles: number; lost: number }> {
  const slots = [1, 2, 3].map((i) => WorkerProc.spawn(`${prefix}-r${i}-0`, { ...sys.env, HOLD_MS: String(HOLD_MS) }));
  const all = [...slots];
  const resumes: number[] = [];
  let lost = 0;
  try {
    await until(all, () => (slots.every((w) => w.lines.some((l) => l.ev === 'ready')) ? true : undefined), 30_000, 'workers ready');
    for (let t = 0; t < sys.resumeTrials; t++) {
      const jobId = `${prefix}-job-${t}`;
      await sys.submit([jobId]);
      const owner = await until(all, () => all.find((w) => w.lines.some((l) => l.ev === 'start' && l.jobId === jobId)), 30_000, `${jobId} to start`);
      const killedAt = Date.now();
      await owner.kill();
      try {
        const resumedAt = await until(
          all,
          () => {
            for (const w of all) {
              if (w === owner) continue;
              const l = w.lines.find((x) => x.ev === 'start' && x.jobId === jobId);
              if (l) return l.at;
            }
            return undefined;
          },
          sys.resumeTimeoutMs,
          `${jobId} to resume`,
        );
        resumes.push(resumedAt - killedAt);
        await until(all, () => (all.some((w) => w.lines.some((l) => l.ev === 'applied' && l.jobId === jobId)) ? true : undefined), 30_000, `${jobId} applied`);
      } catch {
        lost++;
      }
      const slot = slots.indexOf(owner);
      const fresh = WorkerProc.spawn(`${prefix}-r${slot + 1}-${t + 1}`, { ...sys.env, HOLD_MS: String(HOLD_MS) });
      slots[slot] = fresh;
      all.push(fresh);
      await until([fresh], () => (fresh.lines.some((l) => l.ev === 'ready') ? true : undefined), 30_000, 'replacement ready');
    }
    const applied = new Map<string, number>();
    for (const w of all) for (const l of w.lines) if (l.ev === 'applied' && l.jobId) applied.set(l.jobId, (applied.get(l.jobId) ?? 0) + 1);
    const doubles = [...applied.values()].filter((n) => n > 1).length;
    return { resumes, doubles, lost };
  } finally {
    for (const w of all) await w.kill();
  }
}

const fmtMs = (xs: number[]): string => (xs.length === 0 ? '—' : `${Math.round(percentile(xs, 50))} / ${Math.round(Math.max(...xs))}`);

// One JetStream nats-server (the test kit's: ended by pid, store removed, also on a crash).
const nats = await NatsCluster.start();
const natsUrl = nats.urls[0]!;
const redis = await startRedis();
const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 256 });
const closers: (() => Promise<unknown>)[] = [];
try {
  const grid = await GridClient.connect({ endpoints: cluster.endpoints });
  closers.push(() => grid.close());
  const nc: NatsConnection = await connect({ servers: natsUrl });
  closers.push(() => nc.close());
  const jq = new JobQueue({ grid, nats: nc, queue: 'bench' });
  const gridlink: System = {
    name: 'gridlink (lease 1.5 s, default)',
    env: { MODE: 'gridlink', GRID_ENDPOINTS: cluster.endpoints.join(','), NATS_URL: natsUrl, QUEUE: 'bench' },
    async submit(ids) {
      for (let i = 0; i < ids.length; i += 200) await Promise.all(ids.slice(i, i + 200).map((id) => jq.submit(id, {})));
    },
    resumeTrials: quick ? 2 : 5,
    resumeTimeoutMs: 15_000,
  };

  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.add({ name: 'BENCH', subjects: ['bench.jobs'], storage: StorageType.File });
  // Only options nats-server 2.9 understands (no metadata, filter_subjects, pause, priority groups).
  await jsm.consumers.add('BENCH', { durable_name: 'workers', ack_policy: AckPolicy.Explicit, ack_wait: nanos(30_000), max_ack_pending: 1000 });
  const jetstreamSys: System = {
    name: 'JetStream (AckWait 30 s, default)',
    env: { MODE: 'jetstream', NATS_URL: natsUrl, STREAM: 'BENCH' },
    async submit(ids) {
      for (let i = 0; i < ids.length; i += 200) await Promise.all(ids.slice(i, i + 200).map((id) => js.publish('bench.jobs', '{}', { msgID: id })));
    },
    resumeTrials: 1,
    resumeTimeoutMs: 60_000,
  };

  const systems: System[] = [gridlink];
  if (redis) {
    closers.push(() => redis.stop());
    const connection = { host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: null };
    const mk = (qname: string): Queue => {
      const q = new Queue(qname, { connection });
      closers.push(() => q.close());
      return q;
    };
    const qd = mk('bench-default');
    const qt = mk('bench-tuned');
    const addAll = async (q: Queue, ids: string[]): Promise<void> => {
      for (let i = 0; i < ids.length; i += 500) await q.addBulk(ids.slice(i, i + 500).map((id) => ({ name: 'j', data: {}, opts: { jobId: id } })));
    };
    systems.push({
      name: 'BullMQ (defaults: lockDuration 30 s, stalledInterval 30 s)',
      env: { MODE: 'bullmq', REDIS_PORT: String(redis.port), QUEUE: 'bench-default' },
      submit: (ids) => addAll(qd, ids),
      resumeTrials: 1,
      resumeTimeoutMs: 100_000,
    });
    systems.push({
      name: 'BullMQ (tuned: lockDuration 1 s, stalledInterval 500 ms)',
      env: { MODE: 'bullmq', REDIS_PORT: String(redis.port), QUEUE: 'bench-tuned', LOCK_DURATION: '1000', STALLED_INTERVAL: '500' },
      submit: (ids) => addAll(qt, ids),
      resumeTrials: quick ? 2 : 5,
      resumeTimeoutMs: 15_000,
    });
  } else {
    console.log('redis-server not found: BullMQ rows skipped');
  }
  systems.push(jetstreamSys);

  const rows: (string | number)[][] = [['system', 'jobs/s (3 workers)', 'resume after SIGKILL ms (median / max)', 'trials', 'not resumed', 'double applications']];
  let n = 0;
  const only = process.env.MSG_BENCH_SYSTEMS?.split(',');
  for (const sys of systems) {
    if (only && !only.includes(sys.env.MODE!)) continue;
    const tput = await throughput(sys, `s${n}-tp`);
    const r = await resume(sys, `s${n}-rs`);
    rows.push([sys.name, Math.round(tput), fmtMs(r.resumes), r.resumes.length + r.lost, r.lost, r.doubles]);
    n++;
    console.error(`done: ${sys.name}`);
  }
  console.log(`Jobs/s: ${THROUGHPUT_JOBS} trivial jobs, after ${WARM_JOBS} warm-up jobs through the same workers, three worker processes (concurrency 16 each). Resume: a job holding ${HOLD_MS} ms; its worker is SIGKILLed as soon as it starts; time until another worker starts it.\n`);
  console.log(table(rows));
  console.log('\nIdempotent consumers (bench/messaging/idempotent.ts):\n');
  console.log(await idempotentBench(natsUrl, cluster.endpoints, cluster.proc.pid!));
} finally {
  for (const c of closers.reverse()) await c().catch(() => undefined);
  await cluster.stop();
  await nats.close();
}
