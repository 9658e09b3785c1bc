/**
 * Idempotent consumers for core NATS subscriptions and JetStream consumers.
 *
 * Each message has an id (the `Nats-Msg-Id` header, or `idOf(msg)`). Before running the handler
 * the consumer takes the id's grid lock and, in the same operation, reads its processed mark (kept
 * for `windowMs` under the lock's own key, ADR 0036); a processed id is acknowledged without
 * running the handler again. An id being processed elsewhere is held under that lock (with a
 * fencing token passed to the handler): a second delivery of it meanwhile is not run; on
 * JetStream it is nak'ed with a delay so it comes back once the holder is done, and the holder
 * keeps extending its AckWait (`working()`) while it runs. The id is marked processed, and the
 * lock freed, in one operation before the message is acknowledged, so a crash between the two
 * leads to a redelivery that is recognised as a duplicate; a crash before the mark leads to a
 * redelivery that runs the handler again with a newer fencing token (at-least-once, fenced).
 */
import { EventEmitter } from 'eventemitter3';
import { LockNotHeldError, type GridCache, type GridClient } from '@gridlink/client';
import type { Consumer, ConsumerMessages, ConsumerNotification, JsMsg } from '@nats-io/jetstream';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { MAX_TIMER_MS, describe, fn, int, nestedOptions, options, queueGroup, required, subscribeSubject, token } from './config.js';
import { MessagingClosedError, MessagingConfigError, MessagingError, MissingMessageIdError } from './errors.js';
import { Ownership } from './ownership.js';
import { StopSignal, STOPPED } from './stop-signal.js';

/**
 * What became of one delivery. `failed`: the handler threw, the grid could not be reached, or the
 * consumer was closed before the processing could finish (the delivery is nak'ed). `dropped`: a
 * direct call (`handleCore`, `handleJetStream`) that was not handled: `direct.concurrency` calls
 * were being handled and `direct.maxQueued` waited, or the consumer was closed while it waited
 * (see the `dropped` event; a JetStream message is nak'ed, so it comes back).
 */
export type Outcome = 'processed' | 'duplicate' | 'in-progress' | 'failed' | 'no-id' | 'dropped';

export interface IdempotentContext {
  /** The message id. */
  id: string;
  /** Fencing token of this processing: greater than any earlier processing's of the same id. */
  fencingToken: number;
  /** Aborts when this consumer can no longer be sure it holds the id. */
  signal: AbortSignal;
  /**
   * Tells JetStream the message is still being worked on (also done automatically); nothing once
   * `signal` has aborted (the message is then no longer this processing's to keep).
   */
  working(): void;
  /** Whether this delivery is a redelivery (JetStream). */
  redelivered: boolean;
}

export type IdempotentHandler<M> = (msg: M, ctx: IdempotentContext) => Promise<void> | void;

export interface IdempotentOptions {
  grid: GridClient;
  /** Namespace of the processed ids: one token of [A-Za-z0-9_-]. Default "default". */
  name?: string;
  /** How long a processed id is remembered (ms), 1 to one year. Default 600000 (10 min). */
  windowMs?: number;
  /** The message id; default: the `Nats-Msg-Id` header. Return undefined when it has none. */
  idOf?: (msg: Msg | JsMsg) => string | undefined;
  /** Lease of the in-progress lock (ms). Default 5000. */
  lockLeaseMs?: number;
  /** Interval of automatic `working()` calls on JetStream messages (ms). Default 1000 (keep under the consumer's AckWait). */
  workingIntervalMs?: number;
  /** A JetStream message in progress elsewhere is nak'ed with this delay (ms). Default 1000. */
  busyDelayMs?: number;
  /** `close()` waits this long for messages being processed (ms). Default 10000. */
  closeTimeoutMs?: number;
  /** Bounds of the calls the application makes itself (`handleCore`, `handleJetStream`). Not null (a MessagingConfigError). */
  direct?: DirectOptions;
}

/**
 * Bounds of `handleCore` / `handleJetStream` calls, shared by all of this consumer's direct calls
 * (`subscribe` and `consume` have their own).
 */
export interface DirectOptions {
  /** Direct calls handled at once (handlers and their grid operations). Default 16. */
  concurrency?: number;
  /**
   * Direct calls that wait, in call order, while `concurrency` are handled (a JetStream message's
   * AckWait is extended meanwhile); a call beyond that is not handled: outcome `dropped`, event
   * `dropped`, and a JetStream message is nak'ed. Default 1000; 0: none wait.
   */
  maxQueued?: number;
}

const OPTION_NAMES = ['grid', 'name', 'windowMs', 'idOf', 'lockLeaseMs', 'workingIntervalMs', 'busyDelayMs', 'closeTimeoutMs', 'direct'] as const;

export interface IdempotentEvents {
  processed: (e: { id: string; fencingToken: number }) => void;
  duplicate: (e: { id: string }) => void;
  inProgress: (e: { id: string }) => void;
  failed: (e: { id: string; error: unknown }) => void;
  /**
   * A message was not handled (never run, no grid operation): `overflow` when its subscription
   * (or, for `handleCore` / `handleJetStream`, the consumer's direct calls) had `concurrency`
   * messages being handled and `maxQueued` waiting; `closed` when the consumer was closed while it
   * waited. `jetstream`: a JetStream message (a direct `handleJetStream` call), nak'ed, so the
   * server delivers it again; a core NATS message is lost. `total`: messages dropped by this
   * consumer so far.
   */
  dropped: (e: { subject: string; reason: 'overflow' | 'closed'; jetstream: boolean; total: number }) => void;
  error: (e: Error) => void;
}

/** Options of `subscribe` (core NATS). */
export interface SubscribeOptions {
  /**
   * Queue group of the subscription: letters, marks, numbers, punctuation and symbols, not `"` or
   * `\`, not `_sys_`, short enough for nats-server's SUB line (docs/messaging.md). Wildcards and
   * dots are plain characters of a queue name.
   */
  queue?: string;
  /** Messages of this subscription handled at once (handlers and their grid operations). Default 16. */
  concurrency?: number;
  /**
   * Messages kept in memory, in arrival order, while `concurrency` are being handled; one arriving
   * beyond that is dropped (event `dropped`; core NATS has no redelivery). Default 1000; 0: none.
   */
  maxQueued?: number;
}

interface Delivery {
  subject: string;
  /** Reads the headers (nats.js decodes them on first read, and throws on malformed ones). */
  headers(): MsgHdrs | undefined;
  redelivered: boolean;
  ack(): Promise<void>;
  nak(delayMs?: number): void;
  term(): void;
  working(): void;
}

const MAX_ID_LENGTH = 512;
/** A UTF-16 surrogate not paired with its other half: such a string is no valid grid key. */
const LONE_SURROGATE = /\p{Surrogate}/u;

/** A direct call waiting for a slot. */
interface DirectWaiter {
  /** Runs it in the slot handed over by a call that finished. */
  start(): void;
  /** close(): it is not run (nak'ed if JetStream, announced). */
  refuse(): void;
}

/** One processing under way, as `close()` sees it. */
interface InFlight {
  /** Set by `close()` once its timeout has passed: stop waiting for the processing. */
  abandoned: boolean;
  /** Gives up what the processing holds on the consumer's side (timers, renewals) and naks it. */
  abandon(): void;
}

type IdLookup = { id: string } | { reason: string; cause?: unknown };

/**
 * Why `id` cannot be a message id (null when it can): what process() refuses (an id found for a
 * message) and isProcessed() refuses alike.
 */
function idProblem(id: unknown): string | null {
  if (typeof id !== 'string') return `the id is ${describe(id)}, not a string`;
  if (id === '') return 'the id is empty';
  if (id.length > MAX_ID_LENGTH) return `the id is ${id.length} characters, more than ${MAX_ID_LENGTH}`;
  // Such an id cannot be a grid key: every delivery of it would fail (and be redelivered) forever.
  if (LONE_SURROGATE.test(id)) return 'the id is not valid Unicode (it has a lone surrogate)';
  return null;
}

function quietly(f: () => void): void {
  try {
    f();
  } catch {
    // connection closed: nothing to tell the server any more
  }
}

/** Wraps handlers so that each message id runs at most once per window and never concurrently. */
export class IdempotentConsumer extends EventEmitter<IdempotentEvents> {
  private readonly grid: GridClient;
  private readonly name: string;
  private readonly windowMs: number;
  private readonly leaseMs: number;
  private readonly workingMs: number;
  private readonly busyDelayMs: number;
  private readonly idOf: ((msg: Msg | JsMsg) => string | undefined) | undefined;
  private readonly processed: GridCache<string, { t: number; at: number }>;
  /** Ids this process is handling now (one GridClient: never take the same lock twice at once). */
  private readonly local = new Set<string>();
  private readonly subs = new Set<Subscription>();
  /** The slots of each subscription and of the direct calls: close() refuses what waits in them. */
  private readonly pools = new Set<{ refuseWaiting(): void }>();
  private droppedTotal = 0;
  private readonly closeTimeoutMs: number;
  private readonly inFlight = new Set<InFlight>();
  /** The direct calls' slots (`direct` option), apart from those of each subscription. */
  private readonly directSlots: Slots<DirectWaiter>;
  private idleWaiters: (() => void)[] = [];
  /** Stops every consume() loop. */
  private readonly stopConsuming = new Set<() => void>();
  private closed = false;
  private closing: Promise<void> | null = null;
  private closedDone: () => void = () => undefined;
  /** Resolves once close() has finished. */
  private readonly closed$ = new Promise<void>((r) => (this.closedDone = r));

  constructor(o: IdempotentOptions) {
    super();
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new MessagingConfigError('options', `must be an object, got ${describe(o)}`);
    options('options', o, OPTION_NAMES);
    this.grid = required('grid', o.grid, (g) => typeof g.cache === 'function' && typeof g.lock === 'function', 'a GridClient');
    this.name = token('name', o.name, 'default');
    // Bounded: the grid refuses a TTL whose expiry (now + TTL) is no safe integer, so a larger
    // window failed every mark at run time (each message nak'ed and run again). One year at most.
    this.windowMs = int('windowMs', o.windowMs, 600_000, 1, 365 * 24 * 3600 * 1000);
    this.leaseMs = int('lockLeaseMs', o.lockLeaseMs, 5000, 100, MAX_TIMER_MS);
    this.workingMs = int('workingIntervalMs', o.workingIntervalMs, 1000, 10, MAX_TIMER_MS);
    this.busyDelayMs = int('busyDelayMs', o.busyDelayMs, 1000, 0, MAX_TIMER_MS);
    this.closeTimeoutMs = int('closeTimeoutMs', o.closeTimeoutMs, 10_000, 0, MAX_TIMER_MS);
    this.idOf = fn('idOf', o.idOf);
    const direct = nestedOptions('direct', o.direct, ['concurrency', 'maxQueued']);
    const directLimit = int('direct.concurrency', direct.concurrency, 16, 1, 10_000);
    const directMaxQueued = int('direct.maxQueued', direct.maxQueued, 1000, 0, 1_000_000);
    this.directSlots = new Slots(directLimit, directMaxQueued, (w: DirectWaiter) => w.refuse());
    this.pools.add(this.directSlots);
    this.processed = this.grid.cache(`gridlink.processed.${this.name}`);
  }

  /** The message's id, or why it has none that can be used. */
  private idFor(msg: Msg | JsMsg, d: Delivery): IdLookup {
    let id: unknown;
    if (this.idOf) {
      try {
        id = this.idOf(msg);
      } catch (cause) {
        return { reason: `idOf threw ${cause instanceof Error ? `${cause.name}: ${cause.message}` : describe(cause)}`, cause };
      }
      if (id === undefined || id === null || id === '') return { reason: 'idOf returned nothing' };
      if (typeof id !== 'string') return { reason: `idOf returned ${describe(id)}, not a string` };
    } else {
      let headers: MsgHdrs | undefined;
      try {
        headers = d.headers();
      } catch (cause) {
        return { reason: `its headers cannot be read (${cause instanceof Error ? cause.message : describe(cause)})`, cause };
      }
      id = headers?.get('Nats-Msg-Id') ?? '';
      if (id === '') return { reason: 'no Nats-Msg-Id header' };
    }
    const s = id as string;
    const why = idProblem(s);
    return why === null ? { id: s } : { reason: why };
  }

  private checkHandler(handler: unknown): void {
    if (typeof handler !== 'function') throw new MessagingConfigError('handler', `must be a function, got ${describe(handler)}`);
  }

  /**
   * Handles one JetStream message: acks, naks or terms it. Bounded like every direct call (see
   * `handleCore`); while it waits for a slot its AckWait is extended (`working()` every
   * `workingIntervalMs`), and one not handled (`dropped`) is nak'ed with `busyDelayMs`. After
   * `close()` the message is nak'ed and the promise rejects with MessagingClosedError.
   */
  async handleJetStream(msg: JsMsg, handler: IdempotentHandler<JsMsg>): Promise<Outcome> {
    this.checkHandler(handler);
    const d = jsDelivery(msg);
    if (this.closed) {
      d.nak();
      throw new MessagingClosedError('idempotent consumer');
    }
    return this.direct(msg, d, handler, true);
  }

  /**
   * Handles one core NATS message (no acknowledgement exists: a duplicate is just not run). The
   * consumer's direct calls (this and `handleJetStream`) are bounded as `subscribe` is: at most
   * `direct.concurrency` are handled at once, up to `direct.maxQueued` more wait in call order
   * (the promise settles once the call was handled), and a call beyond both is not handled:
   * `dropped` (outcome and event). A waiting call that `close()` finds is `dropped` too. After
   * `close()` the promise rejects with MessagingClosedError.
   *
   * A handler must not await another direct call of the same consumer: with every slot held by
   * such handlers, the calls they wait for would wait for a slot for ever.
   */
  async handleCore(msg: Msg, handler: IdempotentHandler<Msg>): Promise<Outcome> {
    this.checkHandler(handler);
    if (this.closed) throw new MessagingClosedError('idempotent consumer');
    return this.direct(msg, coreDelivery(msg), handler, false);
  }

  /**
   * A direct call in a slot of the consumer's direct calls: at once if one is free, else after
   * the calls queued before it (a JetStream message kept from redelivery meanwhile), or not at
   * all beyond `direct.maxQueued`. A call that finishes hands its slot to the next waiting one.
   */
  private async direct<M extends Msg | JsMsg>(msg: M, d: Delivery, handler: IdempotentHandler<M>, jetstream: boolean): Promise<Outcome> {
    if (!this.directSlots.take()) {
      if (this.directSlots.full) {
        d.nak(this.busyDelayMs);
        this.drop(d.subject, 'overflow', jetstream);
        return 'dropped';
      }
      let keepalive: NodeJS.Timeout | null = null;
      if (jetstream) {
        // Held by this process from now on: its AckWait must not run out while it waits.
        d.working();
        keepalive = setInterval(() => d.working(), this.workingMs);
        keepalive.unref();
      }
      const admitted = await new Promise<boolean>((resolve) => {
        this.directSlots.queue({
          start: () => resolve(true),
          refuse: () => {
            d.nak();
            this.drop(d.subject, 'closed', jetstream);
            resolve(false);
          },
        });
      });
      if (keepalive !== null) clearInterval(keepalive);
      if (!admitted) return 'dropped';
      // The slot of the call that finished was handed to this one.
    }
    try {
      return await this.process(msg, d, handler);
    } finally {
      this.directSlots.next()?.start();
    }
  }

  /** Messages not handled so far (see the `dropped` event). */
  get dropped(): number {
    return this.droppedTotal;
  }

  private drop(subject: string, reason: 'overflow' | 'closed', jetstream: boolean): void {
    this.droppedTotal++;
    this.emit('dropped', { subject, reason, jetstream, total: this.droppedTotal });
  }

  /**
   * Subscribes to a core NATS subject (optionally in a queue group) with the handler wrapped. At
   * most `concurrency` messages are handled at once; up to `maxQueued` more wait in memory, in
   * arrival order, and any beyond that is dropped (`dropped` event, `dropped` count): core NATS
   * has no redelivery, so a burst larger than the two is lost, not deferred.
   */
  subscribe(nc: NatsConnection, subject: string, handler: IdempotentHandler<Msg>, opts: SubscribeOptions | null = {}): Subscription {
    if (this.closed) throw new MessagingClosedError('idempotent consumer');
    required('nc', nc, (n) => typeof n.subscribe === 'function', 'a NatsConnection');
    if (typeof subject !== 'string' || subject === '') throw new MessagingConfigError('subject', `must be a non-empty string, got ${describe(subject)}`);
    this.checkHandler(handler);
    const o = options('options', opts, ['queue', 'concurrency', 'maxQueued']);
    subscribeSubject('subject', subject, o.queue !== undefined);
    const queue = queueGroup('queue', o.queue, subject);
    const concurrency = int('concurrency', o.concurrency, 16, 1, 10_000);
    const maxQueued = int('maxQueued', o.maxQueued, 1000, 0, 1_000_000);
    const slots = new Slots(concurrency, maxQueued, (m: Msg) => this.drop(m.subject, 'closed', false));
    const run = (msg: Msg): void => {
      // process() settles with an outcome; it rejects only when an event listener threw.
      void this.process(msg, coreDelivery(msg), handler)
        .catch(() => undefined)
        .finally(() => {
          const next = slots.next();
          if (next !== undefined) run(next);
        });
    };
    const sub = nc.subscribe(subject, {
      ...(queue !== undefined ? { queue } : {}),
      callback: (err, msg) => {
        if (err) {
          this.emit('error', err);
          return;
        }
        if (this.closed) return;
        if (slots.take()) run(msg);
        else if (!slots.full) slots.queue(msg);
        else this.drop(msg.subject, 'overflow', false);
      },
    });
    this.subs.add(sub);
    this.pools.add(slots);
    // Unsubscribed: its messages still waiting run as before; once none waits, close() has
    // nothing of it to refuse (an app that subscribes and unsubscribes for ever keeps no trace).
    void sub.closed.then(() => {
      this.subs.delete(sub);
      slots.whenNoneWaits(() => this.pools.delete(slots));
    });
    return sub;
  }

  /**
   * Runs the wrapped handler over JetStream messages, up to `concurrency` at once. `source` is a
   * nats.js consumer (`await js.consumers.get(stream, name)`: this opens its message stream with
   * a pull of `concurrency` messages, so a message waits for a slot for about one handler run at
   * most, and refuses a `workingIntervalMs` not below the consumer's AckWait) or a message stream
   * the application opened (`await consumer.consume(...)`: its own pull size decides how long a
   * message waits). Resolves when the stream ends, or once `close()` has finished: closing stops
   * the stream (its `stop()`, as nats.js's ConsumerMessages has, else its iterator's `return()`)
   * and naks a message it still yields. A stream it opened whose consumer (or stream) goes
   * missing is reported as `error` events (code MSG_CONSUMER_MISSING) while it waits on.
   */
  async consume(source: AsyncIterable<JsMsg> | Consumer, handler: IdempotentHandler<JsMsg>, opts: { concurrency?: number } | null = {}): Promise<void> {
    if (this.closed) throw new MessagingClosedError('idempotent consumer');
    const pull = isPullConsumer(source) ? source : null;
    if (pull === null && typeof (source as Partial<AsyncIterable<JsMsg>> | null)?.[Symbol.asyncIterator] !== 'function') {
      // Named after the argument, which is a nats.js consumer or a message stream (it was `messages`
      // when only a stream was taken).
      throw new MessagingConfigError('source', `must be a nats.js JetStream consumer or an async iterable of JetStream messages, got ${describe(source)}`);
    }
    this.checkHandler(handler);
    const concurrency = int('concurrency', options('options', opts, ['concurrency']).concurrency, 1, 1, 10_000);
    let messages: AsyncIterable<JsMsg>;
    let stopStatus: () => void = () => undefined;
    if (pull !== null) {
      // The consumer's configuration as nats.js last read it (no request).
      const info = await pull.info(true);
      const cfg = info?.config;
      const ackWaitMs = cfg !== undefined && cfg.ack_policy !== 'none' ? Math.floor((cfg.ack_wait ?? 0) / 1e6) : 0;
      if (ackWaitMs > 0 && this.workingMs >= ackWaitMs) {
        throw new MessagingConfigError('workingIntervalMs', `must be below the consumer's AckWait (${ackWaitMs} ms) for working() to keep a message being handled, got ${this.workingMs}`);
      }
      if (this.closed) throw new MessagingClosedError('idempotent consumer');
      // Pulls only what the slots can take: nats.js asks for more as this loop takes messages,
      // so at most about `concurrency` wait, each for about one handler run.
      const opened = await pull.consume({ max_messages: concurrency });
      messages = opened;
      // nats.js tells only the stream's status() that the consumer is gone, and goes on asking
      // for messages: the application, which does not hold this stream, must hear it from us.
      stopStatus = this.reportMissing(opened, info?.stream_name ?? cfg?.durable_name ?? '?', info?.name ?? cfg?.name ?? cfg?.durable_name ?? '?');
      if (this.closed) {
        // close() came while the stream was being opened: it found no loop to stop, so nothing
        // may be read from the stream (its messages would run after close()); stopped unread.
        stopStream(messages);
        stopStatus();
        throw new MessagingClosedError('idempotent consumer');
      }
    } else {
      messages = source as AsyncIterable<JsMsg>;
    }
    const it = messages[Symbol.asyncIterator]();
    // A stop, and the slot count, are awaited without piling a reaction per message on a
    // long-lived promise (StopSignal; the earlier Promise.race per message kept ~350 B each).
    const signal = new StopSignal();
    const stop = (): void => signal.stop();
    this.stopConsuming.add(stop);
    let active = 0;
    let slotFreed: (() => void) | null = null;
    let allSettled: (() => void) | null = null;
    const settled = (): void => {
      active--;
      const w = slotFreed;
      slotFreed = null;
      w?.();
      if (active === 0) allSettled?.();
    };
    try {
      for (;;) {
        const pending = it.next();
        const next = await signal.until(pending);
        if (next === STOPPED) {
          // A message the stream still yields is not run: nak it so it is redelivered at once.
          pending.then((r) => void (r.done ? undefined : quietly(() => r.value.nak())), () => undefined);
          if (!stopStream(messages)) void it.return?.()?.then(undefined, () => undefined);
          break;
        }
        if (next.done) break;
        const p = this.process(next.value, jsDelivery(next.value), handler);
        active++;
        p.then(settled, settled);
        if (active >= concurrency) await signal.until(new Promise<void>((r) => (slotFreed = r)));
      }
    } finally {
      this.stopConsuming.delete(stop);
      // A stream this opened is this loop's to stop (the server redelivers what it still holds).
      if (pull !== null) stopStream(messages);
      stopStatus();
    }
    // Processings close() gave up on may never settle (a handler that hangs): do not wait for them then.
    if (active > 0) await Promise.race([new Promise<void>((r) => (allSettled = r)), this.closed$]);
  }

  /**
   * Emits `error` (MessagingError, code MSG_CONSUMER_MISSING) whenever nats.js says that the
   * consumer or stream behind a message stream `consume()` opened is missing (deleted, or not
   * found when it checks after missed heartbeats). nats.js keeps asking for messages, so the
   * loop goes on: it resumes once a consumer of that name exists again. Returns the stop.
   */
  private reportMissing(messages: ConsumerMessages, stream: string, name: string): () => void {
    const it = messages.status() as AsyncIterable<ConsumerNotification> & { stop?: () => void };
    void (async () => {
      for await (const n of it) {
        if (n.type !== 'consumer_deleted' && n.type !== 'consumer_not_found' && n.type !== 'stream_not_found') continue;
        const what = n.type === 'stream_not_found' ? `stream "${stream}" is missing` : `JetStream consumer "${name}" of stream "${stream}" is missing`;
        const detail = n.type === 'consumer_deleted' ? `deleted: ${n.code} ${n.description}` : n.type;
        this.emit('error', new MessagingError(`${what} (${detail}); consume() waits for it to exist again`, 'MSG_CONSUMER_MISSING'));
      }
    })().catch(() => undefined);
    return () => it.stop?.();
  }

  private async process<M extends Msg | JsMsg>(msg: M, d: Delivery, handler: IdempotentHandler<M>): Promise<Outcome> {
    const found = this.idFor(msg, d);
    if (!('id' in found)) {
      this.emit('error', new MissingMessageIdError(d.subject, found.reason, found.cause === undefined ? undefined : { cause: found.cause }));
      d.term();
      return 'no-id';
    }
    const entry: InFlight = { abandoned: false, abandon: () => undefined };
    this.inFlight.add(entry);
    try {
      return await this.processWithId(found.id, msg, d, handler, entry);
    } catch (e) {
      // Grid unreachable or similar: let JetStream redeliver later.
      d.nak(this.busyDelayMs);
      this.emit('error', e instanceof Error ? e : new Error(describe(e)));
      return 'failed';
    } finally {
      this.inFlight.delete(entry);
      if (this.inFlight.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * Grid key of an id: the in-progress lock and the processed mark share it, so one operation
   * takes the lock and reads the mark, and one stores the mark and frees the lock (ADR 0036).
   */
  private keyOf(id: string): string {
    return `gridlink.msg/${this.name}/${id}`;
  }

  private async processWithId<M extends Msg | JsMsg>(id: string, msg: M, d: Delivery, handler: IdempotentHandler<M>, entry: InFlight): Promise<Outcome> {
    if (this.local.has(id)) {
      d.nak(this.busyDelayMs);
      this.emit('inProgress', { id });
      return 'in-progress';
    }
    this.local.add(id);
    let own: Ownership | null = null;
    let keepalive: NodeJS.Timeout | null = null;
    try {
      const sentAt = Date.now();
      // One round trip: the lock if free, and the processed mark as it is at that instant.
      // ifAbsent: a processed id is answered as a plain read, without taking the lock.
      const attempt = await this.grid.lock(this.keyOf(id)).attemptGet(this.processed, { leaseMs: this.leaseMs, ifAbsent: true });
      if (attempt.value !== undefined) {
        // Processed already (by whoever held the lock before): never run again in the window. (A
        // node older than ifAbsent takes the lock anyway: give it back.)
        if (attempt.acquired) attempt.handle.release().catch(() => undefined);
        await d.ack();
        this.emit('duplicate', { id });
        return 'duplicate';
      }
      if (!attempt.acquired) {
        d.nak(this.busyDelayMs);
        this.emit('inProgress', { id });
        return 'in-progress';
      }
      own = new Ownership(attempt.handle, this.leaseMs, Math.floor(this.leaseMs / 5), sentAt, () => {
        // Lost (lease not renewed in time, the grid says the lock is gone) or given up by close():
        // the message is no longer extended, so once its AckWait runs out the server redelivers it
        // to a consumer that can take the id (whose lock's lease runs out meanwhile). It used to
        // be extended for as long as the handler ran, so a handler that did not stop on the
        // signal kept the message from every other consumer.
        if (keepalive !== null) clearInterval(keepalive);
        keepalive = null;
      });
      if (entry.abandoned) {
        // close() stopped waiting while the lock was being taken: the handler is not run.
        d.nak();
        return 'failed';
      }
      if (!own.certain) {
        // The grid's answer took longer than the lease less its margin: the lease may run out on
        // the grid at any moment, and another consumer take the id while this handler ran. It
        // used to run anyway (its signal aborting just after it started). Nak'ed, as in
        // progress; the lock is released below.
        d.nak(this.busyDelayMs);
        this.emit('failed', { id, error: new MessagingError(`the lock of ${id} was granted too late to be trusted (its answer took more than lockLeaseMs less its margin): not run`, 'MSG_LEASE_UNCERTAIN', true) });
        return 'failed';
      }
      d.working();
      keepalive = setInterval(() => d.working(), this.workingMs);
      keepalive.unref();
      const running = own;
      entry.abandon = () => {
        // close() stops waiting for this handler: nothing of this consumer keeps running for it
        // (no keepalive, no renewals: the lock's lease runs out unless the handler returns first
        // and it is released), and the message is nak'ed for another consumer.
        if (keepalive !== null) clearInterval(keepalive);
        keepalive = null;
        running.abandon('the consumer was closed');
        d.nak(this.busyDelayMs);
      };
      // The handler's own working() too stops extending the message once its signal aborted (lost,
      // or given up by close()): it used to extend it for as long as a handler that ignored its
      // signal kept calling it, so the server did not redeliver the message to a consumer that
      // could take the id, as the automatic working() no longer did.
      const working = (): void => {
        if (!running.signal.aborted) d.working();
      };
      const ctx: IdempotentContext = { id, fencingToken: own.token, signal: own.signal, working, redelivered: d.redelivered };
      try {
        await handler(msg, ctx);
      } catch (error) {
        if (keepalive !== null) clearInterval(keepalive);
        keepalive = null;
        // Redelivered after busyDelayMs, as every other delivery that did not get processed: nak'ed
        // without a delay, a message whose handler kept failing (a downstream outage) came back
        // at once, a run and two grid operations every few milliseconds.
        if (!entry.abandoned) d.nak(this.busyDelayMs);
        this.emit('failed', { id, error });
        return 'failed';
      }
      if (entry.abandoned) {
        // Nak'ed already: the handler's run is not marked (another consumer may hold the id
        // now). The lock is released below, the handler being done.
        this.emit('failed', { id, error: new MessagingClosedError('idempotent consumer') });
        return 'failed';
      }
      // The mark and the unlock in one round trip, applied only while this processing still
      // holds the lock (a holder whose lease ran out stores nothing).
      const held = own;
      own = null;
      try {
        await held.completeWith(this.processed, { t: held.token, at: Date.now() }, this.windowMs);
      } catch (error) {
        if (!(error instanceof LockNotHeldError)) {
          // The grid did not take the mark (it may have applied with its answer lost): the
          // handler ran, but its run is not known to be recorded. Reported as failed (it used to
          // be only an anonymous error); the redelivery finds the mark or runs again.
          d.nak(this.busyDelayMs);
          this.emit('failed', { id, error });
          this.emit('error', error instanceof Error ? error : new Error(describe(error)));
          return 'failed';
        }
        // The lease ran out while the handler ran and another delivery may hold the id now:
        // nothing was marked; a redelivery finds the other's mark or runs with a newer token.
        // (The finally below stops the keepalive.)
        d.nak(this.busyDelayMs);
        this.emit('failed', { id, error });
        return 'failed';
      }
      clearInterval(keepalive);
      keepalive = null;
      await d.ack();
      this.emit('processed', { id, fencingToken: held.token });
      return 'processed';
    } finally {
      if (keepalive !== null) clearInterval(keepalive);
      this.local.delete(id);
      if (own !== null) await own.release();
    }
  }

  /**
   * Whether `id` is remembered as processed. MessagingClosedError after `close()`; an id that
   * process() refuses (not a string, empty, over 512 characters, a lone surrogate) is a
   * MissingMessageIdError with the same reason (`subject` ''), without a grid operation.
   */
  async isProcessed(id: string): Promise<boolean> {
    if (this.closed) throw new MessagingClosedError('idempotent consumer');
    const why = idProblem(id);
    if (why !== null) throw new MissingMessageIdError('', why);
    return (await this.processed.get(this.keyOf(id))) !== undefined;
  }

  /**
   * Stops taking messages: unsubscribes the core subscriptions made through `subscribe`, stops
   * every `consume()` (which then resolves), and waits up to `closeTimeoutMs` for the messages
   * being processed. Those still running then are given up: their `ctx.signal` aborts, the
   * consumer's timers for them stop, the message is nak'ed and its handler's run is not marked
   * processed. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const s of this.subs) s.unsubscribe();
    this.subs.clear();
    // What waits for a slot is not run: a subscription's message is dropped (core NATS: nothing
    // to give back), a direct call refused (a JetStream one nak'ed).
    for (const pool of this.pools) pool.refuseWaiting();
    this.pools.clear();
    for (const stop of this.stopConsuming) stop();
    if (this.inFlight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => this.idleWaiters.push(r)), new Promise<void>((r) => (timer = setTimeout(r, this.closeTimeoutMs)))]);
      clearTimeout(timer);
    }
    for (const e of this.inFlight) {
      e.abandoned = true;
      e.abandon();
    }
    this.idleWaiters = [];
    this.closedDone();
  }
}

/** A nats.js consumer (it can open a message stream and tell its configuration), not a message stream. */
function isPullConsumer(v: unknown): v is Consumer {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Partial<Consumer> & { [Symbol.asyncIterator]?: unknown };
  return typeof c.consume === 'function' && typeof c.info === 'function' && typeof c[Symbol.asyncIterator] !== 'function';
}

/** Stops a message stream that has `stop()` (nats.js's ConsumerMessages); false when it has none. */
function stopStream(messages: AsyncIterable<JsMsg>): boolean {
  const s = (messages as { stop?: unknown }).stop;
  if (typeof s !== 'function') return false;
  quietly(() => void (s as () => unknown).call(messages));
  return true;
}

/**
 * Bounded slots and the items waiting for one, in arrival order: a subscription's messages, or
 * the direct calls (ADR 0055, 0059), each with its own limits. A holder that finishes hands its
 * slot to the next waiting item (`next()`), so a slot never sits free while something waits.
 */
class Slots<T> {
  private active = 0;
  /** The waiting items, from `head` on (O(1) queue and shift). */
  private items: (T | undefined)[] = [];
  private head = 0;
  /** Called once the queue is empty (`whenNoneWaits`). */
  private onEmpty: (() => void) | null = null;

  constructor(
    private readonly limit: number,
    private readonly maxQueued: number,
    private readonly refuse: (t: T) => void,
  ) {}

  /** Takes a free slot for the caller; false when all are held. */
  take(): boolean {
    if (this.active >= this.limit) return false;
    this.active++;
    return true;
  }

  /** Whether `maxQueued` items wait already (one more is not queued). */
  get full(): boolean {
    return this.items.length - this.head >= this.maxQueued;
  }

  /** Queues `t` (not `full`) for the next slot that frees. */
  queue(t: T): void {
    this.items.push(t);
  }

  /** A slot's holder is done: the waiting item the slot now belongs to, or undefined (it is free). */
  next(): T | undefined {
    const t = this.shift();
    if (t === undefined) this.active--;
    return t;
  }

  /** Calls `f` as soon as no item waits: now, or when the last waiting one leaves the queue. */
  whenNoneWaits(f: () => void): void {
    if (this.head >= this.items.length) f();
    else this.onEmpty = f;
  }

  /** close(): every waiting item is refused, in order; a slot freed later stays free. */
  refuseWaiting(): void {
    for (let t = this.shift(); t !== undefined; t = this.shift()) this.refuse(t);
  }

  private shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const t = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= this.items.length) {
      this.items = [];
      this.head = 0;
      const f = this.onEmpty;
      this.onEmpty = null;
      f?.();
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return t;
  }
}

/** The Delivery of a core NATS message: no acknowledgement exists. */
function coreDelivery(msg: Msg): Delivery {
  const noop = (): void => undefined;
  return { subject: msg.subject, headers: () => msg.headers, redelivered: false, ack: async () => undefined, nak: noop, term: noop, working: noop };
}

/** The Delivery of a JetStream message (see handleJetStream). */
function jsDelivery(msg: JsMsg): Delivery {
  let redelivered = false;
  try {
    redelivered = msg.redelivered;
  } catch {
    // a reply subject that is not a JetStream one: not known to be a redelivery
  }
  return {
    subject: msg.subject,
    headers: () => msg.headers,
    redelivered,
    ack: async () => {
      await msg.ackAck();
    },
    // On a closed or draining connection these throw; the server redelivers anyway.
    nak: (delay) => quietly(() => msg.nak(delay)),
    // No reason text: nats-server 2.9 takes only a bare "+TERM" as a termination (it ignores
    // "+TERM <reason>", and the message would come back after every AckWait).
    term: () => quietly(() => msg.term()),
    working: () => quietly(() => msg.working()),
  };
}
