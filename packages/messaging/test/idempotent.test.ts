import { describe, expect, it } from 'vitest';
import { LockNotHeldError } from '@gridlink/client';
import { headers, nanos } from '@nats-io/transport-node';
import { AckPolicy, StorageType, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { IdempotentConsumer, MessagingConfigError, MissingMessageIdError } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('idempotent consumers (real nats-server with JetStream, real grid)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  /** A stream and a durable pull consumer with a short AckWait. */
  async function stream(name: string, ackWaitMs: number): Promise<void> {
    const jsm = await jetstreamManager(await natsConn());
    // A short duplicate window so re-publishes with the same Nats-Msg-Id reach the consumer.
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: StorageType.File, duplicate_window: nanos(100) });
    await jsm.consumers.add(name, { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(ackWaitMs), max_deliver: -1 });
  }

  async function consume(name: string): Promise<ConsumerMessages> {
    const js = jetstream(await natsConn());
    const c = await js.consumers.get(name, 'c');
    const msgs = await c.consume({ max_messages: 20, expires: 1000 });
    closers.push(() => msgs.stop());
    return msgs;
  }

  it('JetStream: duplicate publishes and redeliveries never run a processed message twice', async () => {
    await stream('DUP', 300);
    const runs = new Map<string, number>();
    const tokens: number[] = [];
    const ic = new IdempotentConsumer({ grid: await grid(), name: 'dup', workingIntervalMs: 100 });
    const duplicates: string[] = [];
    ic.on('duplicate', (e) => duplicates.push(e.id));
    const done = ic.consume(await consume('DUP'), async (m: JsMsg, ctx) => {
      runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
      tokens.push(ctx.fencingToken);
      expect(m.subject.startsWith('DUP.')).toBe(true);
    }, { concurrency: 4 });
    const js = jetstream(await natsConn());
    for (let i = 0; i < 30; i++) await js.publish(`DUP.o`, `m${i}`, { msgID: `id-${i}` });
    await waitUntil(() => runs.size === 30, 15_000, 'every message processed');
    // Re-publish after the stream's own duplicate window: the stream accepts them, the consumer skips them.
    await waitUntil(async () => (await ic.isProcessed('id-29')), 5000, 'id-29 marked');
    // Re-publish each id until the stream stores it again (its own 100 ms duplicate window has passed).
    for (let i = 0; i < 30; i++) {
      await waitUntil(async () => !(await js.publish(`DUP.o`, `again${i}`, { msgID: `id-${i}` })).duplicate, 5000, `id-${i} stored again`);
    }
    await waitUntil(() => duplicates.length >= 30, 15_000, 'every re-publish recognised');
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(tokens.every((t) => t > 0)).toBe(true);
    void done.catch(() => undefined);
  });

  it('consume() over a stream that ends resolves only once the messages it took are handled', async () => {
    await stream('ENDS', 5000);
    const js = jetstream(await natsConn());
    for (let i = 0; i < 3; i++) await js.publish('ENDS.o', `m${i}`, { msgID: `ends-${i}` });
    const messages = await consume('ENDS');
    // The first three messages, then the end of the stream.
    let ended = false;
    async function* firstThree(): AsyncGenerator<JsMsg> {
      let n = 0;
      for await (const m of messages) {
        yield m;
        if (++n === 3) break;
      }
      ended = true;
    }
    const ic = new IdempotentConsumer({ grid: await grid(), name: 'ends' });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    let finished = 0;
    let resolved = false;
    const done = ic.consume(firstThree(), async () => {
      started++;
      await gate;
      finished++;
    }, { concurrency: 4 }).then(() => (resolved = true));
    await waitUntil(() => started === 3 && ended, 10_000, 'three handlers running, the stream ended');
    // The loop has seen the end (a free slot let it ask for more); the handlers still run, so
    // consume() has not resolved, a few turns of the event loop later.
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    expect(resolved).toBe(false);
    release();
    await done;
    expect(finished).toBe(3);
    await ic.close();
  });

  it('a slow message redelivered after AckWait to another consumer is not run concurrently; the holder keeps its AckWait with working()', async () => {
    await stream('SLOW', 300);
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const inProgress: string[] = [];
    // Consumer A does not extend AckWait by itself (interval far above AckWait): the server
    // redelivers the message to B while A still holds it.
    const a = new IdempotentConsumer({ grid: await grid(), name: 'slow', workingIntervalMs: 60_000, busyDelayMs: 200 });
    const b = new IdempotentConsumer({ grid: await grid(), name: 'slow', workingIntervalMs: 60_000, busyDelayMs: 200 });
    for (const c of [a, b]) c.on('inProgress', (e) => inProgress.push(e.id));
    const handler = async (_m: JsMsg, _ctx: { id: string; signal: AbortSignal }): Promise<void> => {
      runs++;
      active++;
      maxActive = Math.max(maxActive, active);
      // Slow: hold the id until another consumer has seen the redelivery (or 5 s).
      const deadline = Date.now() + 5000;
      while (inProgress.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      active--;
    };
    void a.consume(await consume('SLOW'), handler).catch(() => undefined);
    void b.consume(await consume('SLOW'), handler).catch(() => undefined);
    const js = jetstream(await natsConn());
    await js.publish('SLOW.x', 'slow', { msgID: 'slow-1' });
    await waitUntil(async () => (await a.isProcessed('slow-1')), 15_000, 'slow-1 processed');
    expect(inProgress).toContain('slow-1');
    expect(maxActive).toBe(1);
    expect(runs).toBe(1);

    // With automatic working() below AckWait there is no redelivery at all.
    await stream('KEEP', 300);
    const c = new IdempotentConsumer({ grid: await grid(), name: 'keep', workingIntervalMs: 80 });
    const deliveries: number[] = [];
    void c
      .consume(await consume('KEEP'), async (m: JsMsg) => {
        deliveries.push(m.info.deliveryCount);
        await new Promise((r) => setTimeout(r, 1200)); // a handler that takes four AckWaits
      })
      .catch(() => undefined);
    await js.publish('KEEP.x', 'k', { msgID: 'keep-1' });
    await waitUntil(async () => (await c.isProcessed('keep-1')), 15_000, 'keep-1 processed');
    expect(deliveries).toEqual([1]);
  });

  it('core NATS: a re-published id is not run again; ids from a function; a message without id is reported', async () => {
    const nc1 = await natsConn();
    const nc2 = await natsConn();
    const runs = new Map<string, number>();
    const errors: unknown[] = [];
    const ic1 = new IdempotentConsumer({ grid: await grid(), name: 'core' });
    const ic2 = new IdempotentConsumer({ grid: await grid(), name: 'core' });
    const processed: string[] = [];
    for (const ic of [ic1, ic2]) {
      ic.on('error', (e) => errors.push(e));
      ic.on('processed', (e) => processed.push(e.id));
      closers.push(() => ic.close());
    }
    const handler = async (_m: unknown, ctx: { id: string }): Promise<void> => {
      runs.set(ctx.id, (runs.get(ctx.id) ?? 0) + 1);
    };
    ic1.subscribe(nc1, 'core.in', handler, { queue: 'q' });
    ic2.subscribe(nc2, 'core.in', handler, { queue: 'q' });
    await nc1.flush();
    await nc2.flush();
    const pub = await natsConn();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 20; i++) {
        const h = headers();
        h.set('Nats-Msg-Id', `c-${i}`);
        pub.publish('core.in', `x${i}`, { headers: h });
      }
      await pub.flush();
      await waitUntil(() => processed.length >= 20, 10_000, 'the first round processed');
    }
    pub.publish('core.in', 'no id');
    await waitUntil(() => errors.length > 0, 5000, 'the missing id reported');
    expect(errors[0]).toBeInstanceOf(MissingMessageIdError);
    expect(runs.size).toBe(20);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);

    // idOf: ids taken from the message body.
    const byBody = new IdempotentConsumer({ grid: await grid(), name: 'body', idOf: (m) => new TextDecoder().decode(m.data).split(':')[0] });
    closers.push(() => byBody.close());
    const bodyRuns: string[] = [];
    byBody.subscribe(nc1, 'core.body', async (_m, ctx) => void bodyRuns.push(ctx.id));
    await nc1.flush();
    for (const s of ['a:1', 'b:1', 'a:2', 'b:2', 'c:1']) pub.publish('core.body', s);
    await pub.flush();
    await waitUntil(async () => (await byBody.isProcessed('c')), 5000, 'c processed');
    expect(bodyRuns.sort()).toEqual(['a', 'b', 'c']);
  });

  it('a fresh message costs two grid operations (lock + mark read, mark + unlock); a duplicate one read', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = new IdempotentConsumer({ grid: g, name: 'cost' });
    closers.push(() => ic.close());
    const processed: string[] = [];
    const duplicates: string[] = [];
    const tokens = new Map<string, number>();
    ic.on('processed', (e) => processed.push(e.id));
    ic.on('duplicate', (e) => duplicates.push(e.id));
    ic.subscribe(nc, 'cost.in', async (_m, ctx) => void tokens.set(ctx.id, ctx.fencingToken));
    await nc.flush();
    const send = async (id: string): Promise<void> => {
      const h = headers();
      h.set('Nats-Msg-Id', id);
      nc.publish('cost.in', id, { headers: h });
      await nc.flush();
    };
    const ops0 = g.stats().operations;
    for (let i = 0; i < 10; i++) {
      await send(`k-${i}`);
      await waitUntil(() => processed.length === i + 1, 5000, `k-${i} processed`);
    }
    expect(g.stats().operations - ops0).toBe(20);
    for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) expect(await ic.isProcessed(`k-${i}`)).toBe(true);
    const ops1 = g.stats().operations;
    for (let i = 0; i < 10; i++) {
      await send(`k-${i}`);
      await waitUntil(() => duplicates.length === i + 1, 5000, `k-${i} seen as a duplicate`);
    }
    // A duplicate is answered by the read alone (ifAbsent): the lock is not taken, nothing to release.
    expect(g.stats().operations - ops1).toBe(10);
    expect(processed).toHaveLength(10);
    // The lock was freed each time: a later holder of the same id gets a larger token.
    const lock = await g.lock('gridlink.msg/cost/k-0').tryAcquire();
    expect(lock).not.toBeNull();
    expect(lock!.fencingToken).toBeGreaterThan(tokens.get('k-0')!);
    await lock!.release();
  });

  it('a processing whose lock lease ran out during the handler marks nothing: failed, and the next delivery runs with a larger token', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = new IdempotentConsumer({ grid: g, name: 'stall', lockLeaseMs: 100 });
    closers.push(() => ic.close());
    const failed: { id: string; error: unknown }[] = [];
    const processed: { id: string; fencingToken: number }[] = [];
    ic.on('failed', (e) => failed.push(e));
    ic.on('processed', (e) => processed.push(e));
    let stall = true;
    const tokens: number[] = [];
    ic.subscribe(nc, 'stall.in', (_m, ctx) => {
      tokens.push(ctx.fencingToken);
      if (!stall) return;
      stall = false;
      // A stalled process: no renewal can go out until the lease has run out on the grid.
      const end = Date.now() + 300;
      while (Date.now() < end);
    });
    await nc.flush();
    const h = headers();
    h.set('Nats-Msg-Id', 's-1');
    nc.publish('stall.in', 'x', { headers: h });
    await waitUntil(() => failed.length === 1, 5000, 'the stalled processing reported failed');
    expect(failed[0]!.error).toBeInstanceOf(LockNotHeldError);
    expect(await ic.isProcessed('s-1')).toBe(false);
    nc.publish('stall.in', 'x', { headers: h });
    await waitUntil(() => processed.length === 1, 5000, 'the redelivery processed');
    expect(await ic.isProcessed('s-1')).toBe(true);
    expect(tokens).toHaveLength(2);
    expect(tokens[1]!).toBeGreaterThan(tokens[0]!);
    expect(processed[0]!.fencingToken).toBe(tokens[1]);
    const lock = await g.lock('gridlink.msg/stall/s-1').tryAcquire();
    expect(lock).not.toBeNull();
    await lock!.release();
  });

  it('config errors name the field', async () => {
    const g = await grid();
    expect(() => new IdempotentConsumer({ grid: g, windowMs: 0 })).toThrow(MessagingConfigError);
    expect(() => new IdempotentConsumer({ grid: g, windowMs: 0 })).toThrow(/windowMs/);
    expect(() => new IdempotentConsumer({ grid: g, name: 'a.b' })).toThrow(/name/);
    expect(() => new IdempotentConsumer({ grid: g, idOf: 5 as never })).toThrow(/idOf/);
    expect(() => new IdempotentConsumer({ grid: null as never })).toThrow(/grid/);
    // Timers take at most 2^31 - 1 ms: a longer lease or interval would fire at once.
    for (const field of ['lockLeaseMs', 'workingIntervalMs', 'busyDelayMs'] as const) {
      expect(() => new IdempotentConsumer({ grid: g, [field]: 2 ** 31 })).toThrow(new RegExp(field));
      expect(() => new IdempotentConsumer({ grid: g, [field]: 2 ** 31 - 1 })).not.toThrow();
    }
  });
});
