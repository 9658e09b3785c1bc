import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IntMap } from '@gridlink/protocol';

type Cmd = { t: 'set'; k: number; v: number } | { t: 'del'; k: number } | { t: 'get'; k: number };

/**
 * Keys that share a first slot in the smallest table (16 slots; IntMap hashes a key by
 * multiplying its low 32 bits with 2^32/φ and keeping the top 4 bits): five each for slots 15,
 * 0 and 1, so runs form, collide and wrap around past the last slot.
 */
const home16 = (k: number): number => Math.imul(k, 0x9e3779b1) >>> 28;
const SMALL = Array.from({ length: 2000 }, (_, k) => k);
const COLLIDING = [15, 0, 1].flatMap((h) => SMALL.filter((k) => home16(k) === h).slice(0, 5));

/** Keys from a small range (collisions, re-sets, deletes of present keys) and a few huge ones. */
const key = fc.oneof(
  // Few keys, so the table stays small and full enough for long probe runs that wrap around.
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 24 }) },
  { weight: 8, arbitrary: fc.constantFrom(...COLLIDING) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }).map((i) => 2 ** 32 + i * 64) },
);
const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  fc.record({ t: fc.constant('set' as const), k: key, v: fc.integer() }),
  fc.record({ t: fc.constant('del' as const), k: key }),
  fc.record({ t: fc.constant('get' as const), k: key }),
);

function sameAs(m: IntMap<number>, model: Map<number, number>): void {
  expect(m.size).toBe(model.size);
  const seen = new Map<number, number>();
  m.forEach((v, k) => seen.set(k, v));
  expect(seen).toEqual(model);
  expect(m.values().sort((a, b) => a - b)).toEqual([...model.values()].sort((a, b) => a - b));
  for (const [k, v] of model) {
    expect(m.get(k)).toBe(v);
    expect(m.has(k)).toBe(true);
  }
}

describe('IntMap', () => {
  it('answers like a Map under any sequence of sets, deletes and gets', () => {
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 400 }), (cmds) => {
        const m = new IntMap<number>();
        const model = new Map<number, number>();
        for (const c of cmds) {
          if (c.t === 'set') {
            m.set(c.k, c.v);
            model.set(c.k, c.v);
          } else if (c.t === 'del') {
            expect(m.delete(c.k)).toBe(model.get(c.k));
            model.delete(c.k);
          } else {
            expect(m.get(c.k)).toBe(model.get(c.k));
            expect(m.has(c.k)).toBe(model.has(c.k));
          }
        }
        sameAs(m, model);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps its slots under request-like churn: a sliding window of ids, settled out of order', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 2 ** 32 }), fc.infiniteStream(fc.nat()), (window, start, picks) => {
        const m = new IntMap<number>();
        const model = new Map<number, number>();
        const open: number[] = [];
        let next = start;
        const it = picks[Symbol.iterator]();
        for (let i = 0; i < window; i++) {
          m.set(next, next);
          model.set(next, next);
          open.push(next++);
        }
        const capacity = m.capacity;
        for (let i = 0; i < 3000; i++) {
          // One request settles (any of the open ones), the next one is sent.
          const j = it.next().value! % open.length;
          const id = open[j]!;
          open[j] = open[open.length - 1]!;
          open.pop();
          expect(m.delete(id)).toBe(id);
          model.delete(id);
          m.set(next, next);
          model.set(next, next);
          open.push(next++);
        }
        // The arrays were never rebuilt: nothing for the collector beyond what the values are.
        expect(m.capacity).toBe(capacity);
        sameAs(m, model);
      }),
      { numRuns: 40 },
    );
  });

  it('grows past half full and, above 1024 slots, shrinks below an eighth, so a burst does not hold its memory', () => {
    const m = new IntMap<number>();
    for (let i = 0; i < 10_000; i++) m.set(i, i);
    expect(m.capacity).toBeGreaterThanOrEqual(20_000);
    for (let i = 0; i < 9_990; i++) m.delete(i);
    expect(m.size).toBe(10);
    expect(m.capacity).toBe(1024);
    for (let i = 9_990; i < 10_000; i++) expect(m.get(i)).toBe(i);
    m.clear();
    expect(m.size).toBe(0);
    expect(m.get(9_995)).toBeUndefined();
  });

  it('keeps its slots while the count swings between a few and a few hundred (requests in bursts)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 100, max: 500 })), { minLength: 1, maxLength: 30 }), (peak, swings) => {
        const m = new IntMap<number>();
        let next = 0;
        let low = 0;
        for (let i = 0; i < peak; i++) m.set(next++, i);
        const capacity = () => m.capacity;
        let seen = capacity();
        for (const [down, up] of swings) {
          // Settle the oldest down to `down` held, then send up to `up` held.
          while (m.size > down) m.delete(low++);
          expect(capacity()).toBe(seen);
          while (m.size < up) m.set(next++, 0);
          // Growing is allowed (the peak grew); shrinking back never is, at this size.
          expect(capacity()).toBeGreaterThanOrEqual(seen);
          seen = capacity();
        }
        for (let k = low; k < next; k++) expect(m.get(k)).not.toBeUndefined();
      }),
      { numRuns: 100 },
    );
  });

  it('refuses a key that is not a non-negative safe integer', () => {
    const m = new IntMap<string>();
    for (const k of [-1, 1.5, Number.NaN, Infinity, 2 ** 53]) expect(() => m.set(k, 'x')).toThrow(RangeError);
    expect(m.size).toBe(0);
    expect(m.get(-1)).toBeUndefined();
    expect(m.delete(1.5)).toBeUndefined();
    expect(m.has(-1)).toBe(false);
    expect(m.delete(-1)).toBeUndefined();
    expect(m.size).toBe(0);
  });
});
