/**
 * A job worker's close() while its grid does not answer, with a real grid (reached through fault
 * proxies) and nats-server.
 */
import { describe, expect, it } from 'vitest';
import { JobQueue } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('job worker close() with the grid blackholed', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn, closeAfter, proxiedGrid } = env;

  it('releases the jobs still running at once, not one grid timeout after another', async () => {
    const queue = 'close-blackholed';
    const jobs = 6;
    // The proxied client gives an operation up after 1 s.
    const { gw, proxies } = await proxiedGrid();
    const q = closeAfter(new JobQueue({ grid: gw, nats: await natsConn(), queue }));
    const submitter = closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue }));
    const { gate } = env.gate();
    let started = 0;
    // Handlers that do not stop on their signal: close() gives up on them after closeTimeoutMs.
    const w = q.worker(
      async () => {
        started++;
        await gate;
      },
      { concurrency: jobs, closeTimeoutMs: 200, leaseMs: 5000 },
    );
    closers.push(() => w.close());
    w.on('error', () => undefined);
    await w.start();
    for (let i = 0; i < jobs; i++) await submitter.submit(`c-${i}`, null);
    await waitUntil(() => started === jobs, 10_000, 'every job running');
    for (const p of proxies) p.blackhole(true);
    const t0 = Date.now();
    await w.close();
    const took = Date.now() - t0;
    // closeTimeoutMs (200 ms), then each release given up after the client's 1 s: about 1.2 s
    // when released together. Before, the releases went one after another: 6 × 1 s and more.
    expect(took).toBeLessThan(3000);
  });
});
