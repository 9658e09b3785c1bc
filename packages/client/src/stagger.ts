/**
 * Staggered first-connection race (in the manner of RFC 8305 "Happy Eyeballs"): endpoints are
 * tried in order; the next one starts when the previous attempt fails or after `stagger` ms
 * without an answer, whichever comes first. The first success wins; the race fails when every
 * attempt failed or the overall `timeout` passed. Attempts still running when the race is won are
 * left to finish (their connections become background connections) unless `cancelLosers` is set.
 *
 * Only timers and callbacks: the attempt function does the I/O.
 */

export interface RaceOutcome<T> {
  winner: T;
  index: number;
}

export class RaceFailure extends Error {
  constructor(
    /** Cause per endpoint index; `undefined` = never started. */
    readonly causes: (string | undefined)[],
    readonly timedOut: boolean,
    /** The error each failed attempt rejected with (`undefined`: it did not fail). */
    readonly errors: unknown[] = [],
  ) {
    super(timedOut ? 'no endpoint answered in time' : 'every endpoint failed');
    this.name = 'RaceFailure';
  }
}

export interface RaceOptions<T> {
  count: number;
  stagger: number;
  timeout: number;
  /** Starts attempt i; must settle. The signal aborts when the race is lost by timeout. */
  attempt: (index: number, signal: AbortSignal) => Promise<T>;
  /** Called with each attempt that succeeds after the race was already decided. */
  onLateSuccess?: (value: T, index: number) => void;
}

export function staggeredRace<T>(opts: RaceOptions<T>): Promise<RaceOutcome<T>> {
  return new Promise<RaceOutcome<T>>((resolve, reject) => {
    const causes: (string | undefined)[] = new Array<string | undefined>(opts.count).fill(undefined);
    const errors: unknown[] = new Array<unknown>(opts.count).fill(undefined);
    const ac = new AbortController();
    let next = 0;
    let running = 0;
    let done = false;
    let staggerTimer: NodeJS.Timeout | null = null;

    const finish = (): void => {
      done = true;
      if (staggerTimer !== null) clearTimeout(staggerTimer);
      clearTimeout(deadline);
    };

    const launch = (): void => {
      if (done || next >= opts.count) return;
      const i = next++;
      running++;
      causes[i] = 'no answer yet';
      if (staggerTimer !== null) clearTimeout(staggerTimer);
      staggerTimer = null;
      if (next < opts.count) {
        staggerTimer = setTimeout(launch, opts.stagger);
        staggerTimer.unref();
      }
      let p: Promise<T>;
      try {
        p = opts.attempt(i, ac.signal);
      } catch (e) {
        p = Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
      p.then(
        (value) => {
          running--;
          causes[i] = undefined;
          if (done) {
            opts.onLateSuccess?.(value, i);
            return;
          }
          finish();
          resolve({ winner: value, index: i });
        },
        (err: unknown) => {
          running--;
          causes[i] = err instanceof Error ? err.message : String(err);
          errors[i] = err;
          if (done) return;
          if (next < opts.count) {
            launch();
          } else if (running === 0) {
            finish();
            reject(new RaceFailure(causes, false, errors));
          }
        },
      );
    };

    const deadline = setTimeout(() => {
      if (done) return;
      finish();
      ac.abort();
      reject(new RaceFailure(causes.map((c, i) => (i >= next ? 'not tried before the connect timeout' : c)), true, errors));
    }, opts.timeout);
    deadline.unref();

    if (opts.count === 0) {
      finish();
      reject(new RaceFailure([], false));
      return;
    }
    launch();
  });
}
