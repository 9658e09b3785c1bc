/**
 * A payments worker: runs "transfer" jobs. Each job debits, checkpoints, credits. Each ledger write
 * is keyed by the job id (written only if absent), so a run that repeats a step after a takeover
 * does not apply it twice; the checkpoint is fenced, so a worker that lost the job can never
 * write over the one that took it.
 *
 *   pnpm messaging:worker          (start two or three; kill one but the first, which hosts the
 *                                   embedded grid, with kill -9 while jobs run; docs/messaging.md)
 */
import { JobQueue } from '@gridlink/messaging';
import { gridOrStart, nats, QUEUE } from './shared.js';

interface Transfer {
  from: string;
  to: string;
  amount: number;
}

const { grid, cluster } = await gridOrStart();
const nc = await nats();
const queue = new JobQueue({ grid, nats: nc, queue: QUEUE });
const ledger = grid.cache<string, number>('example.ledger');
// A ledger entry per (job, account, side): written once whatever happens.
const post = (key: string, amount: number): Promise<boolean> => ledger.putIfAbsent(key, amount);
const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const worker = queue.worker<Transfer, { ok: true }>(
  async (ctx) => {
    const { from, to, amount } = ctx.payload;
    const step = ctx.hasCheckpoint ? (ctx.lastCheckpoint as { step: string }).step : 'start';
    if (ctx.takenOverFrom) console.log(`${ctx.jobId}: taking over from ${ctx.takenOverFrom} at step "${step}" (token ${ctx.fencingToken})`);
    if (step === 'start') {
      await wait(300); // pretend to call a bank
      await post(`${ctx.jobId}:debit:${from}`, -amount);
      await ctx.checkpoint({ step: 'debited' });
    }
    await wait(300);
    await post(`${ctx.jobId}:credit:${to}`, amount);
    return { ok: true };
  },
  {
    concurrency: 4,
    onDeadLetter: (job) => console.error(`dead letter: ${job.id}: ${job.error?.message ?? ''}`),
  },
);
worker.on('claimed', (e) => console.log(`claimed ${e.jobId} (attempt ${e.attempt}, token ${e.fencingToken})`));
worker.on('completed', (e) => console.log(`completed ${e.jobId}`));
worker.on('lost', (e) => console.log(`lost ${e.jobId}: ${e.reason}`));
await worker.start();
console.log(`worker ${worker.workerId} ready${cluster ? ' (hosting the embedded grid: keep this one running)' : ''}`);

const stop = async (): Promise<void> => {
  await worker.close();
  await queue.close();
  await nc.close();
  await grid.close();
  await cluster?.stop();
  process.exit(0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
