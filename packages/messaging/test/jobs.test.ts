import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import type { GridClient } from '@gridlink/client';
import type { NatsConnection } from '@nats-io/transport-node';
import {
  InvalidJobIdError,
  InvalidPayloadError,
  JobFailedError,
  JobNotFoundError,
  JobQueue,
  MessagingConfigError,
  PayloadTooLargeError,
  ResultTimeoutError,
  type JobStatus,

} from '@gridlink/messaging';
import { NatsServer, waitUntil } from './helpers/processes.js';
import { connectGrid, connectNats } from './helpers/env.js';

describe('job queue (in-process workers, real grid and nats-server)', () => {
  let cluster: LocalCluster;
  let nats: NatsServer;
  const grids: GridClient[] = [];
  const ncs: NatsConnection[] = [];
  const workers: { close(): Promise<void> }[] = [];
  const queues: JobQueue[] = [];

  beforeAll(async () => {
    [cluster, nats] = await Promise.all([LocalCluster.start({ nodes: 3, backups: 1, partitions: 64 }), NatsServer.start()]);
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.close();
    for (const q of queues.splice(0)) await q.close();
    for (const n of ncs.splice(0)) await n.close();
    for (const g of grids.splice(0)) await g.close();
  });
  afterAll(async () => {
    await nats?.stop();
    await cluster?.stop();
  });

  async function queue(name: string, extra: { maxPayloadBytes?: number; retainFinishedMs?: number } = {}): Promise<JobQueue> {
    const grid = await connectGrid(cluster.endpoints);
    grids.push(grid);
    const nc = await connectNats(nats.url);
    ncs.push(nc);
    const q = new JobQueue({ grid, nats: nc, queue: name, ...extra });
    queues.push(q);
    return q;
  }

  it('submits exactly once per id, runs the job once and returns its result from anywhere', async () => {
    const q = await queue('once');
    const runs: string[] = [];
    const w = q.worker<{ n: number }, number>(async (ctx) => {
      runs.push(ctx.jobId);
      expect(ctx.fencingToken).toBeGreaterThan(0);
      expect(ctx.attempt).toBe(1);
      return ctx.payload.n * 2;
    });
    workers.push(w);
    const first = await q.submit('job-1', { n: 21 });
    const again = await q.submit('job-1', { n: 99 });
    expect(first.created).toBe(true);
    expect(again.created).toBe(false);
    expect(again.status.id).toBe('job-1');
    await w.start();
    const other = await queue('once');
    expect(await other.result('job-1', { waitMs: 10_000 })).toBe(42);
    const st = await other.status('job-1');
    expect(st.state).toBe('completed');
    expect(st.attempt).toBe(1);
    expect(runs).toEqual(['job-1']);
    // Submitting a finished id again returns it and runs nothing.
    const third = await q.submit('job-1', { n: 1 });
    expect(third.created).toBe(false);
    expect(third.status.state).toBe('completed');
    expect(runs).toEqual(['job-1']);
  });

  it('retries a failing handler with backoff up to maxAttempts, then marks it failed and dead-letters it once', async () => {
    const q = await queue('retry');
    const attempts: number[] = [];
    const dead: JobStatus[] = [];
    const w = q.worker(
      async (ctx) => {
        attempts.push(Date.now());
        throw new Error(`boom ${ctx.attempt}`);
      },
      { retry: { initialDelayMs: 50, factor: 2, jitter: false }, onDeadLetter: (j) => void dead.push(j) },
    );
    workers.push(w);
    await w.start();
    await q.submit('bad-1', { x: 1 }, { maxAttempts: 3 });
    const err = await q.result('bad-1', { waitMs: 10_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobFailedError);
    expect((err as JobFailedError).error.message).toBe('boom 3');
    expect(attempts).toHaveLength(3);
    // Backoff: 50 ms then 100 ms at least between runs.
    expect(attempts[1]! - attempts[0]!).toBeGreaterThanOrEqual(50);
    expect(attempts[2]! - attempts[1]!).toBeGreaterThanOrEqual(100);
    const st = await q.status('bad-1');
    expect(st.state).toBe('failed');
    expect(st.failures).toBe(3);
    expect(dead.map((d) => d.id)).toEqual(['bad-1']);
  });

  it('a dead-letter hook that never returns keeps neither a slot nor the lock: the next jobs run', async () => {
    const q = await queue('dead-hang');
    const dead: string[] = [];
    const w = q.worker(
      async (ctx) => {
        if (ctx.jobId === 'bad') throw new Error('boom');
        return ctx.jobId;
      },
      { concurrency: 1, closeTimeoutMs: 100, onDeadLetter: (j) => new Promise<void>(() => void dead.push(j.id)) },
    );
    workers.push(w);
    await w.start();
    await q.submit('bad', null, { maxAttempts: 1 });
    expect(await q.result('bad', { waitMs: 10_000 }).catch((e: unknown) => e)).toBeInstanceOf(JobFailedError);
    await waitUntil(() => dead.length === 1, 10_000, 'the hook called');
    await q.submit('next', null);
    expect(await q.result('next', { waitMs: 10_000 })).toBe('next');
    expect(w.active).toEqual([]);
  });

  it('a checkpoint is kept and handed to the next run; a transient failure then succeeds', async () => {
    const q = await queue('ckpt');
    const seen: unknown[] = [];
    const w = q.worker(
      async (ctx) => {
        seen.push(ctx.lastCheckpoint);
        if (ctx.attempt === 1) {
          await ctx.checkpoint({ step: 1 });
          throw new Error('transient');
        }
        return 'ok';
      },
      { retry: { initialDelayMs: 10, jitter: false } },
    );
    workers.push(w);
    await w.start();
    await q.submit('ck-1', null);
    expect(await q.result('ck-1', { waitMs: 10_000 })).toBe('ok');
    expect(seen).toEqual([undefined, { step: 1 }]);
  });

  it('bad input gets typed errors and leaves nothing stuck', async () => {
    const q = await queue('bad', { maxPayloadBytes: 1024 });
    for (const id of ['', 'a b', 'x'.repeat(129), 'é', 'a/b', 'a*', 'a>']) {
      await expect(q.submit(id, 1)).rejects.toBeInstanceOf(InvalidJobIdError);
    }
    await expect(q.submit(42 as unknown as string, 1)).rejects.toBeInstanceOf(InvalidJobIdError);
    await expect(q.submit('big', 'x'.repeat(2000))).rejects.toBeInstanceOf(PayloadTooLargeError);
    await expect(q.submit('fn', () => 1)).rejects.toBeInstanceOf(InvalidPayloadError);
    await expect(q.submit('sym', Symbol('s'))).rejects.toBeInstanceOf(InvalidPayloadError);
    // Encodes, but MessagePack would refuse to decode it: refused up front, never stored.
    await expect(q.submit('proto', JSON.parse('{"__proto__":1}'))).rejects.toBeInstanceOf(InvalidPayloadError);
    await expect(q.status('proto')).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(q.status('never-submitted')).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(q.result('never-submitted')).rejects.toBeInstanceOf(JobNotFoundError);
    await expect(q.submit('opts', 1, { maxAttempts: 0 })).rejects.toBeInstanceOf(MessagingConfigError);
    // Nothing was stored for the refused submissions.
    await expect(q.status('big')).rejects.toBeInstanceOf(JobNotFoundError);
    // A pending job with no worker: result times out with a retryable typed error.
    await q.submit('waits', 1);
    const e = await q.result('waits', { waitMs: 50 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ResultTimeoutError);
    expect((e as ResultTimeoutError).retryable).toBe(true);
    // Garbage on the queue's notification subjects is ignored by workers.
    const nc = ncs[0]!;
    const enc = new TextEncoder();
    for (const [subj, body] of [
      ['submitted', 'not json'],
      ['submitted', '{"t":"submitted","id":5}'],
      ['alive', '{"t":"alive","w":"x","jobs":[["waits","NaN"],[1,2],"z"]}'],
      ['alive', '{"t":"alive","w":"x","jobs":7}'],
      ['done', 'null'],
      ['released', '[]'],
    ] as const) {
      nc.publish(`gridlink.jobs.bad.${subj}`, enc.encode(body));
    }
    // A handler returning an oversized result fails the job with a typed error instead of hanging.
    const w = q.worker(async () => 'y'.repeat(5000), { retry: { initialDelayMs: 1 } });
    workers.push(w);
    await w.start();
    await q.submit('huge-result', 1, { maxAttempts: 1 });
    const f = await q.result('huge-result', { waitMs: 10_000 }).catch((x: unknown) => x);
    expect(f).toBeInstanceOf(JobFailedError);
    expect((f as JobFailedError).error.code).toBe('JOB_PAYLOAD_TOO_LARGE');
    // The job that was waiting for a worker ran too (and failed the same way): nothing is left pending.
    await expect(q.result('waits', { waitMs: 10_000 })).rejects.toBeInstanceOf(JobFailedError);
  });

  it('finished records are dropped after retainFinishedMs (completed and failed alike); running ones never are', async () => {
    const q = await queue('retain', { retainFinishedMs: 400 });
    let releaseSlow: () => void = () => undefined;
    const slowGate = new Promise<void>((r) => (releaseSlow = r));
    const w = q.worker<string, string>(
      async (ctx) => {
        if (ctx.payload === 'fail') throw new Error('no');
        if (ctx.payload === 'slow') await slowGate;
        return `done ${ctx.jobId}`;
      },
      { retry: { initialDelayMs: 10, jitter: false } },
    );
    workers.push(w);
    await w.start();
    await q.submit('ok-1', 'ok');
    await q.submit('bad-1', 'fail', { maxAttempts: 1 });
    await q.submit('slow-1', 'slow');
    expect(await q.result('ok-1', { waitMs: 10_000 })).toBe('done ok-1');
    await expect(q.result('bad-1', { waitMs: 10_000 })).rejects.toBeInstanceOf(JobFailedError);
    const gone = async (id: string): Promise<boolean> => (await q.status(id).then(() => false, (e: unknown) => e instanceof JobNotFoundError));
    await waitUntil(async () => (await gone('ok-1')) && (await gone('bad-1')), 10_000, 'finished records to expire');
    // The running job's record outlives the retention window of the others.
    expect((await q.status('slow-1')).state).toBe('running');
    // An expired id is a new job again.
    const again = await q.submit('ok-1', 'ok');
    expect(again.created).toBe(true);
    expect(await q.result('ok-1', { waitMs: 10_000 })).toBe('done ok-1');
    releaseSlow();
    expect(await q.result('slow-1', { waitMs: 10_000 })).toBe('done slow-1');
  });

  it('config is validated at construction, naming the field', async () => {
    const q = await queue('cfg');
    const grid = grids[0]!;
    const nc = ncs[0]!;
    expect(() => new JobQueue({ grid, nats: nc, queue: 'a.b' })).toThrow(/queue/);
    expect(() => new JobQueue({ grid: undefined as unknown as GridClient, nats: nc })).toThrow(/grid/);
    expect(() => new JobQueue({ grid, nats: nc, maxPayloadBytes: -1 })).toThrow(/maxPayloadBytes/);
    expect(() => new JobQueue({ grid, nats: nc, retainFinishedMs: 0 })).toThrow(/retainFinishedMs/);
    expect(() => q.worker(async () => 1, { leaseMs: 10 })).toThrow(/leaseMs/);
    expect(() => q.worker(async () => 1, { concurrency: 0 })).toThrow(/concurrency/);
    expect(() => q.worker(async () => 1, { retry: { factor: 0 } })).toThrow(/retry.factor/);
    expect(() => q.worker('x' as never)).toThrow(/handler/);
  });
});
