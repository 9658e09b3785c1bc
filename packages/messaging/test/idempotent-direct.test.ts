/**
 * Direct calls of an idempotent consumer (`handleCore` / `handleJetStream` from a subscription the
 * application wired itself) under a burst: bounded like `subscribe` — handlers and grid operations
 * at most `direct.concurrency`, a bounded wait queue, the rest announced — against a real grid and
 * a real nats-server with JetStream.
 */
import { describe, expect, it } from 'vitest';
import { headers, nanos, type Msg } from '@nats-io/transport-node';
import { AckPolicy, StorageType, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { IdempotentConsumer, MessagingConfigError, type IdempotentEvents, type Outcome } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv, publishIds } from './helpers/env.js';

type Dropped = Parameters<IdempotentEvents['dropped']>[0];

describe('idempotent consumer: direct calls are bounded (real grid and nats-server)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  it('handleCore from the application\'s own subscription: `direct.concurrency` run at once, `direct.maxQueued` wait in order, the rest are dropped (outcome and event)', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = env.closeAfter(new IdempotentConsumer({ grid: g, name: 'direct-core', direct: { concurrency: 4, maxQueued: 10 } }));
    const h = env.gated();
    const dropped: Dropped[] = [];
    const processed: string[] = [];
    ic.on('dropped', (e) => dropped.push(e));
    ic.on('processed', (e) => processed.push(e.id));
    const outcomes = new Map<string, Outcome>();
    // The application's subscription: it calls handleCore for every message and does not wait.
    nc.subscribe('direct.core', {
      callback: (_err, msg) => {
        void ic.handleCore(msg, h.handler).then((o) => outcomes.set(msg.string(), o));
      },
    });
    await nc.flush();
    const ops0 = g.stats().operations;
    const pub = await natsConn();
    const ids = Array.from({ length: 50 }, (_, i) => `dc-${i}`);
    publishIds(pub, 'direct.core', ids);
    await pub.flush();
    await waitUntil(() => h.started.length === 4 && dropped.length === 36, 10_000, 'four handlers running and 36 calls dropped');
    // Only the running four asked the grid anything (one lock-and-read each).
    expect(g.stats().operations - ops0).toBe(4);
    expect(dropped.every((d) => d.subject === 'direct.core' && d.reason === 'overflow' && !d.jetstream)).toBe(true);
    expect(dropped.map((d) => d.total)).toEqual(Array.from({ length: 36 }, (_, i) => i + 1));
    expect(ic.dropped).toBe(36);
    expect([...outcomes.values()].filter((o) => o === 'dropped')).toHaveLength(36);
    h.open();
    await waitUntil(() => processed.length === 14, 10_000, 'the running and the waiting calls processed');
    expect(h.max()).toBe(4);
    expect([...h.started].sort()).toEqual(ids.slice(0, 14).sort());
    await waitUntil(() => outcomes.size === 50, 10_000, 'every call settled');
    expect(ids.slice(0, 14).every((id) => outcomes.get(id) === 'processed')).toBe(true);
  });

  it('close() drops the direct calls still waiting (outcome dropped, reason "closed"), runs none of them and waits for the running one', async () => {
    const g = await grid();
    const ic = new IdempotentConsumer({ grid: g, name: 'direct-close', direct: { concurrency: 1 } });
    const h = env.gated();
    const dropped: Dropped[] = [];
    ic.on('dropped', (e) => dropped.push(e));
    const msg = (id: string): Msg => {
      const hd = headers();
      hd.set('Nats-Msg-Id', id);
      return { subject: 'direct.close', headers: hd } as unknown as Msg;
    };
    const running = ic.handleCore(msg('x-0'), h.handler);
    await waitUntil(() => h.started.length === 1, 10_000, 'the first handler running');
    const waiting = [ic.handleCore(msg('x-1'), h.handler), ic.handleCore(msg('x-2'), h.handler)];
    const closing = ic.close();
    expect(dropped.map((d) => d.reason)).toEqual(['closed', 'closed']);
    expect(await Promise.all(waiting)).toEqual(['dropped', 'dropped']);
    h.open();
    await closing;
    expect(await running).toBe('processed');
    expect(h.started).toEqual(['x-0']);
  });

  it('handleJetStream from the application\'s own loop: bounded too; a waiting message is kept from redelivery (working()), one beyond maxQueued is nak\'ed and comes back', async () => {
    const ackWaitMs = 500;
    const jsm = await jetstreamManager(await natsConn());
    await jsm.streams.add({ name: 'DIRJS', subjects: ['DIRJS.>'], storage: StorageType.File });
    await jsm.consumers.add('DIRJS', { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(ackWaitMs), max_deliver: -1 });
    const g = await grid();
    const ic = env.closeAfter(new IdempotentConsumer({ grid: g, name: 'direct-js', workingIntervalMs: 100, busyDelayMs: 200, direct: { concurrency: 2, maxQueued: 3 } }));
    const dropped: Dropped[] = [];
    const processed: string[] = [];
    ic.on('dropped', (e) => dropped.push(e));
    ic.on('processed', (e) => processed.push(e.id));
    const h = env.gated();
    /** Deliveries of each message id that reached the application's loop. */
    const deliveries = new Map<string, number>();
    const ran: string[] = [];
    const js = jetstream(await natsConn());
    for (let i = 0; i < 8; i++) await js.publish('DIRJS.x', `m${i}`, { msgID: `dj-${i}` });
    const messages = await (await js.consumers.get('DIRJS', 'c')).consume({ max_messages: 20, expires: 1000 });
    closers.push(() => messages.stop());
    const ops0 = g.stats().operations;
    // The application's loop: it hands every message over and does not wait.
    void (async () => {
      for await (const m of messages) {
        const id = m.headers?.get('Nats-Msg-Id') ?? '';
        deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
        void ic.handleJetStream(m, async (jm: JsMsg, ctx) => {
          ran.push(ctx.id);
          await h.handler(jm, ctx);
        });
      }
    })();
    await waitUntil(() => h.started.length === 2 && dropped.length >= 3, 10_000, 'two handlers running and three messages refused');
    expect(g.stats().operations - ops0).toBe(2);
    expect(dropped.every((d) => d.reason === 'overflow' && d.jetstream && d.subject === 'DIRJS.x')).toBe(true);
    // Hold the slots for several AckWaits: the three waiting messages are not redelivered (the
    // refused ones are, every busyDelayMs, and refused again while the queue is full).
    const heldSince = Date.now();
    await waitUntil(() => Date.now() - heldSince > 3 * ackWaitMs, 10_000, 'three AckWaits');
    expect(h.started).toHaveLength(2);
    expect(g.stats().operations - ops0).toBe(2);
    h.open();
    await waitUntil(() => processed.length === 8, 20_000, 'every message processed');
    expect(h.max()).toBe(2);
    expect([...ran].sort()).toEqual(Array.from({ length: 8 }, (_, i) => `dj-${i}`));
    // In stream order: dj-0 and dj-1 ran at once, dj-2..4 waited, dj-5..7 were refused. The
    // waiting ones were delivered once only; the refused ones came back.
    expect([0, 1, 2, 3, 4].map((i) => deliveries.get(`dj-${i}`))).toEqual([1, 1, 1, 1, 1]);
    expect([5, 6, 7].every((i) => (deliveries.get(`dj-${i}`) ?? 0) >= 2)).toBe(true);
    await waitUntil(async () => (await jsm.consumers.info('DIRJS', 'c')).num_ack_pending === 0, 10_000, 'every message acknowledged');
  });

  it('direct.concurrency and direct.maxQueued are validated and named', async () => {
    const g = await grid();
    const field = (direct: unknown): string => {
      try {
        new IdempotentConsumer({ grid: g, direct: direct as never });
      } catch (e) {
        expect(e).toBeInstanceOf(MessagingConfigError);
        return (e as MessagingConfigError).field;
      }
      return 'accepted';
    };
    expect(field({ concurrency: 0 })).toBe('direct.concurrency');
    expect(field({ concurrency: 1.5 })).toBe('direct.concurrency');
    expect(field({ maxQueued: -1 })).toBe('direct.maxQueued');
    expect(field({ maxQueud: 3 })).toBe('direct.maxQueud');
    expect(field(5)).toBe('direct');
    expect(field({ concurrency: 1, maxQueued: 0 })).toBe('accepted');
    // Only undefined means "left out": null is refused naming the option (it used to mean the defaults).
    expect(field(null)).toBe('direct');
    expect(field(undefined)).toBe('accepted');
  });
});
