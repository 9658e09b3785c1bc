/**
 * Distributed locks: a lock on a key is a lease held by the handle that acquired it. Each
 * acquisition sends a random owner id (ADR 0020), so two acquisitions through one client exclude
 * each other exactly as two clients do; a retry of the same acquisition stays exactly-once through
 * its seq. Acquiring returns a handle with a fencing token that strictly increases per lock key
 * (across failovers); renew and release need that token and act only for their handle. A refused
 * acquisition tells how long the holder's lease still runs (`heldForMs`). Automatic renewal renews
 * at a third of the lease while held.
 *
 * Lock + read-your-state (ADR 0036): `attemptGet(cache)` takes the lock and reads the entry under
 * the lock's own key in `cache` in one round trip, atomically on the lock's primary (the lock and
 * the entry share a partition because they share the key); `handle.putAndRelease(cache, value)`
 * stores the entry and releases in one round trip, applied only while this handle still holds
 * the lock (fenced by its token).
 */
import { randomBytes } from 'node:crypto';
import { encodeKey, partitionOfBytes, type GridKey } from '@gridlink/affinity';
import { Op, type LockResult } from '@gridlink/protocol';
import { checkTtl, type ClientContext, type GridCache, type OpOptions, type PutOptions } from './cache.js';
import { MAX_TIMER_MS, describe } from './config.js';
import { GridAbortError, GridClosedError, GridConfigError, GridConnectionError, GridError, GridTimeoutError, LockNotHeldError, LockTimeoutError } from './errors.js';
import { callOptionsError, optionNamesError } from './invoker.js';

export interface LockOptions extends OpOptions {
  /** Lease duration (ms). Default 10000. */
  leaseMs?: number;
  /** Renew automatically at a third of the lease until released or lost. Default false. */
  autoRenew?: boolean;
}

export interface LockGetOptions extends LockOptions {
  /**
   * Take the lock only when the entry is absent. A present entry is then answered without taking
   * the lock: a read on the primary, nothing replicated, no release to send. Default false. (A
   * node older than this option takes the lock anyway: `acquired` says what happened.)
   */
  ifAbsent?: boolean;
}

export interface AcquireOptions extends LockOptions {
  /** How long to wait for the lock (ms). Default 10000. */
  waitMs?: number;
}

/** Outcome of `GridLock.attempt()`: the handle, or how long the current holder's lease still runs. */
export type LockAttempt =
  | { acquired: true; handle: LockHandle }
  | {
      acquired: false;
      /** Remaining lease of the current holder (ms), when the node said. */
      heldForMs: number | undefined;
    };

/**
 * Outcome of `GridLock.attemptGet()`: the attempt plus the entry stored under the lock's key in
 * the given cache, read at the same instant on the primary (whether or not the lock was taken).
 */
export type LockStateAttempt<V> = LockAttempt & {
  /** The entry's value, undefined when absent. */
  value: V | undefined;
};

/**
 * Random bytes for owner ids, drawn from the system in blocks: one `randomBytes` call per
 * acquisition cost more than the rest of a lock round trip's client-side work.
 */
const OWNER_POOL_BYTES = 12 * 256;
let ownerPool = Buffer.alloc(0);
let ownerPoolAt = 0;

/** A fresh owner id for one acquisition: 16 URL-safe characters (96 random bits). */
function newOwner(): string {
  if (ownerPoolAt + 12 > ownerPool.length) {
    ownerPool = randomBytes(OWNER_POOL_BYTES);
    ownerPoolAt = 0;
  }
  const id = ownerPool.toString('base64url', ownerPoolAt, ownerPoolAt + 12);
  ownerPoolAt += 12;
  return id;
}

/**
 * The abort reason of a released handle's signal. Built without a stack trace: it is made on
 * every release, where capturing one was a measurable part of the cost, and says nothing a
 * stack would add.
 */
function releasedReason(): LockNotHeldError {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new LockNotHeldError('lock released');
  } finally {
    Error.stackTraceLimit = limit;
  }
}

export const DEFAULT_LEASE_MS = 10_000;
export const DEFAULT_WAIT_MS = 10_000;

function checkPositive(field: string, v: number | undefined, def: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < 1 || v > max) throw new GridConfigError(field, `must be an integer from 1 to ${max}, got ${describe(v)}`);
  return v;
}

/**
 * A lease is renewed on a timer at a third of its length, and the node bounds a wait for a held
 * lock by the holder's lease: a longer lease than a timer can wait would fire those timers at
 * once, every millisecond.
 */
function checkLease(v: number | undefined, def: number): number {
  return checkPositive('leaseMs', v, def, MAX_TIMER_MS);
}

/** A `waitMs` option: the node arms a timer for the wait too (the protocol refuses more than a timer takes). */
export function checkWaitMs(v: number | undefined): number {
  return checkPositive('waitMs', v, DEFAULT_WAIT_MS, MAX_TIMER_MS);
}

function throwIfBad(bad: GridConfigError | null): void {
  if (bad !== null) throw bad;
}

function checkBoolean(field: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw new GridConfigError(field, `must be a boolean, got ${describe(v)}`);
}

/** `cache` is a GridCache (checked by shape: a copy of the package elsewhere makes its own class). */
function checkCache(cache: unknown): void {
  const c = cache as Partial<GridCache<GridKey, unknown>> | null;
  if (typeof c !== 'object' || c === null || typeof c.name !== 'string' || typeof c.encodeValue !== 'function' || typeof c.decodeValue !== 'function') {
    throw new GridConfigError('cache', `must be a GridCache (client.cache(name)), got ${describe(cache)}`);
  }
}

/**
 * What lock handles need from their client: renewal scheduling, a place to report a loss, and
 * the table of held handles that close() releases.
 */
export interface LockRegistry {
  /** Calls `h.renewDue()` at `at` (a performance.now() time); replaces an earlier schedule of `h`. */
  scheduleRenew(h: LockHandle, at: number): void;
  /** Forgets `h`'s scheduled renewal, if any. */
  cancelRenew(h: LockHandle): void;
  onLost(h: LockHandle, err: GridError): void;
  /** `h` holds its lock (from its acquisition until it is released or lost). */
  held(h: LockHandle): void;
  /** `h` no longer holds its lock (released or lost). */
  dropped(h: LockHandle): void;
  /** Runs an acquisition (its request and the making of its handle), for close() to wait on. */
  acquisition<T>(run: () => Promise<T>): Promise<T>;
  /** Runs the follow-up of an abandoned acquisition in the background, for close() to wait on. Never rejects. */
  followUp(run: () => Promise<void>): void;
  /** The client is closing: its held locks are being released and no new one may be kept. */
  readonly closing: boolean;
  /** How long close() lets one release take (ms). */
  readonly releaseTimeoutMs: number;
}

/**
 * Automatic renewal of every held lock of one client on one timer, armed for the earliest due
 * renewal, instead of a timer per handle: a handle held for a request's duration (the
 * de-duplication middleware's case) costs a map insert and delete, not a timer set and cleared.
 * Leases of one client are mostly equal, so due times arrive in order and the timer, once armed,
 * is seldom moved.
 */
export class RenewalScheduler implements Pick<LockRegistry, 'scheduleRenew' | 'cancelRenew' | 'onLost'> {
  private readonly due = new Map<LockHandle, number>();
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private stopped = false;

  constructor(private readonly lost: (h: LockHandle, err: GridError) => void) {}

  /** Handles with a renewal scheduled. */
  get size(): number {
    return this.due.size;
  }

  /** The timer is armed (it fires once more after the last handle left, then stays off). */
  get armed(): boolean {
    return this.timer !== null;
  }

  scheduleRenew(h: LockHandle, at: number): void {
    if (this.stopped) return;
    this.due.delete(h);
    this.due.set(h, at);
    if (at < this.timerAt) this.arm(at);
  }

  cancelRenew(h: LockHandle): void {
    // The timer stays armed: when it fires with nothing due it re-arms for what is left, if any.
    this.due.delete(h);
  }

  onLost(h: LockHandle, err: GridError): void {
    this.lost(h, err);
  }

  /** Stops every renewal for good (client close). */
  stop(): void {
    this.stopped = true;
    this.due.clear();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private arm(at: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.fire, Math.max(0, at - performance.now()));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const dueNow: LockHandle[] = [];
    for (const [h, at] of this.due) {
      if (at <= now) dueNow.push(h);
      else if (at < next) next = at;
    }
    for (const h of dueNow) this.due.delete(h);
    if (next < Infinity) this.arm(next);
    for (const h of dueNow) h.renewDue();
  };
}

/** Below this many held handles the table is not swept for handles past their lease. */
const MIN_SWEEP = 64;

/**
 * Every lock a client holds, so that close() releases them instead of leaving them to their
 * leases (other clients would wait a whole lease). A handle enters at its acquisition and leaves
 * when released or lost; one dropped without release (its lease left to run out) is forgotten
 * once its lease has passed (by the client's clock, counted from when the acquisition or last
 * renewal was answered: never before the node's lease ends), in sweeps that run when the table
 * has doubled since the last one, so dropped handles cost no unbounded memory.
 */
export class LockTable implements LockRegistry {
  readonly renewals: RenewalScheduler;
  private readonly holding = new Set<LockHandle>();
  /** Acquisitions under way, and what releaseAll waits on for them to end. */
  private acquiring = 0;
  private acquiringDone: (() => void) | null = null;
  /** Follow-ups of abandoned acquisitions under way (see GridLock.abandoned). */
  private readonly followUps = new Set<Promise<void>>();
  private sweepAt = MIN_SWEEP;
  private state: 'open' | 'closing' | 'closed' = 'open';

  constructor(
    lost: (h: LockHandle, err: GridError) => void,
    readonly releaseTimeoutMs: number,
  ) {
    this.renewals = new RenewalScheduler(lost);
  }

  get closing(): boolean {
    return this.state !== 'open';
  }

  /** Handles holding a lock whose lease has not passed (those past it are forgotten first). */
  get size(): number {
    this.sweep();
    return this.holding.size;
  }

  scheduleRenew(h: LockHandle, at: number): void {
    this.renewals.scheduleRenew(h, at);
  }

  cancelRenew(h: LockHandle): void {
    this.renewals.cancelRenew(h);
  }

  onLost(h: LockHandle, err: GridError): void {
    this.renewals.onLost(h, err);
  }

  held(h: LockHandle): void {
    if (this.state === 'closed') {
      // Made after close() released the others (it cannot: close() waits for acquisitions): released the same way.
      void h.releaseOnClose(this.releaseTimeoutMs);
      return;
    }
    this.holding.add(h);
    if (this.holding.size >= this.sweepAt) {
      this.sweep();
      this.sweepAt = Math.max(MIN_SWEEP, 2 * this.holding.size);
    }
  }

  dropped(h: LockHandle): void {
    this.holding.delete(h);
  }

  async acquisition<T>(run: () => Promise<T>): Promise<T> {
    this.acquiring++;
    try {
      return await run();
    } finally {
      if (--this.acquiring === 0 && this.acquiringDone !== null) {
        this.acquiringDone();
        this.acquiringDone = null;
      }
    }
  }

  followUp(run: () => Promise<void>): void {
    const p: Promise<void> = run()
      .catch(() => undefined)
      .finally(() => this.followUps.delete(p));
    this.followUps.add(p);
  }

  /** Follow-ups of abandoned acquisitions under way. */
  get followingUp(): number {
    return this.followUps.size;
  }

  /** Forgets the handles whose lease has passed. */
  private sweep(): void {
    const now = performance.now();
    for (const h of this.holding) if (h.leaseEnd <= now) this.holding.delete(h);
  }

  /** Stops every renewal for good; from now on `closing` is true (client close, before draining). */
  stopRenewals(): void {
    if (this.state === 'open') this.state = 'closing';
    this.renewals.stop();
  }

  /**
   * Releases every held lock (client close, once no operation is in flight): waits for the
   * acquisitions still making their handle, then releases each handle, each release bounded by
   * `releaseTimeoutMs`. Never rejects.
   */
  async releaseAll(): Promise<void> {
    this.stopRenewals();
    // Their requests have settled (close() waited for every operation): only the making of
    // their handles is left, on a microtask.
    if (this.acquiring > 0) await new Promise<void>((resolve) => (this.acquiringDone = resolve));
    // The follow-ups of abandoned acquisitions (each step bounded by releaseTimeoutMs): cut short
    // by the closing connections, they would leave a lock granted to an abandoned request held by
    // nobody for its lease.
    while (this.followUps.size > 0) await Promise.all([...this.followUps]);
    this.state = 'closed';
    this.sweep();
    const all = [...this.holding];
    this.holding.clear();
    await Promise.all(all.map((h) => h.releaseOnClose(this.releaseTimeoutMs)));
  }
}

/** Set by LockHandle's static block: the only way outside the class to reach its private `stop`. */
let stopHandle: (h: LockHandle) => void;

/**
 * @internal Stops a handle's automatic renewal without releasing its lock (it stays held until
 * released or its lease ends), as the client does itself on release and close: for packages of
 * this repository that end a handle's renewal on their own (`@gridlink/dedupe`). Exported from
 * `@gridlink/client/internal` only. It calls the method by name, so it also stops a handle made by
 * another copy of this module (the CommonJS build bundles each entry point with its own copy).
 */
export function stopRenewal(handle: LockHandle): void {
  stopHandle(handle);
}

/** A held lock. */
export class LockHandle {
  static {
    stopHandle = (h) => h.stop();
  }

  /** Created on the first read of `signal` (most holders never read it). */
  private ac: AbortController | null = null;
  private lostError: GridError | null = null;
  private lostListeners: ((err: GridError) => void)[] | null = null;
  private released = false;
  /** Why the signal aborts on release: set when close() released the lock (GridClosedError). */
  private releaseReason: GridError | null = null;
  private closeRelease: Promise<void> | null = null;
  /** A release (or putAndRelease) of the holder's is under way. */
  private releasing = false;
  /**
   * The holder's release or putAndRelease under way (until it settles): a `release()` called
   * meanwhile is that call (same promise), and a `putAndRelease()` is refused.
   */
  private holderRelease: Promise<void> | null = null;
  /**
   * A renewal failed while that release was under way: reported as a loss only if the release
   * fails (see `lose`).
   */
  private lossWhileReleasing: GridError | null = null;
  private renewCount = 0;
  /** `stop()` was called: automatic renewal never resumes (not even from a renewal in flight). */
  private renewStopped = false;
  /** See `leaseEnd`. */
  private leaseEndsAt: number;

  constructor(
    private readonly ctx: ClientContext,
    private readonly registry: LockRegistry,
    readonly key: GridKey,
    private readonly name: Uint8Array,
    private readonly partition: number | undefined,
    /** Strictly increasing per lock key; pass it to the resources you protect. */
    readonly fencingToken: number,
    private leaseMs: number,
    private readonly autoRenew: boolean,
    /** Owner id of this acquisition (sent with renew and release: they act only for it). */
    private readonly owner: string,
  ) {
    this.leaseEndsAt = performance.now() + leaseMs;
    registry.held(this);
    if (autoRenew) this.scheduleRenew();
  }

  /**
   * @internal When the lease ends at the latest, by this client's clock (performance.now()): the
   * lease counted from when the acquisition or the last renewal was answered, after the node
   * began it.
   */
  get leaseEnd(): number {
    return this.leaseEndsAt;
  }

  /** Aborts when the lock is lost (renewal failed) or released. */
  get signal(): AbortSignal {
    if (this.ac === null) {
      this.ac = new AbortController();
      if (this.lostError !== null) this.ac.abort(this.lostError);
      else if (this.released) this.ac.abort(this.releaseReason ?? releasedReason());
    }
    return this.ac.signal;
  }

  /**
   * Calls `listener` once with the error if the lock is lost (a renewal failed or found it taken),
   * never on release (nor for a renewal failing while the holder's release is under way, unless
   * that release fails); at once (on a microtask) if it is already lost. A cheaper way than `signal`
   * to learn of a loss: no AbortController is made.
   */
  onLost(listener: (err: GridError) => void): void {
    // Refused now: called on a loss, a non-function threw an uncaught TypeError (the process's end).
    if (typeof listener !== 'function') throw new GridConfigError('listener', `must be a function, got ${describe(listener)}`);
    const lost = this.lostError;
    if (lost !== null) {
      queueMicrotask(() => listener(lost));
      return;
    }
    if (this.released) return;
    (this.lostListeners ??= []).push(listener);
  }

  /** Successful renewals so far (manual and automatic). */
  get renewals(): number {
    return this.renewCount;
  }

  get held(): boolean {
    return !this.released && this.lostError === null;
  }

  private scheduleRenew(): void {
    this.registry.scheduleRenew(this, performance.now() + Math.max(1, Math.floor(this.leaseMs / 3)));
  }

  /** @internal Its automatic renewal is due (called by the registry's timer). */
  renewDue(): void {
    if (!this.held) return;
    // Bounded by what is left of the lease (and by the operation timeout): a renewal still
    // unanswered when the lease ends (a primary this client cannot reach while the cluster still
    // can) is a loss then, not an operation timeout later, during which another holder could have
    // had the lock while this one's signal had not aborted. The lease is counted from the last
    // answer (`leaseEnd`): later than the node's by that answer's way back, but never ending
    // early after an acquisition that was retried (whose lease began at an unknown attempt).
    const left = Math.floor(this.leaseEndsAt - performance.now());
    const timeoutMs = Math.max(1, Math.min(left, this.ctx.operationTimeout));
    // A successful renewal schedules the next one itself (see renew).
    this.renew({ timeoutMs }).then(
      () => undefined,
      (e: unknown) => {
        const err = e instanceof GridError ? e : new GridError(String(e));
        this.lose(err);
      },
    );
  }

  private lose(err: GridError): void {
    if (!this.held) return;
    if (this.releasing) {
      // Not news for anyone. Either the release took effect first (a renewal reaching the node
      // after it finds the lock free: nothing was lost, its holder gave it up), or the lock had
      // been lost before, and then the release is answered `released: false` and rejects with
      // LockNotHeldError, which tells its caller. Kept for the case the release itself fails
      // (no answer): the handle is then lost, as when this failure came after that one.
      this.lossWhileReleasing ??= err;
      return;
    }
    this.stop();
    this.lostError = err;
    this.registry.dropped(this);
    this.registry.onLost(this, err);
    this.ac?.abort(err);
    const listeners = this.lostListeners;
    this.lostListeners = null;
    if (listeners !== null) {
      for (const l of listeners) {
        try {
          l(err);
        } catch (e) {
          // As an abort listener's would: reported as uncaught, without stopping the others.
          queueMicrotask(() => {
            throw e;
          });
        }
      }
    }
  }

  /** Released: aborts the signal if anyone has read it (with `reason` when given). */
  private markReleased(reason: GridError | null = null): void {
    if (!this.released) this.releaseReason = reason;
    this.released = true;
    this.lostListeners = null;
    this.registry.dropped(this);
    const ac = this.ac;
    if (ac !== null && !ac.signal.aborted) ac.abort(this.releaseReason ?? releasedReason());
  }

  /** @internal The client's close() released this lock (its holder's work was cut short). */
  get releasedOnClose(): boolean {
    return this.releaseReason instanceof GridClosedError;
  }

  /**
   * @internal Releases the lock for the closing client: marked released at once (the signal
   * aborts with GridClosedError; a later release() resolves without sending anything), then the
   * release is sent even though the client refuses operations, within `timeoutMs`. Never rejects:
   * a release that fails leaves the lock to its lease. Nothing to do for a handle already released
   * or lost.
   */
  releaseOnClose(timeoutMs: number): Promise<void> {
    if (this.closeRelease !== null) return this.closeRelease;
    // A release of the holder's own already went out (and settled: close() waited for it).
    if (!this.held || this.releasing) return Promise.resolve();
    this.stop();
    this.markReleased(new GridClosedError('the client was closed: the lock was released'));
    this.closeRelease = this.ctx.invoker
      .invoke<{ released: boolean }>(
        Op.LOCK_RELEASE,
        { name: this.name, token: this.fencingToken, owner: this.owner },
        { partition: this.partition, timeoutMs, internal: true },
      )
      .then(
        () => undefined,
        () => undefined,
      );
    return this.closeRelease;
  }

  /**
   * `release`, the holder's release or putAndRelease request, marked as under way (close() then
   * leaves the handle to it, and a renewal failing meanwhile reports no loss) until it fails;
   * once it is answered the handle is released.
   */
  private async sendingRelease<T>(release: Promise<T>): Promise<T> {
    this.releasing = true;
    let answer: T;
    try {
      answer = await release;
    } catch (e) {
      this.releasing = false;
      // A renewal that failed meanwhile was a loss after all (or may have been): reported now.
      const lost = this.lossWhileReleasing;
      this.lossWhileReleasing = null;
      if (lost !== null) this.lose(lost);
      throw e;
    }
    // Answered: the handle is released, whatever a renewal said meanwhile.
    this.lossWhileReleasing = null;
    return answer;
  }

  /** Stops automatic renewal (used on release, loss and client close; `stopRenewal` for other packages). */
  private stop(): void {
    this.renewStopped = true;
    if (this.autoRenew) this.registry.cancelRenew(this);
  }

  /**
   * Why a handle no longer holding its lock refuses `what` at once, without asking the node:
   * GridClosedError when the client's close() released it, LockNotHeldError when its holder
   * released it or it was lost.
   */
  private notHeldError(what: string): GridError {
    if (this.releasedOnClose) return new GridClosedError();
    if (this.released) return new LockNotHeldError(`lock already released; ${what}`);
    return new LockNotHeldError(`lock with token ${this.fencingToken} was lost; ${what}`, { cause: this.lostError });
  }

  /**
   * Extends the lease. Throws LockNotHeldError when the lock is no longer held with this token;
   * on a handle already released or lost, at once without a request (GridClosedError when the
   * client's close() released it).
   */
  async renew(options?: ({ leaseMs?: number } & OpOptions) | null): Promise<void> {
    // Nothing to ask the node: a renewal reaching a node where the lease still ran would extend a
    // lock that no handle releases any more.
    if (!this.held) throw this.notHeldError('not renewed');
    throwIfBad(optionNamesError(options));
    const o = options ?? {};
    const leaseMs = checkLease(o.leaseMs, this.leaseMs);
    const r = await this.ctx.invoker.invoke<{ renewed: boolean }>(
      Op.LOCK_RENEW,
      { name: this.name, token: this.fencingToken, leaseMs, owner: this.owner },
      { partition: this.partition, signal: o.signal, timeoutMs: o.timeoutMs },
    );
    if (!r.renewed) {
      const err = new LockNotHeldError(`lock is no longer held with token ${this.fencingToken}`);
      this.lose(err);
      throw err;
    }
    this.leaseMs = leaseMs;
    this.leaseEndsAt = performance.now() + leaseMs;
    this.renewCount++;
    // The next automatic renewal is due a third of the lease from now: one scheduled for the old
    // lease would come after a shorter new one had run out. Not after stop(): a release sent
    // while this renewal was in flight, even one that then failed, ended the renewals (a holder
    // that gave up on the lock leaves it to its lease).
    if (this.autoRenew && this.held && !this.renewStopped) this.scheduleRenew();
  }

  /**
   * Stores `value` under this lock's key in `cache` and releases the lock, as one operation on the
   * lock's primary, replicated like a put and exactly-once like every mutation. Applied only while
   * this handle holds the lock with its token: otherwise nothing is stored and LockNotHeldError is
   * thrown (a holder whose lease ran out cannot overwrite what a later holder wrote). While a
   * release or putAndRelease of this handle is under way, rejects at once with LockNotHeldError
   * (nothing stored, nothing sent).
   */
  async putAndRelease<V>(cache: GridCache<GridKey, V>, value: V, options?: PutOptions | null): Promise<void> {
    const o = options ?? {};
    if (this.released) {
      if (this.releasedOnClose) throw new GridClosedError();
      throw new LockNotHeldError('lock already released; nothing stored');
    }
    // Its holder is giving the lock up already: whatever that call's outcome, this one would
    // either find the lock free or race it.
    if (this.holderRelease !== null) throw new LockNotHeldError('lock is already being released; nothing stored');
    // Refused before renewal stops: the lock stays held for a call with usable arguments.
    checkCache(cache);
    const bad = optionNamesError(options) ?? callOptionsError(o);
    if (bad !== null) throw bad;
    const ttlMs = o.ttlMs;
    checkTtl(ttlMs);
    const payload: Record<string, unknown> = { cache: cache.name, key: this.name, token: this.fencingToken, value: cache.encodeValue(value), owner: this.owner };
    if (ttlMs !== undefined) payload.ttlMs = ttlMs;
    return this.shareRelease(this.sendPutAndRelease(payload, o));
  }

  private async sendPutAndRelease(payload: Record<string, unknown>, o: PutOptions): Promise<void> {
    this.stop();
    const r = await this.sendingRelease(
      this.ctx.invoker.invoke<{ released: boolean }>(Op.LOCK_PUT_RELEASE, payload, {
        partition: this.partition,
        signal: o.signal,
        timeoutMs: o.timeoutMs,
      }),
    );
    this.markReleased();
    if (!r.released) throw new LockNotHeldError(`lock was not held with token ${this.fencingToken}; nothing stored`);
  }

  /** `call` is the holder's release under way until it settles (see `holderRelease`). */
  private shareRelease(call: Promise<void>): Promise<void> {
    this.holderRelease = call;
    const done = (): void => {
      if (this.holderRelease === call) this.holderRelease = null;
    };
    call.then(done, done);
    return call;
  }

  /**
   * Releases the lock. Throws LockNotHeldError when it was no longer held with this token. Once
   * the client is closing, resolves once close() has released it (it sends the release itself).
   * Called while a release or putAndRelease of this handle is under way, it sends nothing and
   * settles as that call does (the same promise for two releases; its own options are not used).
   * After a completed release it resolves without sending anything; after a failed one (no
   * answer) it sends the release again.
   */
  release(options?: OpOptions | null): Promise<void> {
    const o = options ?? {};
    if (this.released) return this.closeRelease ?? Promise.resolve();
    const bad = optionNamesError(options) ?? callOptionsError(o);
    if (bad !== null) return Promise.reject(bad);
    // A second LOCK_RELEASE with this token would only find the lock already free and reject,
    // although the first released it (or, should the first fail, race it).
    if (this.holderRelease !== null) return this.holderRelease;
    if (this.registry.closing) {
      if (this.lostError !== null) return Promise.reject(new LockNotHeldError(`lock was not held with token ${this.fencingToken} when released`));
      return this.releaseOnClose(this.registry.releaseTimeoutMs);
    }
    return this.shareRelease(this.sendRelease(o));
  }

  private async sendRelease(o: OpOptions): Promise<void> {
    this.stop();
    const r = await this.sendingRelease(
      this.ctx.invoker.invoke<{ released: boolean }>(
        Op.LOCK_RELEASE,
        { name: this.name, token: this.fencingToken, owner: this.owner },
        { partition: this.partition, signal: o.signal, timeoutMs: o.timeoutMs },
      ),
    );
    this.markReleased();
    if (!r.released) throw new LockNotHeldError(`lock was not held with token ${this.fencingToken} when released`);
  }
}

/** A lock on one key; create with `client.lock(key)`. */
export class GridLock {
  private readonly name: Uint8Array;

  constructor(
    private readonly ctx: ClientContext,
    private readonly registry: LockRegistry,
    readonly key: GridKey,
  ) {
    this.name = encodeKey(key);
  }

  private partition(): number | undefined {
    const n = this.ctx.partitionCount();
    return n > 0 ? partitionOfBytes(this.name, n) : undefined;
  }

  /**
   * Takes the lock if free; null when another holder has it (another client, or another handle
   * of this client). Never waits for the holder. `attempt()` also tells how long it still holds.
   */
  async tryAcquire(options?: LockOptions | null): Promise<LockHandle | null> {
    const r = await this.attempt(options);
    return r.acquired ? r.handle : null;
  }

  /**
   * Takes the lock if free, never waiting: `{ acquired: true, handle }`, or `{ acquired: false,
   * heldForMs }` with the remaining lease of the current holder.
   */
  attempt(options?: LockOptions | null): Promise<LockAttempt> {
    return this.registry.acquisition(() => this.runAttempt(options));
  }

  private async runAttempt(options: LockOptions | null | undefined): Promise<LockAttempt> {
    throwIfBad(optionNamesError(options));
    const o = options ?? {};
    checkBoolean('autoRenew', o.autoRenew);
    const leaseMs = checkLease(o.leaseMs, DEFAULT_LEASE_MS);
    const partition = this.partition();
    const owner = newOwner();
    const signal = o.signal;
    const payload: Record<string, unknown> = { name: this.name, leaseMs, owner };
    let r: LockResult;
    try {
      r = await this.ctx.invoker.invoke<LockResult>(Op.LOCK_TRY_ACQUIRE, payload, { partition, signal, timeoutMs: o.timeoutMs, trackWritten: true });
    } catch (e) {
      this.abandoned(e, owner, partition, payload);
      throw e;
    }
    if (!r.acquired || r.token === undefined) return { acquired: false, heldForMs: r.heldForMs };
    const handle = this.adopt(new LockHandle(this.ctx, this.registry, this.key, this.name, partition, r.token, leaseMs, o.autoRenew ?? false, owner));
    return { acquired: true, handle };
  }

  /**
   * Lock + read-your-state: takes the lock if free (never waiting) and, in the same step on the
   * lock's primary, reads the entry stored under the lock's key in `cache`. The value is returned
   * whether or not the lock was taken. One round trip; a retry after a failover is exactly-once
   * (the same token and value). Pair with `handle.putAndRelease(cache, value)`. With `ifAbsent`
   * the lock is taken only when the entry is absent: a present one comes back as a plain read.
   */
  attemptGet<V>(cache: GridCache<GridKey, V>, options?: LockGetOptions | null): Promise<LockStateAttempt<V>> {
    return this.registry.acquisition(() => this.runAttemptGet(cache, options));
  }

  private async runAttemptGet<V>(cache: GridCache<GridKey, V>, options: LockGetOptions | null | undefined): Promise<LockStateAttempt<V>> {
    throwIfBad(optionNamesError(options));
    const o = options ?? {};
    checkCache(cache);
    checkBoolean('autoRenew', o.autoRenew);
    checkBoolean('ifAbsent', o.ifAbsent);
    const leaseMs = checkLease(o.leaseMs, DEFAULT_LEASE_MS);
    const partition = this.partition();
    const owner = newOwner();
    const payload: Record<string, unknown> = { cache: cache.name, key: this.name, leaseMs, owner };
    if (o.ifAbsent === true) payload.ifAbsent = true;
    const signal = o.signal;
    let r: LockResult & { value: Uint8Array | null };
    try {
      r = await this.ctx.invoker.invoke<LockResult & { value: Uint8Array | null }>(Op.LOCK_TRY_ACQUIRE_GET, payload, { partition, signal, timeoutMs: o.timeoutMs, trackWritten: true });
    } catch (e) {
      this.abandoned(e, owner, partition, payload);
      throw e;
    }
    const acquired = r.acquired && r.token !== undefined;
    let value: V | undefined;
    try {
      value = cache.decodeValue(r.value);
    } catch (e) {
      // The caller gets no handle: release what was taken rather than leave it held for a lease.
      if (acquired) {
        const taken = new LockHandle(this.ctx, this.registry, this.key, this.name, partition, r.token as number, leaseMs, false, owner);
        await taken.release().catch(() => undefined);
      }
      throw e;
    }
    if (!acquired) return { acquired: false, heldForMs: r.heldForMs, value };
    const handle = this.adopt(new LockHandle(this.ctx, this.registry, this.key, this.name, partition, r.token as number, leaseMs, o.autoRenew ?? false, owner));
    return { acquired: true, handle, value };
  }

  /**
   * Takes the lock, waiting up to `waitMs` for it; throws LockTimeoutError (with the holder's
   * remaining lease as `heldForMs`) when not acquired.
   */
  acquire(options?: AcquireOptions | null): Promise<LockHandle> {
    return this.registry.acquisition(() => this.runAcquire(options));
  }

  private async runAcquire(options: AcquireOptions | null | undefined): Promise<LockHandle> {
    throwIfBad(optionNamesError(options));
    const o = options ?? {};
    checkBoolean('autoRenew', o.autoRenew);
    const leaseMs = checkLease(o.leaseMs, DEFAULT_LEASE_MS);
    const waitMs = checkWaitMs(o.waitMs);
    const partition = this.partition();
    const owner = newOwner();
    // The node waits up to waitMs; the operation deadline covers the wait plus a normal deadline
    // (at most what a timer can wait: a longer deadline would fire at once).
    // Only an absent timeoutMs takes the default: null (or anything else) is refused as by every
    // other call (callOptionsError), not quietly replaced by the default deadline.
    const timeoutMs = o.timeoutMs === undefined ? Math.min(waitMs + this.ctx.operationTimeout, MAX_TIMER_MS) : o.timeoutMs;
    const signal = o.signal;
    const payload: Record<string, unknown> = { name: this.name, leaseMs, waitMs, owner };
    let r: LockResult;
    try {
      r = await this.ctx.invoker.invoke<LockResult>(Op.LOCK_ACQUIRE, payload, { partition, signal, timeoutMs, attemptExtraMs: waitMs, trackWritten: true });
    } catch (e) {
      this.abandoned(e, owner, partition, payload);
      throw e;
    }
    if (!r.acquired || r.token === undefined) {
      throw new LockTimeoutError(`lock not acquired within ${waitMs} ms`, { heldForMs: r.heldForMs });
    }
    return this.adopt(new LockHandle(this.ctx, this.registry, this.key, this.name, partition, r.token, leaseMs, o.autoRenew ?? false, owner));
  }

  /**
   * An acquisition that failed without an answer — its signal aborted, its deadline passed
   * (`timeoutMs` shorter than `waitMs`), its connection lost with no retry left — may still be
   * granted: the node goes on waiting for the lock on the request it got (until `waitMs`), and a
   * grant whose answer never arrived holds the lock too. Nobody would hold that lock, and every
   * other holder would wait for its whole lease. So the client follows such an acquisition up in
   * the background, with the same owner id:
   *
   * 1. a LOCK_RELEASE with token 0, which matches no lock: sent to end the wait. A node of this
   *    version ends an acquisition still waiting for the lock when a later release of the same
   *    session names its owner id. Any node records the release, and its `ack` past the
   *    abandoned acquisition's seq makes the node refuse the waiting acquisition at its next
   *    try; but that `ack` is the lowest seq of the client still open, so while an older
   *    operation of the client is open (another acquisition waiting, any request under way: a
   *    busy client) it cannot pass the abandoned seq. Then the follow-up is done again once that
   *    seq and every one below it have settled (each operation is bounded by its deadline);
   * 2. a LOCK_TRY_ACQUIRE with a 1 ms lease: answered with the token of a lock granted to this
   *    owner before (a re-entrant acquisition), or taking a free one;
   * 3. when it got a token, a LOCK_RELEASE with it, which frees the lock and wakes the waiters.
   *
   * Answers that say what happened (a refusal, a node error) need none of this, and neither does
   * an acquisition that was never handed to a connection (aborted before it went out, no usable
   * connection until it gave up: the grid unreachable): no node can have it. The client's close()
   * waits for the follow-ups before it closes the connections.
   */
  private abandoned(e: unknown, owner: string, partition: number | undefined, payload: Record<string, unknown>): void {
    if (!(e instanceof GridAbortError || e instanceof GridTimeoutError || e instanceof GridConnectionError)) return;
    const invoker = this.ctx.invoker;
    if (!invoker.wasWritten(payload)) return;
    const name = this.name;
    const seq = typeof payload.seq === 'number' ? payload.seq : 0;
    const options = { partition, timeoutMs: this.registry.releaseTimeoutMs, internal: true };
    const release = (token: number): Promise<unknown> => invoker.invoke(Op.LOCK_RELEASE, { name, token, owner }, options);
    const followUp = async (): Promise<void> => {
      await release(0).catch(() => undefined);
      const r = await invoker.invoke<LockResult>(Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1, owner }, options);
      if (r.acquired && r.token !== undefined) await release(r.token);
    };
    this.registry.followUp(async () => {
      // Read before the release takes its own seq: whether its `ack` will be past `seq`.
      const acked = invoker.seqFloor > seq;
      await followUp().catch(() => undefined);
      if (acked) return;
      await invoker.whenSettledThrough(seq);
      await followUp();
    });
  }

  /**
   * A handle whose acquisition was answered after close() began is not handed out: close()
   * releases its lock with the others, and the caller gets GridClosedError.
   */
  private adopt(handle: LockHandle): LockHandle {
    if (this.registry.closing) throw new GridClosedError();
    return handle;
  }
}
