/**
 * Lock leases of one partition and the plan of the LOCK_* ops (see index.ts, "Locks", and
 * ADR 0020).
 *
 * A lock is held by one acquisition — its holder — named by (session, owner): `owner` is the id
 * the client draws for each handle (absent from older clients: ''), so two acquisitions through
 * one client exclude each other exactly as two clients do. The holder acquiring again refreshes
 * its lease and keeps its token (re-entrant); release and renew need the token (and, when they
 * carry one, the owner). A lease that runs out frees the lock, whatever session held it.
 */
import { ErrorCode, Op } from '@gridlink/protocol';
import { toBytes, type Bytes } from './bytes.js';
import { StoreError, badRequest } from './errors.js';
import { bytesField, cacheName, optFlag, optOwner, optSafeInt, safeInt, type Payload } from './payload.js';
import type { Effect, LockTuple } from './types.js';

/** What LockLeases needs of the expiry order (ExpiryQueue), without importing it. */
export interface LeaseExpiry {
  /** Live items with an expiry (the heap compacts when it grows far beyond). */
  expiring: number;
  push(at: number, lease: LockState): void;
}

export interface LockState {
  partition: number;
  /** Lock name bytes as a latin1 string. */
  k: string;
  session: string;
  /** Id of the holding acquisition within its session ('' = none given). */
  owner: string;
  token: number;
  expireAt: number;
  /**
   * When the sweep next looks at the lease (its place in the expiry order): `expireAt`, or, on a
   * copy that keeps run-out leases (a backup, a primary that cannot serve: ADR 0072),
   * `LOCK_KEEP_MS` later.
   */
  sweepAt: number;
  live: boolean;
}

/** What a lock op decided: its result, its effects, and whether it is remembered and replicated. */
export interface LockPlan {
  result: unknown;
  effects: Effect[];
  record: boolean;
}

const RELEASED = Object.freeze({ released: true });
const NOT_RELEASED = Object.freeze({ released: false });
const RENEWED = Object.freeze({ renewed: true });
const NOT_RENEWED = Object.freeze({ renewed: false });

function expiry(now: number, p: Payload): number {
  const leaseMs = safeInt(p, 'leaseMs', 1);
  const expireAt = now + leaseMs;
  if (!Number.isSafeInteger(expireAt)) throw badRequest('leaseMs is too large');
  return expireAt;
}

/**
 * Plans a LOCK_* op. `held` is the live lease of the lock, if any; `nextCounter` the update
 * counter this mutation will get (the token of a new acquisition).
 */
export function planLock(op: Op, p: Payload, session: string, held: LockState | undefined, now: number, nextCounter: number): LockPlan {
  const name: Bytes = bytesField(p, 'name');
  switch (op) {
    case Op.LOCK_TRY_ACQUIRE:
    case Op.LOCK_ACQUIRE:
      return planAcquire(name, p, session, held, now, nextCounter);
    case Op.LOCK_RELEASE: {
      const token = safeInt(p, 'token', 0);
      const owner = optOwner(p);
      const released = held !== undefined && held.token === token && (owner === undefined || owner === held.owner);
      return { result: released ? RELEASED : NOT_RELEASED, effects: released ? [{ t: 'unlock', name }] : [], record: true };
    }
    case Op.LOCK_RENEW: {
      const token = safeInt(p, 'token', 0);
      const expireAt = expiry(now, p);
      const owner = optOwner(p);
      if (held === undefined || held.token !== token || (owner !== undefined && owner !== held.owner)) {
        return { result: NOT_RENEWED, effects: [], record: true };
      }
      const eff: Effect =
        held.owner === ''
          ? { t: 'lock', name, session: held.session, token, expireAt }
          : { t: 'lock', name, session: held.session, owner: held.owner, token, expireAt };
      return { result: RENEWED, effects: [eff], record: true };
    }
    default:
      throw new StoreError(ErrorCode.UNKNOWN_OP, 'unknown-op', `op ${String(op)} is not a lock op`);
  }
}

/** One acquisition attempt of the lock `name` (LOCK_TRY_ACQUIRE, LOCK_ACQUIRE, LOCK_TRY_ACQUIRE_GET). */
function planAcquire(name: Bytes, p: Payload, session: string, held: LockState | undefined, now: number, nextCounter: number): LockPlan {
  const expireAt = expiry(now, p);
  const owner = optOwner(p) ?? '';
  if (held !== undefined && (held.session !== session || held.owner !== owner)) {
    return { result: { acquired: false, heldForMs: held.expireAt - now }, effects: [], record: false };
  }
  // Re-entrant: the holder acquiring again refreshes its lease and keeps its token.
  const token = held?.token ?? nextCounter;
  const eff: Effect = owner === '' ? { t: 'lock', name, session, token, expireAt } : { t: 'lock', name, session, owner, token, expireAt };
  return { result: { acquired: true, token }, effects: [eff], record: true };
}

/** What the compound lock ops (lock + read-your-state) see of the partition's entries. */
export interface LockStateView {
  /** The live entry `key` of `cache` as a fresh copy, or null when absent (or expired). */
  value(cache: string, key: Bytes, now: number): Bytes | null;
  /** Absolute expiry of a write to `cache` with the op's `ttlMs` (0 = never). */
  expireAtFor(cache: string, ttlMs: number | undefined, now: number): number;
}

/**
 * Plans LOCK_TRY_ACQUIRE_GET and LOCK_PUT_RELEASE (ADR 0036). Both name the lock by the entry's
 * `key`: the lock and the entry are in one partition, so the primary applies each atomically.
 * `held` is the live lease of the lock named by `key`.
 *
 * - LOCK_TRY_ACQUIRE_GET: a LOCK_TRY_ACQUIRE plus the entry's value at the same point of the
 *   partition's order, whether or not the lock was taken. A refused attempt is not remembered,
 *   like any failed acquisition; a taken one remembers the value with the token. With
 *   `ifAbsent`, a present entry is answered without taking the lock (not remembered either).
 * - LOCK_PUT_RELEASE: when the lock is held with `token` (and `owner`, if given) the entry is
 *   stored and the lock released in one record; otherwise `released: false` and nothing stored
 *   (fenced: a stale holder cannot overwrite what a later one wrote).
 */
export function planLockState(op: Op, p: Payload, session: string, held: LockState | undefined, now: number, nextCounter: number, view: LockStateView): LockPlan {
  const cache = cacheName(p);
  const key: Bytes = bytesField(p, 'key');
  switch (op) {
    case Op.LOCK_TRY_ACQUIRE_GET: {
      const ifAbsent = optFlag(p, 'ifAbsent');
      const value = view.value(cache, key, now);
      if (value !== null && ifAbsent) {
        // The entry is there: answer it without taking the lock — a read, nothing to replicate
        // or remember (a retry reads again).
        const result = held === undefined ? { acquired: false, value } : { acquired: false, heldForMs: held.expireAt - now, value };
        return { result, effects: [], record: false };
      }
      const plan = planAcquire(key, p, session, held, now, nextCounter);
      return { result: { ...(plan.result as object), value }, effects: plan.effects, record: plan.record };
    }
    case Op.LOCK_PUT_RELEASE: {
      const token = safeInt(p, 'token', 0);
      const owner = optOwner(p);
      const value = bytesField(p, 'value');
      // Computed (and checked) whatever the outcome: bad input is refused before anything changes.
      const expireAt = view.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
      const ok = held !== undefined && held.token === token && (owner === undefined || owner === held.owner);
      if (!ok) return { result: NOT_RELEASED, effects: [], record: true };
      return { result: RELEASED, effects: [{ t: 'put', cache, key, value, expireAt }, { t: 'unlock', name: key }], record: true };
    }
    default:
      throw new StoreError(ErrorCode.UNKNOWN_OP, 'unknown-op', `op ${String(op)} is not a compound lock op`);
  }
}

/**
 * Lock leases of every partition of a node: their count, their place in the expiry order, and the
 * `onLockFreed` notifications (queued while the store changes state, delivered by `flush`).
 */
export class LockLeases {
  /** Leases held: live ones, and those a backup keeps after they ran out (`kept`). */
  count = 0;
  /** Leases kept after they ran out, until LOCK_KEEP_MS later (ADR 0072). */
  kept = 0;
  private readonly listeners = new Set<(partition: number, name: Uint8Array) => void>();
  private pending: [number, string][] = [];

  constructor(private readonly expiry: LeaseExpiry) {}

  /** The live lease of `k` in `locks`; an expired one is removed (and reported freed). */
  live(locks: Map<string, LockState>, k: string, now: number): LockState | undefined {
    const l = locks.get(k);
    if (l === undefined) return undefined;
    if (l.expireAt <= now) {
      this.free(locks, l);
      return undefined;
    }
    return l;
  }

  set(locks: Map<string, LockState>, partition: number, k: string, session: string, owner: string, token: number, expireAt: number): void {
    const cur = locks.get(k);
    if (cur !== undefined) {
      cur.session = session;
      cur.owner = owner;
      cur.token = token;
      if (cur.expireAt !== expireAt) this.reschedule(cur, expireAt, expireAt);
      return;
    }
    const lock: LockState = { partition, k, session, owner, token, expireAt, sweepAt: expireAt, live: true };
    locks.set(k, lock);
    this.count++;
    this.expiry.expiring++;
    this.expiry.push(expireAt, lock);
  }

  /** Gives a live lease a new end (`expireAt`), and the sweep a new time to look at it. */
  reschedule(l: LockState, expireAt: number, sweepAt: number): void {
    if (l.sweepAt !== l.expireAt) this.kept--;
    if (sweepAt !== expireAt) this.kept++;
    l.expireAt = expireAt;
    if (l.sweepAt === sweepAt) return;
    l.sweepAt = sweepAt;
    this.expiry.push(sweepAt, l);
  }

  /** Removes a lease without notifying (its partition is dropped). */
  unlink(locks: Map<string, LockState>, l: LockState): void {
    if (!l.live) return;
    l.live = false;
    locks.delete(l.k);
    this.count--;
    if (l.sweepAt !== l.expireAt) this.kept--;
    this.expiry.expiring--;
  }

  /** Removes a lease (released or expired) and reports the lock freed. */
  free(locks: Map<string, LockState>, l: LockState): void {
    this.unlink(locks, l);
    this.pending.push([l.partition, l.k]);
  }

  onFreed(listener: (partition: number, name: Uint8Array) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Delivers the queued notifications (after the store's state is consistent). */
  flush(): void {
    while (this.pending.length > 0) {
      const batch = this.pending;
      this.pending = [];
      for (const [partition, k] of batch) {
        for (const l of [...this.listeners]) {
          try {
            l(partition, toBytes(k));
          } catch {
            // A listener's failure must not corrupt the store or skip other listeners.
          }
        }
      }
    }
  }
}

export function lockTuple(l: LockState): LockTuple {
  return l.owner === '' ? [toBytes(l.k), l.session, l.token, l.expireAt] : [toBytes(l.k), l.session, l.token, l.expireAt, l.owner];
}
