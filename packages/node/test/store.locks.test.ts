/**
 * A lock is held by the acquisition (handle) that took it, named by (session, owner) — ADR 0020.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Op, type LockResult } from '@gridlink/protocol';
import { NodeStore, StoreError } from '../src/store/index.js';
import { FakeClock, b } from './store-helpers.js';

const P = 3;
const name = b('L');

describe('lock owners', () => {
  it('two handles of one session exclude each other; each is re-entrant; release and renew act only for their own handle', () => {
    const clock = new FakeClock();
    const st = new NodeStore({ clock });
    let seq = 0;
    const m = (op: Op, p: Record<string, unknown>, session = 's'): unknown => st.mutate(P, op, { name, seq: ++seq, ...p }, session).result;
    const a = m(Op.LOCK_TRY_ACQUIRE, { leaseMs: 1000, owner: 'A' }) as LockResult;
    expect(a.acquired).toBe(true);
    clock.advance(100);
    // Same session, another handle: refused, told how long the holder still holds.
    expect(m(Op.LOCK_TRY_ACQUIRE, { leaseMs: 1000, owner: 'B' })).toEqual({ acquired: false, heldForMs: 900 });
    // Without an owner (an older client) it is another holder too.
    expect((m(Op.LOCK_TRY_ACQUIRE, { leaseMs: 1000 }) as LockResult).acquired).toBe(false);
    // The holder itself: re-entrant, same token, lease refreshed.
    expect(m(Op.LOCK_TRY_ACQUIRE, { leaseMs: 1000, owner: 'A' })).toEqual({ acquired: true, token: a.token });
    // Renew / release naming another owner do nothing, even with the right token.
    expect(m(Op.LOCK_RENEW, { token: a.token, leaseMs: 1000, owner: 'B' })).toEqual({ renewed: false });
    expect(m(Op.LOCK_RELEASE, { token: a.token, owner: 'B' })).toEqual({ released: false });
    expect(st.stats().locks).toBe(1);
    expect(m(Op.LOCK_RENEW, { token: a.token, leaseMs: 1000, owner: 'A' })).toEqual({ renewed: true });
    expect(m(Op.LOCK_RELEASE, { token: a.token, owner: 'A' })).toEqual({ released: true });
    const bRes = m(Op.LOCK_TRY_ACQUIRE, { leaseMs: 1000, owner: 'B' }) as LockResult;
    expect(bRes.acquired).toBe(true);
    expect(bRes.token!).toBeGreaterThan(a.token!);
    // The lease ends whatever session or owner held it.
    clock.advance(1000);
    expect((m(Op.LOCK_TRY_ACQUIRE, { leaseMs: 1000, owner: 'C' }, 'other') as LockResult).acquired).toBe(true);
  });

  it('without owners a session is re-entrant as before', () => {
    const st = new NodeStore({ clock: new FakeClock() });
    const r1 = st.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, seq: 1 }, 's').result as LockResult;
    const r2 = st.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, seq: 2 }, 's').result as LockResult;
    expect(r2).toEqual({ acquired: true, token: r1.token });
    expect((st.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, seq: 1 }, 't').result as LockResult).acquired).toBe(false);
  });

  it('the owner travels in records and snapshots', () => {
    const clock = new FakeClock();
    const primary = new NodeStore({ clock });
    const backup = new NodeStore({ clock });
    const { record } = primary.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, seq: 1, owner: 'A' }, 's');
    expect(backup.applyRecord(P, record!)).toBe(true);
    const fresh = new NodeStore({ clock });
    fresh.install(P, primary.snapshot(P));
    for (const st of [backup, fresh]) {
      expect((st.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, seq: 2, owner: 'B' }, 's').result as LockResult).acquired).toBe(false);
      expect((st.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, seq: 3, owner: 'A' }, 's').result as LockResult).acquired).toBe(true);
    }
  });

  it('a bad owner is a typed error that changes nothing', () => {
    const st = new NodeStore({ clock: new FakeClock() });
    for (const owner of ['', 'x'.repeat(65), 7, {}]) {
      expect(() => st.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, seq: 1, owner }, 's')).toThrow(StoreError);
    }
    expect(st.updateCounter(P)).toBe(0);
  });

  it('model: several handles in several sessions never hold one lock together; tokens grow', () => {
    type Cmd = { k: 'acquire'; h: number } | { k: 'release'; h: number } | { k: 'renew'; h: number } | { k: 'advance'; ms: number };
    const HANDLES = 6; // handle h belongs to session h % 2
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      fc.record({ k: fc.constant('acquire' as const), h: fc.nat(HANDLES - 1) }),
      fc.record({ k: fc.constant('release' as const), h: fc.nat(HANDLES - 1) }),
      fc.record({ k: fc.constant('renew' as const), h: fc.nat(HANDLES - 1) }),
      fc.record({ k: fc.constant('advance' as const), ms: fc.nat(600) }),
    );
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 80 }), (cmds) => {
        const clock = new FakeClock();
        const st = new NodeStore({ clock });
        let seq = 0;
        // model: who holds it and until when
        let holder: number | null = null;
        let until = 0;
        const tokens = new Map<number, number>();
        let lastToken = 0;
        for (const c of cmds) {
          if (holder !== null && clock.now() >= until) holder = null;
          if (c.k === 'advance') {
            clock.advance(c.ms);
            continue;
          }
          const session = `s${c.h % 2}`;
          const owner = `h${c.h}`;
          if (c.k === 'acquire') {
            const r = st.mutate(P, Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 500, seq: ++seq, owner }, session).result as LockResult;
            expect(r.acquired).toBe(holder === null || holder === c.h);
            if (r.acquired) {
              if (holder === c.h) expect(r.token).toBe(tokens.get(c.h));
              else {
                expect(r.token!).toBeGreaterThan(lastToken);
                lastToken = r.token!;
              }
              holder = c.h;
              until = clock.now() + 500;
              tokens.set(c.h, r.token!);
            } else {
              expect(r.heldForMs).toBe(until - clock.now());
            }
          } else if (c.k === 'release') {
            const token = tokens.get(c.h) ?? 0;
            const r = st.mutate(P, Op.LOCK_RELEASE, { name, token, seq: ++seq, owner }, session).result as { released: boolean };
            expect(r.released).toBe(holder === c.h);
            if (r.released) holder = null;
          } else {
            const token = tokens.get(c.h) ?? 0;
            const r = st.mutate(P, Op.LOCK_RENEW, { name, token, leaseMs: 500, seq: ++seq, owner }, session).result as { renewed: boolean };
            expect(r.renewed).toBe(holder === c.h);
            if (r.renewed) until = clock.now() + 500;
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
