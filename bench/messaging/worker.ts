/**
 * One worker process of the messaging benchmark, in one of three modes:
 *   gridlink  — a @gridlink/messaging JobWorker (grid lock lease 1.5 s, the default)
 *   bullmq    — a BullMQ Worker on redis-server (stalled-job settings from the environment)
 *   jetstream — a pull consumer on a JetStream stream (redelivery on AckWait alone)
 * Each job: print {ev:"start"}, hold for HOLD_MS, print {ev:"applied"} (the job's effect), finish.
 * A SIGKILLed worker prints nothing more, so a job "applied" twice was run to the end twice.
 */
import { GridClient } from '@gridlink/client';
import { JobQueue } from '@gridlink/messaging';
import { connect } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Worker } from 'bullmq';

const env = (k: string, d?: string): string => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`missing ${k}`);
  return v;
};
const id = env('WORKER_ID');
const hold = Number(env('HOLD_MS', '0'));
const concurrency = Number(env('CONCURRENCY', '16'));
const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ w: id, at: Date.now(), ...o })}\n`);
const work = async (jobId: string): Promise<void> => {
  out({ ev: 'start', jobId });
  if (hold > 0) await new Promise((r) => setTimeout(r, hold));
  out({ ev: 'applied', jobId });
};

const mode = env('MODE');
if (mode === 'gridlink') {
  const grid = await GridClient.connect({ endpoints: env('GRID_ENDPOINTS').split(','), heartbeatInterval: 200, heartbeatTimeout: 1000 });
  const nc = await connect({ servers: env('NATS_URL') });
  const q = new JobQueue({ grid, nats: nc, queue: env('QUEUE') });
  const w = q.worker(async (ctx) => work(ctx.jobId), { workerId: id, concurrency });
  await w.start();
} else if (mode === 'bullmq') {
  const opts: Record<string, number> = {};
  if (process.env.LOCK_DURATION) opts.lockDuration = Number(process.env.LOCK_DURATION);
  if (process.env.STALLED_INTERVAL) opts.stalledInterval = Number(process.env.STALLED_INTERVAL);
  const w = new Worker(env('QUEUE'), async (job) => work(String(job.id)), {
    connection: { host: '127.0.0.1', port: Number(env('REDIS_PORT')), maxRetriesPerRequest: null },
    concurrency,
    ...opts,
  });
  await w.waitUntilReady();
} else if (mode === 'jetstream') {
  const nc = await connect({ servers: env('NATS_URL') });
  const c = await jetstream(nc).consumers.get(env('STREAM'), 'workers');
  const msgs = await c.consume({ max_messages: concurrency });
  void (async () => {
    for await (const m of msgs) {
      void work(m.headers?.get('Nats-Msg-Id') ?? String(m.seq)).then(() => m.ack());
    }
  })();
} else {
  throw new Error(`unknown MODE ${mode}`);
}
out({ ev: 'ready' });
