/**
 * The load every failover scenario runs, the same for the grid and for Redis: one sequential
 * worker per key doing put then get in a loop (a failed operation is counted and the worker goes
 * on after 10 ms, so a refused connection does not spin), every outcome time-stamped. From that:
 * ops/s and errors per 100 ms, failed operations in a window, and the longest pause of writes to a
 * set of keys (the longest gap between two acknowledged puts of one key, counted from the fault).
 */
import { delay } from '../shared/measure.js';

export interface KvStore {
  put(key: string, value: Uint8Array): Promise<unknown>;
  get(key: string): Promise<unknown>;
}

export class Workload {
  /** Acknowledgement times of every successful operation (put or get). */
  readonly okAt: number[] = [];
  /** Times of failed operations. */
  readonly failedAt: number[] = [];
  /** The error of each failed operation (same order as failedAt). */
  readonly failedWhy: string[] = [];
  /** Per key: acknowledgement times of its successful puts. */
  readonly putAcks: number[][];
  /** Per key: start times of its successful puts (same order as putAcks). */
  readonly putStarts: number[][];
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(
    private readonly store: KvStore,
    readonly keys: string[],
    value: Uint8Array,
  ) {
    this.putAcks = keys.map(() => []);
    this.putStarts = keys.map(() => []);
    this.loops = keys.map((key, k) => this.loop(key, k, value));
  }

  private async loop(key: string, k: number, value: Uint8Array): Promise<void> {
    while (this.running) {
      for (const put of [true, false]) {
        const started = Date.now();
        try {
          if (put) await this.store.put(key, value);
          else await this.store.get(key);
          const now = Date.now();
          this.okAt.push(now);
          if (put) {
            this.putAcks[k]!.push(now);
            this.putStarts[k]!.push(started);
          }
        } catch (err) {
          this.failedAt.push(Date.now());
          this.failedWhy.push(err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 70) : String(err).slice(0, 70));
          await delay(10);
        }
      }
    }
  }

  /** Resolves once `n` more operations succeeded (the load is flowing), or rejects after `timeoutMs`. */
  async flowing(n = 200, timeoutMs = 20_000): Promise<void> {
    const target = this.okAt.length + n;
    const deadline = Date.now() + timeoutMs;
    while (this.okAt.length < target) {
      if (Date.now() > deadline) throw new Error(`load not flowing: ${this.okAt.length} ok, ${this.failedAt.length} failed (${this.failedWhy[0] ?? ''})`);
      await delay(10);
    }
  }

  /**
   * Waits until every key in `keys` (indexes) had a put started after `since` acknowledged; resolves with
   * the time that happened, or with null after `timeoutMs`.
   */
  async recovered(keys: number[], since: number, timeoutMs: number): Promise<number | null> {
    const deadline = since + timeoutMs;
    for (;;) {
      // A put sent before `since` and acknowledged after it proves nothing about the fault (a
      // killed server may still answer what it read before the signal landed): only puts that
      // started after it count.
      if (keys.every((k) => this.putStarts[k]!.some((t) => t > since))) return Date.now();
      if (Date.now() > deadline) return null;
      await delay(10);
    }
  }

  /** The error of the first operation that failed in [from, to], or ''. */
  firstErrorBetween(from: number, to: number): string {
    const i = this.failedAt.findIndex((t) => t >= from && t <= to);
    return i === -1 ? '' : this.failedWhy[i]!;
  }

  failedBetween(from: number, to: number): number {
    return this.failedAt.filter((t) => t >= from && t <= to).length;
  }

  /**
   * Longest pause of writes to `keys` in [from, to]: per key, the longest gap between consecutive
   * acknowledged puts, the first gap counted from `from` and the last one up to `to`.
   */
  writePause(keys: number[], from: number, to: number): number {
    let worst = 0;
    for (const k of keys) {
      let last = from;
      for (const t of this.putAcks[k]!) {
        if (t <= from || t > to) continue;
        worst = Math.max(worst, t - last);
        last = t;
      }
      worst = Math.max(worst, to - last);
    }
    return worst;
  }

  /**
   * Longest pause of writes to `keys` that began in [from, to): per key, each gap between two
   * acknowledged puts whose first ack lies in the window, measured in full (up to `limit` if no
   * later put was acknowledged). With `fromFault`, a gap already open at `from` counts too, from
   * `from` on; without, it belongs to whatever phase it began in and is left out. So consecutive
   * phases of one fault split the pauses between them without counting one twice.
   */
  pauseBeganIn(keys: number[], from: number, to: number, limit: number, fromFault: boolean): number {
    let worst = 0;
    for (const k of keys) {
      const acks = this.putAcks[k]!;
      let start: number | undefined = fromFault ? from : undefined;
      for (const t of acks) {
        if (t < from) continue;
        if (t > limit) break;
        if (start !== undefined) worst = Math.max(worst, t - start);
        start = t < to ? t : undefined;
        if (start === undefined) break;
      }
      if (start !== undefined) worst = Math.max(worst, limit - start);
    }
    return worst;
  }

  /** ops/s and errors per 100 ms bucket over [from, to). */
  perTenth(from: number, to: number): { ok: number[]; errors: number[] } {
    const n = Math.max(1, Math.ceil((to - from) / 100));
    const ok = new Array<number>(n).fill(0);
    const errors = new Array<number>(n).fill(0);
    for (const t of this.okAt) {
      const b = Math.floor((t - from) / 100);
      if (b >= 0 && b < n) ok[b]! += 10;
    }
    for (const t of this.failedAt) {
      const b = Math.floor((t - from) / 100);
      if (b >= 0 && b < n) errors[b]!++;
    }
    return { ok, errors };
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** `count` keys `prefix-0` … */
export function keyNames(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
}
