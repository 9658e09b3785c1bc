/**
 * The idempotent consumer under bad input and shutdown, against a real nats-server (JetStream,
 * and its /connz monitoring endpoint for the subscriptions left) and a real grid.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { headers, nanos, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, StorageType, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { IdempotentConsumer, MessagingClosedError, MessagingConfigError, MissingMessageIdError, type IdempotentContext } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv, publishIds } from './helpers/env.js';

describe('idempotent consumer: bad input and close (real nats-server, real grid)', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;
  /** A stream on `<name>.>` and a durable pull consumer "c" with explicit acks. */
  async function stream(name: string, ackWaitMs = 30_000): Promise<void> {
    const jsm = await jetstreamManager(await natsConn());
    await jsm.streams.add({ name, subjects: [`${name}.>`], storage: StorageType.File });
    await jsm.consumers.add(name, { durable_name: 'c', ack_policy: AckPolicy.Explicit, ack_wait: nanos(ackWaitMs), max_deliver: -1 });
  }
  async function consumerMessages(name: string, nc?: NatsConnection): Promise<ConsumerMessages> {
    const c = await jetstream(nc ?? (await natsConn())).consumers.get(name, 'c');
    const msgs = await c.consume({ max_messages: 10, expires: 1000 });
    closers.push(() => msgs.stop());
    return msgs;
  }
  async function consumerInfo(name: string): Promise<{ num_ack_pending: number; num_redelivered: number; num_pending: number }> {
    const jsm = await jetstreamManager(await natsConn());
    return jsm.consumers.info(name, 'c');
  }
  /** A consumer closed after the test (its own close may already have run). */
  function consumer(o: ConstructorParameters<typeof IdempotentConsumer>[0]): IdempotentConsumer {
    const ic = new IdempotentConsumer(o);
    closers.push(() => ic.close());
    return ic;
  }
  const withId = (id: string): ReturnType<typeof headers> => {
    const h = headers();
    h.set('Nats-Msg-Id', id);
    return h;
  };

  it('options: unknown, null or mistyped ones are MessagingConfigErrors naming the field, at construction and per call', async () => {
    const g = await grid();
    const nc = await natsConn();
    const bad = (f: () => unknown, field: RegExp): void => {
      let thrown: unknown;
      try {
        f();
      } catch (e) {
        thrown = e;
      }
      expect(thrown, String(field)).toBeInstanceOf(MessagingConfigError);
      expect((thrown as MessagingConfigError).field).toMatch(field);
    };
    bad(() => new IdempotentConsumer({ grid: g, windowMS: 5 } as never), /^windowMS$/);
    // A name without a JSON form is still described, not a TypeError from describing it.
    bad(() => new IdempotentConsumer({ grid: g, name: 10n as never }), /^name$/);
    bad(() => new IdempotentConsumer({ grid: g, closeTimeoutMs: -1 }), /^closeTimeoutMs$/);
    bad(() => new IdempotentConsumer([] as never), /^options$/);
    const ic = consumer({ grid: g, name: 'opts' });
    const h = async (): Promise<void> => undefined;
    // Checked when subscribing, not at the first message (where every message would fail).
    bad(() => ic.subscribe(nc, 'opts.in', 'not a function' as never), /^handler$/);
    bad(() => ic.subscribe(null as never, 'opts.in', h), /^nc$/);
    bad(() => ic.subscribe(nc, '', h), /^subject$/);
    bad(() => ic.subscribe(nc, 'opts.in', h, { queue: 5 as never }), /^queue$/);
    bad(() => ic.subscribe(nc, 'opts.in', h, { qeue: 'q' } as never), /^qeue$/);
    // null options mean none.
    ic.subscribe(nc, 'opts.in', h, null).unsubscribe();
    await stream('OPTS');
    const msgs = await consumerMessages('OPTS');
    for (const [call, field] of [
      [() => ic.consume(null as never, h), /^source$/],
      [() => ic.consume({ next: () => undefined } as never, h), /^source$/],
      [() => ic.consume(msgs, 42 as never), /^handler$/],
      [() => ic.consume(msgs, h, { concurrency: 0 }), /^concurrency$/],
      [() => ic.consume(msgs, h, { concurency: 2 } as never), /^concurency$/],
      [() => ic.handleJetStream({} as JsMsg, undefined as never), /^handler$/],
      [() => ic.handleCore({} as Msg, {} as never), /^handler$/],
    ] as const) {
      const e = await call().then(
        () => null,
        (x: unknown) => x,
      );
      expect(e, String(field)).toBeInstanceOf(MessagingConfigError);
      expect((e as MessagingConfigError).field).toMatch(field);
    }
  });

  it('subscribe: a queue group name nats-server or nats.js would break on is refused naming queue, before any SUB; others form one group', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = consumer({ grid: g, name: 'queues' });
    const h = async (): Promise<void> => undefined;
    const subject = 'queues.in';
    // nats-server's max_control_line (4096) less the two spaces and 16 digits kept for the sid.
    const room = 4096 - 16 - 2 - subject.length;
    const refused: [string, string][] = [
      ['empty', ''],
      // Whitespace splits the SUB line: the server closes the connection (a line feed even sends
      // the rest as another command).
      ['space', 'a b'],
      ['tab', 'a\tb'],
      ['carriage return', 'a\rb'],
      ['line feed', 'a\nb'],
      // Sent by nats.js as U+FFFD: two such names would be one group.
      ['lone surrogate', 'q\uD800'],
      // Quoted with escapes in the server's permission error, so nats.js cannot give that error to
      // the subscription (it stays open, receiving nothing).
      ['control character', 'q\u0001'],
      ['NUL', 'q\u0000'],
      ['DEL', 'q\u007f'],
      ['no-break space', 'q\u00a0'],
      ['zero-width space', 'q\u200b'],
      ['line separator', 'q\u2028'],
      ['double quote', 'q"'],
      ['backslash', 'q\\'],
      // The server refuses a subscription in this group.
      ['_sys_', '_sys_'],
      // A SUB line over max_control_line closes the connection; counted in UTF-8 bytes.
      ['one byte too long', 'q'.repeat(room + 1)],
      ['too long in UTF-8', '\u00e9'.repeat(Math.floor(room / 2) + 1)],
    ];
    for (const [what, queue] of refused) {
      let thrown: unknown;
      try {
        ic.subscribe(nc, subject, h, { queue });
      } catch (e) {
        thrown = e;
      }
      expect(thrown, what).toBeInstanceOf(MessagingConfigError);
      expect((thrown as MessagingConfigError).field, what).toBe('queue');
    }
    // Nothing reached the server: the connection is open and answers.
    await nc.flush();
    expect(nc.isClosed()).toBe(false);

    // Wildcards and dots are plain characters of a queue name; so is any printable Unicode.
    const accepted = ['billing', '*', '>', 'v1.*', 'a-b_c:d/e@f', 'gr\u00fc\u00dfe', '\u65e5\u672c', 'q'.repeat(room)];
    for (const [i, queue] of accepted.entries()) {
      // Two subscriptions of the group: each message reaches one of them.
      const subs = [ic.subscribe(nc, subject, h, { queue }), ic.subscribe(nc, subject, h, { queue })];
      const ids = [0, 1, 2, 3, 4, 5].map((n) => `q${i}-${n}`);
      publishIds(nc, subject, ids);
      await nc.flush();
      expect(nc.isClosed(), queue.slice(0, 20)).toBe(false);
      expect(subs[0]!.getReceived() + subs[1]!.getReceived(), queue.slice(0, 20)).toBe(ids.length);
      for (const s of subs) s.unsubscribe();
    }
  });

  it('subscribe: a subject nats-server would refuse or close the connection on is refused naming subject, before any SUB', async () => {
    const g = await grid();
    const nc = await natsConn();
    const ic = consumer({ grid: g, name: 'subjects' });
    const h = async (): Promise<void> => undefined;
    // nats-server's max_control_line (4096) less the space and 16 digits kept for the sid; with a
    // queue group, its space and at least one byte of it too.
    const room = 4096 - 16 - 1;
    const refused: [string, string, string | undefined][] = [
      // nats-server answers -ERR 'Invalid Subject': nats.js leaves the subscription open, receiving
      // nothing, and reports the error only as a connection status.
      ['empty token', 'a..b', undefined],
      ['leading dot', '.a', undefined],
      ['trailing dot', 'a.', undefined],
      ['a lone dot', '.', undefined],
      ['> before the last token', 'a.>.b', undefined],
      // Whitespace: nats.js throws its own InvalidSubjectError for some, the rest NATS excludes.
      ['space', 'a b', undefined],
      ['tab', 'a\tb', undefined],
      ['line feed', 'a\nb', undefined],
      ['form feed', 'a\fb', undefined],
      // Quoted with escapes in a permission error of the server (Go's %q): nats.js cannot give that
      // error to the subscription, which stays open, silently receiving nothing (as a queue name).
      ['NUL', 'a.\u0000', undefined],
      ['C0 control character', 'a.\u0001', undefined],
      ['escape within a token', 'a.x\u001by', undefined],
      ['DEL', 'a.\u007f', undefined],
      ['C1 control character (NEL)', 'a.\u0085', undefined],
      ['C1 control character', 'a.\u009f', undefined],
      ['zero-width space', 'a.\u200b', undefined],
      ['soft hyphen', 'a.\u00ad', undefined],
      ['byte order mark', '\ufeffa.b', undefined],
      ['right-to-left override', 'a.\u202e', undefined],
      ['no-break space', 'a.\u00a0', undefined],
      ['line separator', 'a.\u2028', undefined],
      ['private use', 'a.\ue000', undefined],
      ['double quote', 'a."', undefined],
      ['backslash', 'a.\\', undefined],
      // Sent by nats.js as U+FFFD: two such subjects would be one.
      ['lone surrogate', 'a.\ud800', undefined],
      // A SUB line over max_control_line: the server closes the connection (nats.js reconnects,
      // sends the SUB again and is closed again), with every other subscription on it.
      ['one byte too long', 'x'.repeat(room + 1), undefined],
      ['far too long', 'x'.repeat(5000), undefined],
      ['too long in UTF-8', '\u00e9'.repeat(Math.floor(room / 2) + 1), undefined],
      ['no room left for any queue group', 'x'.repeat(room - 1), 'q'],
    ];
    const statuses: string[] = [];
    void (async () => {
      for await (const s of nc.status()) statuses.push(s.type);
    })();
    for (const [what, subject, queue] of refused) {
      let thrown: unknown;
      try {
        ic.subscribe(nc, subject, h, queue === undefined ? {} : { queue });
      } catch (e) {
        thrown = e;
      }
      expect(thrown, what).toBeInstanceOf(MessagingConfigError);
      expect((thrown as MessagingConfigError).field, what).toBe('subject');
    }
    // Nothing reached the server: the connection was neither closed nor told of an error.
    await nc.flush();
    expect(nc.isClosed()).toBe(false);
    expect(statuses.filter((s) => s === 'error' || s === 'disconnect')).toEqual([]);

    // Wildcards where NATS takes them, and the longest subjects whose SUB line fits.
    const accepted: [string, string | undefined][] = [
      ['subjects.*', undefined],
      ['subjects.>', undefined],
      ['*.in', undefined],
      ['subjects.gr\u00fc\u00dfe.\u65e5\u672c.\u{1F600}', undefined],
      ['subjects.a-b_c:d/e@f', undefined],
      ['x'.repeat(room), undefined],
      ['x'.repeat(room - 2), 'q'],
    ];
    for (const [subject, queue] of accepted) {
      const sub = ic.subscribe(nc, subject, h, queue === undefined ? {} : { queue });
      await nc.flush();
      expect(nc.isClosed(), subject.slice(0, 20)).toBe(false);
      sub.unsubscribe();
    }
    expect(statuses.filter((s) => s === 'error' || s === 'disconnect')).toEqual([]);
    // Messages reach a wildcard subscription, and one to a subject of printable Unicode.
    const sub = ic.subscribe(nc, 'subjects.>', h);
    publishIds(nc, 'subjects.a.b', ['s-1', 's-2']);
    await nc.flush();
    await waitUntil(() => sub.getReceived() === 2, 5000, 'both messages received');
    sub.unsubscribe();
    const unicode = 'subjects.gr\u00fc\u00dfe.\u65e5\u672c';
    const usub = ic.subscribe(nc, unicode, h);
    publishIds(nc, unicode, ['s-3']);
    await nc.flush();
    await waitUntil(() => usub.getReceived() === 1, 5000, 'the message to a Unicode subject received');
    usub.unsubscribe();
  });

  it('a message without a usable id says why, is terminated once and never costs a grid operation', async () => {
    await stream('BADID');
    const g = await grid();
    const errors: MissingMessageIdError[] = [];
    const ran: string[] = [];
    const ic = consumer({
      grid: g,
      name: 'badid',
      idOf: (m) => {
        const body = new TextDecoder().decode(m.data);
        if (body === 'throw') throw new Error('boom');
        if (body === 'surrogate') return 'ab\uD800';
        if (body === 'number') return 42 as never;
        return m.headers?.get('Nats-Msg-Id');
      },
    });
    ic.on('error', (e) => {
      if (e instanceof MissingMessageIdError) errors.push(e);
    });
    const done = ic.consume(await consumerMessages('BADID'), async (_m, ctx) => void ran.push(ctx.id));
    const js = jetstream(await natsConn());
    await js.publish('BADID.x', 'throw', { msgID: 't-1' });
    await js.publish('BADID.x', 'surrogate', { msgID: 's-1' });
    await js.publish('BADID.x', 'number', { msgID: 'n-1' });
    await js.publish('BADID.x', 'long', { msgID: 'x'.repeat(513) });
    await js.publish('BADID.x', 'none');
    await waitUntil(() => errors.length >= 5, 10_000, 'five messages reported');
    const ops = g.stats().operations;
    await waitUntil(async () => (await consumerInfo('BADID')).num_ack_pending === 0, 10_000, 'every message settled');
    expect(errors.map((e) => e.reason)).toEqual([
      'idOf threw Error: boom',
      'the id is not valid Unicode (it has a lone surrogate)',
      'idOf returned 42, not a string',
      'the id is 513 characters, more than 512',
      'idOf returned nothing',
    ]);
    expect(errors[0]!.cause).toBeInstanceOf(Error);
    expect(errors.every((e) => e.code === 'MSG_NO_ID' && e.subject === 'BADID.x')).toBe(true);
    // Terminated, not nak'ed: none comes back (an id that cannot be a grid key would otherwise
    // fail at the grid and be redelivered forever).
    const info = await consumerInfo('BADID');
    expect(info.num_redelivered).toBe(0);
    expect(errors).toHaveLength(5);
    expect(ran).toEqual([]);
    expect(g.stats().operations).toBe(ops);
    // The consumer goes on with the next message.
    await js.publish('BADID.x', 'fine', { msgID: 'ok-1' });
    await waitUntil(() => ran.length === 1, 10_000, 'the next message run');
    expect(ran).toEqual(['ok-1']);
    await ic.close();
    await done;
  });

  it('isProcessed() refuses, with the MissingMessageIdError process() reports, the ids process() refuses, without a grid operation', async () => {
    const g = await grid();
    const ic = consumer({ grid: g, name: 'isprocessed' });
    const ops = g.stats().operations;
    const refusal = async (id: unknown): Promise<MissingMessageIdError> => {
      const e: unknown = await ic.isProcessed(id as string).then(
        () => null,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(MissingMessageIdError);
      return e as MissingMessageIdError;
    };
    // The reasons process() gives for the same ids (see the test above).
    expect((await refusal('x'.repeat(513))).reason).toBe('the id is 513 characters, more than 512');
    expect((await refusal('ab\uD800')).reason).toBe('the id is not valid Unicode (it has a lone surrogate)');
    expect((await refusal('')).reason).toBe('the id is empty');
    expect((await refusal(42)).reason).toBe('the id is 42, not a string');
    expect((await refusal(undefined)).code).toBe('MSG_NO_ID');
    expect(g.stats().operations).toBe(ops);
    // At the bound, and any other id process() takes: asked of the grid.
    expect(await ic.isProcessed('x'.repeat(512))).toBe(false);
    expect(await ic.isProcessed('ok.\u00e9-\u{1F600}')).toBe(false);
    expect(g.stats().operations).toBe(ops + 2);
  });

  it('a message whose headers cannot be decoded is terminated with the reason; consume() goes on', async () => {
    await stream('BADHDR');
    const ic = consumer({ grid: await grid(), name: 'badhdr' });
    const errors: MissingMessageIdError[] = [];
    const ran: string[] = [];
    ic.on('error', (e) => {
      if (e instanceof MissingMessageIdError) errors.push(e);
    });
    const done = ic.consume(await consumerMessages('BADHDR'), async (_m, ctx) => void ran.push(ctx.id));
    let consumeEnded = false;
    void done.then(
      () => (consumeEnded = true),
      () => (consumeEnded = true),
    );
    // A header name nats.js refuses to decode ("Bad Key"), published with the raw protocol.
    const sock = net.connect(env.nats.port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      sock.on('error', reject);
      sock.on('data', (d: Buffer) => {
        seen += d.toString();
        if (seen.includes('PONG')) resolve();
      });
      const hdr = 'NATS/1.0\r\nBad Key: 1\r\n\r\n';
      const body = 'x';
      sock.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\nHPUB BADHDR.x ${hdr.length} ${hdr.length + body.length}\r\n${hdr}${body}\r\nPING\r\n`);
    });
    sock.destroy();
    await waitUntil(() => errors.length === 1, 10_000, 'the malformed headers reported');
    expect(errors[0]!.reason).toMatch(/^its headers cannot be read \(.*not a valid character in a header name/);
    await waitUntil(async () => (await consumerInfo('BADHDR')).num_ack_pending === 0, 10_000, 'the message terminated');
    expect(consumeEnded).toBe(false);
    const js = jetstream(await natsConn());
    await js.publish('BADHDR.x', 'fine', { msgID: 'h-1' });
    await waitUntil(() => ran.length === 1, 10_000, 'the next message run');
    expect((await consumerInfo('BADHDR')).num_redelivered).toBe(0);
    await ic.close();
    await done;
  });

  it('close() waits for the messages being processed, leaves no subscription, and refuses later use', async () => {
    const g = await grid();
    const nc = await natsConn('close-core');
    const ic = consumer({ grid: g, name: 'closing' });
    const processed: string[] = [];
    ic.on('processed', (e) => processed.push(e.id));
    const { gate, open } = env.gate();
    const started: string[] = [];
    ic.subscribe(nc, 'closing.in', async (_m, ctx) => {
      started.push(ctx.id);
      await gate;
    });
    ic.subscribe(nc, 'closing.other', async () => undefined, { queue: 'q' });
    await nc.flush();
    expect(await env.nats.subscriptionsOf('close-core')).toEqual(['closing.in', 'closing.other']);
    nc.publish('closing.in', 'x', { headers: withId('c-1') });
    await waitUntil(() => started.length === 1, 10_000, 'the handler started');
    let closed = false;
    const closing = ic.close();
    void closing.then(() => (closed = true));
    // A second close() is the same shutdown, not an early return.
    expect(ic.close()).toBe(closing);
    await nc.flush();
    await waitUntil(async () => (await env.nats.subscriptionsOf('close-core'))?.length === 0, 10_000, 'the subscriptions gone at the server');
    // Still waiting for the handler: another grid round trip later it has not resolved.
    const other = consumer({ grid: g, name: 'closing' });
    expect(await other.isProcessed('c-1')).toBe(false);
    expect(closed).toBe(false);
    open();
    await closing;
    expect(processed).toEqual(['c-1']);
    expect(await other.isProcessed('c-1')).toBe(true);
    // Use after close: typed errors, nothing run.
    expect(() => ic.subscribe(nc, 'closing.in', async () => undefined)).toThrow(MessagingClosedError);
    await expect(ic.isProcessed('c-1')).rejects.toBeInstanceOf(MessagingClosedError);
    await expect(ic.handleCore({ subject: 'closing.in', headers: withId('c-2') } as unknown as Msg, async () => undefined)).rejects.toBeInstanceOf(MessagingClosedError);
    await expect(ic.consume((async function* () {})(), async () => undefined)).rejects.toBeInstanceOf(MessagingClosedError);
    expect(started).toEqual(['c-1']);
  });

  it('close() gives up on a handler that outlives closeTimeoutMs: its signal aborts, its lock is no longer renewed, the message goes to another consumer, consume() resolves', async () => {
    await stream('HANG');
    const g = await grid();
    const nc = await natsConn('hang-js');
    const a = consumer({ grid: g, name: 'hang', lockLeaseMs: 400, busyDelayMs: 100, closeTimeoutMs: 200, workingIntervalMs: 50 });
    const { gate, open } = env.gate();
    let seen: IdempotentContext | null = null;
    const failed: unknown[] = [];
    a.on('failed', (e) => failed.push(e.error));
    const consumed = a.consume(await consumerMessages('HANG', nc), async (_m, ctx) => {
      seen = ctx;
      await gate; // never returns until the end of the test
    });
    await jetstream(await natsConn()).publish('HANG.x', 'x', { msgID: 'h-1' });
    await waitUntil(() => seen !== null, 10_000, 'the handler started');
    await nc.flush();
    // The request inbox (nats.js's `_INBOX.<id>.*`, for the consumer lookup) and the pull's own.
    const during = (await env.nats.subscriptionsOf('hang-js')) ?? [];
    expect(during).toHaveLength(2);
    await a.close();
    await consumed;
    const ctx = seen as unknown as IdempotentContext;
    expect(ctx.signal.aborted).toBe(true);
    expect((ctx.signal.reason as Error).message).toBe('the consumer was closed');
    // The stream consume() read was stopped: only the request inbox is left on the connection.
    await nc.flush();
    await waitUntil(
      async () => JSON.stringify(await env.nats.subscriptionsOf('hang-js')) === JSON.stringify(during.filter((sub) => sub.endsWith('.*'))),
      10_000,
      'the pull subscription gone',
    );
    // Nak'ed, and the lock's lease runs out although the handler still hangs: another consumer
    // runs the message.
    const b = consumer({ grid: await grid(), name: 'hang', busyDelayMs: 100 });
    const ranB: number[] = [];
    void b.consume(await consumerMessages('HANG'), async (_m, c) => void ranB.push(c.fencingToken));
    await waitUntil(() => ranB.length === 1, 10_000, 'the other consumer ran the message');
    expect(ranB[0]!).toBeGreaterThan(ctx.fencingToken);
    // The abandoned handler returns at last: its run is not marked, it reports failed.
    open();
    await waitUntil(() => failed.length === 1, 10_000, 'the abandoned run reported');
    expect(failed[0]).toBeInstanceOf(MessagingClosedError);
    await waitUntil(async () => (await consumerInfo('HANG')).num_ack_pending === 0, 10_000, 'acked by the other consumer');
  });
});
