/**
 * Submits transfers and prints their results. Submitting the same job id again returns the
 * existing job: run it twice and nothing is transferred twice.
 *
 *   pnpm messaging:submit [count]
 */
import { JobQueue } from '@gridlink/messaging';
import { connectGrid, nats, QUEUE } from './shared.js';

const arg = process.argv[2] ?? '10';
const count = Number(arg);
if (!/^\d+$/.test(arg) || count < 1 || count > 10_000) {
  // Number('ten') is NaN: it used to submit nothing and exit 0.
  console.error(`usage: pnpm messaging:submit [count]   (count: 1 to 10000 transfers, default 10; got "${arg}")`);
  process.exit(2);
}
const grid = await connectGrid();
const nc = await nats();
const queue = new JobQueue({ grid, nats: nc, queue: QUEUE });
const ids = Array.from({ length: count }, (_, i) => `transfer-${i}`);
for (const [i, id] of ids.entries()) {
  const r = await queue.submit(id, { from: `acct-${i}`, to: `acct-${i + 1}`, amount: 10 + i });
  console.log(`${id}: ${r.created ? 'submitted' : `already ${r.status.state}`}`);
}
for (const id of ids) {
  const st = await queue.result(id, { waitMs: 60_000 }).then(
    () => queue.status(id),
    (e: unknown) => {
      console.error(`${id}: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    },
  );
  if (st) console.log(`${id}: ${st.state} after ${st.attempt} run(s), token ${st.fencingToken}`);
}
await queue.close();
await nc.close();
await grid.close();
