/**
 * Core NATS subscriptions of an idempotent consumer under a burst: bounded handlers and grid
 * operations, a bounded wait queue, drops counted and announced (real grid and nats-server).
 */
import { describe, expect, it } from 'vitest';
import { IdempotentConsumer, MessagingConfigError } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv, publishIds } from './helpers/env.js';

describe('idempotent consumer: core NATS bursts (real grid and nats-server)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  it('a burst runs at most `concurrency` handlers (and grid operations) at once; maxQueued wait in order; the rest are dropped, counted and announced', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = new IdempotentConsumer({ grid: g, name: 'burst' });
    closers.push(() => ic.close());
    const h = env.gated();
    const dropped: { subject: string; reason: string; total: number }[] = [];
    const processed: string[] = [];
    ic.on('dropped', (e) => dropped.push(e));
    ic.on('processed', (e) => processed.push(e.id));
    ic.subscribe(nc, 'burst.in', h.handler, { concurrency: 4, maxQueued: 10 });
    await nc.flush();
    const ops0 = g.stats().operations;
    const pub = await natsConn();
    const ids = Array.from({ length: 50 }, (_, i) => `b-${i}`);
    publishIds(pub, 'burst.in', ids);
    await pub.flush();
    await waitUntil(() => h.started.length === 4 && dropped.length === 36, 10_000, 'four handlers running and 36 messages dropped');
    // Only the running four asked the grid anything (one lock-and-read each).
    expect(g.stats().operations - ops0).toBe(4);
    expect(dropped.every((d) => d.subject === 'burst.in' && d.reason === 'overflow')).toBe(true);
    expect(dropped.map((d) => d.total)).toEqual(Array.from({ length: 36 }, (_, i) => i + 1));
    expect(ic.dropped).toBe(36);
    h.open();
    await waitUntil(() => processed.length === 14, 10_000, 'the running and the queued messages processed');
    expect(h.max()).toBe(4);
    // The running four and the first ten queued (their handlers start in any order: each first asks the grid).
    expect([...h.started].sort()).toEqual(ids.slice(0, 14).sort());
    expect(processed.sort()).toEqual(ids.slice(0, 14).sort());
    expect(ic.dropped).toBe(36);
  });

  it('by default at most 16 handlers run at once and a burst of 40 waits instead of being dropped', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = new IdempotentConsumer({ grid: g, name: 'burst-default' });
    closers.push(() => ic.close());
    const h = env.gated();
    const processed: string[] = [];
    ic.on('processed', (e) => processed.push(e.id));
    ic.subscribe(nc, 'burstd.in', h.handler);
    await nc.flush();
    const pub = await natsConn();
    publishIds(
      pub,
      'burstd.in',
      Array.from({ length: 40 }, (_, i) => `d-${i}`),
    );
    await pub.flush();
    await waitUntil(() => h.started.length === 16, 10_000, 'sixteen handlers running');
    // Round trips to the server: every message of the burst has arrived, no more started.
    await nc.flush();
    await pub.flush();
    await nc.flush();
    expect(h.started.length).toBe(16);
    h.open();
    await waitUntil(() => processed.length === 40, 10_000, 'all forty processed');
    expect(h.max()).toBe(16);
    expect(ic.dropped).toBe(0);
  });

  it('close() drops the messages still waiting (reason "closed"), runs none of them and waits for the running one', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = new IdempotentConsumer({ grid: g, name: 'burst-close' });
    const h = env.gated();
    const dropped: string[] = [];
    const processed: string[] = [];
    ic.on('dropped', (e) => dropped.push(e.reason));
    ic.on('processed', (e) => processed.push(e.id));
    ic.subscribe(nc, 'burstc.in', h.handler, { concurrency: 1, maxQueued: 5 });
    await nc.flush();
    publishIds(nc, 'burstc.in', ['c-0', 'c-1', 'c-2']);
    await nc.flush();
    await waitUntil(() => h.started.length === 1, 10_000, 'the first handler running');
    await nc.flush();
    const closing = ic.close();
    expect(dropped).toEqual(['closed', 'closed']);
    h.open();
    await closing;
    expect(h.started).toEqual(['c-0']);
    expect(processed).toEqual(['c-0']);
    expect(ic.dropped).toBe(2);
  });

  it('an unsubscribed subscription is forgotten once none of its messages waits; those still waiting run first', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = new IdempotentConsumer({ grid: g, name: 'burst-unsub' });
    closers.push(() => ic.close());
    // What close() would have to refuse: one pool per subscription plus the direct calls'.
    const pools = (): number => (ic as unknown as { pools: Set<unknown> }).pools.size;
    expect(pools()).toBe(1);
    for (let i = 0; i < 50; i++) {
      const sub = ic.subscribe(nc, `burstu.${i}`, async () => undefined);
      sub.unsubscribe();
      await sub.closed;
    }
    await waitUntil(() => pools() === 1, 5000, 'the 50 unsubscribed subscriptions forgotten');
    // Unsubscribed while two messages wait for its one slot: they still run, then it is forgotten.
    const h = env.gated();
    const processed: string[] = [];
    ic.on('processed', (e) => processed.push(e.id));
    const sub = ic.subscribe(nc, 'burstu.in', h.handler, { concurrency: 1, maxQueued: 5 });
    await nc.flush();
    publishIds(nc, 'burstu.in', ['u-0', 'u-1', 'u-2']);
    await nc.flush();
    await waitUntil(() => h.started.length === 1, 10_000, 'the first handler running');
    await nc.flush();
    sub.unsubscribe();
    await sub.closed;
    expect(pools()).toBe(2);
    h.open();
    await waitUntil(() => processed.length === 3, 10_000, 'the waiting messages run after the unsubscribe');
    expect(processed).toEqual(['u-0', 'u-1', 'u-2']);
    expect(pools()).toBe(1);
  });

  it('concurrency and maxQueued are validated and named', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = new IdempotentConsumer({ grid: g, name: 'burst-opts' });
    closers.push(() => ic.close());
    const h = async (): Promise<void> => undefined;
    const field = (o: unknown): string => {
      try {
        ic.subscribe(nc, 'bursto.in', h, o as never).unsubscribe();
      } catch (e) {
        expect(e).toBeInstanceOf(MessagingConfigError);
        return (e as MessagingConfigError).field;
      }
      return 'accepted';
    };
    expect(field({ concurrency: 0 })).toBe('concurrency');
    expect(field({ concurrency: 1.5 })).toBe('concurrency');
    expect(field({ concurrency: '4' })).toBe('concurrency');
    expect(field({ maxQueued: -1 })).toBe('maxQueued');
    expect(field({ maxQueued: Number.NaN })).toBe('maxQueued');
    expect(field({ concurrency: 1, maxQueued: 0 })).toBe('accepted');
  });
});
