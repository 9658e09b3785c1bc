/**
 * Invocation service: runs one operation to completion. Picks a connection (routing.ts), sends,
 * interprets the response (errors, topology version, REFRESH_MAP), and retries retryable failures
 * with p-retry: exponential backoff with jitter, all inside one deadline (operationTimeout) that
 * also bounds waiting for a connection. A mutation's sequence number is assigned once, before the
 * first attempt, and reused by every retry so the node applies it exactly once. It also carries
 * `ack`, the lowest seq still open (SeqWindow): once an operation settles its seq is never sent
 * again, so nodes may forget the outcomes below `ack` (ADR 0018).
 */
import pRetry from 'p-retry';
import { ErrorCode, MUTATING_OPS, Op, ResponseFlag, type ErrorPayload, type ResponseFrame } from '@gridlink/protocol';
import { MAX_TIMER_MS, describe, type ResolvedConfig } from './config.js';
import type { ConnectionManager } from './connection-manager.js';
import { PromiseHandler, type Connection, type ResponseHandler } from './connection.js';
import { backoffDelay } from './backoff.js';
import {
  GridAbortError,
  GridClosedError,
  GridConfigError,
  GridConnectionError,
  GridError,
  GridServerError,
  GridTimeoutError,
  isRetryable,
  serverError,
} from './errors.js';
import { LatencyHistogram } from './histogram.js';
import type { PartitionService } from './partition-service.js';
import { primaryOf } from './partition-table.js';
import { RoundRobin, route, type RouteReason } from './routing.js';
import { SeqWindow } from './seq-window.js';

export interface InvokeOptions {
  /** Partition the operation addresses (routes to its primary). */
  partition?: number | undefined;
  /** Caller's abort signal. */
  signal?: AbortSignal | undefined;
  /** Overrides operationTimeout for this call (ms). */
  timeoutMs?: number | undefined;
  /** Extra time one attempt may take beyond requestTimeout (e.g. a lock wait), ms. */
  attemptExtraMs?: number | undefined;
  /** The client's own request, sent even after close() (the lock releases close() makes). */
  internal?: boolean | undefined;
  /**
   * Remember whether any attempt of this operation was handed to a connection (`wasWritten`):
   * a lock acquisition that failed without ever being written needs no follow-up.
   */
  trackWritten?: boolean | undefined;
}

export interface NodeCounters {
  requests: number;
  errors: number;
  inFlight: number;
  latency: LatencyHistogram;
}

export interface RetryEvent {
  op: number;
  attempt: number;
  error: GridError;
}

export interface InvokerHooks {
  onRetry(e: RetryEvent): void;
}

const TRANSITION_CODES: ReadonlySet<number> = new Set<number>([
  ErrorCode.NOT_PRIMARY,
  ErrorCode.PARTITION_MOVING,
  ErrorCode.NOT_READY,
  ErrorCode.NODE_STOPPING,
  ErrorCode.REPLICATION_FAILED,
]);

/**
 * Failures that mean "the cluster is changing under this request": a lost connection, or a node
 * saying the partition is moving / it is not (yet) the primary / it is stopping / a backup did not
 * acknowledge (it died or restarted and the topology has not dropped it yet: while the control
 * plane elects a leader that can take seconds, and seven quick retries ran out first). They are retried
 * until the operation's deadline (with their own backoff) instead of using up the retry budget,
 * so a failover never exhausts an operation's retries before its deadline.
 */
export function isTransitionError(e: unknown): boolean {
  if (e instanceof GridConnectionError) return true;
  return e instanceof GridServerError && TRANSITION_CODES.has(e.wireCode);
}

/**
 * An AbortSignal, or something that behaves as one (another realm's, a polyfill's): what the
 * client reads and listens to on the signals it is given.
 */
function isAbortSignal(s: unknown): s is AbortSignal {
  if (s instanceof AbortSignal) return true;
  if (typeof s !== 'object' || s === null) return false;
  const o = s as Record<string, unknown>;
  return typeof o.aborted === 'boolean' && typeof o.addEventListener === 'function' && typeof o.removeEventListener === 'function';
}

/**
 * Why a call's `signal` or `timeoutMs` cannot be used, or null. Checked before an operation is
 * counted or given a seq: a signal the connection cannot listen to threw from deep inside the
 * send, after both, leaving the operation open for good (and close() waiting on it); a timeoutMs
 * that is not a positive integer left the first attempt without a time bound, and one beyond
 * what a timer can wait made the deadline fire at once.
 */
export function callOptionsError(o: { signal?: unknown; timeoutMs?: unknown }): GridConfigError | null {
  const t = o.timeoutMs;
  if (t !== undefined && !(typeof t === 'number' && Number.isInteger(t) && t >= 1 && t <= MAX_TIMER_MS)) {
    return new GridConfigError('timeoutMs', `must be an integer from 1 to ${MAX_TIMER_MS} (ms), got ${describe(t)}`);
  }
  const s = o.signal;
  if (s !== undefined && !isAbortSignal(s)) return new GridConfigError('signal', `must be an AbortSignal, got ${describe(s)}`);
  return null;
}

/**
 * The option names of every client call (OpOptions, PutOptions, IncrementOptions, ScanOptions,
 * the lock options and withLock's): one set, so that one options object may serve a get and a
 * put alike, while a misspelt name (`ttl`, `timeout`) is refused instead of quietly doing nothing.
 */
export const CALL_OPTION_NAMES: ReadonlySet<string> = new Set(['signal', 'timeoutMs', 'ttlMs', 'initial', 'batchSize', 'leaseMs', 'autoRenew', 'ifAbsent', 'waitMs', 'noWait']);

/**
 * Why a call's options cannot be used as such — not an object, or holding a name that is not one
 * of `names` — or null. Undefined and null mean no options. Checked only when options are given:
 * a call without them pays nothing.
 */
export function optionNamesError(o: unknown, names: ReadonlySet<string> = CALL_OPTION_NAMES): GridConfigError | null {
  if (o === undefined || o === null) return null;
  if (typeof o !== 'object' || Array.isArray(o)) return new GridConfigError('options', `must be an object, got ${describe(o)}`);
  for (const k in o) {
    if (!names.has(k) && Object.prototype.hasOwnProperty.call(o, k)) return new GridConfigError(k, `unknown option; the options here are ${[...names].join(', ')}`);
  }
  return null;
}

/**
 * Waits `ms`, or less: until `signal` aborts, or until `wakers` is woken (see
 * Invoker.transitionWaiters). Resolves true when woken.
 */
function pause(ms: number, signal: AbortSignal, wakers: Set<() => void>): Promise<boolean> {
  if (ms <= 0) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const finish = (woken: boolean): void => {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      wakers.delete(onWake);
      resolve(woken);
    };
    // The wait ran out, or the signal aborted: not woken.
    const done = (): void => finish(false);
    const onWake = (): void => finish(true);
    const t = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    wakers.add(onWake);
  });
}

function opName(op: number): string {
  for (const [k, v] of Object.entries(Op)) if (v === op) return k;
  return `op ${op}`;
}

export class Invoker {
  private readonly seqs = new SeqWindow();
  private readonly rr = new RoundRobin();
  private closed = false;
  /** close() was called: every operation is refused with GridClosedError. */
  get isClosed(): boolean {
    return this.closed;
  }
  readonly perNode = new Map<string, NodeCounters>();
  retries = 0;
  operations = 0;
  failedOperations = 0;
  readonly routed: Record<RouteReason, number> = { primary: 0, 'round-robin': 0 };
  forwarded = 0;
  /**
   * Attempts the chosen connection refused before sending anything (a request over the frame
   * limit, a connection no longer open, a signal aborted): not counted as the node's requests or
   * errors, which are only what went out to it.
   */
  unsent = 0;

  get operationTimeout(): number {
    return this.cfg.operationTimeout;
  }

  get requestTimeout(): number {
    return this.cfg.requestTimeout;
  }

  /**
   * Operations pausing between attempts that failed with a transition (see isTransitionError):
   * a newer partition map wakes them all, and so does a node announcing that it holds the map
   * this client holds (it may have refused them while it was behind), so that an operation
   * waiting out its backoff tries again at once instead of up to `retry.maxDelay` later (ADR 0081).
   */
  private readonly transitionWaiters = new Set<() => void>();

  constructor(
    private readonly cfg: ResolvedConfig,
    private readonly manager: ConnectionManager,
    private readonly partitions: PartitionService,
    private readonly hooks: InvokerHooks,
  ) {
    partitions.on('changed', () => this.wakeTransitionWaiters());
  }

  /** Every operation pausing between transition attempts goes on now, its backoff started over. */
  wakeTransitionWaiters(): void {
    if (this.transitionWaiters.size === 0) return;
    for (const wake of [...this.transitionWaiters]) wake();
  }

  counters(nodeId: string): NodeCounters {
    let c = this.perNode.get(nodeId);
    if (c === undefined) {
      c = { requests: 0, errors: 0, inFlight: 0, latency: new LatencyHistogram() };
      this.perNode.set(nodeId, c);
    }
    return c;
  }

  /**
   * Forgets the counters (and latency histogram) of every node `keep` refuses: the client calls
   * this when a node has left the partition map and has no connection, so the ids of departed
   * nodes (rolling restarts under new ids, a scaled-down cluster) do not pile up in a long-lived
   * client. An attempt still holding a forgotten node's counters updates an object nobody reads;
   * a node that comes back starts from zero.
   */
  forgetNodes(keep: (nodeId: string) => boolean): void {
    for (const id of this.perNode.keys()) if (!keep(id)) this.perNode.delete(id);
  }

  /** Stops accepting operations. */
  close(): void {
    this.closed = true;
  }

  /** The lowest seq still open: what requests send as `ack`. */
  get seqFloor(): number {
    return this.seqs.floor;
  }

  /** Mutations started and not settled (their seqs may still be sent). */
  get openSeqs(): number {
    return this.seqs.open;
  }

  /** Operations started and not yet settled. */
  private active = 0;
  private idleWaiters: (() => void)[] = [];

  /** Operations started and not yet settled. */
  get activeOperations(): number {
    return this.active;
  }

  /** Resolves once no operation is in flight (operations started after close() are refused). */
  whenIdle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** What `whenSettledThrough` waits on, by increasing seq: resolved once the floor passes it. */
  private readonly floorWaiters: { seq: number; resolve: () => void }[] = [];

  /**
   * Resolves once `seq` and every seq below it have settled (the floor, sent as `ack`, is past
   * it): at once when they have.
   */
  whenSettledThrough(seq: number): Promise<void> {
    if (this.seqs.floor > seq) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const w = this.floorWaiters;
      let lo = 0;
      let hi = w.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if ((w[mid] as { seq: number }).seq <= seq) lo = mid + 1;
        else hi = mid;
      }
      w.splice(lo, 0, { seq, resolve });
    });
  }

  /** An operation settled; `seq` (0 = none of ours) is never sent again. */
  settled(seq: number): void {
    if (seq > 0) {
      this.seqs.settle(seq);
      if (this.floorWaiters.length > 0) this.wakeFloorWaiters();
    }
    this.active--;
    if (this.active === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private wakeFloorWaiters(): void {
    const floor = this.seqs.floor;
    const w = this.floorWaiters;
    let n = 0;
    while (n < w.length && (w[n] as { seq: number }).seq < floor) n++;
    if (n === 0) return;
    for (const x of w.splice(0, n)) x.resolve();
  }

  /**
   * Runs `op`. For mutating ops, `payload.seq` (and `payload.ack`) is filled in once here (if
   * absent) and reused on every retry; the seq stays open until the operation settles. Resolves with the response payload, passed through `transform` when given (a
   * throwing transform rejects the operation with its error).
   *
   * Fast path: the first attempt goes straight to a ready connection, whose response handler is
   * the operation itself — no timer, no AbortController and no promise besides the one returned
   * (the connection expires the request after the attempt's time bound). Only a retryable failure
   * moves the operation to the slow path (`retry`). `partition`, when given, stands for
   * `options.partition` (so that a caller with no other option needs no options object).
   */
  invoke<T>(
    op: Op,
    payload: Record<string, unknown>,
    options: InvokeOptions = NO_OPTIONS,
    transform: ((payload: unknown) => T) | null = null,
    partition: number | undefined = options.partition,
  ): Promise<T> {
    if (this.closed && options.internal !== true) return Promise.reject(new GridClosedError());
    if (options !== NO_OPTIONS) {
      const bad = callOptionsError(options);
      if (bad !== null) return Promise.reject(bad);
    }
    this.operations++;
    const userSignal = options.signal;
    if (userSignal?.aborted) {
      this.failedOperations++;
      return Promise.reject(new GridAbortError('the operation was aborted', { cause: userSignal.reason }));
    }
    let seq = 0;
    if (MUTATING_OPS.has(op) && payload.seq === undefined) {
      seq = this.seqs.next();
      payload.seq = seq;
      payload.ack = this.seqs.floor;
    }
    this.active++;
    const now = performance.now();
    const call = new Call<T>(this, op, payload, options, partition, now, transform, seq);
    const conn = this.pickNow(partition);
    if (conn === null) {
      call.failFirst(new GridConnectionError('no connection to any node is usable right now'));
      return call.promise;
    }
    const nodeId = conn.nodeId as string;
    call.nodeId = nodeId;
    // The handler is never called from inside start(): the counters are set before any outcome.
    const err = conn.start(op, payload, call, Math.min(call.attemptMs, call.timeoutMs), userSignal, now);
    if (err !== null) {
      call.onUnsent(err);
      return call.promise;
    }
    if (options.trackWritten === true) this.written.add(payload);
    const c = this.counters(nodeId);
    c.requests++;
    c.inFlight++;
    call.counters = c;
    return call.promise;
  }

  /**
   * The connection for a first attempt, chosen without waiting: the partition's primary when
   * connected, else round-robin over usable connections (what `route` decides with nothing to
   * avoid); null when no connection is usable.
   */
  private pickNow(partition: number | undefined): Connection | null {
    if (partition !== undefined && this.cfg.partitionAware) {
      const primary = primaryOf(this.partitions.map, partition);
      if (primary !== null) {
        const conn = this.manager.connection(primary.id);
        if (conn !== undefined) {
          this.routed.primary++;
          return conn;
        }
      }
    }
    const healthy = this.manager.healthyNodeIds();
    if (healthy.length === 0) return null;
    const conn = this.manager.connection(healthy[this.rr.next(healthy.length)] as string);
    if (conn === undefined) return null;
    if (partition !== undefined) this.routed['round-robin']++;
    return conn;
  }

  /** Interprets a response: observes its topology version; an ERROR response becomes a GridServerError. */
  interpret(frame: ResponseFrame, nodeId: string, c: NodeCounters): GridServerError | null {
    const flags = frame.flags;
    if ((flags & ResponseFlag.FORWARDED) !== 0) this.forwarded++;
    this.partitions.observe(frame.topologyVersion, (flags & ResponseFlag.REFRESH_MAP) !== 0, nodeId);
    if ((flags & ResponseFlag.ERROR) === 0) return null;
    c.errors++;
    const ep = frame.payload as ErrorPayload;
    const err = serverError(
      typeof ep === 'object' && ep !== null && typeof ep.code === 'number' ? ep : { code: ErrorCode.INTERNAL, message: 'malformed error payload' },
      nodeId,
    );
    if (err.wireCode === ErrorCode.NOT_PRIMARY || err.wireCode === ErrorCode.PARTITION_MOVING || err.wireCode === ErrorCode.PARTITION_LOST) {
      void this.partitions.refresh();
    }
    return err;
  }

  /**
   * After a failed first attempt: fails the operation, or continues it on the slow path when the
   * failure is retryable and time is left.
   */
  afterFirstFailure<T>(op: Op, payload: Record<string, unknown>, options: InvokeOptions, deadline: number, timeoutMs: number, attemptMs: number, first: unknown): Promise<T> {
    const userSignal = options.signal;
    const expired = performance.now() >= deadline;
    // `retries: 0` leaves no retry for a failure that uses up the budget (a transition uses none).
    const budgetSpent = this.cfg.retry !== false && this.cfg.retry.retries === 0 && !isTransitionError(first);
    if (userSignal?.aborted || expired || this.cfg.retry === false || !isRetryable(first) || budgetSpent || this.closedForRetry()) {
      this.failedOperations++;
      if (userSignal?.aborted) return Promise.reject(new GridAbortError('the operation was aborted', { cause: userSignal.reason }));
      if (expired && isRetryable(first)) return Promise.reject(this.deadlineError(op, timeoutMs, first));
      return Promise.reject(this.asGridError(op, first));
    }
    return this.retry<T>(op, payload, options, deadline, timeoutMs, attemptMs, first);
  }

  /** Remembers the node whose attempt failed with `err` (so the retry avoids it). */
  noteFailedNode(err: GridError, nodeId: string): void {
    this.lastFailedNode.set(err, nodeId);
  }

  private deadlineError(op: Op, timeoutMs: number, last: unknown): GridTimeoutError {
    return new GridTimeoutError(
      `${opName(op)} did not complete within ${timeoutMs} ms${last instanceof Error ? `: last error: ${last.message}` : ''}`,
      { cause: last },
    );
  }

  private asGridError(op: Op, e: unknown): GridError {
    if (e instanceof GridError) return e;
    return new GridError(`${opName(op)} failed: ${(e as Error).message}`, 'GRID_ERROR', false, { cause: e });
  }

  /** Retries after a retryable first failure, with p-retry, under the operation's deadline. */
  private async retry<T>(
    op: Op,
    payload: Record<string, unknown>,
    options: InvokeOptions,
    deadline: number,
    timeoutMs: number,
    attemptMs: number,
    first: unknown,
  ): Promise<T> {
    const r = this.cfg.retry as Exclude<ResolvedConfig['retry'], false>;
    const ac = new AbortController();
    let lastError: unknown = first;
    const timer = setTimeout(() => ac.abort(this.deadlineError(op, timeoutMs, lastError)), Math.max(0, deadline - performance.now()));
    const userSignal = options.signal;
    const onUserAbort = (): void => {
      ac.abort(new GridAbortError('the operation was aborted', { cause: userSignal?.reason }));
    };
    userSignal?.addEventListener('abort', onUserAbort, { once: true });
    const signal = ac.signal;
    // Nodes whose attempt timed out or whose connection failed during this operation: the next
    // attempt prefers another node (any node forwards to the primary).
    const avoid = new Set<string>();
    const firstNode = first instanceof GridError ? this.lastFailedNode.get(first) : undefined;
    if (firstNode !== undefined) avoid.add(firstNode);
    const firstIsTransition = isTransitionError(first);
    // Backoff of transition failures (see isTransitionError): the first retries at once (another
    // node), later ones wait like ordinary retries, until the deadline.
    const transitionPolicy = { minDelay: Math.max(1, r.minDelay), maxDelay: Math.max(1, r.maxDelay), factor: r.factor, jitter: r.jitter ? 0.5 : 0 };
    let transitions = firstIsTransition ? 1 : 0;
    // The retry budget, kept here rather than by p-retry: p-retry ends the loop once its count of
    // consumed retries is spent even for a failure that consumes none, so a transition after the
    // budget was spent (or with `retries: 0`, after the first slow attempt) failed the operation
    // long before its deadline. Failures that use up the budget so far, the first attempt's included.
    let budgetUsed = firstIsTransition ? 0 : 1;
    /** What onFailedAttempt decided for the failure p-retry is handling (shouldRetry answers it). */
    let retryThis = false;
    this.retries++;
    this.hooks.onRetry({ op, attempt: 1, error: first as GridError });
    try {
      return await pRetry(
        async () => {
          try {
            const remaining = deadline - performance.now();
            return await this.attempt<T>(op, payload, options.partition, signal, Math.max(1, Math.min(attemptMs, remaining)), avoid, true, options.trackWritten === true);
          } catch (e) {
            lastError = e;
            throw e;
          }
        },
        {
          // Bounded by `budgetUsed` (see above) and by the deadline, not by p-retry's count.
          retries: Number.POSITIVE_INFINITY,
          factor: r.factor,
          minTimeout: r.minDelay,
          maxTimeout: r.maxDelay,
          randomize: r.jitter,
          signal,
          unref: true,
          shouldRetry: () => retryThis,
          // A cluster in transition (lost connection, partition moving, not primary yet) is the
          // failover case itself: it does not use up the retry budget; the deadline bounds it.
          shouldConsumeRetry: ({ error }) => !isTransitionError(error),
          onFailedAttempt: async ({ error, attemptNumber }) => {
            const transition = isTransitionError(error);
            if (!transition) budgetUsed++;
            retryThis = isRetryable(error) && !signal.aborted && !this.closedForRetry() && (transition || budgetUsed <= r.retries);
            if (retryThis) {
              this.retries++;
              this.hooks.onRetry({ op, attempt: attemptNumber + 1, error: error as GridError });
              if (transition) {
                const n = transitions++;
                // Woken (a newer map, or a node caught up with it): the next attempt goes out now,
                // and the backoff starts over (what failed before says little about the new owner).
                if (n > 0 && (await pause(backoffDelay(transitionPolicy, n - 1, Math.random()), signal, this.transitionWaiters))) transitions = 1;
              }
            }
          },
        },
      );
    } catch (e) {
      this.failedOperations++;
      if (signal.aborted) {
        const reason: unknown = signal.reason;
        if (reason instanceof GridError) throw reason;
      }
      throw this.asGridError(op, e);
    } finally {
      clearTimeout(timer);
      userSignal?.removeEventListener('abort', onUserAbort);
    }
  }

  private closedForRetry(): boolean {
    // After close(), in-flight operations may still finish their current attempt but not retry
    // once the connections are gone.
    return this.closed && this.manager.healthyNodeIds().length === 0;
  }

  /**
   * Picks a connection. With `wait`, waits (under `signal`) for one when none is usable;
   * otherwise fails at once with a retryable connection error.
   */
  private async pick(
    partition: number | undefined,
    signal: AbortSignal | undefined,
    avoid: ReadonlySet<string> | null,
    wait: boolean,
  ): Promise<{ conn: Connection; nodeId: string }> {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const all = this.manager.healthyNodeIds();
      let healthy = all;
      if (avoid !== null && avoid.size > 0) {
        const preferred = all.filter((id) => !avoid.has(id));
        if (preferred.length > 0) healthy = preferred;
      }
      const r = route(healthy, this.rr, this.partitions.map, partition, this.cfg.partitionAware);
      if (r !== null) {
        const conn = this.manager.connection(r.nodeId);
        if (conn !== undefined) {
          if (partition !== undefined) this.routed[r.reason]++;
          return { conn, nodeId: r.nodeId };
        }
      }
      if (!wait || signal === undefined) throw new GridConnectionError('no connection to any node is usable right now');
      await this.manager.waitForConnection(signal);
    }
  }

  /** Failed node of an error thrown by `attempt` (so the retry can avoid it). */
  private readonly lastFailedNode = new WeakMap<GridError, string>();

  /** Payloads of operations with `trackWritten` that some attempt handed to a connection. */
  private readonly written = new WeakSet<object>();

  /**
   * Whether an attempt of the operation invoked with `payload` and `trackWritten` was handed to a
   * connection: false when every attempt failed before that (no usable connection, aborted
   * first), so that no node can have received it.
   */
  wasWritten(payload: object): boolean {
    return this.written.has(payload);
  }

  private async attempt<T>(
    op: Op,
    payload: Record<string, unknown>,
    partition: number | undefined,
    signal: AbortSignal | undefined,
    attemptMs: number,
    avoid: Set<string> | null,
    wait: boolean,
    trackWritten: boolean,
  ): Promise<T> {
    const { conn, nodeId } = await this.pick(partition, signal, avoid, wait);
    const start = performance.now();
    const attempt = new PromiseHandler();
    const refused = conn.start(op, payload, attempt, attemptMs, signal, start);
    if (refused !== null) {
      this.unsent++;
      if (!(signal?.aborted ?? false)) {
        avoid?.add(nodeId);
        this.lastFailedNode.set(refused, nodeId);
      }
      throw refused;
    }
    if (trackWritten) this.written.add(payload);
    const c = this.counters(nodeId);
    c.requests++;
    c.inFlight++;
    let frame;
    try {
      frame = await attempt.promise;
    } catch (e) {
      c.errors++;
      if (!(signal?.aborted ?? false)) {
        avoid?.add(nodeId);
        if (e instanceof GridError) this.lastFailedNode.set(e, nodeId);
      }
      throw e;
    } finally {
      c.inFlight--;
    }
    c.latency.record(performance.now() - start);
    const err = this.interpret(frame, nodeId, c);
    if (err !== null) throw err;
    return frame.payload as T;
  }
}

export const NO_OPTIONS: InvokeOptions = Object.freeze({});


/**
 * One operation. On the fast path it is the response handler of its first attempt; a retryable
 * failure hands it to the invoker's slow path.
 */
class Call<T> implements ResponseHandler {
  /** interpret() observes each response's topology version: the connection need not. */
  readonly observesVersion = true;
  readonly promise: Promise<T>;
  private resolve!: (value: T) => void;
  private reject!: (err: unknown) => void;
  readonly timeoutMs: number;
  readonly attemptMs: number;
  readonly deadline: number;
  /** Node and counters of the first attempt (set once it is sent). */
  nodeId = '';
  counters: NodeCounters | null = null;

  constructor(
    private readonly inv: Invoker,
    private readonly op: Op,
    private readonly payload: Record<string, unknown>,
    private readonly options: InvokeOptions,
    private readonly partition: number | undefined,
    private readonly startedAt: number,
    private readonly transform: ((payload: unknown) => T) | null,
    /** Seq this operation opened (0 = none). */
    private readonly seq: number,
  ) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.timeoutMs = options.timeoutMs ?? inv.operationTimeout;
    this.deadline = startedAt + this.timeoutMs;
    this.attemptMs = inv.requestTimeout + (options.attemptExtraMs ?? 0);
  }

  onResponse(frame: ResponseFrame, receivedAt: number): void {
    const c = this.counters as NodeCounters;
    c.inFlight--;
    c.latency.record(receivedAt - this.startedAt);
    const err = this.inv.interpret(frame, this.nodeId, c);
    if (err !== null) this.failFirst(err);
    else this.succeed(frame.payload);
  }

  onFailure(err: GridError): void {
    const c = this.counters as NodeCounters;
    c.errors++;
    c.inFlight--;
    if (!(this.options.signal?.aborted ?? false)) this.inv.noteFailedNode(err, this.nodeId);
    this.failFirst(err);
  }

  /** The connection refused the first attempt before sending it: no request or error of the node. */
  onUnsent(err: GridError): void {
    this.inv.unsent++;
    if (!(this.options.signal?.aborted ?? false)) this.inv.noteFailedNode(err, this.nodeId);
    this.failFirst(err);
  }

  /**
   * The first attempt failed: fail, or retry on the slow path. Continues on a later microtask
   * (as an awaited attempt would), so retry hooks and user `retry` listeners never run inside the
   * connection's data handler.
   */
  failFirst(first: unknown): void {
    const options = this.partition === this.options.partition ? this.options : { ...this.options, partition: this.partition };
    Promise.resolve()
      .then(() => this.inv.afterFirstFailure<unknown>(this.op, this.payload, options, this.deadline, this.timeoutMs, this.attemptMs, first))
      .then(
        (payload) => this.succeed(payload),
        (e: unknown) => {
          this.inv.settled(this.seq);
          this.reject(e);
        },
      );
  }

  private succeed(payload: unknown): void {
    this.inv.settled(this.seq);
    if (this.transform === null) {
      this.resolve(payload as T);
      return;
    }
    let value: T;
    try {
      value = this.transform(payload);
    } catch (e) {
      this.reject(e);
      return;
    }
    this.resolve(value);
  }
}
