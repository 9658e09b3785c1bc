/**
 * Ownership of a grid lock judged conservatively: the holder renews at a third of the lease and
 * considers itself the owner only until `sentAt(last successful renewal) + lease − margin`. If a
 * renewal does not succeed before then (grid unreachable, process stalled) or the grid says the
 * lock is no longer held, `signal` aborts — before the lease can expire on the grid, so before
 * anyone else can take the lock.
 */
import { LockNotHeldError, type GridCache, type LockHandle } from '@gridlink/client';

/** Why `signal` aborts when the grid says the lock is no longer held. */
const NOT_HELD = 'the grid says the lock is no longer held';
/** Pause before the renewal that follows a failed one (see scheduleRenew). */
const RENEW_RETRY_MS = 50;

export class Ownership {
  private readonly ac = new AbortController();
  private validUntil: number;
  private renewTimer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private stopped = false;
  private renewedSentAt: number;

  constructor(
    readonly handle: LockHandle,
    private readonly leaseMs: number,
    private readonly marginMs: number,
    acquireSentAt: number,
    private readonly onLost: (reason: string) => void = () => undefined,
  ) {
    this.validUntil = acquireSentAt + leaseMs - marginMs;
    this.renewedSentAt = acquireSentAt;
    this.armWatchdog();
    this.scheduleRenew();
  }

  get token(): number {
    return this.handle.fencingToken;
  }

  get signal(): AbortSignal {
    return this.ac.signal;
  }

  /** Time left (ms) until the lease, as last renewed, runs out on the grid at the latest. */
  get remainingMs(): number {
    return Math.max(0, this.renewedSentAt + this.leaseMs - Date.now());
  }

  /** True while the lease is certainly still ours. */
  get certain(): boolean {
    return !this.ac.signal.aborted && Date.now() < this.validUntil;
  }

  private armWatchdog(): void {
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => this.lose('lease could not be renewed in time'), Math.max(0, this.validUntil - Date.now()));
    this.watchdog.unref();
  }

  /**
   * The next renewal: a third of the lease after the last one settled, or, after one that failed
   * (timed out, connection trouble), RENEW_RETRY_MS after it. Waiting a third of the lease after a
   * renewal that took a third of the lease to time out sent the next one two thirds of the lease
   * after the last confirmed one, past `lease − margin` (four fifths by default): one slow answer
   * of the grid lost the lock's holder its ownership. Now the retry lands before that.
   */
  private scheduleRenew(afterFailure = false): void {
    if (this.stopped) return;
    const interval = Math.max(1, Math.floor(this.leaseMs / 3));
    this.renewTimer = setTimeout(() => {
      this.renewTimer = null;
      const sentAt = Date.now();
      let failed = false;
      this.handle
        .renew({ leaseMs: this.leaseMs, timeoutMs: Math.max(50, Math.floor(this.leaseMs / 3)) })
        .then(
          () => {
            if (this.stopped || this.ac.signal.aborted) return;
            this.validUntil = Math.max(this.validUntil, sentAt + this.leaseMs - this.marginMs);
            this.renewedSentAt = Math.max(this.renewedSentAt, sentAt);
            this.armWatchdog();
          },
          (e: unknown) => {
            // Stopped (completeWith or release under way or done): a renewal sent before reaching
            // the grid after the lock was given up finds it free, which is no loss; a real one is
            // reported by completeWith (its putAndRelease is refused too).
            if (this.stopped) return;
            // Not held any more: lost for sure. Anything else (timeout, connection): keep trying,
            // soon, until the watchdog says the lease may have run out.
            if (e instanceof LockNotHeldError) this.lose(NOT_HELD);
            else failed = true;
          },
        )
        .finally(() => this.scheduleRenew(failed));
    }, afterFailure ? Math.min(RENEW_RETRY_MS, interval) : interval);
    this.renewTimer.unref();
  }

  private lose(reason: string): void {
    if (this.ac.signal.aborted) return;
    this.stop();
    this.ac.abort(new Error(reason));
    this.onLost(reason);
  }

  private stop(): void {
    this.stopped = true;
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    this.renewTimer = null;
    this.watchdog = null;
  }

  /**
   * Stops renewing, then stores `value` under the lock's key in `cache` and releases the lock, in
   * one grid operation applied only while this handle still holds the lock (ADR 0036). Throws
   * LockNotHeldError when it no longer did (nothing stored; `signal` aborts as lost); on any other
   * error the lock is released as by `release()` and the error rethrown. `signal` aborts as
   * released otherwise, whatever a renewal still under way is answered.
   */
  async completeWith<V>(cache: GridCache<string, V>, value: V, ttlMs: number): Promise<void> {
    this.stop();
    try {
      await this.handle.putAndRelease(cache, value, { ttlMs });
    } catch (e) {
      // The lock was lost before the value could be stored: `signal` aborts as lost, not released.
      if (e instanceof LockNotHeldError) this.lose(NOT_HELD);
      else await this.handle.release().catch(() => undefined);
      throw e;
    } finally {
      if (!this.ac.signal.aborted) this.ac.abort(new Error('released'));
    }
  }

  /**
   * Stops renewing and aborts `signal` with `reason`, without releasing the lock: its lease runs
   * out on the grid unless `release()` follows (once whoever relied on it is done).
   */
  abandon(reason: string): void {
    this.lose(reason);
  }

  /** Stops renewing and releases the lock (errors ignored: the lease runs out anyway). */
  async release(): Promise<void> {
    this.stop();
    if (!this.ac.signal.aborted) this.ac.abort(new Error('released'));
    await this.handle.release().catch(() => undefined);
  }
}
