/**
 * Lock acquisition on the primary: tryAcquire is one mutation; acquire retries it until the
 * deadline, waiting between attempts for the lock to be freed (released, expired) or for a
 * topology change (the primary may have moved), never longer than the holder's remaining lease.
 */
import { Op, type Bytes, type LockResult } from '@gridlink/protocol';
import type { Scheduler } from '../scheduler.js';
import type { NodeStore, ReplicationRecord } from '../store/index.js';

export function keyHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export interface LockServiceDeps {
  readonly scheduler: Scheduler;
  readonly store: NodeStore;
  assertPrimary(p: number): void;
  commit(p: number, record: ReplicationRecord | null): Promise<void>;
}

export class LockService {
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Locks freed so far (any key): lets a waiter see a release it could not yet wait for. */
  private freed = 0;

  constructor(private readonly d: LockServiceDeps) {
    d.store.onLockFreed((p, name) => {
      this.freed++;
      this.wake(`${p}:${keyHex(name)}`);
    });
  }

  async acquire(p: number, payload: { name: Bytes; leaseMs: number; waitMs: number; seq: number }, session: string): Promise<unknown> {
    const deadline = Date.now() + payload.waitMs;
    const key = `${p}:${keyHex(payload.name)}`;
    for (;;) {
      this.d.assertPrimary(p);
      const freedBefore = this.freed;
      const { result, record } = this.d.store.mutate(p, Op.LOCK_ACQUIRE, payload, session);
      await this.d.commit(p, record);
      const r = result as LockResult;
      const left = deadline - Date.now();
      if (r.acquired || left <= 0) return r;
      // A lock freed while the commit was awaited woke no waiter yet: try again at once.
      if (this.freed !== freedBefore) continue;
      const wait = Math.max(1, Math.min(left, r.heldForMs ?? left));
      await new Promise<void>((resolve) => {
        let set = this.waiters.get(key);
        if (!set) {
          set = new Set();
          this.waiters.set(key, set);
        }
        const s = set;
        const timer = this.d.scheduler.setTimeout(() => wake(), wait);
        const wake = (): void => {
          timer.cancel();
          s.delete(wake);
          if (s.size === 0 && this.waiters.get(key) === s) this.waiters.delete(key);
          resolve();
        };
        s.add(wake);
      });
    }
  }

  /** Acquisitions waiting for a lock to be freed. */
  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  private wake(key: string): void {
    const set = this.waiters.get(key);
    if (set) for (const wake of [...set]) wake();
  }

  /** A topology change: every waiter tries again (it may no longer be primary). */
  wakeAll(): void {
    for (const set of this.waiters.values()) for (const wake of set) wake();
  }
}
