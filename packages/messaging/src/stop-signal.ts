/**
 * A loop's stop, awaited beside each step without piling up on it.
 *
 * `await Promise.race([step, stopped])` once per message registers one more reaction on
 * `stopped` each time, and a promise keeps its reactions until it settles: a consume loop that
 * ran for an hour kept every message's race (the race's result, the message's outcome) alive —
 * about 350 bytes per message (300,000 races retained 103 MB). Here one waiter at a time is
 * remembered: the step's own promise carries the only reaction, and a stop wakes the current wait.
 */
export const STOPPED: unique symbol = Symbol('stopped');

export class StopSignal {
  private stopped = false;
  /** Wakes the wait in progress (replaced by each `until`). */
  private wake: (() => void) | null = null;

  get isStopped(): boolean {
    return this.stopped;
  }

  stop(): void {
    this.stopped = true;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** `p`'s outcome, or STOPPED as soon as `stop()` is (or was) called, whichever comes first. */
  until<T>(p: Promise<T>): Promise<T | typeof STOPPED> {
    if (this.stopped) return Promise.resolve(STOPPED);
    return new Promise<T | typeof STOPPED>((resolve, reject) => {
      const wake = (): void => resolve(STOPPED);
      this.wake = wake;
      p.then(
        (v) => {
          if (this.wake === wake) this.wake = null;
          resolve(v);
        },
        (e: unknown) => {
          if (this.wake === wake) this.wake = null;
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }
}
