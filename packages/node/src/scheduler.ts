/**
 * Every timer and deferred callback of a node goes through its Scheduler, so the node can be
 * frozen (a hung process: nothing fires until it is thawed), thawed, or stopped (everything
 * cleared, so a killed node keeps nothing alive).
 */
export interface TimerHandle {
  cancel(): void;
}

export class Scheduler {
  private frozen = false;
  private stopped = false;
  private readonly timeouts = new Set<NodeJS.Timeout>();
  private readonly intervals = new Map<() => void, { ms: number; handle: NodeJS.Timeout | null }>();
  private deferred: (() => void)[] = [];

  get isFrozen(): boolean {
    return this.frozen;
  }
  get isStopped(): boolean {
    return this.stopped;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.stopped) return { cancel: () => {} };
    const handle = setTimeout(() => {
      this.timeouts.delete(handle);
      this.run(fn);
    }, ms);
    this.timeouts.add(handle);
    return {
      cancel: () => {
        clearTimeout(handle);
        this.timeouts.delete(handle);
      },
    };
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
    for (const t of this.timeouts) clearTimeout(t);
    this.timeouts.clear();
    for (const entry of this.intervals.values()) if (entry.handle) clearInterval(entry.handle);
    this.intervals.clear();
    this.deferred = [];
  }
}

/** Resolves after ms on the scheduler (no-op promise that never settles once stopped). */
export function delay(s: Scheduler, ms: number): Promise<void> {
  return new Promise((resolve) => s.setTimeout(resolve, ms));
}
