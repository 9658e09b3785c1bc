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
import type { JsMsg } from '@nats-io/jetstream';
import type { Msg, MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { MAX_TIMER_MS, int, required, token } from './config.js';
import { MessagingClosedError, MessagingConfigError, MissingMessageIdError } from './errors.js';
import { Ownership } from './ownership.js';

export type Outcome = 'processed' | 'duplicate' | 'in-progress' | 'failed' | 'no-id';

export interface IdempotentContext {
  /** The message id. */
  id: string;
  /** Fencing token of this processing: greater than any earlier processing's of the same id. */
  fencingToken: number;
  /** Aborts when this consumer can no longer be sure it holds the id. */
  signal: AbortSignal;
  /** Tells JetStream the message is still being worked on (also done automatically). */
  working(): void;
  /** Whether this delivery is a redelivery (JetStream). */
  redelivered: boolean;
}

export type IdempotentHandler<M> = (msg: M, ctx: IdempotentContext) => Promise<void> | void;

export interface IdempotentOptions {
  grid: GridClient;
  /** Namespace of the processed ids: one token of [A-Za-z0-9_-]. Default "default". */
  name?: string;
  /** How long a processed id is remembered (ms). Default 600000 (10 min). */
  windowMs?: number;
  /** The message id; default: the `Nats-Msg-Id` header. Return undefined when it has none. */
  idOf?: (msg: Msg | JsMsg) => string | undefined;
  /** Lease of the in-progress lock (ms). Default 5000. */
  lockLeaseMs?: number;
  /** Interval of automatic `working()` calls on JetStream messages (ms). Default 1000 (keep under the consumer's AckWait). */
  workingIntervalMs?: number;
  /** A JetStream message in progress elsewhere is nak'ed with this delay (ms). Default 1000. */
  busyDelayMs?: number;
}

export interface IdempotentEvents {
  processed: (e: { id: string; fencingToken: number }) => void;
  duplicate: (e: { id: string }) => void;
  inProgress: (e: { id: string }) => void;
  failed: (e: { id: string; error: unknown }) => void;
  error: (e: Error) => void;
}

interface Delivery {
  subject: string;
  headers: MsgHdrs | undefined;
  redelivered: boolean;
  ack(): Promise<void>;
  nak(delayMs?: number): void;
  term(): void;
  working(): void;
}

const MAX_ID_LENGTH = 512;

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
  private closed = false;

  constructor(o: IdempotentOptions) {
    super();
    if (typeof o !== 'object' || o === null) throw new MessagingConfigError('options', 'must be an object');
    this.grid = required('grid', o.grid, (g) => typeof g.cache === 'function' && typeof g.lock === 'function', 'a GridClient');
    this.name = token('name', o.name, 'default');
    this.windowMs = int('windowMs', o.windowMs, 600_000, 1);
    this.leaseMs = int('lockLeaseMs', o.lockLeaseMs, 5000, 100, MAX_TIMER_MS);
    this.workingMs = int('workingIntervalMs', o.workingIntervalMs, 1000, 10, MAX_TIMER_MS);
    this.busyDelayMs = int('busyDelayMs', o.busyDelayMs, 1000, 0, MAX_TIMER_MS);
    if (o.idOf !== undefined && typeof o.idOf !== 'function') throw new MessagingConfigError('idOf', 'must be a function');
    this.idOf = o.idOf;
    this.processed = this.grid.cache(`gridlink.processed.${this.name}`);
  }

  private idFor(msg: Msg | JsMsg, headers: MsgHdrs | undefined): string | undefined {
    let id: unknown;
    try {
      id = this.idOf ? this.idOf(msg) : headers?.get('Nats-Msg-Id');
    } catch {
      id = undefined;
    }
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) return undefined;
    return id;
  }

  /** Handles one JetStream message: acks, naks or terms it. */
  handleJetStream(msg: JsMsg, handler: IdempotentHandler<JsMsg>): Promise<Outcome> {
    return this.process(
      msg,
      {
        subject: msg.subject,
        headers: msg.headers,
        redelivered: msg.redelivered,
        ack: async () => {
          await msg.ackAck();
        },
        // On a closed or draining connection these throw; the server redelivers anyway.
        nak: (d) => quietly(() => msg.nak(d)),
        term: () => quietly(() => msg.term('no message id')),
        working: () => quietly(() => msg.working()),
      },
      handler,
    );
  }

  /** Handles one core NATS message (no acknowledgement exists: a duplicate is just not run). */
  handleCore(msg: Msg, handler: IdempotentHandler<Msg>): Promise<Outcome> {
    const noop = (): void => undefined;
    return this.process(
      msg,
      { subject: msg.subject, headers: msg.headers, redelivered: false, ack: async () => undefined, nak: noop, term: noop, working: noop },
      handler,
    );
  }

  /** Subscribes to a core NATS subject (optionally in a queue group) with the handler wrapped. */
  subscribe(nc: NatsConnection, subject: string, handler: IdempotentHandler<Msg>, options: { queue?: string } = {}): Subscription {
    if (this.closed) throw new MessagingClosedError('idempotent consumer');
    const sub = nc.subscribe(subject, {
      ...(options.queue !== undefined ? { queue: options.queue } : {}),
      callback: (err, msg) => {
        if (err) {
          this.emit('error', err);
          return;
        }
        void this.handleCore(msg, handler);
      },
    });
    this.subs.add(sub);
    void sub.closed.then(() => this.subs.delete(sub));
    return sub;
  }

  /**
   * Runs the wrapped handler over a JetStream message stream (e.g. `await consumer.consume()`),
   * up to `concurrency` messages at once. Resolves when the stream ends.
   */
  async consume(messages: AsyncIterable<JsMsg>, handler: IdempotentHandler<JsMsg>, options: { concurrency?: number } = {}): Promise<void> {
    const concurrency = int('concurrency', options.concurrency, 1, 1, 10_000);
    const inFlight = new Set<Promise<Outcome>>();
    for await (const m of messages) {
      if (this.closed) {
        quietly(() => m.nak());
        continue;
      }
      const p = this.handleJetStream(m, handler);
      inFlight.add(p);
      const forget = (): void => void inFlight.delete(p);
      p.then(forget, forget);
      if (inFlight.size >= concurrency) await Promise.race(inFlight);
    }
    await Promise.allSettled([...inFlight]);
  }

  private async process<M extends Msg | JsMsg>(msg: M, d: Delivery, handler: IdempotentHandler<M>): Promise<Outcome> {
    const id = this.idFor(msg, d.headers);
    if (id === undefined) {
      this.emit('error', new MissingMessageIdError(d.subject));
      d.term();
      return 'no-id';
    }
    try {
      return await this.processWithId(id, msg, d, handler);
    } catch (e) {
      // Grid unreachable or similar: let JetStream redeliver later.
      d.nak(this.busyDelayMs);
      this.emit('error', e instanceof Error ? e : new Error(String(e)));
      return 'failed';
    }
  }

  /**
   * Grid key of an id: the in-progress lock and the processed mark share it, so one operation
   * takes the lock and reads the mark, and one stores the mark and frees the lock (ADR 0036).
   */
  private keyOf(id: string): string {
    return `gridlink.msg/${this.name}/${id}`;
  }

  private async processWithId<M extends Msg | JsMsg>(id: string, msg: M, d: Delivery, handler: IdempotentHandler<M>): Promise<Outcome> {
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
      own = new Ownership(attempt.handle, this.leaseMs, Math.floor(this.leaseMs / 5), sentAt);
      d.working();
      keepalive = setInterval(() => d.working(), this.workingMs);
      keepalive.unref();
      const ctx: IdempotentContext = { id, fencingToken: own.token, signal: own.signal, working: () => d.working(), redelivered: d.redelivered };
      try {
        await handler(msg, ctx);
      } catch (error) {
        clearInterval(keepalive);
        keepalive = null;
        d.nak();
        this.emit('failed', { id, error });
        return 'failed';
      }
      // The mark and the unlock in one round trip, applied only while this processing still
      // holds the lock (a holder whose lease ran out stores nothing).
      const held = own;
      own = null;
      try {
        await held.completeWith(this.processed, { t: held.token, at: Date.now() }, this.windowMs);
      } catch (error) {
        if (!(error instanceof LockNotHeldError)) throw error;
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

  /** Whether `id` is remembered as processed. */
  async isProcessed(id: string): Promise<boolean> {
    return (await this.processed.get(this.keyOf(id))) !== undefined;
  }

  /** Unsubscribes the core subscriptions made through `subscribe`. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.subs) s.unsubscribe();
    this.subs.clear();
  }
}
