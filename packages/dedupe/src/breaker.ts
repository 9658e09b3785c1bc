/**
 * A circuit breaker as a pure state machine: the caller passes the clock. Closed: calls go
 * through; `failureThreshold` consecutive failures open it. Open: calls are refused at once until
 * `openMs` has passed; then one call is let through as a probe (half-open). The probe's success
 * closes the breaker; its failure opens it again for another `openMs`.
 *
 * Each admitted call gets a token (a number, `allow()`'s result) that its report carries: a call
 * admitted while closed can report long after the breaker opened and went half-open, and its
 * report must not settle the probe's state (a late success closing the breaker, or freeing the
 * probe's slot so that a second probe goes through; a late failure reopening it). A report counts
 * only for the state it was admitted in (ADR 0085).
 */
import { int, onlyKnownOptions } from './checks.js';
import { DedupeConfigError, DedupeError } from './errors.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Consecutive grid failures that open the breaker. Default 3. */
  failureThreshold?: number;
  /** How long the breaker stays open before a probe is let through (ms). Default 2000. */
  openMs?: number;
}

export const DEFAULT_BREAKER = { failureThreshold: 3, openMs: 2000 } as const;

/**
 * Breaker options with their defaults, checked (`failureThreshold` 1-1000, `openMs` 1-3 600 000,
 * no other names): a DedupeConfigError naming `breaker.<option>` otherwise.
 */
export function resolveBreakerOptions(b: unknown): Required<BreakerOptions> {
  const o = b === undefined ? {} : b;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new DedupeConfigError('breaker', 'must be an object or a CircuitBreaker');
  onlyKnownOptions(o, ['failureThreshold', 'openMs'], 'breaker.');
  const { failureThreshold, openMs } = o as BreakerOptions;
  return {
    failureThreshold: int('breaker.failureThreshold', failureThreshold, DEFAULT_BREAKER.failureThreshold, 1, 1000),
    openMs: int('breaker.openMs', openMs, DEFAULT_BREAKER.openMs, 1, 3_600_000),
  };
}

type Listener = (state: BreakerState, previous: BreakerState) => void;

/** A subscription that holds its owner weakly (see `watch`). */
interface Watch {
  owner: WeakRef<object>;
  fn: (owner: object, state: BreakerState, previous: BreakerState) => void;
}

export class CircuitBreaker {
  private stateValue: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  /**
   * Grows by one at each change of state and each probe admitted, and never repeats: the token
   * of a call admitted while closed is the value it had then (one value per closed period).
   */
  private epoch = 1;
  /** The token of the half-open probe in flight; 0 when none. */
  private probe = 0;
  private readonly listeners = new Set<Listener>();
  private readonly watches = new Set<Watch>();
  /** Drops the subscription of an owner that was garbage collected. */
  private readonly collected = new FinalizationRegistry<Watch>((w) => void this.watches.delete(w));
  readonly failureThreshold: number;
  readonly openMs: number;

  /**
   * `options` as the `breaker` option takes them (defaults `failureThreshold` 3, `openMs` 2000),
   * checked here too: a breaker built to be shared is not checked again by the routes using it.
   */
  constructor(
    options: BreakerOptions = {},
    private readonly onChange?: (state: BreakerState, previous: BreakerState) => void,
  ) {
    const o = resolveBreakerOptions(options);
    this.failureThreshold = o.failureThreshold;
    this.openMs = o.openMs;
  }

  get state(): BreakerState {
    return this.stateValue;
  }

  /**
   * Calls `listener` on every change of state from now on; returns the function that stops it.
   * A breaker shared by several routes reports to each of them. A listener that throws does not
   * disturb the breaker or the other listeners.
   */
  onStateChange(listener: (state: BreakerState, previous: BreakerState) => void): () => void {
    const own = (state: BreakerState, previous: BreakerState): void => listener(state, previous);
    this.listeners.add(own);
    return () => void this.listeners.delete(own);
  }

  /**
   * Like `onStateChange`, but holds `owner` weakly: `fn(owner, state, previous)` is called while
   * `owner` lives, and the subscription ends by itself once `owner` is garbage collected (or when
   * the returned function is called). `fn` must not capture `owner`, or it would keep it alive.
   * A `Deduper` subscribes this way, so dedupers built again and again on one shared breaker (a
   * middleware created per request or per router) do not pile up listeners on it.
   */
  watch<T extends object>(owner: T, fn: (owner: T, state: BreakerState, previous: BreakerState) => void): () => void {
    const w: Watch = { owner: new WeakRef(owner), fn: fn as Watch['fn'] };
    this.watches.add(w);
    this.collected.register(owner, w, w);
    return () => {
      this.watches.delete(w);
      this.collected.unregister(w);
    };
  }

  /** Subscriptions currently attached (`onStateChange` listeners and live `watch` owners). */
  get listenerCount(): number {
    let live = 0;
    for (const w of this.watches) {
      if (w.owner.deref() === undefined) this.watches.delete(w);
      else live++;
    }
    return this.listeners.size + live;
  }

  private set(next: BreakerState): void {
    const prev = this.stateValue;
    if (prev === next) return;
    this.stateValue = next;
    // Before the listeners run: one that calls allow() gets a token of the new state.
    this.epoch++;
    const all = this.onChange ? [this.onChange, ...this.listeners] : [...this.listeners];
    for (const listener of all) {
      try {
        listener(next, prev);
      } catch {
        // A report must not change what the breaker decides, nor keep it from the others.
      }
    }
    for (const w of [...this.watches]) {
      const owner = w.owner.deref();
      if (owner === undefined) {
        this.watches.delete(w);
        continue;
      }
      try {
        w.fn(owner, next, prev);
      } catch {
        // as above
      }
    }
  }

  /**
   * Whether a call may go to the grid now: 0 if not, else the call's token (a positive integer)
   * that its report (`success`, `failure` or `cancel`) must carry. A caller that got a token must
   * report once: in half-open only one probe is let through until it reports. No allocation: a
   * number is all a caller keeps.
   */
  allow(now: number): number {
    if (this.stateValue === 'closed') return this.epoch;
    if (this.stateValue === 'open') {
      if (now - this.openedAt < this.openMs) return 0;
      this.set('half-open');
      // A listener of that change may have admitted a probe and even settled it: decide anew.
      if ((this.stateValue as BreakerState) !== 'half-open') return this.allow(now);
    }
    if (this.probe !== 0) return 0;
    this.probe = ++this.epoch;
    return this.probe;
  }

  /**
   * The call with this token found the grid healthy. The half-open probe's success closes the
   * breaker; a success of a call admitted while closed resets the count of failures if the
   * breaker is still in that closed period; any other report (admitted in an earlier state) is
   * ignored.
   */
  success(token: number): void {
    this.check(token);
    if (token === this.probe) {
      this.probe = 0;
      this.failures = 0;
      this.set('closed');
    } else if (token === this.epoch && this.stateValue === 'closed') {
      this.failures = 0;
    }
  }

  /**
   * The call with this token found the grid unhealthy. The half-open probe's failure opens the
   * breaker again; a failure of a call admitted in the current closed period counts towards
   * `failureThreshold`; any other report is ignored.
   */
  failure(now: number, token: number): void {
    this.check(token);
    if (token === this.probe) {
      this.probe = 0;
      this.openedAt = now;
      this.set('open');
      return;
    }
    if (token !== this.epoch || this.stateValue !== 'closed') return;
    if (++this.failures >= this.failureThreshold) {
      this.failures = 0;
      this.openedAt = now;
      this.set('open');
    }
  }

  /**
   * The call with this token ended without telling anything about the grid: a probe's slot is
   * free for the next call.
   */
  cancel(token: number): void {
    this.check(token);
    if (token === this.probe) this.probe = 0;
  }

  /** A token this breaker gave out (a positive integer not above the latest), or a typed error. */
  private check(token: number): void {
    if (!Number.isInteger(token) || token < 1 || token > this.epoch) {
      throw new DedupeError(`not a token this circuit breaker gave out: ${String(token)} (allow() returns the token a report carries; 0 means refused)`, 'DEDUPE_BREAKER_TOKEN');
    }
  }
}
