/**
 * Properties of the per-node memory bound (LRU eviction) and the bounded TTL sweep.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Op } from '@gridlink/protocol';
import { NodeStore } from '../src/store/index.js';
import { FakeClock, b } from './store-helpers.js';

const KEYS = Array.from({ length: 12 }, (_, i) => `k${i}`);

type Cmd =
  | { k: 'put'; p: number; key: string; size: number }
  | { k: 'get'; p: number; key: string }
  | { k: 'remove'; p: number; key: string };

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ k: fc.constant('put' as const), p: fc.nat(2), key: fc.constantFrom(...KEYS), size: fc.integer({ min: 0, max: 12 }) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('get' as const), p: fc.nat(2), key: fc.constantFrom(...KEYS) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('remove' as const), p: fc.nat(2), key: fc.constantFrom(...KEYS) }) },
);

describe('NodeStore LRU bound', () => {
  it('never exceeds maxEntries / maxBytes and evicts exactly the least recently used entries', () => {
    fc.assert(
      fc.property(
        fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
        fc.option(fc.integer({ min: 5, max: 60 }), { nil: undefined }),
        fc.array(cmdArb, { minLength: 1, maxLength: 150, size: 'max' }),
        (maxEntries, maxBytes, cmds) => {
          const store = new NodeStore({ clock: new FakeClock(), maxEntries, maxBytes });
          // model: insertion-ordered map, oldest use first
          const lru = new Map<string, number>(); // id -> bytes
          let evictions = 0;
          let bytes = 0;
          let seq = 0;
          const use = (id: string, size: number): void => {
            bytes -= lru.get(id) ?? 0;
            lru.delete(id);
            lru.set(id, size);
            bytes += size;
            while (lru.size > (maxEntries ?? Infinity) || bytes > (maxBytes ?? Infinity)) {
              const [oldest, sz] = lru.entries().next().value as [string, number];
              lru.delete(oldest);
              bytes -= sz;
              evictions++;
            }
          };
          for (const c of cmds) {
            const id = `${c.p}/${c.key}`;
            if (c.k === 'put') {
              store.mutate(c.p, Op.CACHE_PUT, { cache: 'c', key: b(c.key), value: new Uint8Array(c.size), seq: ++seq }, 's');
              use(id, c.key.length + c.size);
            } else if (c.k === 'get') {
              const r = store.read(c.p, Op.CACHE_GET, { cache: 'c', key: b(c.key) }) as { value: Uint8Array | null };
              expect(r.value !== null).toBe(lru.has(id));
              if (lru.has(id)) use(id, lru.get(id)!);
            } else {
              const r = store.mutate(c.p, Op.CACHE_REMOVE, { cache: 'c', key: b(c.key), seq: ++seq }, 's');
              expect((r.result as { applied: boolean }).applied).toBe(lru.has(id));
              if (lru.has(id)) {
                bytes -= lru.get(id)!;
                lru.delete(id);
              }
            }
            const st = store.stats();
            if (st.entries > (maxEntries ?? Infinity) || st.bytes > (maxBytes ?? Infinity)) {
              expect.fail(`bound exceeded: ${JSON.stringify(st)}`);
            }
            if (st.entries !== lru.size || st.bytes !== bytes || st.evictions !== evictions) {
              expect({ entries: st.entries, bytes: st.bytes, evictions: st.evictions }).toEqual({ entries: lru.size, bytes, evictions });
            }
          }
          for (const key of KEYS) {
            for (let p = 0; p <= 2; p++) {
              const found = (store.read(p, Op.CACHE_CONTAINS_KEY, { cache: 'c', key: b(key) }) as { found: boolean }).found;
              expect(found).toBe(lru.has(`${p}/${key}`));
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a backup applying records is bounded too', () => {
    const clock = new FakeClock();
    const primary = new NodeStore({ clock });
    const backup = new NodeStore({ clock, maxEntries: 5 });
    for (let i = 0; i < 20; i++) {
      const { record } = primary.mutate(1, Op.CACHE_PUT, { cache: 'c', key: b(`k${i}`), value: b('v'), seq: i + 1 }, 's');
      expect(backup.applyRecord(1, record!)).toBe(true);
    }
    expect(backup.stats()).toMatchObject({ entries: 5, evictions: 15 });
    expect(backup.updateCounter(1)).toBe(20);
  });
});

describe('NodeStore sweep', () => {
  it('examines at most the budget per call and eventually removes every expired entry and lease', () => {
    const opArb = fc.oneof(
      fc.record({ k: fc.constant('put' as const), p: fc.nat(3), key: fc.nat(30), ttl: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ k: fc.constant('lock' as const), p: fc.nat(3), key: fc.nat(5), ttl: fc.integer({ min: 1, max: 50 }) }),
      fc.record({ k: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 20 }) }),
      fc.record({ k: fc.constant('sweep' as const), budget: fc.integer({ min: 0, max: 7 }) }),
    );
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 200, size: 'max' }), (ops) => {
        const clock = new FakeClock();
        const store = new NodeStore({ clock, dedupWindowMs: 30 });
        const freed: string[] = [];
        store.onLockFreed((p, name) => freed.push(`${p}/${Buffer.from(name).toString()}`));
        let seq = 0;
        for (const o of ops) {
          if (o.k === 'put') {
            store.mutate(o.p, Op.CACHE_PUT, { cache: 'c', key: b(`k${o.key}`), value: b('v'), ttlMs: o.ttl, seq: ++seq }, 's');
          } else if (o.k === 'lock') {
            store.mutate(o.p, Op.LOCK_TRY_ACQUIRE, { name: b(`L${o.key}`), leaseMs: o.ttl, seq: ++seq }, `s${seq % 3}`);
          } else if (o.k === 'advance') {
            clock.advance(o.ms);
          } else {
            const before = store.stats().sweepExamined;
            const removed = store.sweep(o.budget);
            const examined = store.stats().sweepExamined - before;
            expect(examined).toBeLessThanOrEqual(o.budget);
            expect(removed).toBeLessThanOrEqual(examined);
          }
        }
        // with time moved past every expiry, repeated small sweeps clear everything
        clock.advance(1000);
        const locksBefore = store.stats().locks;
        const freedBefore = freed.length;
        for (let i = 0; i < 10_000; i++) {
          const before = store.stats().sweepExamined;
          store.sweep(3);
          if (store.stats().sweepExamined === before) break; // nothing left to look at
        }
        const st = store.stats();
        // entries last written with ttl 0 never expire
        const forever = new Set<string>();
        const last = new Map<string, number>();
        for (const o of ops) if (o.k === 'put') last.set(`${o.p}/${o.key}`, o.ttl);
        for (const [k, t] of last) if (t === 0) forever.add(k);
        expect(st.entries).toBe(forever.size);
        expect(st.locks).toBe(0);
        expect(st.dedupEntries).toBe(0);
        expect(freed.length - freedBefore).toBe(locksBefore);
      }),
      { numRuns: 200 },
    );
  });
});
