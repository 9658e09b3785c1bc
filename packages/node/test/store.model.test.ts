/**
 * Model-based test: random sequences of every cache op (with TTLs and a fake clock) against a
 * plain Map model. Every result, every read and the sizes must agree with the model.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decode, encode } from '@msgpack/msgpack';
import { ErrorCode, Op } from '@gridlink/protocol';
import { StoreError } from '../src/store/index.js';
import { CACHE_MUTATIONS, b, makeStore, s } from './store-helpers.js';

const PARTS = [0, 1];
const CACHES = ['plain', 'ttl'];
const CACHE_TTL = 40; // default TTL of cache 'ttl'
const KEYS = ['a', 'b', 'c', 'd', 'e'];
const VALUES: Uint8Array[] = [b('x'), b('y'), encode(0), encode(7), encode(-3), encode(Number.MAX_SAFE_INTEGER - 2)];

type Cmd =
  | { k: 'mut'; op: Op; p: number; cache: string; key: string; value: number; expected: number; ttl: number | undefined; delta: number; initial: number | undefined; keys: string[] }
  | { k: 'read'; op: Op; p: number; cache: string; key: string; keys: string[]; count: number }
  | { k: 'advance'; ms: number }
  | { k: 'sweep'; budget: number };

// Few distinct durations, so reads often land exactly on an expiry instant.
const ttlArb = fc.option(fc.constantFrom(0, 5, 10, 20, 40), { nil: undefined });
const READ_OPS = [Op.CACHE_GET, Op.CACHE_GET_ALL, Op.CACHE_CONTAINS_KEY, Op.CACHE_SIZE, Op.CACHE_SCAN] as const;

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('mut' as const),
      op: fc.constantFrom(...CACHE_MUTATIONS),
      p: fc.constantFrom(...PARTS),
      cache: fc.constantFrom(...CACHES),
      key: fc.constantFrom(...KEYS),
      value: fc.nat(VALUES.length - 1),
      expected: fc.nat(VALUES.length - 1),
      ttl: ttlArb,
      delta: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.constant(3)),
      initial: fc.option(fc.integer({ min: -10, max: 10 }), { nil: undefined }),
      keys: fc.subarray(KEYS),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      k: fc.constant('read' as const),
      op: fc.constantFrom(...READ_OPS),
      p: fc.constantFrom(...PARTS),
      cache: fc.constantFrom(...CACHES),
      key: fc.constantFrom(...KEYS),
      keys: fc.array(fc.constantFrom(...KEYS), { maxLength: 4 }),
      count: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('advance' as const), ms: fc.constantFrom(0, 1, 5, 10, 20) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('sweep' as const), budget: fc.integer({ min: 0, max: 6 }) }) },
);

interface MEntry {
  value: Uint8Array;
  expireAt: number;
}

class Model {
  readonly m = new Map<string, MEntry>();
  constructor(private readonly now: () => number) {}
  private id(p: number, cache: string, key: string): string {
    return `${p}|${cache}|${key}`;
  }
  get(p: number, cache: string, key: string): MEntry | undefined {
    const e = this.m.get(this.id(p, cache, key));
    if (e === undefined) return undefined;
    if (e.expireAt !== 0 && e.expireAt <= this.now()) return undefined;
    return e;
  }
  set(p: number, cache: string, key: string, value: Uint8Array, expireAt: number): void {
    this.m.set(this.id(p, cache, key), { value, expireAt });
  }
  del(p: number, cache: string, key: string): void {
    this.m.delete(this.id(p, cache, key));
  }
  liveKeys(p: number, cache: string): string[] {
    return KEYS.filter((k) => this.get(p, cache, k) !== undefined).sort();
  }
  liveCount(): number {
    let n = 0;
    for (const p of PARTS) for (const c of CACHES) n += this.liveKeys(p, c).length;
    return n;
  }
  expireAt(cache: string, ttl: number | undefined): number {
    const t = ttl ?? (cache === 'ttl' ? CACHE_TTL : 0);
    return t > 0 ? this.now() + t : 0;
  }
}

function counterOf(v: Uint8Array): number | 'type' {
  try {
    const n = decode(v);
    return typeof n === 'number' && Number.isSafeInteger(n) ? n : 'type';
  } catch {
    return 'type';
  }
}

function valueStr(v: unknown): unknown {
  return v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v;
}

/** Runs the command on the model; returns the expected result or an expected error code. */
function expectMut(model: Model, c: Extract<Cmd, { k: 'mut' }>): { result?: unknown; error?: number } {
  const { p, cache, key } = c;
  const value = VALUES[c.value]!;
  const expected = VALUES[c.expected]!;
  const cur = model.get(p, cache, key);
  const exp = model.expireAt(cache, c.ttl);
  switch (c.op) {
    case Op.CACHE_PUT:
      model.set(p, cache, key, value, exp);
      return { result: {} };
    case Op.CACHE_PUT_ALL:
      for (const k of c.keys) model.set(p, cache, k, value, exp);
      return { result: {} };
    case Op.CACHE_PUT_IF_ABSENT:
      if (cur === undefined) model.set(p, cache, key, value, exp);
      return { result: { applied: cur === undefined } };
    case Op.CACHE_REPLACE:
      if (cur !== undefined) model.set(p, cache, key, value, exp);
      return { result: { applied: cur !== undefined } };
    case Op.CACHE_REPLACE_IF_EQUALS: {
      const ok = cur !== undefined && Buffer.from(cur.value).equals(expected);
      if (ok) model.set(p, cache, key, value, exp);
      return { result: { applied: ok } };
    }
    case Op.CACHE_REMOVE:
      if (cur !== undefined) model.del(p, cache, key);
      return { result: { applied: cur !== undefined } };
    case Op.CACHE_REMOVE_IF_EQUALS: {
      const ok = cur !== undefined && Buffer.from(cur.value).equals(expected);
      if (ok) model.del(p, cache, key);
      return { result: { applied: ok } };
    }
    case Op.CACHE_GET_AND_PUT:
      model.set(p, cache, key, value, exp);
      return { result: { value: cur?.value ?? null } };
    case Op.CACHE_GET_AND_REMOVE:
      if (cur !== undefined) model.del(p, cache, key);
      return { result: { value: cur?.value ?? null } };
    case Op.CACHE_INCREMENT: {
      const base = cur === undefined ? (c.initial ?? 0) : counterOf(cur.value);
      if (base === 'type') return { error: ErrorCode.VALUE_TYPE };
      const next = base + c.delta;
      if (!Number.isSafeInteger(next)) return { error: ErrorCode.BAD_REQUEST };
      const e = cur !== undefined && c.ttl === undefined ? cur.expireAt : exp;
      model.set(p, cache, key, encode(next), e);
      return { result: { value: next } };
    }
    case Op.CACHE_CLEAR:
      for (const k of KEYS) model.del(p, cache, k);
      return { result: {} };
    default:
      throw new Error('unreachable');
  }
}

function payloadOf(c: Extract<Cmd, { k: 'mut' }>, seq: number): Record<string, unknown> {
  return {
    cache: c.cache,
    key: b(c.key),
    value: VALUES[c.value],
    expected: VALUES[c.expected],
    ttlMs: c.ttl,
    delta: c.delta,
    initial: c.initial,
    entries: c.keys.map((k) => [b(k), VALUES[c.value]]),
    seq,
  };
}

function norm(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x: unknown) => valueStr(x))) as unknown;
}

describe('NodeStore model-based', () => {
  it('agrees with a Map model over random op sequences with TTL and a fake clock', () => {
    fc.assert(
      fc.property(fc.array(cmdArb, { minLength: 10, maxLength: 120, size: 'max' }), (cmds) => {
        const { store, clock } = makeStore();
        store.createCache('ttl', { ttlMs: CACHE_TTL });
        const model = new Model(() => clock.now());
        let seq = 0;
        for (const c of cmds) {
          switch (c.k) {
            case 'advance':
              clock.advance(c.ms);
              break;
            case 'sweep': {
              const before = store.stats().sweepExamined;
              const removed = store.sweep(c.budget);
              expect(removed).toBeLessThanOrEqual(c.budget);
              expect(store.stats().sweepExamined - before).toBeLessThanOrEqual(c.budget);
              break;
            }
            case 'mut': {
              const want = expectMut(model, c);
              let got: unknown;
              let err: unknown;
              try {
                got = store.mutate(c.p, c.op, payloadOf(c, ++seq), 'sess').result;
              } catch (e) {
                err = e;
              }
              if (want.error !== undefined) {
                expect(err).toBeInstanceOf(StoreError);
                expect((err as StoreError).wireCode).toBe(want.error);
              } else {
                expect(err).toBeUndefined();
                expect(norm(got)).toEqual(norm(want.result));
              }
              break;
            }
            case 'read': {
              const { p, cache } = c;
              if (c.op === Op.CACHE_GET) {
                const r = store.read(p, c.op, { cache, key: b(c.key) });
                expect(norm(r)).toEqual(norm({ value: model.get(p, cache, c.key)?.value ?? null }));
              } else if (c.op === Op.CACHE_GET_ALL) {
                const r = store.read(p, c.op, { cache, keys: c.keys.map(b) });
                expect(norm(r)).toEqual(norm({ values: c.keys.map((k) => model.get(p, cache, k)?.value ?? null) }));
              } else if (c.op === Op.CACHE_CONTAINS_KEY) {
                expect(store.read(p, c.op, { cache, key: b(c.key) })).toEqual({ found: model.get(p, cache, c.key) !== undefined });
              } else if (c.op === Op.CACHE_SIZE) {
                expect(store.read(p, c.op, { cache })).toEqual({ size: model.liveKeys(p, cache).length });
              } else {
                const seen: string[] = [];
                let cursor: Uint8Array | null = null;
                for (let guard = 0; guard < 20; guard++) {
                  const r = store.read(p, Op.CACHE_SCAN, { cache, partition: p, cursor, count: c.count }) as {
                    keys: Uint8Array[];
                    cursor: Uint8Array | null;
                  };
                  expect(r.keys.length).toBeLessThanOrEqual(c.count);
                  seen.push(...r.keys.map((k) => s(k)!));
                  cursor = r.cursor;
                  if (cursor === null) break;
                }
                expect(cursor).toBeNull();
                expect(seen).toEqual(model.liveKeys(p, cache));
              }
              break;
            }
          }
          expect(store.stats().entries).toBeGreaterThanOrEqual(model.liveCount());
        }
        // everything expired is gone after a generous sweep; counts then match exactly
        store.sweep(1_000_000);
        expect(store.stats().entries).toBe(model.liveCount());
        let bytes = 0;
        for (const [id, e] of model.m) {
          if (e.expireAt !== 0 && e.expireAt <= clock.now()) continue;
          bytes += id.split('|')[2]!.length + e.value.byteLength;
        }
        expect(store.stats().bytes).toBe(bytes);
      }),
      { numRuns: 300 },
    );
  });

  it('scan under concurrent inserts and removes: no key twice, every key present throughout returned', () => {
    const ALL = Array.from({ length: 30 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    const stepArb = fc.record({
      count: fc.integer({ min: 1, max: 5 }),
      changes: fc.array(fc.record({ key: fc.constantFrom(...ALL), insert: fc.boolean() }), { maxLength: 4 }),
    });
    fc.assert(
      fc.property(fc.subarray(ALL), fc.array(stepArb, { maxLength: 40, size: 'max' }), (initial, steps) => {
        const { store } = makeStore();
        let seq = 0;
        for (const k of initial) store.mutate(3, Op.CACHE_PUT, { cache: 'c', key: b(k), value: b('v'), seq: ++seq }, 's');
        const everPresent = new Set(initial);
        const removedOnce = new Set<string>();
        const seen: string[] = [];
        let cursor: Uint8Array | null = null;
        let done = false;
        const page = (count: number): void => {
          const r = store.read(3, Op.CACHE_SCAN, { cache: 'c', partition: 3, cursor, count }) as { keys: Uint8Array[]; cursor: Uint8Array | null };
          seen.push(...r.keys.map((k) => s(k)!));
          cursor = r.cursor;
          done = cursor === null;
        };
        for (const st of steps) {
          if (done) break;
          page(st.count);
          for (const ch of st.changes) {
            if (ch.insert) {
              store.mutate(3, Op.CACHE_PUT, { cache: 'c', key: b(ch.key), value: b('v'), seq: ++seq }, 's');
              everPresent.add(ch.key);
            } else {
              const r = store.mutate(3, Op.CACHE_REMOVE, { cache: 'c', key: b(ch.key), seq: ++seq }, 's');
              if ((r.result as { applied: boolean }).applied) removedOnce.add(ch.key);
            }
          }
        }
        while (!done) page(5);
        expect(new Set(seen).size).toBe(seen.length);
        for (const k of seen) expect(everPresent.has(k)).toBe(true);
        for (const k of initial) if (!removedOnce.has(k)) expect(seen).toContain(k);
      }),
      { numRuns: 300 },
    );
  });
});
