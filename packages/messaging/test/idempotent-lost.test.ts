/**
 * An idempotent JetStream consumer that loses its lock while its handler runs on: another consumer
 * must get the message, with a real grid (the first consumer reaches it through fault proxies) and
 * a real nats-server.
 */
import { describe, expect, it } from 'vitest';
import { nanos } from '@nats-io/transport-node';
import { AckPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { IdempotentConsumer } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('idempotent consumer: a lock lost while the handler runs', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  it('stops extending the AckWait, so the message is redelivered to a consumer that holds the id and processed there', async () => {
    const jsm = await jetstreamManager(await natsConn());
    await jsm.streams.add({ name: 'LOST', subjects: ['LOST.>'], storage: StorageType.File });
    await jsm.consumers.add('LOST', { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(1000), max_deliver: -1 });
    const js = jetstream(await natsConn());

    // A: cut off from the grid while its handler runs, a handler that does not stop on the signal.
    const { gw, proxies } = await env.proxiedGrid();
    const a = new IdempotentConsumer({ grid: gw, name: 'lost', lockLeaseMs: 600, workingIntervalMs: 100, busyDelayMs: 100, closeTimeoutMs: 0 });
    closers.push(() => a.close());
    a.on('error', () => undefined);
    const { gate, open } = env.gate();
    let aSignal: AbortSignal | null = null;
    const doneA = a.consume(await js.consumers.get('LOST', 'c'), async (_m, ctx) => {
      aSignal = ctx.signal;
      for (const p of proxies) p.blackhole(true);
      await gate;
    });
    void doneA.catch(() => undefined);
    await js.publish('LOST.x', 'x', { msgID: 'lost-1' });
    await waitUntil(() => aSignal !== null, 10_000, 'A to run the handler');
    await waitUntil(() => aSignal?.aborted === true, 10_000, "A's signal to abort (lease not renewed)");
    expect(String((aSignal as AbortSignal | null)?.reason)).toContain('lease could not be renewed in time');

    // B: a healthy consumer of the same durable. A's lease has run out on the grid: B may take
    // the id once the server gives it the message.
    const b = new IdempotentConsumer({ grid: await grid(), name: 'lost', workingIntervalMs: 100, busyDelayMs: 100 });
    closers.push(() => b.close());
    const processedB: { id: string; fencingToken: number }[] = [];
    b.on('processed', (e) => processedB.push(e));
    void b.consume(await js.consumers.get('LOST', 'c'), () => undefined).catch(() => undefined);
    // Before, A went on calling working() every 100 ms for as long as its handler ran, so the
    // server never redelivered the message: no other consumer could process it.
    await waitUntil(() => processedB.length === 1, 15_000, 'B to process the message A lost');
    expect(processedB[0]?.id).toBe('lost-1');
    expect(await b.isProcessed('lost-1')).toBe(true);
    open();
  });

  it("ignores the handler's own ctx.working() once its signal aborted as lost: the message is redelivered to another consumer", async () => {
    const jsm = await jetstreamManager(await natsConn());
    await jsm.streams.add({ name: 'LOSTW', subjects: ['LOSTW.>'], storage: StorageType.File });
    await jsm.consumers.add('LOSTW', { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(1000), max_deliver: -1 });
    const js = jetstream(await natsConn());

    // A: cut off from the grid while its handler runs on, ignoring its signal and calling
    // ctx.working() itself every 50 ms (as a batch handler does after each item).
    const { gw, proxies } = await env.proxiedGrid();
    const a = new IdempotentConsumer({ grid: gw, name: 'lostw', lockLeaseMs: 600, workingIntervalMs: 100, busyDelayMs: 100, closeTimeoutMs: 0 });
    closers.push(() => a.close());
    a.on('error', () => undefined);
    const { gate, open } = env.gate();
    let aSignal: AbortSignal | null = null;
    let workingCalls = 0;
    const doneA = a.consume(await js.consumers.get('LOSTW', 'c'), async (_m, ctx) => {
      aSignal = ctx.signal;
      for (const p of proxies) p.blackhole(true);
      const beat = setInterval(() => {
        workingCalls++;
        ctx.working();
      }, 50);
      try {
        await gate;
      } finally {
        clearInterval(beat);
      }
    });
    void doneA.catch(() => undefined);
    await js.publish('LOSTW.x', 'x', { msgID: 'lostw-1' });
    await waitUntil(() => aSignal !== null, 10_000, 'A to run the handler');
    await waitUntil(() => aSignal?.aborted === true, 10_000, "A's signal to abort (lease not renewed)");
    const callsAtLoss = workingCalls;

    const b = new IdempotentConsumer({ grid: await grid(), name: 'lostw', workingIntervalMs: 100, busyDelayMs: 100 });
    closers.push(() => b.close());
    const processedB: string[] = [];
    b.on('processed', (e) => processedB.push(e.id));
    void b.consume(await js.consumers.get('LOSTW', 'c'), () => undefined).catch(() => undefined);
    // Before, A's own working() calls went on extending the AckWait after its lock was lost, so
    // the server never redelivered the message while A's handler ran.
    await waitUntil(() => processedB.length === 1, 15_000, 'B to process the message A lost');
    expect(processedB).toEqual(['lostw-1']);
    // A's handler was still calling working() all along.
    expect(workingCalls).toBeGreaterThan(callsAtLoss);
    open();
  });
});

describe('idempotent consumer: the JetStream consumer deleted underneath consume()', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  it('is reported as an error event (MSG_CONSUMER_MISSING) while consume() goes on waiting; close() ends it', async () => {
    const jsm = await jetstreamManager(await natsConn());
    await jsm.streams.add({ name: 'GONE', subjects: ['GONE.>'], storage: StorageType.File });
    await jsm.consumers.add('GONE', { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(2000), max_deliver: -1 });
    const js = jetstream(await natsConn());
    const ic = new IdempotentConsumer({ grid: await grid(), name: 'gone' });
    closers.push(() => ic.close());
    const errors: Error[] = [];
    ic.on('error', (e) => errors.push(e));
    const processed: string[] = [];
    ic.on('processed', (e) => processed.push(e.id));
    let settled = false;
    const done = ic.consume(await js.consumers.get('GONE', 'c'), () => undefined);
    void done.then(() => (settled = true), () => (settled = true));
    await js.publish('GONE.x', 'a', { msgID: 'gone-1' });
    await waitUntil(() => processed.length === 1, 10_000, 'the first message processed');
    await jsm.consumers.delete('GONE', 'c');
    // Before, nothing said so: consume() opened the message stream itself, so the application
    // could not read nats.js's notices, and it waited for messages that never came.
    await waitUntil(() => errors.some((e) => (e as { code?: string }).code === 'MSG_CONSUMER_MISSING'), 10_000, 'the missing consumer reported');
    const missing = errors.find((e) => (e as { code?: string }).code === 'MSG_CONSUMER_MISSING');
    expect(missing?.message).toContain('GONE');
    expect(settled).toBe(false);
    await ic.close();
    // close() ends it.
    await done;
  });
});

describe('idempotent consumer: a handler that throws', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  it('has its JetStream message nak\'ed with busyDelayMs, not redelivered at once in a loop', async () => {
    const jsm = await jetstreamManager(await natsConn());
    await jsm.streams.add({ name: 'THROWS', subjects: ['THROWS.>'], storage: StorageType.File });
    await jsm.consumers.add('THROWS', { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(5000), max_deliver: -1 });
    const js = jetstream(await natsConn());
    const ic = new IdempotentConsumer({ grid: await grid(), name: 'throws', busyDelayMs: 300 });
    closers.push(() => ic.close());
    const runs: number[] = [];
    const failed: string[] = [];
    ic.on('failed', (e) => failed.push(e.id));
    void ic.consume(await js.consumers.get('THROWS', 'c'), () => {
      runs.push(Date.now());
      throw new Error('downstream unavailable');
    }).catch(() => undefined);
    await js.publish('THROWS.x', 'x', { msgID: 'throws-1' });
    await waitUntil(() => runs.length >= 3, 10_000, 'three runs');
    // Before: nak'ed without a delay, the message came back at once — a run every few ms, two
    // grid operations each, for as long as the handler failed (max_deliver -1).
    for (let i = 1; i < 3; i++) expect(runs[i]! - runs[i - 1]!).toBeGreaterThanOrEqual(250);
    expect(failed.slice(0, 3)).toEqual(['throws-1', 'throws-1', 'throws-1']);
    expect(await ic.isProcessed('throws-1')).toBe(false);
  });
});

describe('idempotent consumer: a lock granted too late to be trusted', () => {
  const env = messagingEnv();
  const { closers, natsConn } = env;

  it('does not run the handler: the message is nak\'ed and runs once the grid answers in time', async () => {
    const jsm = await jetstreamManager(await natsConn());
    await jsm.streams.add({ name: 'LATE', subjects: ['LATE.>'], storage: StorageType.File });
    await jsm.consumers.add('LATE', { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(5000), max_deliver: -1 });
    const js = jetstream(await natsConn());
    const { gw, proxies } = await env.proxiedGrid();
    // Lease 500 ms, trusted for 400 ms from when the request was sent; every grid answer takes
    // longer than that while the proxies delay each way by 300 ms.
    const ic = new IdempotentConsumer({ grid: gw, name: 'late', lockLeaseMs: 500, busyDelayMs: 100 });
    closers.push(() => ic.close());
    ic.on('error', () => undefined);
    const failed: unknown[] = [];
    const processed: string[] = [];
    ic.on('failed', (e) => failed.push(e.error));
    ic.on('processed', (e) => processed.push(e.id));
    let runs = 0;
    let runsWhileLate = 0;
    let late = true;
    for (const p of proxies) p.delay(300);
    void ic.consume(await js.consumers.get('LATE', 'c'), () => {
      runs++;
      if (late) runsWhileLate++;
    }).catch(() => undefined);
    await js.publish('LATE.x', 'x', { msgID: 'late-1' });
    await waitUntil(() => failed.length >= 2 || runsWhileLate > 0, 15_000, 'two deliveries given up');
    // Before, the handler ran with a lock whose lease could run out on the grid at any moment
    // (its signal aborted just after it started): another consumer could take the id meanwhile.
    expect(runsWhileLate).toBe(0);
    expect((failed[0] as { code?: string }).code).toBe('MSG_LEASE_UNCERTAIN');
    late = false;
    for (const p of proxies) p.heal();
    await waitUntil(() => processed.length === 1, 15_000, 'the message processed once the grid answers in time');
    expect(runs).toBe(1);
  });
});
