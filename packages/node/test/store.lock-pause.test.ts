/**
 * ADR 0072: a lock lease does not run while its partition has no primary. A backup keeps the
 * leases that run out (LOCK_KEEP_MS past their end); when it is promoted, the time since its old
 * primary was last heard is added to every lease live then, and the others are freed.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Op } from '@gridlink/protocol';
import { LOCK_KEEP_MS } from '../src/store/store.js';
import { NodeStore } from '../src/store/index.js';
import { FakeClock, b, s } from './store-helpers.js';

const P = 3;

/** A primary and a backup on one clock; every record of the primary is applied on the backup. */
function pair(): { primary: NodeStore; backup: NodeStore; clock: FakeClock; run: (op: Op, payload: Record<string, unknown>, session?: string) => unknown } {
  const clock = new FakeClock();
  const primary = new NodeStore({ clock });
  const backup = new NodeStore({ clock });
  backup.keepLockLeases(P);
  const run = (op: Op, payload: Record<string, unknown>, session = 'S'): unknown => {
    const r = primary.mutate(P, op, payload, session);
    if (r.record !== null) expect(backup.applyRecord(P, r.record)).toBe(true);
    return r.result;
  };
  return { primary, backup, clock, run };
}

const acquire = (run: ReturnType<typeof pair>['run'], name: string, leaseMs: number, seq: number): number => {
  const r = run(Op.LOCK_TRY_ACQUIRE, { name: b(name), leaseMs, seq }) as { acquired: boolean; token: number };
  expect(r.acquired).toBe(true);
  return r.token;
};

describe('lock leases across a change of primary (ADR 0072)', () => {
  it('a lease that ran out while the partition had no primary is live again on the promoted backup, for what was left of it', () => {
    const { backup, clock, run } = pair();
    const token = acquire(run, 'L', 1000, 1);
    clock.advance(200); // the primary is last heard here, 800 ms before the lease's end
    clock.advance(5000); // no primary: a KV outage, then a failover
    backup.sweep(1000);
    expect(backup.stats()).toMatchObject({ locks: 0, locksKept: 1 }); // kept, counted apart
    expect(backup.resumeLockLeases(P, 5000)).toEqual({ extended: 1, freed: 0 });
    // Its holder's release, retried meanwhile, lands now.
    expect(backup.mutate(P, Op.LOCK_RELEASE, { name: b('L'), token, seq: 2 }, 'S').result).toEqual({ released: true });
  });

  it('without the pause counted (0 ms: nothing known of the old primary) the lease that ran out is freed, as before', () => {
    const { backup, clock, run } = pair();
    const token = acquire(run, 'L', 1000, 1);
    clock.advance(5200);
    const freed: string[] = [];
    backup.onLockFreed((_p, name) => freed.push(s(name)!));
    expect(backup.resumeLockLeases(P, 0)).toEqual({ extended: 0, freed: 1 });
    expect(freed).toEqual(['L']);
    expect(backup.mutate(P, Op.LOCK_RELEASE, { name: b('L'), token, seq: 2 }, 'S').result).toEqual({ released: false });
  });

  it('a backup keeps a run-out lease LOCK_KEEP_MS, then frees it; a primary frees it at once', () => {
    const { primary, backup, clock, run } = pair();
    acquire(run, 'L', 1000, 1);
    clock.advance(1001);
    primary.sweep(1000);
    backup.sweep(1000);
    expect(primary.stats()).toMatchObject({ locks: 0, locksKept: 0 });
    expect(backup.stats()).toMatchObject({ locks: 0, locksKept: 1 });
    clock.advance(LOCK_KEEP_MS - 2);
    backup.sweep(1000);
    expect(backup.stats()).toMatchObject({ locks: 0, locksKept: 1 });
    clock.advance(2);
    backup.sweep(1000);
    expect(backup.stats()).toMatchObject({ locks: 0, locksKept: 0 });
  });

  it('a renewal replicated to a backup that keeps the run-out lease gives it its new end', () => {
    const { backup, clock, run } = pair();
    const token = acquire(run, 'L', 1000, 1);
    clock.advance(900);
    expect(run(Op.LOCK_RENEW, { name: b('L'), token, leaseMs: 1000, seq: 2 })).toEqual({ renewed: true });
    clock.advance(1500);
    backup.sweep(1000);
    // The renewed lease ran out 400 ms ago; promoted with nothing known of the pause, it is freed.
    expect(backup.resumeLockLeases(P, 0)).toEqual({ extended: 0, freed: 1 });
  });

  it('the pause counted is at most LOCK_KEEP_MS', () => {
    const { backup, clock, run } = pair();
    acquire(run, 'L', 1000, 1);
    clock.advance(LOCK_KEEP_MS + 2000);
    backup.sweep(1000); // looked at again 30 s after its end: gone
    expect(backup.resumeLockLeases(P, LOCK_KEEP_MS + 2000)).toEqual({ extended: 0, freed: 0 });
    expect(backup.stats()).toMatchObject({ locks: 0, locksKept: 0 });
  });

  it('promoted after a pause: a lease is live exactly when it was live as the old primary was last heard, with what it had left then (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.integer({ min: 0, max: 5000 })), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 25_000 }),
        fc.integer({ min: 0, max: LOCK_KEEP_MS - 1 }),
        fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 5 }),
        (locks, heardAfter, pausedMs, sweeps) => {
          const { backup, clock, run } = pair();
          const t0 = clock.now();
          // Each lock is taken at its own time (the second number) with its own lease.
          const ends = new Map<string, number>();
          const order = locks.map(([lease, at], i) => ({ name: `L${i}`, lease, at })).sort((x, y) => x.at - y.at);
          let seq = 0;
          for (const l of order) {
            clock.t = Math.max(clock.t, t0 + l.at);
            acquire(run, l.name, l.lease, ++seq);
            ends.set(l.name, clock.now() + l.lease);
          }
          const heard = clock.now() + heardAfter; // the old primary was last heard here
          clock.t = heard;
          // Sweeps while nobody is primary (the backup's own timer).
          for (const dt of sweeps) {
            clock.advance(Math.min(dt, pausedMs));
            backup.sweep(1000);
            // Kept or not, every lease held is counted once.
            const st = backup.stats();
            expect(st.locks + st.locksKept).toBe(backup.inspect(P).locks.length);
          }
          clock.t = heard + pausedMs;
          const freed: string[] = [];
          backup.onLockFreed((_p, name) => freed.push(s(name)!));
          const r = backup.resumeLockLeases(P, pausedMs);
          const liveThen = [...ends].filter(([, end]) => end > heard).map(([n]) => n).sort();
          expect(r.extended).toBe(pausedMs > 0 ? liveThen.length : 0);
          expect(r.freed).toBe(freed.length);
          // Each lease live when the old primary was heard has what it had left then; the others are free.
          for (const [name, end] of ends) {
            const got = backup.inspect(P).locks.find((t) => s(t[0]) === name);
            if (end > heard) expect(got?.[3]).toBe(end + pausedMs);
            else expect(got).toBeUndefined();
          }
          expect(backup.stats()).toMatchObject({ locks: liveThen.length, locksKept: 0 });
        },
      ),
    );
  });
});
