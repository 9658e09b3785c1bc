/**
 * Job queues and workers: what the backstop sweep reads (the index of unfinished jobs), result()
 * without NATS, and a start() that fails (real grid and nats-server).
 */
import { describe, expect, it } from 'vitest';
import type { GridClient } from '@gridlink/client';
import type { NatsConnection } from '@nats-io/transport-node';
import { JobQueue, MessagingError } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('job queue: sweep, result() without NATS, failed start (real grid and nats-server)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn, closeAfter } = env;
  async function queue(name: string, g?: GridClient, nc?: NatsConnection): Promise<JobQueue> {
    const q = new JobQueue({ grid: g ?? (await grid()), nats: nc ?? (await natsConn()), queue: name });
    closers.push(() => q.close());
    return q;
  }
  const indexOf = (g: GridClient, name: string) => g.cache<string, number>(`gridlink.jobs.${name}.unfinished`);

  it('the backstop sweep reads only unfinished jobs: its grid operations do not grow with the finished jobs kept for retainFinishedMs', async () => {
    const q = await queue('swp');
    const g = await grid();
    // The measured workers: their own client; no periodic sweep; nothing due for them to run.
    const wq = await queue('swp', g);
    await q.submit('open-1', null, { delayMs: 3_600_000 });
    const sweepCost = async (): Promise<number> => {
      const w = wq.worker(async () => null, { sweepIntervalMs: 0 });
      await w.start();
      const before = g.stats().operations;
      await w.sweep();
      const cost = g.stats().operations - before;
      await w.close();
      return cost;
    };
    const emptyCost = await sweepCost();

    const runner = closeAfter(q.worker(async (ctx) => ctx.jobId, { concurrency: 32, sweepIntervalMs: 0 }));
    let completed = 0;
    runner.on('completed', () => void completed++);
    await runner.start();
    await Promise.all(Array.from({ length: 300 }, (_, i) => q.submit(`f-${i}`, null)));
    await waitUntil(() => completed === 300, 60_000, 'the 300 jobs completed');
    // The finishing worker removed their entries: only the unfinished job is indexed.
    await waitUntil(async () => (await indexOf(g, 'swp').size()) === 1, 10_000, 'finished jobs out of the index');
    expect(await indexOf(g, 'swp').get('open-1')).toBe((await q.status('open-1')).createdAt);
    expect(await g.cache('gridlink.jobs.swp').size()).toBe(301);
    expect(await sweepCost()).toBe(emptyCost);
  });

  it('the sweep still finds a job whose notice was lost, and removes index entries that no longer stand for an unfinished job', async () => {
    const g = await grid();
    const deaf = await natsConn();
    // Submitted through a queue whose NATS connection is closed: no worker hears of these jobs.
    const silent = await queue('lost', await grid(), deaf);
    const q = await queue('lost', g);
    const runs: string[] = [];
    const w = closeAfter(q.worker(async (ctx) => void runs.push(ctx.jobId), { sweepIntervalMs: 0 }));
    await w.start();
    await deaf.close();
    await silent.submit('l-1', null);
    await w.sweep();
    await waitUntil(async () => (await q.status('l-1')).state === 'completed', 10_000, 'l-1 completed');
    expect(runs).toEqual(['l-1']);

    const index = indexOf(g, 'lost');
    await waitUntil(async () => (await index.get('l-1')) === undefined, 10_000, 'l-1 out of the index');
    const done = await q.status('l-1');
    const now = Date.now();
    // A finishing worker's removal that was lost: the entry of the record's own submit, removed at once.
    await index.put('l-1', done.createdAt);
    // Entries with no record: a young one may be a submit between its two writes (kept); an old one is removed.
    await index.put('ghost-young', now);
    await index.put('ghost-old', now - 6 * 60_000);
    // Written by another submit of a finished id (not the record's createdAt), young: kept.
    await q.submit('l-1', null);
    const second = await index.get('l-1');
    expect(second).not.toBe(done.createdAt);
    await w.sweep();
    expect(await index.get('ghost-young')).toBe(now);
    expect(await index.get('ghost-old')).toBeUndefined();
    expect(await index.get('l-1')).toBe(second);
    // The same entry once old: removed.
    await index.put('l-1', now - 6 * 60_000);
    await index.put('l-1b', done.createdAt);
    await w.sweep();
    expect(await index.get('l-1')).toBeUndefined();
    expect(runs).toEqual(['l-1']);
  });

  it('start() finds unfinished jobs that have no index entry (written before the index existed) and indexes them', async () => {
    const g = await grid();
    const q = await queue('legacy', g);
    await q.submit('old-1', 'a');
    await q.submit('old-2', 'b', { delayMs: 3_600_000 });
    const index = indexOf(g, 'legacy');
    await index.remove('old-1');
    await index.remove('old-2');
    const runs: string[] = [];
    const w = closeAfter(q.worker(async (ctx) => void runs.push(ctx.jobId), { sweepIntervalMs: 0 }));
    await w.start();
    await waitUntil(async () => (await q.status('old-1')).state === 'completed', 10_000, 'old-1 completed');
    expect(runs).toEqual(['old-1']);
    expect(await index.get('old-2')).toBe((await q.status('old-2')).createdAt);
  });

  it('result() answers from the grid when the queue NATS connection is closed', async () => {
    const nc = await natsConn();
    const g = await grid();
    const closedQueue = await queue('deaf', g, nc);
    const q = await queue('deaf');
    await closedQueue.submit('r-0', 0);
    await nc.close();
    const w = closeAfter(q.worker(async (ctx) => `done ${ctx.jobId}`, { sweepIntervalMs: 0 }));
    await w.start();
    await waitUntil(async () => (await q.status('r-0')).state === 'completed', 10_000, 'r-0 completed');
    // Finished already: answered at once, with or without a wait.
    await expect(closedQueue.result('r-0')).resolves.toBe('done r-0');
    await expect(closedQueue.result('r-0', { waitMs: 5000 })).resolves.toBe('done r-0');
    // Not finished yet: the grid is polled until it is.
    const { gate, open } = env.gate();
    const w2 = closeAfter(q.worker(async () => {
      await gate;
      return 'late';
    }, { sweepIntervalMs: 0 }));
    await w.close();
    await w2.start();
    await q.submit('r-1', 1);
    await waitUntil(() => w2.active.length === 1, 10_000, 'r-1 running');
    const waiting = closedQueue.result('r-1', { waitMs: 30_000 });
    open();
    await expect(waiting).resolves.toBe('late');
    await expect(closedQueue.result('r-1', { waitMs: 0 })).resolves.toBe('late');
  });

  it('a start() whose subscription fails leaves the worker startable, with nothing left running; started again, it works', async () => {
    const real = await natsConn('start-fails');
    let refuse = true;
    // The connection refuses the first subscription (as a closed or draining one does).
    const nc = new Proxy(real, {
      get(target, prop) {
        if (prop === 'subscribe' && refuse) {
          return () => {
            refuse = false;
            throw new Error('subscription refused');
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const statusListeners = (): number => (real as unknown as { protocol: { listeners: unknown[] } }).protocol.listeners.length;
    const listeners0 = statusListeners();
    const g = await grid();
    const q = await queue('restart', g, nc);
    await q.submit('s-1', null);
    const runs: string[] = [];
    const w = closeAfter(q.worker(async (ctx) => void runs.push(ctx.jobId), { sweepIntervalMs: 50 }));
    const ops0 = g.stats().operations;
    await expect(w.start()).rejects.toThrow('subscription refused');
    // Nothing runs: no subscription at the server, no status listener, no sweep timer asking the grid.
    await real.flush();
    expect(await env.nats.subscriptionsOf('start-fails')).toEqual([]);
    expect(statusListeners()).toBe(listeners0);
    const ops1 = g.stats().operations;
    await real.flush(); // a round trip, then the 50 ms sweep would have run a few times
    await new Promise((r) => setTimeout(r, 200));
    expect(g.stats().operations).toBe(ops1);
    expect(ops1).toBe(ops0);
    // Started again: it works.
    await w.start();
    await waitUntil(async () => (await q.status('s-1')).state === 'completed', 10_000, 's-1 completed');
    expect(runs).toEqual(['s-1']);
    const twice = await w.start().catch((e: unknown) => e);
    expect((twice as MessagingError).code).toBe('WORKER_STARTED');
    await w.close();
    await real.flush();
    expect(await env.nats.subscriptionsOf('start-fails')).toEqual([]);
    expect(statusListeners()).toBe(listeners0);
  });
});
