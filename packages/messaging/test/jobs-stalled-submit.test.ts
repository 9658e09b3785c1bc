/**
 * A submit that stalls between writing its index entry and creating its record, for longer than a
 * sweep waits before it takes an entry without a record for a leftover (a child process whose
 * clock jumps, its grid links held apart by fault proxies; a real grid and nats-server).
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FaultProxy } from '@gridlink/testkit';
import { JobQueue } from '@gridlink/messaging';
import { Child, waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const SUBMITTER = fileURLToPath(new URL('./fixtures/stalled-submit.ts', import.meta.url));
/** The sweep's grace for an entry without a record is 5 minutes; the stall is longer. */
const STALL_MS = 6 * 60_000;

describe('jobs: a submit stalled between its two writes (real grid, nats-server, child process)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  it('a sweep that removed the entry meanwhile (old, no record yet) does not leave the job out of the index: the submit writes it again', async () => {
    const g = await grid();
    const queue = env.closeAfter(new JobQueue({ grid: g, nats: await natsConn(), queue: 'stalled' }));
    const worker = env.closeAfter(queue.worker(async () => undefined, { sweepIntervalMs: 0 }));
    await worker.start();
    const index = g.cache<string, number>('gridlink.jobs.stalled.unfinished');
    const records = g.cache<string, Uint8Array>('gridlink.jobs.stalled');

    const proxies = await Promise.all(env.cluster.nodeIds.map((id) => FaultProxy.start({ target: env.cluster.endpointOf(id) })));
    closers.push(async () => {
      for (const p of proxies) await p.close();
    });
    const child = Child.spawn(
      SUBMITTER,
      { GRID_ENDPOINTS: proxies.map((p) => p.endpoint).join(','), NATS_URL: env.nats.url, QUEUE: 'stalled', JOB_ID: 'late-1', CLOCK_BEHIND_MS: String(STALL_MS) },
      'submitter',
      ROOT,
    );
    closers.push(() => child.kill());
    await child.waitFor((l): l is { ev: 'ready' } => (l as { ev?: string }).ev === 'ready', 30_000);
    // Each request and answer of the submitter now takes a second: its entry is written a second
    // in, its record three.
    for (const p of proxies) p.delay(1000);
    process.kill(child.proc.pid!, 'SIGUSR2');
    await waitUntil(async () => (await index.get('late-1')) !== undefined, 10_000, 'the entry written');
    expect(await records.get('late-1')).toBeUndefined();
    // The entry's value is the record's createdAt, six minutes old by every clock but the
    // submitter's stalled one; no record yet: a sweep takes it for a leftover.
    await worker.sweep();
    expect(await index.get('late-1')).toBeUndefined();
    expect(await records.get('late-1')).toBeUndefined();

    const done = await child.waitFor((l): l is { ev: 'submitted'; created: boolean; createdAt: number } => (l as { ev?: string }).ev === 'submitted', 20_000);
    expect(done.created).toBe(true);
    // The submit saw that its two writes were minutes apart and wrote the entry again, with a
    // value of its own time: the sweeps keep it, since its record is unfinished.
    const entry = await index.get('late-1');
    expect(entry).toBeDefined();
    expect(entry).not.toBe(done.createdAt);
    await worker.sweep();
    expect(await index.get('late-1')).toBe(entry);
    expect((await queue.status('late-1')).state).toBe('pending');
  });
});
