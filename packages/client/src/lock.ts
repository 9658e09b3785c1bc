/**
 * Distributed locks: a lock on a key is a lease owned by this client's session. Acquiring returns a
 * handle with a fencing token that strictly increases per lock key (across failovers); renew and
 * release need that token. Automatic renewal renews at a third of the lease while held.
 */
import { encodeKey, partitionOfBytes, type GridKey } from '@gridlink/affinity';
import { Op, type LockResult } from '@gridlink/protocol';
import type { ClientContext, OpOptions } from './cache.js';
import { GridConfigError, GridError, LockNotHeldError, LockTimeoutError } from './errors.js';

export interface LockOptions extends OpOptions {
  /** Lease duration (ms). Default 10000. */
  leaseMs?: number;
  /** Renew automatically at a third of the lease until released or lost. Default false. */
  autoRenew?: boolean;
}

export interface AcquireOptions extends LockOptions {
  /** How long to wait for the lock (ms). Default 10000. */
  waitMs?: number;
}

export const DEFAULT_LEASE_MS = 10_000;
export const DEFAULT_WAIT_MS = 10_000;

function checkPositive(field: string, v: number | undefined, def: number): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || v < 1) throw new GridConfigError(field, `must be a positive integer, got ${String(v)}`);
  return v;
}

export interface LockRegistry {
  add(h: LockHandle): void;
  delete(h: LockHandle): void;
  onLost(h: LockHandle, err: GridError): void;
}

/** A held lock. */
export class LockHandle {
  private renewTimer: NodeJS.Timeout | null = null;
  private readonly ac = new AbortController();
  private released = false;
  private renewCount = 0;

  constructor(
    private readonly ctx: ClientContext,
    private readonly registry: LockRegistry,
    readonly key: GridKey,
    private readonly name: Uint8Array,
    private readonly partition: number | undefined,
    /** Strictly increasing per lock key; pass it to the resources you protect. */
    readonly fencingToken: number,
    private leaseMs: number,
    autoRenew: boolean,
  ) {
    registry.add(this);
    if (autoRenew) this.scheduleRenew();
  }

  /** Aborts when the lock is lost (renewal failed) or released. */
  get signal(): AbortSignal {
    return this.ac.signal;
  }

  /** Successful renewals so far (manual and automatic). */
  get renewals(): number {
    return this.renewCount;
  }

  get held(): boolean {
    return !this.released && !this.ac.signal.aborted;
  }

  private scheduleRenew(): void {
    const delay = Math.max(1, Math.floor(this.leaseMs / 3));
    this.renewTimer = setTimeout(() => {
      this.renewTimer = null;
      this.renew().then(
        () => {
          if (this.held) this.scheduleRenew();
        },
        (e: unknown) => {
          const err = e instanceof GridError ? e : new GridError(String(e));
          this.lose(err);
        },
      );
    }, delay);
    this.renewTimer.unref();
  }

  private lose(err: GridError): void {
    if (this.released) return;
    this.stop();
    this.registry.onLost(this, err);
    this.ac.abort(err);
  }

  /** Stops automatic renewal (used on release and client close). */
  stop(): void {
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    this.renewTimer = null;
    this.registry.delete(this);
  }

  /** Extends the lease. Throws LockNotHeldError when the lock is no longer held with this token. */
  async renew(options: { leaseMs?: number } & OpOptions = {}): Promise<void> {
    const leaseMs = checkPositive('leaseMs', options.leaseMs, this.leaseMs);
    const r = await this.ctx.invoker.invoke<{ renewed: boolean }>(
      Op.LOCK_RENEW,
      { name: this.name, token: this.fencingToken, leaseMs },
      { partition: this.partition, signal: options.signal, timeoutMs: options.timeoutMs },
    );
    if (!r.renewed) {
      const err = new LockNotHeldError(`lock is no longer held with token ${this.fencingToken}`);
      this.lose(err);
      throw err;
    }
    this.leaseMs = leaseMs;
    this.renewCount++;
  }

  /** Releases the lock. Throws LockNotHeldError when it was no longer held with this token. */
  async release(options: OpOptions = {}): Promise<void> {
    if (this.released) return;
    this.stop();
    const r = await this.ctx.invoker.invoke<{ released: boolean }>(
      Op.LOCK_RELEASE,
      { name: this.name, token: this.fencingToken },
      { partition: this.partition, signal: options.signal, timeoutMs: options.timeoutMs },
    );
    this.released = true;
    if (!this.ac.signal.aborted) this.ac.abort(new LockNotHeldError('lock released'));
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

  /** Takes the lock if free; null when another owner holds it. Never waits for the holder. */
  async tryAcquire(options: LockOptions = {}): Promise<LockHandle | null> {
    const leaseMs = checkPositive('leaseMs', options.leaseMs, DEFAULT_LEASE_MS);
    const partition = this.partition();
    const r = await this.ctx.invoker.invoke<LockResult>(
      Op.LOCK_TRY_ACQUIRE,
      { name: this.name, leaseMs },
      { partition, signal: options.signal, timeoutMs: options.timeoutMs },
    );
    if (!r.acquired || r.token === undefined) return null;
    return new LockHandle(this.ctx, this.registry, this.key, this.name, partition, r.token, leaseMs, options.autoRenew ?? false);
  }

  /** Takes the lock, waiting up to `waitMs` for it; throws LockTimeoutError when not acquired. */
  async acquire(options: AcquireOptions = {}): Promise<LockHandle> {
    const leaseMs = checkPositive('leaseMs', options.leaseMs, DEFAULT_LEASE_MS);
    const waitMs = checkPositive('waitMs', options.waitMs, DEFAULT_WAIT_MS);
    const partition = this.partition();
    // The node waits up to waitMs; the operation deadline covers the wait plus a normal deadline.
    const timeoutMs = options.timeoutMs ?? waitMs + this.ctx.operationTimeout;
    const r = await this.ctx.invoker.invoke<LockResult>(
      Op.LOCK_ACQUIRE,
      { name: this.name, leaseMs, waitMs },
      { partition, signal: options.signal, timeoutMs, attemptExtraMs: waitMs },
    );
    if (!r.acquired || r.token === undefined) throw new LockTimeoutError(`lock not acquired within ${waitMs} ms`);
    return new LockHandle(this.ctx, this.registry, this.key, this.name, partition, r.token, leaseMs, options.autoRenew ?? false);
  }
}
