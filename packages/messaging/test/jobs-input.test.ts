/**
 * Job queues and workers under bad input and shutdown, against a real grid and nats-server.
 */
import { describe, expect, it } from 'vitest';
import { bytesSerializer, type GridClient } from '@gridlink/client';
import { encode } from '@msgpack/msgpack';
import type { NatsConnection } from '@nats-io/transport-node';
import { JobFailedError, JobQueue, MessagingClosedError, MessagingConfigError, MessagingError, ResultTimeoutError } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('job queue: bad input and close (real grid and nats-server)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn, closeAfter } = env;
  /** A queue on its own grid client and NATS connection, closed after the test. */
  async function queue(name: string): Promise<{ q: JobQueue; grid: GridClient; nc: NatsConnection }> {
    const g = await grid();
    const nc = await natsConn();
    const q = new JobQueue({ grid: g, nats: nc, queue: name });
    closers.push(() => q.close());
    return { q, grid: g, nc };
  }
  const configError = (f: () => unknown): MessagingConfigError => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(MessagingConfigError);
      return e as MessagingConfigError;
    }
    throw new Error('no MessagingConfigError');
  };

  it('a handler throwing what is not an Error, or an Error of megabytes, fails the job with a readable, bounded error', async () => {
    const { q } = await queue('thrown');
    const unreadable = {};
    Object.defineProperty(unreadable, 'message', {
      get() {
        throw new Error('no');
      },
    });
    const w = closeAfter(
      q.worker<string>(async (ctx) => {
        switch (ctx.payload) {
          case 'no-prototype':
            throw Object.create(null);
          case 'huge':
            throw new Error('x'.repeat(5 * 1024 * 1024));
          // What handlers are not supposed to throw, but some do.
          case 'unreadable':
            throw unreadable; // eslint-disable-line @typescript-eslint/only-throw-error
          case 'string':
            throw 'plain'; // eslint-disable-line @typescript-eslint/only-throw-error
          default:
            return 'ok';
        }
      }),
    );
    await w.start();
    const failure = async (payload: string): Promise<JobFailedError> => {
      await q.submit(`t-${payload}`, payload, { maxAttempts: 1 });
      const e = await q.result(`t-${payload}`, { waitMs: 10_000 }).catch((x: unknown) => x);
      expect(e, payload).toBeInstanceOf(JobFailedError);
      return e as JobFailedError;
    };
    expect((await failure('no-prototype')).error).toEqual({ name: 'Error', message: 'an object that is not an Error was thrown' });
    const huge = (await failure('huge')).error;
    expect(huge.name).toBe('Error');
    expect(huge.message.startsWith('x'.repeat(4096))).toBe(true);
    expect(huge.message.endsWith(`… (${5 * 1024 * 1024} characters)`)).toBe(true);
    expect(huge.message.length).toBeLessThan(4200);
    expect((await failure('unreadable')).error).toEqual({ name: 'Error', message: 'a value whose properties cannot be read was thrown' });
    expect((await failure('string')).error).toEqual({ name: 'Error', message: 'plain' });
  });

  it('options: unknown, null and mistyped ones are MessagingConfigErrors naming the field', async () => {
    const { q, grid: g, nc } = await queue('opts');
    expect(configError(() => new JobQueue({ grid: g, nats: nc, maxPayloadByte: 10 } as never)).field).toBe('maxPayloadByte');
    // A value without a JSON form is described, not a TypeError from describing it.
    expect(configError(() => new JobQueue({ grid: g, nats: nc, queue: 10n as never })).field).toBe('queue');
    const h = async (): Promise<number> => 1;
    expect(configError(() => q.worker(h, { concurrenc: 2 } as never)).field).toBe('concurrenc');
    expect(configError(() => q.worker(h, { retry: 5 as never })).field).toBe('retry');
    expect(configError(() => q.worker(h, { retry: { factr: 3 } as never })).field).toBe('retry.factr');
    // Only undefined means "left out": a null retry is refused like a null anywhere else (it used
    // to be taken for the default policy, which its type does not even allow).
    const nullRetry = configError(() => q.worker(h, { retry: null as never }));
    expect(nullRetry.field).toBe('retry');
    expect(nullRetry.message).toBe('invalid retry: must be an object, got null');
    expect(configError(() => q.worker(h, { retry: { jitter: null } as never })).field).toBe('retry.jitter');
    expect(configError(() => q.worker(h, { retry: { factor: null } as never })).field).toBe('retry.factor');
    await closeAfter(q.worker(h, { retry: undefined })).close();
    expect(configError(() => q.worker(h, 'fast' as never)).field).toBe('options');
    expect(configError(() => q.worker(h, { onDeadLetter: 1 as never })).field).toBe('onDeadLetter');
    // null options mean none.
    await closeAfter(q.worker(h, null)).close();
    await expect(q.submit('o-1', 1, { delay: 5 } as never)).rejects.toMatchObject({ field: 'delay' });
    expect((await q.submit('o-1', 1, null)).created).toBe(true);
    await expect(q.result('o-1', { wait: 5 } as never)).rejects.toMatchObject({ field: 'wait' });
    await expect(q.result('o-1', null)).rejects.toBeInstanceOf(ResultTimeoutError);
  });

  it("subjectPrefix: one whose subjects would not fit nats-server's protocol line is refused naming it; at the bound the queue works and its connection stays up", async () => {
    const g = await grid();
    const nc = await natsConn('jobs-long-prefix');
    // nats.js's status iterator (it has stop(), which its type does not show).
    const statuses = nc.status() as AsyncIterable<{ type: string }> & { stop(): void };
    closers.push(() => statuses.stop());
    const seen: string[] = [];
    void (async () => {
      for await (const s of statuses) seen.push(s.type);
    })();
    // The longest subject, `<prefix>.<queue>.submitted`, may have 4079 bytes: 4096 less the
    // space and 16 digits kept for a subscription id or a message size.
    const room = (queue: string): number => 4079 - `.${queue}.submitted`.length;
    expect(room('default')).toBe(4061);
    const tooLong = configError(() => new JobQueue({ grid: g, nats: nc, subjectPrefix: 'p'.repeat(room('default') + 1) }));
    expect(tooLong.field).toBe('subjectPrefix');
    expect(tooLong.message).toMatch(/at most 4061 characters .*got 4062$/);
    // The bound depends on the queue's name; dotted prefixes count their dots.
    const dotted = `${'a'.repeat(99)}.`.repeat(41).slice(0, room('lp') + 1);
    expect(dotted).toMatch(/^[a.]+a$/);
    const dottedRefused = configError(() => new JobQueue({ grid: g, nats: nc, queue: 'lp', subjectPrefix: dotted }));
    expect([dottedRefused.field, dottedRefused.message]).toEqual(['subjectPrefix', expect.stringMatching(/at most 4066 characters .*got 4067$/)]);
    // At the bound: the worker subscribes, the submit's notice arrives (no sweep after start), and
    // the connection, with the application's own subscription on it, stays up. A longer prefix
    // used to be taken: the server closed the connection at the SUB, nats.js reconnected and
    // subscribed again, over and over, and the notice never came.
    const app = nc.subscribe('app.own');
    const prefix = 'p'.repeat(room('lp'));
    const q = new JobQueue({ grid: g, nats: nc, queue: 'lp', subjectPrefix: prefix });
    closers.push(() => q.close());
    const w = closeAfter(q.worker(async () => 'ok', { sweepIntervalMs: 0 }));
    await w.start();
    await q.submit('lp-1', null);
    expect(await q.result('lp-1', { waitMs: 10_000 })).toBe('ok');
    await nc.flush();
    expect(await env.nats.subscriptionsOf('jobs-long-prefix')).toEqual(['app.own', `${prefix}.lp.*`, `${prefix}.lp.done`].sort());
    expect(seen.filter((t) => t === 'disconnect' || t === 'error')).toEqual([]);
    app.unsubscribe();
  });

  it('notices naming ids that no job can have, or done/alive notices of jobs the worker does not know, cost it no grid operation', async () => {
    const { q } = await queue('garbage');
    const wg = await grid();
    const wnc = await natsConn();
    const worker = new JobQueue({ grid: wg, nats: wnc, queue: 'garbage' });
    closers.push(() => worker.close());
    const w = closeAfter(worker.worker(async () => 'done', { concurrency: 16, sweepIntervalMs: 0 }));
    await w.start();
    const ops = wg.stats().operations;
    const nc = await natsConn();
    const enc = new TextEncoder();
    for (const id of ['a b', 'x'.repeat(129), '', 'é', 'a/b', 'a*']) {
      nc.publish('gridlink.jobs.garbage.submitted', enc.encode(JSON.stringify({ t: 'submitted', id, notBefore: 0 })));
      nc.publish('gridlink.jobs.garbage.released', enc.encode(JSON.stringify({ t: 'released', id, notBefore: 0 })));
    }
    // Well-formed, but about jobs this worker never heard of: nothing to forget or postpone.
    nc.publish('gridlink.jobs.garbage.done', enc.encode(JSON.stringify({ t: 'done', id: 'ghost-1', state: 'completed' })));
    nc.publish('gridlink.jobs.garbage.alive', enc.encode(JSON.stringify({ t: 'alive', w: 'ghost', jobs: [['ghost-2', 3_600_000]] })));
    await nc.flush();
    // A real job notified after them: the worker has read every garbage notice before this one.
    await q.submit('real-1', null);
    expect(await q.result('real-1', { waitMs: 10_000 })).toBe('done');
    await waitUntil(() => w.active.length === 0, 10_000, 'the job released');
    // The job's own: lock, read, claim, completion, unlock, and its entry out of the index of
    // unfinished jobs (ADR 0055).
    await waitUntil(() => wg.stats().operations - ops >= 6, 10_000, 'the job operations counted');
    expect(wg.stats().operations - ops).toBe(6);
  });

  it('a record that is no job record does not stop a worker from starting and running the other jobs', async () => {
    const { q, grid: g } = await queue('unreadable');
    const raw = g.cache<string, Uint8Array>('gridlink.jobs.unreadable', { serializer: bytesSerializer });
    await raw.put('bad-1', new Uint8Array([0xc1])); // 0xc1: never used by MessagePack
    await raw.put('bad-2', new Uint8Array([0x01])); // a number, not a record
    await q.submit('good-1', null);
    const w = closeAfter(q.worker(async () => 'ok', { sweepIntervalMs: 0 }));
    const errors: MessagingError[] = [];
    w.on('error', (e) => errors.push(e as MessagingError));
    await w.start();
    expect(await q.result('good-1', { waitMs: 10_000 })).toBe('ok');
    const unreadable = errors.filter((e) => e.code === 'JOB_UNREADABLE_RECORD');
    expect(unreadable).toHaveLength(1);
    expect(unreadable[0]?.message).toMatch(/^2 record\(s\) in gridlink\.jobs\.unreadable .*: bad-[12], bad-[12]$/);
    // Asked about by id, such a record is the same typed error, for status, result and submit
    // alike (they threw MessagePack's DecodeError, or a plain Error for a record of a newer
    // version), and submit leaves it as it was.
    await raw.put('newer-1', encode({ v: 2, id: 'newer-1', state: 'pending' }));
    for (const id of ['bad-1', 'bad-2', 'newer-1']) {
      const calls: [string, () => Promise<unknown>][] = [
        ['status', () => q.status(id)],
        ['result', () => q.result(id, { waitMs: 1000 })],
        ['submit', () => q.submit(id, 1)],
      ];
      for (const [call, f] of calls) {
        const e = await f().then(
          () => null,
          (x: unknown) => x,
        );
        expect([id, call, e]).toEqual([id, call, expect.any(MessagingError)]);
        expect([id, call, (e as MessagingError).code, (e as MessagingError).message]).toEqual([
          id,
          call,
          'JOB_UNREADABLE_RECORD',
          expect.stringMatching(new RegExp(`^job ${id}: its record in gridlink\\.jobs\\.unreadable is no job record this version can read \\(.+\\)$`)),
        ]);
      }
    }
    expect(await raw.get('bad-1')).toEqual(new Uint8Array([0xc1]));
  });

  it('close(): a second call is the same shutdown; a claim under way gives its lock back and starts no handler; later use is refused', async () => {
    const { q, grid: g } = await queue('closing');
    const { gate, open } = env.gate();
    const runs: string[] = [];
    const w = closeAfter(
      q.worker(async (ctx) => {
        runs.push(ctx.jobId);
        if (ctx.jobId === 'c-1') await gate;
        return ctx.jobId;
      }),
    );
    const claimed = new Promise<void>((r) => w.once('claimed', () => r()));
    await w.start();
    await q.submit('c-1', null);
    await claimed;
    let closedSecond = false;
    const first = w.close();
    const second = w.close();
    void second.then(() => (closedSecond = true));
    expect(second).toBe(first);
    // A grid round trip later the second close() still waits for the running job.
    expect((await q.status('c-1')).state).toBe('running');
    expect(closedSecond).toBe(false);
    open();
    await second;
    expect((await q.status('c-1')).state).toBe('completed');
    // Start twice, start after close.
    await expect(w.start()).rejects.toBeInstanceOf(MessagingClosedError);
    await expect(w.start()).rejects.toThrow(/^worker is closed$/);
    const twice = closeAfter(q.worker(async () => 1));
    await twice.start();
    const e = await twice.start().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(MessagingError);
    expect((e as MessagingError).code).toBe('WORKER_STARTED');
    await twice.close();
    // A sweep after close asks the grid nothing.
    const before = g.stats().operations;
    await w.sweep();
    expect(g.stats().operations).toBe(before);

    // A worker closed while it is claiming a pending job (its start-up scan found it).
    await q.submit('c-2', null);
    const w2 = q.worker(async (ctx) => void runs.push(ctx.jobId));
    await w2.start();
    await w2.close();
    // The lock is free the moment close() resolved, and no handler ran.
    const lock = await g.lock('gridlink.job/closing/c-2').tryAcquire();
    expect(lock).not.toBeNull();
    await lock!.release();
    expect(runs).toEqual(['c-1']);
    expect(['pending', 'running']).toContain((await q.status('c-2')).state);
  });
  it("close() from a 'claimed' listener: that job's handler does not start, and the claim is given back before close() resolves", async () => {
    const { q, grid: g } = await queue('close-on-claimed');
    const runs: string[] = [];
    // closeTimeoutMs 0: close() stops waiting at once, and its release loop must still leave this
    // job to be given back record first (it used to release the lock while the record said
    // 'running', so another worker's claim could count a lost run that never started).
    const w = closeAfter(q.worker(async (ctx) => void runs.push(ctx.jobId), { closeTimeoutMs: 0 }));
    let closing: Promise<void> | undefined;
    w.once('claimed', () => {
      closing = w.close();
    });
    await w.start();
    await q.submit('k-1', null);
    await waitUntil(() => closing !== undefined, 10_000, 'the job claimed');
    await closing;
    // The handler used to start anyway (the state was checked only before the claim resolved).
    expect(runs).toEqual([]);
    const lock = await g.lock('gridlink.job/close-on-claimed/k-1').tryAcquire();
    expect(lock).not.toBeNull();
    await lock!.release();
    // Pending again and not counted as a lost run: the next worker runs it as if first.
    const given = await q.status('k-1');
    expect(given.state).toBe('pending');
    expect(given.lostRuns).toBe(0);
    const next = closeAfter(q.worker(async (ctx) => void runs.push(ctx.jobId)));
    await next.start();
    await waitUntil(async () => (await q.status('k-1')).state === 'completed', 10_000, 'the job run by the next worker');
    expect(runs).toEqual(['k-1']);
    expect((await q.status('k-1')).lostRuns).toBe(0);
  });
  it('close() waits for a dead-letter hook under way, within closeTimeoutMs, and reports its rejection before the listeners go', async () => {
    const { q } = await queue('dead-letter-close');
    const { gate, open } = env.gate();
    const hooked: string[] = [];
    const failing = async (): Promise<never> => {
      throw new Error('boom');
    };
    const w = closeAfter(
      q.worker(failing, {
        onDeadLetter: async (job) => {
          hooked.push(job.id);
          await gate;
          throw new Error(`alert for ${job.id} not sent`);
        },
      }),
    );
    const errors: Error[] = [];
    w.on('error', (e) => errors.push(e));
    await w.start();
    await q.submit('dl-1', null, { maxAttempts: 1 });
    await waitUntil(() => hooked.length === 1, 10_000, 'the dead-letter hook called');
    let closed = false;
    const closing = w.close();
    void closing.then(() => (closed = true));
    // A grid round trip later close() still waits for the hook (it used to have resolved, the
    // hook cut off by a process exiting then, and its rejection reported to no one).
    expect((await q.status('dl-1')).state).toBe('failed');
    expect(closed).toBe(false);
    open();
    await closing;
    expect(errors.map((e) => e.message)).toEqual(['alert for dl-1 not sent']);
    expect(hooked).toEqual(['dl-1']);

    // A hook that never returns holds close() for closeTimeoutMs only.
    let hung = false;
    const w2 = closeAfter(
      q.worker(failing, {
        closeTimeoutMs: 300,
        onDeadLetter: () => {
          hung = true;
          return new Promise<void>(() => undefined);
        },
      }),
    );
    await w2.start();
    await q.submit('dl-2', null, { maxAttempts: 1 });
    await waitUntil(() => hung, 10_000, 'the hanging hook called');
    const t0 = Date.now();
    let closed2 = false;
    void w2.close().then(() => (closed2 = true));
    await waitUntil(() => closed2, 10_000, 'close() to give up on the hanging hook');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });
  it('a dead-letter hook that closes its own worker and awaits the close: close() ends without waiting for that hook (no wait until closeTimeoutMs)', async () => {
    const { q } = await queue('dead-letter-self-close');
    const failing = async (): Promise<never> => {
      throw new Error('boom');
    };
    let hookDone = false;
    const closeTimeoutMs = 30_000;
    const w: ReturnType<typeof q.worker> = closeAfter(
      q.worker(failing, {
        closeTimeoutMs,
        onDeadLetter: async () => {
          // The hook waits for the close it asked for: close() must not wait for this hook, or
          // each waits for the other until closeTimeoutMs.
          await w.close();
          hookDone = true;
        },
      }),
    );
    await w.start();
    const t0 = Date.now();
    await q.submit('dl-self', null, { maxAttempts: 1 });
    await waitUntil(() => hookDone, 10_000, 'the hook to see its close() resolve');
    expect(Date.now() - t0).toBeLessThan(closeTimeoutMs / 3);
    expect((await q.status('dl-self')).state).toBe('failed');
  });
  it('closing a queue wakes a waiting result(); closing it and its worker leaves no subscription at the server and no status listener', async () => {
    const g = await grid();
    const nc = await natsConn('jobs-leak');
    // nats.js keeps each status() iterator in this list until it is stopped.
    const statusListeners = (): number => (nc as unknown as { protocol: { listeners: unknown[] } }).protocol.listeners.length;
    const listeners0 = statusListeners();
    const q = new JobQueue({ grid: g, nats: nc, queue: 'leak' });
    const { gate, open } = env.gate();
    const w = q.worker(async () => {
      await gate;
      return 1;
    });
    await w.start();
    expect(statusListeners()).toBe(listeners0 + 1);
    await q.submit('l-1', null);
    const waiting = q.result('l-1', { waitMs: 60_000 });
    await waitUntil(() => w.active.length === 1, 10_000, 'the job running');
    await nc.flush();
    expect(await env.nats.subscriptionsOf('jobs-leak')).toEqual(['gridlink.jobs.leak.*', 'gridlink.jobs.leak.done']);
    await q.close();
    await expect(waiting).rejects.toBeInstanceOf(MessagingClosedError);
    await expect(q.close()).resolves.toBeUndefined();
    open();
    await w.close();
    await nc.flush();
    expect(await env.nats.subscriptionsOf('jobs-leak')).toEqual([]);
    expect(statusListeners()).toBe(listeners0);
  });
});
