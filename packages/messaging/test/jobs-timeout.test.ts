/**
 * Per-job timeouts (`jobTimeoutMs`), with a real grid and nats-server: a hanging handler is timed
 * out, its run counts as a failed attempt, the job is retried and dead-lettered per maxAttempts;
 * what the timed-out handler does afterwards changes nothing.
 */
import { describe, expect, it } from 'vitest';
import { JobFailedError, JobQueue, JobTimeoutError, MessagingConfigError, type JobStatus } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('job timeouts (real grid and nats-server)', () => {
  const env = messagingEnv();
  const { grid, natsConn, closeAfter } = env;

  async function queue(name: string, extra: { jobTimeoutMs?: number; maxAttempts?: number } = {}): Promise<JobQueue> {
    return closeAfter(new JobQueue({ grid: await grid(), nats: await natsConn(), queue: name, ...extra }));
  }

  it('a hanging handler is timed out (signal aborted with JobTimeoutError), retried, and dead-lettered once after maxAttempts; its slot is freed; late resolutions change nothing', async () => {
    const q = await queue('to-hang', { jobTimeoutMs: 300 });
    const { gate, open } = env.gate();
    const aborts: unknown[] = [];
    const runs: { attempt: number; at: number }[] = [];
    const dead: JobStatus[] = [];
    const failed: { final: boolean; code: string | undefined; message: string }[] = [];
    const completed: string[] = [];
    const lateCheckpoints: unknown[] = [];
    const w = closeAfter(
      q.worker(
        async (ctx) => {
          if (ctx.jobId !== 'hang-1') return 'quick';
          runs.push({ attempt: ctx.attempt, at: Date.now() });
          ctx.signal.addEventListener('abort', () => aborts.push(ctx.signal.reason), { once: true });
          // Ignores its signal: hangs until the test opens the gate, then "succeeds".
          await gate;
          lateCheckpoints.push(await ctx.checkpoint({ late: ctx.attempt }).catch((e: unknown) => e));
          return `late ${ctx.attempt}`;
        },
        { concurrency: 1, retry: { initialDelayMs: 50, jitter: false }, onDeadLetter: (j) => void dead.push(j), closeTimeoutMs: 100 },
      ),
    );
    w.on('failed', (e) => failed.push({ final: e.final, code: e.error.code, message: e.error.message }));
    w.on('completed', (e) => completed.push(e.jobId));
    await w.start();
    await q.submit('hang-1', null, { maxAttempts: 3 });
    const err = await q.result('hang-1', { waitMs: 15_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).error).toEqual({ name: 'JobTimeoutError', message: 'job hang-1: the handler timed out after 300 ms', code: 'JOB_TIMEOUT' });
    expect(runs.map((r) => r.attempt)).toEqual([1, 2, 3]);
    // Each run lasted the timeout (then the backoff): not less.
    expect(runs[1]!.at - runs[0]!.at).toBeGreaterThanOrEqual(300);
    expect(aborts).toHaveLength(3);
    expect(aborts.every((a) => a instanceof JobTimeoutError && a.timeoutMs === 300)).toBe(true);
    expect(failed).toEqual([
      { final: false, code: 'JOB_TIMEOUT', message: 'job hang-1: the handler timed out after 300 ms' },
      { final: false, code: 'JOB_TIMEOUT', message: 'job hang-1: the handler timed out after 300 ms' },
      { final: true, code: 'JOB_TIMEOUT', message: 'job hang-1: the handler timed out after 300 ms' },
    ]);
    await waitUntil(() => dead.length === 1, 5000, 'the dead-letter hook');
    expect(dead[0]!.state).toBe('failed');
    expect(dead[0]!.failures).toBe(3);
    expect(dead[0]!.jobTimeoutMs).toBe(300);
    // The three handlers still hang, yet the worker's one slot is free: another job runs.
    expect(w.active).toEqual([]);
    await q.submit('after', null);
    expect(await q.result('after', { waitMs: 10_000 })).toBe('quick');
    const before = await q.status('hang-1');
    // The hung handlers resolve now: their checkpoints are refused, their results ignored.
    open();
    await waitUntil(() => lateCheckpoints.length === 3, 5000, 'the late checkpoints');
    expect(lateCheckpoints.every((e) => e instanceof JobTimeoutError)).toBe(true);
    await new Promise((r) => setImmediate(r));
    const after = await q.status('hang-1');
    expect(after).toEqual(before);
    expect(after.hasCheckpoint).toBe(false);
    expect(completed).toEqual(['after']);
    expect(dead).toHaveLength(1);
  });

  it('a run that times out is retried on another run, which completes; the late result of the first does not overwrite it', async () => {
    // The submit's jobTimeoutMs wins over the queue's.
    const q = await queue('to-retry', { jobTimeoutMs: 60_000 });
    const { gate, open } = env.gate();
    let firstDone = false;
    const tokens: number[] = [];
    const w = closeAfter(
      q.worker(
        async (ctx) => {
          tokens.push(ctx.fencingToken);
          if (ctx.attempt === 1) {
            await gate;
            firstDone = true;
            return 'late';
          }
          return 'second';
        },
        { retry: { initialDelayMs: 10, jitter: false }, closeTimeoutMs: 100 },
      ),
    );
    await w.start();
    const { status } = await q.submit('retry-1', null, { maxAttempts: 2, jobTimeoutMs: 200 });
    expect(status.jobTimeoutMs).toBe(200);
    expect(await q.result('retry-1', { waitMs: 10_000 })).toBe('second');
    const done = await q.status('retry-1');
    expect(done).toMatchObject({ state: 'completed', attempt: 2, failures: 1, fencingToken: tokens[1] });
    open();
    await waitUntil(() => firstDone, 5000, 'the first run to resolve');
    await new Promise((r) => setTimeout(r, 0));
    expect(await q.status('retry-1')).toEqual(done);
  });

  it('no timeout by default, and a submit can ask for none; bad values are MessagingConfigErrors naming the field', async () => {
    const q = await queue('to-none', { jobTimeoutMs: 100 });
    const plain = await queue('to-plain');
    expect((await plain.submit('p-1', null)).status.jobTimeoutMs).toBeNull();
    expect((await q.submit('n-1', null, { jobTimeoutMs: null })).status.jobTimeoutMs).toBeNull();
    expect((await q.submit('d-1', null)).status.jobTimeoutMs).toBe(100);
    const w = closeAfter(
      q.worker(async (ctx) => {
        if (ctx.jobId === 'n-1') await new Promise((r) => setTimeout(r, 400));
        return ctx.jobId;
      }),
    );
    await w.start();
    expect(await q.result('n-1', { waitMs: 10_000 })).toBe('n-1');
    const g = await grid();
    const nats = await natsConn();
    const field = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        if (e instanceof MessagingConfigError) return e.field;
        throw e;
      }
      return undefined;
    };
    for (const bad of [0, -1, 1.5, 2 ** 31, 'x', null, Number.NaN]) {
      expect(field(() => new JobQueue({ grid: g, nats, jobTimeoutMs: bad as number }))).toBe('jobTimeoutMs');
    }
    for (const bad of [0, 1.5, 2 ** 31, 'x']) {
      await expect(q.submit('bad', null, { jobTimeoutMs: bad as number })).rejects.toMatchObject({ field: 'jobTimeoutMs' });
    }
    expect(field(() => new JobQueue({ grid: g, nats, jobTimeoutMs: 2 ** 31 - 1 }))).toBeUndefined();
  });
});
