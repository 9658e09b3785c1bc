/**
 * When the coordinator may skip a step (`StepBasis`): properties that make skipping invisible.
 *
 * - A lease compares the same field by field exactly when the key string the coordinator used to
 *   build every tick (its `synced` and `caughtUp` stringified) was the same.
 * - While an auto-adjust is pending, a step that found nothing to write finds nothing again on
 *   the same inputs at any time before the adjust is due (`adjustDue`), and something once it is.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { adjustDue, initialTopology, type CacheRule, type LeaseRecord, type TopologyRecord } from '../src/control/topology.js';
import { coordinatorStep } from '../src/membership/handback.js';
import { StepBasis, sameAddress, sameStepInputs } from '../src/membership/step-basis.js';

/** The part of the key string the coordinator built per alive lease before `StepBasis`. */
const oldKey = (l: LeaseRecord): string => `${l.id}:${l.epoch}:${l.leaving === true ? 'L' : ''}:${JSON.stringify(l.synced)}:${JSON.stringify(l.caughtUp ?? {})}`;

/** A partition → version map, its keys set in the order generated (partitions, and now and then another key). */
const versions = fc.array(fc.tuple(fc.oneof(fc.nat(40).map(String), fc.constantFrom('x', 'y')), fc.nat(5)), { maxLength: 8 }).map((pairs) => {
  const out: Record<string, number> = {};
  for (const [k, v] of pairs) out[k] = v;
  return out;
});

const leaseArb: fc.Arbitrary<LeaseRecord> = fc
  .record({
    id: fc.constantFrom('n1', 'n2'),
    epoch: fc.constantFrom('e1', 'e2'),
    port: fc.constantFrom(1, 2),
    synced: versions,
    leaving: fc.option(fc.boolean(), { nil: undefined }),
    caughtUp: fc.option(versions, { nil: undefined }),
    zone: fc.option(fc.constantFrom('z1', 'z2'), { nil: undefined }),
  })
  .map((r) => {
    const l: LeaseRecord = { id: r.id, epoch: r.epoch, host: '127.0.0.1', port: r.port, synced: r.synced };
    if (r.leaving !== undefined) l.leaving = r.leaving;
    if (r.caughtUp !== undefined) l.caughtUp = r.caughtUp;
    if (r.zone !== undefined) l.zone = r.zone;
    return l;
  });

/** A renewal as received: a new object with the same content. */
const renewal = (l: LeaseRecord): LeaseRecord => JSON.parse(JSON.stringify(l)) as LeaseRecord;

/** The lease with its maps' keys set in another order (partition keys still enumerate in numeric order). */
function reordered(l: LeaseRecord, seed: number): LeaseRecord {
  const shuffle = (m: Record<string, number>): Record<string, number> => {
    const keys = Object.keys(m);
    const out: Record<string, number> = {};
    for (let i = 0; i < keys.length; i++) {
      const k = keys[(i + seed) % keys.length]!;
      out[k] = m[k]!;
    }
    return out;
  };
  const copy = JSON.parse(JSON.stringify(l)) as LeaseRecord;
  copy.synced = shuffle(copy.synced);
  if (copy.caughtUp !== undefined) copy.caughtUp = shuffle(copy.caughtUp);
  return copy;
}

describe('a lease compared with the last step', () => {
  it('is the same to the step exactly when the key string was the same (property)', () => {
    fc.assert(
      fc.property(leaseArb, leaseArb, fc.nat(7), (a, b, seed) => {
        for (const [x, y] of [
          [a, b],
          [a, reordered(a, seed)],
        ] as const) {
          expect(sameStepInputs(x, y)).toBe(oldKey(x) === oldKey(y));
        }
        // Another port under the same epoch: the same to the key, not in every field.
        const moved = { ...renewal(a), port: a.port + 1 };
        expect([sameStepInputs(a, moved), sameAddress(a, moved)]).toEqual([true, false]);
      }),
      { numRuns: 500 },
    );
  });

  it('a basis answers changed exactly when the key string of the tick differs (property)', () => {
    fc.assert(
      fc.property(fc.array(leaseArb, { maxLength: 3 }), fc.array(leaseArb, { maxLength: 3 }), fc.nat(1), fc.nat(1), (before, after, v, c) => {
        const key = (version: number, caches: string, alive: LeaseRecord[]): string => `${version}|${caches}|${alive.map(oldKey).join(';')}`;
        const basis = new StepBasis(0, '[]', before);
        const caches = c === 0 ? '[]' : '[{"name":"a","backups":1,"policy":"IGNORE"}]';
        const same = basis.compare(v, caches, after);
        expect(same === 'changed').toBe(key(0, '[]', before) !== key(v, caches, after));
        // Renewals of the same leases: the same, compared by identity from the second tick on.
        const renewed = before.map(renewal);
        const again = new StepBasis(3, '[]', before);
        expect(again.compare(3, '[]', renewed)).toBe('same');
        expect(again.compare(3, '[]', renewed)).toBe('same');
      }),
      { numRuns: 300 },
    );
  });
});

const IDS = ['n1', 'n2', 'n3', 'n4'];
const leaseOf = (id: string, synced: Record<string, number> = {}): LeaseRecord => ({ id, epoch: `${id}-1`, host: '127.0.0.1', port: 1, synced });

/** Steps `rec` on `alive` at `now` until it writes nothing more (at most a few steps). */
function settle(rec: TopologyRecord, alive: LeaseRecord[], now: number, caches: CacheRule[]): TopologyRecord {
  let cur = rec;
  for (let i = 0; i < 10; i++) {
    const next = coordinatorStep(cur, alive, now, caches);
    if (next === null) return cur;
    cur = next;
  }
  throw new Error('the steps did not settle');
}

describe('a pending auto-adjust', () => {
  it('a step that wrote nothing writes nothing on the same inputs until the adjust is due, and something once it is (property)', () => {
    const scenario = fc.record({
      baseline: fc.subarray(IDS, { minLength: 1 }),
      alive: fc.subarray(IDS, { minLength: 1 }),
      // Partitions some alive node reports pulled (at version 2, when it was asked at 1 or 2).
      synced: fc.array(fc.tuple(fc.constantFrom(...IDS), fc.nat(7)), { maxLength: 6 }),
      enabled: fc.boolean(),
      soft: fc.integer({ min: 1, max: 5000 }),
      hard: fc.integer({ min: 1, max: 20_000 }),
      caches: fc.constantFrom<CacheRule[]>([], [{ name: 'i', backups: 0, policy: 'IGNORE' }], [{ name: 'r', backups: 0, policy: 'READ_WRITE_SAFE' }]),
      t0: fc.integer({ min: 0, max: 10_000 }),
      later: fc.array(fc.integer({ min: -1000, max: 30_000 }), { minLength: 1, maxLength: 8 }),
    });
    // Cases met with an adjust pending: not yet due, and due (the property is not vacuous).
    const met = { waiting: 0, due: 0 };
    fc.assert(
      fc.property(scenario, (s) => {
        const autoAdjust = { enabled: s.enabled, softTimeoutMs: s.soft, hardTimeoutMs: s.hard };
        const first = initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: s.baseline.map((id) => leaseOf(id)), autoAdjust });
        const synced: Record<string, Record<string, number>> = {};
        for (const [id, p] of s.synced) (synced[id] ??= {})[String(p)] = 2;
        const alive = s.alive.map((id) => leaseOf(id, synced[id] ?? {}));
        const prev = settle(first, alive, s.t0, s.caches);
        expect(coordinatorStep(prev, alive, s.t0, s.caches)).toBeNull();
        for (const d of s.later) {
          const t = s.t0 + d;
          const next = coordinatorStep(prev, alive, t, s.caches);
          if (!adjustDue(prev.adjust, prev.autoAdjust, t)) {
            if (prev.adjust !== null) met.waiting++;
            expect(next).toBeNull();
          } else {
            met.due++;
            // Due: the live set becomes the baseline.
            expect(next?.adjust).toBeNull();
            expect(next?.baseline.map((n) => n.id).sort()).toEqual([...s.alive].sort());
          }
        }
      }),
      { numRuns: 400 },
    );
    expect(met.waiting).toBeGreaterThan(50);
    expect(met.due).toBeGreaterThan(50);
  });
});
