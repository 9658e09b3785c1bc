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

/** An acquisition waiting on the primary, as a later release of its (session, owner) finds it. */
interface Waiting {
  readonly session: string;
  readonly owner: string;
  readonly seq: number;
  cancelled: boolean;
}

export class LockService {
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Acquisitions under way that carry an owner id, by lock (see `cancelWaiting`). */
  private readonly acquiring = new Map<string, Set<Waiting>>();
  /** Locks freed so far (any key): lets a waiter see a release it could not yet wait for. */
  private freed = 0;

  constructor(private readonly d: LockServiceDeps) {
    d.store.onLockFreed((p, name) => {
      this.freed++;
      this.wake(`${p}:${keyHex(name)}`);
    });
  }

  async acquire(p: number, payload: { name: Bytes; leaseMs: number; waitMs: number; seq: number; owner?: unknown }, session: string): Promise<unknown> {
    const deadline = Date.now() + payload.waitMs;
    const key = `${p}:${keyHex(payload.name)}`;
    const owner = payload.owner;
    if (typeof owner !== 'string' || owner.length === 0 || typeof payload.seq !== 'number') return this.acquireLoop(p, payload, session, deadline, key, null);
    const w: Waiting = { session, owner, seq: payload.seq, cancelled: false };
    let set = this.acquiring.get(key);
    if (set === undefined) {
      set = new Set();
      this.acquiring.set(key, set);
    }
    set.add(w);
    try {
      return await this.acquireLoop(p, payload, session, deadline, key, w);
    } finally {
      set.delete(w);
      if (set.size === 0 && this.acquiring.get(key) === set) this.acquiring.delete(key);
    }
  }

  /**
   * A LOCK_RELEASE (any token) of `session` naming the owner id of an acquisition of that lock
   * still waiting here, with a later seq: the client gave that acquisition up (its caller aborted,
   * its deadline passed) and says so. The acquisition stops waiting and is not granted (answered
   * `acquired: false`, to nobody): otherwise it took the lock when it came free, for a holder that
   * no longer exists. Only the client that made the acquisition can name it (session and owner).
   */
  cancelWaiting(p: number, payload: unknown, session: string): void {
    if (this.acquiring.size === 0 || typeof payload !== 'object' || payload === null) return;
    const { name, owner, seq } = payload as { name?: unknown; owner?: unknown; seq?: unknown };
    if (!(name instanceof Uint8Array) || typeof owner !== 'string' || owner.length === 0 || typeof seq !== 'number') return;
    const key = `${p}:${keyHex(name)}`;
    const set = this.acquiring.get(key);
    if (set === undefined) return;
    let found = false;
    for (const w of set) {
      if (w.session === session && w.owner === owner && w.seq < seq && !w.cancelled) {
        w.cancelled = true;
        found = true;
      }
    }
    if (found) this.wake(key);
  }

  private async acquireLoop(p: number, payload: { name: Bytes; leaseMs: number; waitMs: number; seq: number }, session: string, deadline: number, key: string, w: Waiting | null): Promise<unknown> {
    for (;;) {
      if (w !== null && w.cancelled) return { acquired: false };
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
