/**
 * `consume()` given a nats.js consumer opens the message stream itself, pulling only what its
 * slots can take, so a backlog handled more slowly than AckWait allows is not redelivered while it
 * waits in the pull buffer (real nats-server with JetStream, real grid).
 */
import { describe, expect, it } from 'vitest';
import { nanos } from '@nats-io/transport-node';
import { AckPolicy, StorageType, jetstream, jetstreamManager, type Consumer, type JsMsg } from '@nats-io/jetstream';
import { IdempotentConsumer, MessagingClosedError, MessagingConfigError } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('idempotent consumer: consume() sizes the pull to its slots (real nats-server, real grid)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  /** A stream on `<name>.>` with `count` messages and a durable pull consumer "c". */
  async function backlog(name: string, ackWaitMs: number, count: number): Promise<Consumer> {
    const nc = await natsConn();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: StorageType.File });
    await jsm.consumers.add(name, { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(ackWaitMs), max_deliver: -1 });
    const js = jetstream(nc);
    for (let i = 0; i < count; i++) await js.publish(`${name}.x`, `m${i}`, { msgID: `${name}-${i}` });
    return js.consumers.get(name, 'c');
  }

  /** Deliveries the server made on the consumer (redeliveries included) once all are acknowledged. */
  async function deliveriesOf(name: string): Promise<number> {
    const jsm = await jetstreamManager(await natsConn());
    await waitUntil(async () => (await jsm.consumers.info(name, 'c')).num_ack_pending === 0, 10_000, `${name} acknowledged`);
    return (await jsm.consumers.info(name, 'c')).delivered.consumer_seq;
  }

  /** Handles every message of the backlog, one at a time, each taking `ms`; counts duplicates. */
  async function drain(name: string, source: Consumer | AsyncIterable<JsMsg>, count: number, ms: number): Promise<{ duplicates: number }> {
    const ic = env.closeAfter(new IdempotentConsumer({ grid: await grid(), name, workingIntervalMs: 100 }));
    let processed = 0;
    let duplicates = 0;
    ic.on('processed', () => processed++);
    ic.on('duplicate', () => duplicates++);
    void ic.consume(source, async () => void (await new Promise((r) => setTimeout(r, ms)))).catch(() => undefined);
    await waitUntil(() => processed === count, 30_000, `${name}: every message processed`);
    return { duplicates };
  }

  it('a backlog that takes longer than AckWait to go through one slot: every message is delivered once (the application\'s stream with nats.js\'s default pull of 100 is redelivered)', async () => {
    const ackWaitMs = 1000;
    const count = 12;
    const handlerMs = 150;
    // Given the consumer: a pull of one message per slot; the one waiting waits one handler run.
    const sized = await drain('PULLSZ', await backlog('PULLSZ', ackWaitMs, count), count, handlerMs);
    expect(sized.duplicates).toBe(0);
    expect(await deliveriesOf('PULLSZ')).toBe(count);
    // The same backlog through a stream the application opened with nats.js's defaults: the whole
    // backlog waits in its buffer, the later messages longer than AckWait, and the server delivers
    // them again. (Counted by the server: the copies queue behind the originals, so whether the
    // consumer has met one as a duplicate by the time the originals are done depends on timing.)
    const messages = await (await backlog('PULLBIG', ackWaitMs, count)).consume();
    closers.push(() => messages.stop());
    await drain('PULLBIG', messages, count, handlerMs);
    expect(await deliveriesOf('PULLBIG')).toBeGreaterThan(count);
  });

  it('refuses a workingIntervalMs not below the consumer\'s AckWait; close() stops the stream it opened', async () => {
    const c = await backlog('PULLCFG', 500, 0);
    const slow = env.closeAfter(new IdempotentConsumer({ grid: await grid(), name: 'pullcfg', workingIntervalMs: 500 }));
    const refused = await slow.consume(c, async () => undefined).then(
      () => null,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(MessagingConfigError);
    expect((refused as MessagingConfigError).field).toBe('workingIntervalMs');

    const nc = await natsConn('pull-close');
    const c2 = await jetstream(nc).consumers.get('PULLCFG', 'c');
    const ic = new IdempotentConsumer({ grid: await grid(), name: 'pullcfg', workingIntervalMs: 100 });
    const consumed = ic.consume(c2, async () => undefined, { concurrency: 4 });
    // The request inbox (nats.js's `_INBOX.<id>.*`, for the consumer lookup) and the pull's own.
    await waitUntil(async () => (await env.nats.subscriptionsOf('pull-close'))?.length === 2, 10_000, 'the pull subscribed');
    await ic.close();
    await consumed;
    await nc.flush();
    await waitUntil(
      async () => ((await env.nats.subscriptionsOf('pull-close')) ?? []).every((s) => s.endsWith('.*')),
      10_000,
      'the pull subscription gone',
    );
  });

  it('a close() that comes while consume() opens the stream: nothing is run after it, the stream is stopped and consume() rejects with MessagingClosedError', async () => {
    await backlog('PULLRACE', 5000, 3);
    const nc = await natsConn('pull-race');
    const real = await jetstream(nc).consumers.get('PULLRACE', 'c');
    const ic = new IdempotentConsumer({ grid: await grid(), name: 'pullrace', workingIntervalMs: 100 });
    // The real consumer, its stream opened only once close() has been called (the window between
    // consume()'s own checks and its reading loop, held open).
    const opened = env.gate();
    let opening = false;
    const held = {
      info: (cached?: boolean) => real.info(cached),
      consume: async (o: Parameters<Consumer['consume']>[0]) => {
        opening = true;
        await opened.gate;
        return real.consume(o);
      },
    } as unknown as Consumer;
    let runs = 0;
    let outcome: unknown = 'pending';
    void ic.consume(held, async () => void runs++).then(
      () => (outcome = 'resolved'),
      (e: unknown) => (outcome = e),
    );
    await waitUntil(() => opening, 10_000, 'consume() opening the stream');
    await ic.close();
    opened.open();
    await waitUntil(() => outcome !== 'pending', 10_000, 'consume() settled');
    expect(outcome).toBeInstanceOf(MessagingClosedError);
    await nc.flush();
    await waitUntil(
      async () => ((await env.nats.subscriptionsOf('pull-race')) ?? []).every((s) => s.endsWith('.*')),
      10_000,
      'the pull subscription gone',
    );
    expect(runs).toBe(0);
  });
});
