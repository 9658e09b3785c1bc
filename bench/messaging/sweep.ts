/**
 * What a JobWorker's backstop sweep (`worker.sweep()`, every `sweepIntervalMs`, 30 s by default)
 * costs for a queue holding many finished jobs (kept `retainFinishedMs`, a day by default) and a
 * few unfinished ones: time per sweep and grid operations per sweep (the client's own count).
 *
 *   pnpm --filter @gridlink/messaging build, then
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/messaging/sweep.ts
 *   (MSG_SWEEP_FINISHED=20000 MSG_SWEEP_OPEN=100 MSG_SWEEP_ROUNDS=5)
 *
 * The grid is three nodes in another process (backups 1); nats-server on 127.0.0.1. Both are
 * stopped by pid at the end.
 */
import { pathToFileURL } from 'node:url';
import { GridClient } from '@gridlink/client';
import { JobQueue } from '@gridlink/messaging';
import { connect } from '@nats-io/transport-node';
import { NatsCluster } from '@gridlink/testkit';
import { startCluster } from '../shared/processes.js';
import { table } from '../shared/measure.js';

const FINISHED = Number(process.env.MSG_SWEEP_FINISHED ?? 20_000);
const OPEN = Number(process.env.MSG_SWEEP_OPEN ?? 100);
const ROUNDS = Number(process.env.MSG_SWEEP_ROUNDS ?? 5);

export async function sweepBench(natsUrl: string, endpoints: string[]): Promise<string> {
  const nc = await connect({ servers: natsUrl });
  const grid = await GridClient.connect({ endpoints });
  const wGrid = await GridClient.connect({ endpoints });
  try {
    const queue = new JobQueue({ grid, nats: nc, queue: 'sweepbench' });
    // Finish FINISHED jobs through a worker (their records stay for retainFinishedMs).
    const runner = queue.worker(() => null, { concurrency: 256, sweepIntervalMs: 0 });
    let done = 0;
    const allDone = new Promise<void>((r) => runner.on('completed', () => void (++done === FINISHED && r())));
    await runner.start();
    for (let i = 0; i < FINISHED; i += 500) {
      await Promise.all(Array.from({ length: Math.min(500, FINISHED - i) }, (_, j) => queue.submit(`done-${i + j}`, { i: i + j })));
    }
    await allDone;
    await runner.close();
    // OPEN unfinished jobs, not due for an hour (nobody claims them during the measurement).
    await Promise.all(Array.from({ length: OPEN }, (_, j) => queue.submit(`open-${j}`, { j }, { delayMs: 3_600_000 })));

    // The measured worker: its own client, so its operations are counted alone.
    const wq = new JobQueue({ grid: wGrid, nats: nc, queue: 'sweepbench' });
    const worker = wq.worker(() => null, { sweepIntervalMs: 0 });
    const s0 = performance.now();
    await worker.start();
    const startMs = performance.now() - s0;
    const times: number[] = [];
    const ops: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const o0 = wGrid.stats().operations;
      const t0 = performance.now();
      await worker.sweep();
      times.push(performance.now() - t0);
      ops.push(wGrid.stats().operations - o0);
    }
    await worker.close();
    await wq.close();
    await queue.close();
    times.sort((a, b) => a - b);
    const header = `JobWorker.sweep(): ${FINISHED} finished jobs retained, ${OPEN} unfinished; grid: 3 nodes (one process), backups 1; ${ROUNDS} sweeps.\n\n`;
    return (
      header +
      table([
        ['start() ms', 'sweep ms (median)', 'sweep ms (min / max)', 'grid ops per sweep'],
        [Math.round(startMs), Math.round(times[Math.floor(times.length / 2)]!), `${Math.round(times[0]!)} / ${Math.round(times[times.length - 1]!)}`, ops.join(', ')],
      ])
    );
  } finally {
    await wGrid.close();
    await grid.close();
    await nc.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const nats = await NatsCluster.start();
  const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 256 });
  try {
    console.log(await sweepBench(nats.urls[0]!, cluster.endpoints));
  } finally {
    await cluster.stop();
    await nats.close();
  }
}
