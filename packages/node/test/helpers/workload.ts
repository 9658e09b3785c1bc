import type { GridCache } from '@gridlink/client';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Reads one key's raw value (undefined or null when absent). */
export type ReadFn = (key: string) => Promise<Uint8Array | null | undefined>;

/**
 * Sequential writers, one per key: each puts "key:n" with n increasing through the client, which
 * retries each write (same seq) until acknowledged or its operation deadline. Tracks per key the
 * last acknowledged value and the value in flight (which may or may not have been applied when
 * the workload stops).
 */
export class WriteStream {
  readonly acked = new Map<string, number>();
  readonly inFlight = new Map<string, number>();
  readonly ackTimes: { key: string; at: number }[] = [];
  private running = true;
  private readonly loops: Promise<void>[];
  failures: unknown[] = [];

  constructor(
    private readonly cache: GridCache<string, Uint8Array>,
    readonly keys: string[],
  ) {
    this.loops = keys.map((k) => this.loop(k));
  }

  private async loop(key: string): Promise<void> {
    for (let n = 1; this.running; n++) {
      this.inFlight.set(key, n);
      try {
        await this.cache.put(key, enc.encode(`${key}:${n}`));
        this.acked.set(key, n);
        this.inFlight.delete(key);
        this.ackTimes.push({ key, at: Date.now() });
      } catch (err) {
        this.failures.push(err);
        return;
      }
    }
  }

  /** Resolves once `count` more writes to any of `keys` were acknowledged after `since`. */
  async waitForAcks(keys: string[], since: number, count: number, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hits = this.ackTimes.filter((a) => a.at > since && keys.includes(a.key));
      if (hits.length >= count) return hits[0]!.at;
      if (this.failures.length > 0) throw this.failures[0] as Error;
      if (Date.now() > deadline) throw new Error(`only ${hits.length} acknowledged writes to ${keys.join(',')} since ${since}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Reads every key back; each must hold its last acknowledged value or the one in flight at stop. */
  async verify(read: ReadFn | GridCache<string, Uint8Array>): Promise<void> {
    const get: ReadFn = typeof read === 'function' ? read : (k) => read.get(k);
    for (const key of this.keys) {
      const value = await get(key);
      const acked = this.acked.get(key);
      const pending = this.inFlight.get(key);
      const got = value === null || value === undefined ? null : dec.decode(value);
      const allowed = new Set<string | null>([acked === undefined ? null : `${key}:${acked}`]);
      if (pending !== undefined) allowed.add(`${key}:${pending}`);
      if (!allowed.has(got)) throw new Error(`key ${key}: read ${String(got)}, expected one of ${[...allowed].join(' | ')}`);
    }
  }
}
