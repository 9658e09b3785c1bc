/**
 * Every timer and deferred callback of a node goes through its Scheduler, so the node can be
 * frozen (a hung process: nothing fires until it is thawed), thawed, or stopped (everything
 * cleared, so a killed node keeps nothing alive).
 */
export interface TimerHandle {
  cancel(): void;
}

const NOOP_HANDLE: TimerHandle = { cancel: () => {} };

/** The longest delay a Node timer waits; a longer one fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One pending timeout, linked into its scheduler's list (a timer per peer request is common:
 * no Set churn and no closures per timer).
 */
class Timeout implements TimerHandle {
  prev: Timeout | null = null;
  next: Timeout | null = null;
  linked = false;
  handle: NodeJS.Timeout;
  /** What is left to wait after the timer set now fires (ms): a delay beyond what a timer waits. */
  private rest = 0;
  constructor(
    private readonly s: Scheduler,
    readonly fn: () => void,
    ms: number,
  ) {
    // A deadline already passed (ms < 1) fires after 1 ms, as Node would make it anyway; passing
    // the negative value itself makes Node 23+ print a TimeoutNegativeWarning. One beyond
    // MAX_TIMER_MS, which Node would fire after 1 ms, waits in steps.
    if (ms > MAX_TIMER_MS) {
      this.rest = ms - MAX_TIMER_MS;
      ms = MAX_TIMER_MS;
    }
    this.handle = setTimeout(Timeout.fire, ms < 1 ? 1 : ms, this);
  }
  private static fire(this: void, t: Timeout): void {
    if (t.rest > 0) {
      const ms = Math.min(t.rest, MAX_TIMER_MS);
      t.rest -= ms;
      t.handle = setTimeout(Timeout.fire, ms, t);
      return;
    }
    t.s.unlinkTimeout(t);
    t.s.run(t.fn);
  }
  cancel(): void {
    clearTimeout(this.handle);
    this.s.unlinkTimeout(this);
  }
}

export class Scheduler {
  private frozen = false;
  private stopped = false;
  /** Pending timeouts (a list: cleared all at once on stop). */
  private timeouts: Timeout | null = null;
  private readonly intervals = new Map<() => void, { ms: number; handle: NodeJS.Timeout | null }>();
  private deferred: (() => void)[] = [];
  private timeoutCount = 0;

  /** Timeouts set and neither fired nor cancelled yet. */
  get pendingTimeouts(): number {
    return this.timeoutCount;
  }

  /** Callbacks held back while frozen, run on thaw. */
  get deferredCount(): number {
    return this.deferred.length;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }
  get isStopped(): boolean {
    return this.stopped;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.stopped) return NOOP_HANDLE;
    const t = new Timeout(this, fn, ms);
    t.linked = true;
    t.next = this.timeouts;
    if (this.timeouts !== null) this.timeouts.prev = t;
    this.timeouts = t;
    this.timeoutCount++;
    return t;
  }

  /** @internal A timeout fired or was cancelled. */
  unlinkTimeout(t: Timeout): void {
    if (!t.linked) return;
    t.linked = false;
    this.timeoutCount--;
    if (t.prev !== null) t.prev.next = t.next;
    else this.timeouts = t.next;
    if (t.next !== null) t.next.prev = t.prev;
    t.prev = null;
    t.next = null;
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    if (this.stopped) return { cancel: () => {} };
    const entry = { ms, handle: this.frozen ? null : setInterval(fn, ms) };
    this.intervals.set(fn, entry);
    return {
      cancel: () => {
        if (entry.handle) clearInterval(entry.handle);
        this.intervals.delete(fn);
      },
    };
  }

  /** Runs fn now, or on thaw when frozen; never once stopped. */
  run(fn: () => void): void {
    if (this.stopped) return;
    if (this.frozen) this.deferred.push(fn);
    else fn();
  }

  freeze(): void {
    if (this.frozen || this.stopped) return;
    this.frozen = true;
    for (const entry of this.intervals.values()) {
      if (entry.handle) clearInterval(entry.handle);
      entry.handle = null;
    }
  }

  thaw(): void {
    if (!this.frozen || this.stopped) return;
    this.frozen = false;
    const queued = this.deferred;
    this.deferred = [];
    for (const fn of queued) {
      if (this.stopped || this.frozen) {
        this.deferred.push(fn);
        continue;
      }
      fn();
    }
    for (const [fn, entry] of this.intervals) entry.handle = setInterval(fn, entry.ms);
  }

  stop(): void {
    this.stopped = true;
    for (let t = this.timeouts; t !== null; t = t.next) {
      clearTimeout(t.handle);
      t.linked = false;
    }
    this.timeouts = null;
    this.timeoutCount = 0;
    for (const entry of this.intervals.values()) if (entry.handle) clearInterval(entry.handle);
    this.intervals.clear();
    this.deferred = [];
  }
}

/** Resolves after ms on the scheduler (no-op promise that never settles once stopped). */
export function delay(s: Scheduler, ms: number): Promise<void> {
  return new Promise((resolve) => s.setTimeout(resolve, ms));
}
