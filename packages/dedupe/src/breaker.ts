/**
 * A circuit breaker as a pure state machine: the caller passes the clock. Closed: calls go
 * through; `failureThreshold` consecutive failures open it. Open: calls are refused at once until
 * `openMs` has passed; then one call is let through as a probe (half-open). The probe's success
 * closes the breaker; its failure opens it again for another `openMs`.
 */
import { int, onlyKnownOptions } from './checks.js';
import { DedupeConfigError } from './errors.js';

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
  private probing = false;
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
   * Whether a call may go to the grid now. In half-open only one probe is in flight at a time;
   * a caller that got `true` must report `success` or `failure` (or `cancel`).
   */
  allow(now: number): boolean {
    if (this.stateValue === 'closed') return true;
    if (this.stateValue === 'open') {
      if (now - this.openedAt < this.openMs) return false;
      this.set('half-open');
    }
    if (this.probing) return false;
    this.probing = true;
    return true;
  }

  success(): void {
    this.failures = 0;
    this.probing = false;
    this.set('closed');
  }

  failure(now: number): void {
    this.probing = false;
    if (this.stateValue === 'half-open') {
      this.openedAt = now;
      this.set('open');
      return;
    }
    this.failures++;
    if (this.stateValue === 'closed' && this.failures >= this.failureThreshold) {
      this.openedAt = now;
      this.set('open');
    }
  }

  /** The allowed call ended without telling anything about the grid. */
  cancel(): void {
    this.probing = false;
  }
}
