/**
 * What a job worker remembers of notices about jobs it may claim stays bounded, with a real grid
 * and nats-server.
 */
import { describe, expect, it } from 'vitest';
import { JobQueue } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('job worker memory', () => {
  const env = messagingEnv();
  const { grid, natsConn, closeAfter } = env;
  const enc = new TextEncoder();

  it('a flood of submitted notices while every slot is busy keeps at most 100,000 candidates', async () => {
    const queue = 'flood';
    const nc = await natsConn();
    const q = closeAfter(new JobQueue({ grid: await grid(), nats: nc, queue }));
    const { gate } = env.gate();
    const w = closeAfter(
      q.worker(
        async () => {
          await gate;
        },
        { concurrency: 1, sweepIntervalMs: 0, closeTimeoutMs: 0 },
      ),
    );
    let claimed = false;
    w.once('claimed', () => (claimed = true));
    await w.start();
    await q.submit('busy', null);
    await waitUntil(() => claimed, 10_000, 'the busy job claimed');
    // Anyone who can publish on the queue's subjects: 120,000 ids no job has, each due now. The
    // worker, busy, cannot claim them; it remembered each one (about 100 bytes apiece, without
    // bound: a million notices, a hundred megabytes in every worker).
    const attacker = await natsConn();
    for (let i = 0; i < 120_000; i++) attacker.publish(`gridlink.jobs.${queue}.submitted`, enc.encode(JSON.stringify({ t: 'submitted', id: `forged-${i}`, notBefore: 0 })));
    await attacker.flush();
    await nc.flush();
    const candidates = (w as unknown as { candidates: Map<string, number> }).candidates;
    expect(candidates.size).toBeGreaterThan(0);
    expect(candidates.size).toBeLessThanOrEqual(100_000);
  }, 60_000);
});
