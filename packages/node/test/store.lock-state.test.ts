/**
 * Lock + read-your-state in the store (ADR 0036): LOCK_TRY_ACQUIRE_GET takes the lock named by a
 * key and reads that key's entry in one step; LOCK_PUT_RELEASE stores the entry and releases the
 * lock in one record, fenced by the token. Pure store, fake clock.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Op, type LockResult } from '@gridlink/protocol';
import { NodeStore, StoreError } from '../src/store/index.js';
import { FakeClock, b, s } from './store-helpers.js';

const P = 5;
const cache = 'records';
const key = b('dedupe:records:k1');

type AcqGet = LockResult & { value: Uint8Array | null };

describe('compound lock ops in the store', () => {
  it('acquire-get reads the entry under the lock name whether or not the lock is taken; put-release stores and frees in one record', () => {
    const clock = new FakeClock();
    const st = new NodeStore({ clock });
    let seq = 0;
    const m = (op: Op, p: Record<string, unknown>, session = 's'): unknown => st.mutate(P, op, { cache, key, seq: ++seq, ...p }, session).result;

    const a = m(Op.LOCK_TRY_ACQUIRE_GET, { leaseMs: 1000, owner: 'A' }) as AcqGet;
    expect(a).toEqual({ acquired: true, token: a.token, value: null });
    // Another handle: refused, told how long, and still sees the (absent) entry.
    clock.advance(100);
    expect(m(Op.LOCK_TRY_ACQUIRE_GET, { leaseMs: 1000, owner: 'B' })).toEqual({ acquired: false, heldForMs: 900, value: null });
    // The lock is the same lock the plain ops see (named by the key's bytes).
    expect((m(Op.LOCK_TRY_ACQUIRE, { name: key, leaseMs: 1000, owner: 'C' }) as LockResult).acquired).toBe(false);

    const counter = st.updateCounter(P);
    const { result, record } = st.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: ++seq, token: a.token, owner: 'A', value: b('stored'), ttlMs: 5000 }, 's');
    expect(result).toEqual({ released: true });
    // One record: the put and the unlock together.
    expect(record!.counter).toBe(counter + 1);
    expect(record!.effects.map((e) => e.t)).toEqual(['put', 'unlock']);
    expect(st.stats().locks).toBe(0);
    expect(s((st.read(P, Op.CACHE_GET, { cache, key }) as { value: Uint8Array | null }).value)).toBe('stored');

    // The next acquisition sees the stored record in the same step, with a larger token.
    const c = m(Op.LOCK_TRY_ACQUIRE_GET, { leaseMs: 1000, owner: 'B' }) as AcqGet;
    expect(c.acquired).toBe(true);
    expect(c.token!).toBeGreaterThan(a.token!);
    expect(s(c.value)).toBe('stored');
    // Refused while B holds it, but the record is visible: a duplicate can be answered at once.
    expect(s((m(Op.LOCK_TRY_ACQUIRE_GET, { leaseMs: 1000, owner: 'D' }) as AcqGet).value)).toBe('stored');
    // TTL of the stored entry is the op's.
    clock.advance(5000);
    expect((st.read(P, Op.CACHE_GET, { cache, key }) as { value: Uint8Array | null }).value).toBeNull();
  });

  it('a stale token (or another owner) stores nothing and releases nothing, and is remembered', () => {
    const clock = new FakeClock();
    const st = new NodeStore({ clock });
    const a = st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: 1, leaseMs: 100, owner: 'A' }, 's').result as AcqGet;
    clock.advance(100); // A's lease ran out
    const bb = st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: 1, leaseMs: 1000, owner: 'B' }, 't').result as AcqGet;
    expect(bb.acquired).toBe(true);
    // A, stale, tries to store: refused, nothing written, B still holds.
    const stale = st.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: 2, token: a.token, owner: 'A', value: b('old') }, 's');
    expect(stale.result).toEqual({ released: false });
    expect(stale.record!.effects).toEqual([]);
    // Right token, wrong owner: refused too.
    expect(st.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: 3, token: bb.token, owner: 'A', value: b('old') }, 's').result).toEqual({ released: false });
    expect((st.read(P, Op.CACHE_GET, { cache, key }) as { value: unknown }).value).toBeNull();
    expect(st.stats().locks).toBe(1);
    // A retry of the refused store answers the same, even once the lock is free.
    expect(st.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: 2, token: bb.token, owner: 'B', value: b('x') }, 's').result).toEqual({ released: false });
    expect(st.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: 2, token: bb.token, owner: 'B', value: b('new') }, 't').result).toEqual({ released: true });
    expect(s((st.read(P, Op.CACHE_GET, { cache, key }) as { value: Uint8Array | null }).value)).toBe('new');
  });

  it('exactly-once: a retried acquire-get answers the first token and value; a refused one is not remembered', () => {
    const clock = new FakeClock();
    const st = new NodeStore({ clock });
    st.mutate(P, Op.CACHE_PUT, { cache, key, seq: 1, value: b('v1') }, 'w');
    const first = st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: 1, leaseMs: 1000, owner: 'A' }, 's');
    st.mutate(P, Op.CACHE_PUT, { cache, key, seq: 2, value: b('v2') }, 'w');
    const again = st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: 1, leaseMs: 1000, owner: 'A' }, 's');
    expect(again.record).toBeNull();
    expect(again.result).toEqual(first.result);
    expect(s((again.result as AcqGet).value)).toBe('v1');
    // A refused attempt changes nothing and records nothing.
    const counter = st.updateCounter(P);
    const refused = st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: 1, leaseMs: 1000, owner: 'B' }, 't');
    expect(refused.record).toBeNull();
    expect(st.updateCounter(P)).toBe(counter);
    // Reusing the seq for another op is refused as usual.
    expect(() => st.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: 1, token: 1, value: b('x') }, 's')).toThrow(StoreError);
  });

  it('ifAbsent: a present entry is answered as a read (no lock, no record); an absent one is acquired as usual', () => {
    const clock = new FakeClock();
    const st = new NodeStore({ clock });
    let seq = 0;
    const m = (p: Record<string, unknown>, session = 's') => st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: ++seq, leaseMs: 1000, ifAbsent: true, ...p }, session);
    // Absent: the lock is taken, remembered and replicated like without the flag.
    const a = m({ owner: 'A' });
    expect(a.result).toEqual({ acquired: true, token: (a.result as AcqGet).token, value: null });
    expect(a.record!.effects.map((e) => e.t)).toEqual(['lock']);
    const token = (a.result as AcqGet).token!;
    st.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: ++seq, token, owner: 'A', value: b('done') }, 's');
    const counter = st.updateCounter(P);
    // Present and free: the value, the lock left alone, nothing recorded.
    const read = m({ owner: 'B' }, 't');
    expect(read.record).toBeNull();
    expect(read.result).not.toHaveProperty('token');
    expect((read.result as AcqGet).acquired).toBe(false);
    expect(s((read.result as AcqGet).value)).toBe('done');
    expect(st.stats().locks).toBe(0);
    expect(st.updateCounter(P)).toBe(counter);
    // Present and held: the value and the holder's remaining lease.
    const held = st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: ++seq, leaseMs: 1000, owner: 'C' }, 'u');
    expect((held.result as AcqGet).acquired).toBe(true);
    clock.advance(250);
    expect(m({ owner: 'D' }, 'v').result).toMatchObject({ acquired: false, heldForMs: 750 });
    // Without the flag the present entry does not stop an acquisition (ADR 0036 as before).
    clock.advance(1000);
    expect((st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: ++seq, leaseMs: 1000, owner: 'E' }, 'w').result as AcqGet).acquired).toBe(true);
    // A flag that is not a boolean is refused before anything changes.
    expect(() => st.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: ++seq, leaseMs: 1000, ifAbsent: 1 }, 'x')).toThrow(StoreError);
  });

  it('bad input is a typed error that changes nothing', () => {
    const st = new NodeStore({ clock: new FakeClock() });
    const bad: [Op, Record<string, unknown>][] = [
      [Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: 1 }],
      [Op.LOCK_TRY_ACQUIRE_GET, { cache, key: 'k', seq: 1, leaseMs: 10 }],
      [Op.LOCK_TRY_ACQUIRE_GET, { key, seq: 1, leaseMs: 10 }],
      [Op.LOCK_PUT_RELEASE, { cache, key, seq: 1, token: 1 }],
      [Op.LOCK_PUT_RELEASE, { cache, key, seq: 1, token: -1, value: b('v') }],
      [Op.LOCK_PUT_RELEASE, { cache, key, seq: 1, token: 1, value: b('v'), ttlMs: Number.MAX_SAFE_INTEGER }],
    ];
    for (const [op, p] of bad) expect(() => st.mutate(P, op, p, 's')).toThrow(StoreError);
    expect(st.updateCounter(P)).toBe(0);
  });

  it('model: backups applying the records agree with the primary; the entry only ever holds what a current holder stored; ifAbsent never locks a present entry', () => {
    type Cmd = { k: 'acq'; h: number; ifAbsent: boolean } | { k: 'put'; h: number; v: number } | { k: 'advance'; ms: number };
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      fc.record({ k: fc.constant('acq' as const), h: fc.nat(3), ifAbsent: fc.boolean() }),
      fc.record({ k: fc.constant('put' as const), h: fc.nat(3), v: fc.nat(1000) }),
      fc.record({ k: fc.constant('advance' as const), ms: fc.nat(400) }),
    );
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 60 }), (cmds) => {
        const clock = new FakeClock();
        const primary = new NodeStore({ clock });
        const backup = new NodeStore({ clock });
        const tokens: (number | undefined)[] = [undefined, undefined, undefined, undefined];
        let holder: number | null = null;
        let holderUntil = 0;
        let stored: string | null = null;
        let seq = 0;
        for (const c of cmds) {
          if (c.k === 'advance') {
            clock.advance(c.ms);
            continue;
          }
          if (holder !== null && clock.now() >= holderUntil) holder = null;
          const session = `s${c.h % 2}`;
          if (c.k === 'acq') {
            const counter = primary.updateCounter(P);
            const { result, record } = primary.mutate(P, Op.LOCK_TRY_ACQUIRE_GET, { cache, key, seq: ++seq, leaseMs: 300, owner: `h${c.h}`, ifAbsent: c.ifAbsent }, session);
            const r = result as AcqGet;
            expect(s(r.value)).toBe(stored);
            if (c.ifAbsent && stored !== null) {
              // A read: not taken (not even re-entrantly), nothing recorded, nothing replicated.
              expect(r.acquired).toBe(false);
              expect(record).toBeNull();
              expect(primary.updateCounter(P)).toBe(counter);
              continue;
            }
            expect(r.acquired).toBe(holder === null || holder === c.h);
            if (r.acquired) {
              if (holder !== c.h) tokens[c.h] = r.token;
              holder = c.h;
              holderUntil = clock.now() + 300;
            }
            if (record) expect(backup.applyRecord(P, record)).toBe(true);
          } else {
            const token = tokens[c.h];
            if (token === undefined) continue;
            const { result, record } = primary.mutate(P, Op.LOCK_PUT_RELEASE, { cache, key, seq: ++seq, token, owner: `h${c.h}`, value: b(String(c.v)) }, session);
            const ok = holder === c.h;
            expect(result).toEqual({ released: ok });
            if (ok) {
              stored = String(c.v);
              holder = null;
            }
            tokens[c.h] = undefined;
            expect(backup.applyRecord(P, record!)).toBe(true);
          }
        }
        for (const st of [primary, backup]) {
          expect(s((st.read(P, Op.CACHE_GET, { cache, key }) as { value: Uint8Array | null }).value)).toBe(stored);
        }
        expect(backup.updateCounter(P)).toBe(primary.updateCounter(P));
      }),
      { numRuns: 200 },
    );
  });
});
