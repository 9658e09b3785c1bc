/**
 * The entry arena (store/entries.ts) against a Map model, with entries kept as strings, as bytes
 * of their own (big entries), or both mixed: every read answers the same whatever the form, and
 * an entry that grows past the threshold or shrinks below it changes form without losing itself.
 * Big entries' arrays are recycled (ADR 0045): no live entry and no view handed out ever sees
 * another entry's bytes. Small entries live in slab cells (ADR 0078), rewritten in place, moved
 * out of slabs that empty, and the slabs given back.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { EntryArena, NONE, POOL_MAX_BYTES, POOL_MAX_ENTRY_BYTES, SLAB_BYTES, capacityFor, cellUnits } from '../src/store/entries.js';

type Cmd =
  | { k: 'set'; key: number; value: Uint8Array; inPlace: boolean; expireAt: number }
  | { k: 'remove'; key: number }
  | { k: 'touch'; key: number };

const keyOf = (n: number): Uint8Array => Uint8Array.from(`k${n}`.padEnd(3 + (n % 5), '.'), (c) => c.charCodeAt(0));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const latin1 = (b: Uint8Array): string => Buffer.from(b).toString('latin1');

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      k: fc.constant('set' as const),
      key: fc.nat(12),
      value: fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ minLength: 500, maxLength: 600 })),
      inPlace: fc.boolean(),
      expireAt: fc.nat(5),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('remove' as const), key: fc.nat(12) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('touch' as const), key: fc.nat(12) }) },
);

describe('EntryArena', () => {
  it('answers like a map whatever form its entries take (strings, own bytes, mixed)', () => {
    fc.assert(
      fc.property(fc.array(cmdArb, { maxLength: 120 }), fc.constantFrom(1, 10, 512, Infinity), (cmds, big) => {
        const arena = new EntryArena(big);
        const shard = arena.newShard(0, 'c');
        const model = new Map<number, { value: Uint8Array; expireAt: number }>();
        let bytes = 0;
        for (const c of cmds) {
          const key = keyOf(c.key);
          const held = model.get(c.key);
          if (c.k === 'set') {
            if (c.inPlace) {
              // As a binary replication record lays them out: some bytes, key, value, more bytes.
              const rec = Uint8Array.from([9, 9, ...key, ...c.value, 9]);
              arena.setIn(shard, rec, 2, key.length, c.value.length, c.expireAt);
              rec.fill(0); // the arena kept its own copy
            } else arena.set(shard, key, c.value, c.expireAt);
            expect(arena.previousExpireAt).toBe(held === undefined ? -1 : held.expireAt);
            bytes += key.length + c.value.length - (held === undefined ? 0 : key.length + held.value.length);
            model.set(c.key, { value: Uint8Array.from(c.value), expireAt: c.expireAt });
          } else if (c.k === 'remove') {
            const slot = arena.find(shard, key);
            expect(slot === NONE).toBe(held === undefined);
            if (slot !== NONE) {
              arena.remove(slot);
              bytes -= key.length + held!.value.length;
              model.delete(c.key);
            }
          } else {
            const slot = arena.find(shard, key);
            if (slot !== NONE) arena.touch(slot);
          }
          expect(arena.count).toBe(model.size);
          expect(arena.bytes).toBe(bytes);
        }
        for (let n = 0; n <= 12; n++) {
          const key = keyOf(n);
          const m = model.get(n);
          const slot = arena.find(shard, key);
          expect(arena.findKey(shard, latin1(key))).toBe(slot);
          if (m === undefined) {
            expect(slot).toBe(NONE);
            continue;
          }
          expect(slot).not.toBe(NONE);
          expect(hex(arena.keyBytes(slot))).toBe(hex(key));
          expect(hex(arena.valueBytes(slot))).toBe(hex(m.value));
          expect(hex(arena.ownValue(slot))).toBe(hex(m.value));
          expect(arena.keyString(slot)).toBe(latin1(key));
          expect(arena.valueString(slot)).toBe(latin1(m.value));
          expect(arena.valueLength(slot)).toBe(m.value.length);
          expect(arena.keyLength(slot)).toBe(key.length);
          expect(arena.expireAt(slot)).toBe(m.expireAt);
          expect(arena.valueEquals(slot, m.value)).toBe(true);
          expect(arena.valueEquals(slot, Uint8Array.from([...m.value, 1]))).toBe(false);
          if (m.value.length > 0) expect(arena.valueEquals(slot, m.value.map((x) => x ^ 1))).toBe(false);
        }
        // Every slot of the shard is one of the model's keys, once.
        const seen = [...arena.slots(shard)].map((s) => arena.keyString(s)).sort();
        expect(seen).toEqual([...model.keys()].map((n) => latin1(keyOf(n))).sort());
      }),
      { numRuns: 300 },
    );
  });

  it('recycles the array of an overwritten or removed big entry, and only that', () => {
    const arena = new EntryArena();
    const shard = arena.newShard(0, 'c');
    const value = (fill: number, n = 1000): Uint8Array => new Uint8Array(n).fill(fill);
    arena.set(shard, keyOf(1), value(1), 0);
    arena.set(shard, keyOf(2), value(2), 0);
    expect(arena.pooledBytes).toBe(0);
    arena.set(shard, keyOf(1), value(3, 2000), 0); // the first array of key 1 is freed...
    const cap = capacityFor(keyOf(1).length + 1000);
    expect(arena.pooledBytes).toBe(cap);
    arena.set(shard, keyOf(3), value(4), 0); // ...and taken by the next big entry of its class
    expect(arena.pooledBytes).toBe(0);
    arena.remove(arena.find(shard, keyOf(2)));
    expect(arena.pooledBytes).toBe(capacityFor(keyOf(2).length + 1000));
    for (const [k, fill, n] of [[1, 3, 2000], [3, 4, 1000]] as const) expect(arena.valueBytes(arena.find(shard, keyOf(k)))).toEqual(value(fill, n));
  });

  it('writes a big entry of the same capacity class into its own array when it was never lent (ADR 0076)', () => {
    const arena = new EntryArena();
    const shard = arena.newShard(0, 'c');
    const key = keyOf(1);
    arena.set(shard, key, new Uint8Array(1000).fill(1), 0);
    arena.set(shard, keyOf(2), new Uint8Array(1000).fill(2), 0);
    arena.remove(arena.find(shard, keyOf(2)));
    const pooled = arena.pooledBytes;
    expect(pooled).toBeGreaterThan(0);
    // Same size, a shorter value of the same class, through both write paths: no array taken
    // from the pool or given back to it.
    arena.set(shard, key, new Uint8Array(1000).fill(3), 5);
    expect(arena.previousExpireAt).toBe(0);
    arena.setIn(shard, Uint8Array.from([...key, ...new Uint8Array(1000).fill(4)]), 0, key.length, 1000, 6);
    expect(arena.previousExpireAt).toBe(5);
    arena.set(shard, key, new Uint8Array(990).fill(5), 7);
    expect(arena.pooledBytes).toBe(pooled);
    expect(arena.bytes).toBe(key.length + 990);
    const slot = arena.find(shard, key);
    expect(arena.valueString(slot)).toBe('\x05'.repeat(990));
    expect(arena.expireAt(slot)).toBe(7);
    // Once a view was handed out, the next write takes another array and leaves this one to its reader.
    const view = arena.valueBytes(slot);
    arena.set(shard, key, new Uint8Array(990).fill(6), 0);
    expect(arena.pooledBytes).toBe(pooled - capacityFor(key.length + 990));
    expect(view).toEqual(new Uint8Array(990).fill(5));
    expect(arena.valueString(arena.find(shard, key))).toBe('\x06'.repeat(990));
  });

  it('never reuses an array a view was handed out of: the view keeps its bytes', () => {
    const arena = new EntryArena();
    const shard = arena.newShard(0, 'c');
    arena.set(shard, keyOf(1), new Uint8Array(1000).fill(1), 0);
    const view = arena.valueBytes(arena.find(shard, keyOf(1))); // as a get reply holds it
    const keyView = arena.keyBytes(arena.find(shard, keyOf(1)));
    arena.set(shard, keyOf(1), new Uint8Array(1000).fill(2), 0);
    expect(arena.pooledBytes).toBe(0);
    for (let k = 2; k < 6; k++) arena.set(shard, keyOf(k), new Uint8Array(1000).fill(9), 0);
    expect(view).toEqual(new Uint8Array(1000).fill(1));
    expect(keyView).toEqual(keyOf(1));
    // The entry's new array was not lent: it is recycled when it goes.
    arena.remove(arena.find(shard, keyOf(1)));
    expect(arena.pooledBytes).toBeGreaterThan(0);
  });

  it('keeps at most POOL_MAX_BYTES of freed arrays', () => {
    const arena = new EntryArena();
    const shard = arena.newShard(0, 'c');
    const n = Math.ceil((POOL_MAX_BYTES * 2) / POOL_MAX_ENTRY_BYTES);
    for (let k = 0; k < n; k++) arena.set(shard, keyOf(k), new Uint8Array(POOL_MAX_ENTRY_BYTES - 64), 0);
    for (let k = 0; k < n; k++) arena.remove(arena.find(shard, keyOf(k)));
    expect(arena.pooledBytes).toBeGreaterThan(POOL_MAX_BYTES - POOL_MAX_ENTRY_BYTES);
    expect(arena.pooledBytes).toBeLessThanOrEqual(POOL_MAX_BYTES);
    // An entry bigger than the pooled classes gets an array of its own size.
    expect(capacityFor(POOL_MAX_ENTRY_BYTES + 1)).toBe(POOL_MAX_ENTRY_BYTES + 1);
  });

  it('capacity classes: at least the entry, at most 1/8 (or 64 B) above it, multiples of 64, monotone', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: POOL_MAX_ENTRY_BYTES }), fc.integer({ min: 1, max: POOL_MAX_ENTRY_BYTES }), (a, b) => {
        const c = capacityFor(a);
        expect(c).toBeGreaterThanOrEqual(a);
        expect(c - a).toBeLessThan(Math.max(64, a / 8));
        expect(c % 64).toBe(0);
        if (a <= b) expect(capacityFor(a)).toBeLessThanOrEqual(capacityFor(b));
      }),
    );
  });

  it('under any mix of writes, removals and reads, every entry and every view handed out keeps its own bytes', () => {
    type Op = { k: 'set'; key: number; size: number; fill: number; inPlace: boolean } | { k: 'remove'; key: number } | { k: 'read'; key: number; of: 'key' | 'value' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ k: fc.constant('set' as const), key: fc.nat(8), size: fc.constantFrom(4, 500, 505, 520, 600, 1100, 2000), fill: fc.nat(255), inPlace: fc.boolean() }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('remove' as const), key: fc.nat(8) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('read' as const), key: fc.nat(8), of: fc.constantFrom('key' as const, 'value' as const) }) },
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 150 }), (ops) => {
        const arena = new EntryArena();
        const shard = arena.newShard(0, 'c');
        const model = new Map<number, Uint8Array>();
        const views: { view: Uint8Array; bytes: string }[] = [];
        for (const op of ops) {
          const key = keyOf(op.key);
          const slot = arena.find(shard, key);
          if (op.k === 'set') {
            const value = new Uint8Array(op.size).fill(op.fill);
            if (op.inPlace) {
              const rec = Uint8Array.from([7, ...key, ...value, 7]);
              arena.setIn(shard, rec, 1, key.length, value.length, 0);
              rec.fill(0);
            } else arena.set(shard, key, value, 0);
            model.set(op.key, value);
          } else if (op.k === 'remove') {
            if (slot !== NONE) arena.remove(slot);
            model.delete(op.key);
          } else if (slot !== NONE) {
            const view = op.of === 'key' ? arena.keyBytes(slot) : arena.valueBytes(slot);
            views.push({ view, bytes: hex(view) });
          }
          expect(arena.pooledBytes).toBeLessThanOrEqual(POOL_MAX_BYTES);
          for (const [k, v] of model) expect(arena.valueString(arena.find(shard, keyOf(k)))).toBe(latin1(v));
          for (const v of views) expect(hex(v.view)).toBe(v.bytes);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('slabs: cells of 16 B classes, one slab per class until it fills, no cell shared by two live entries (property)', () => {
    // Sizes around a few classes, enough keys to fill several slabs of the larger ones, removals
    // that empty slabs: every entry keeps its bytes through evacuations, and the slabs held stay
    // within what the live entries need (each class: its cells rounded up to slabs, plus the
    // one slab every class keeps, plus the slab a quarter-full one may still be).
    const sizes = [3, 16, 17, 200, 300, 470];
    const opArb = fc.oneof(
      { weight: 4, arbitrary: fc.record({ k: fc.constant('set' as const), key: fc.nat(699), size: fc.constantFrom(...sizes), fill: fc.nat(255) }) },
      { weight: 3, arbitrary: fc.record({ k: fc.constant('remove' as const), key: fc.nat(699) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('removeMany' as const), every: fc.integer({ min: 1, max: 4 }), from: fc.nat(3) }) },
    );
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 2500 }), (ops) => {
        const arena = new EntryArena();
        const shard = arena.newShard(0, 'c');
        const model = new Map<number, Uint8Array>();
        const key = (k: number): Uint8Array => Uint8Array.from(`k${k}`, (c) => c.charCodeAt(0));
        const drop = (k: number): void => {
          const slot = arena.find(shard, key(k));
          expect(slot === NONE).toBe(!model.has(k));
          if (slot !== NONE) arena.remove(slot);
          model.delete(k);
        };
        for (const op of ops) {
          if (op.k === 'set') {
            const value = new Uint8Array(op.size).fill(op.fill);
            value[0] = op.key & 255; // each entry's bytes its own
            arena.set(shard, key(op.key), value, 0);
            model.set(op.key, value);
          } else if (op.k === 'remove') drop(op.key);
          else for (const k of [...model.keys()]) if (k % op.every === op.from % op.every) drop(k);
        }
        expect(arena.count).toBe(model.size);
        for (const [k, v] of model) expect(hex(arena.valueBytes(arena.find(shard, key(k))))).toBe(hex(v));
        const cells = new Map<number, number>();
        for (const [k, v] of model) {
          const u = cellUnits(key(k).length + v.length);
          cells.set(u, (cells.get(u) ?? 0) + 1);
        }
        let bound = 0;
        for (const u of new Set(sizes.map((n) => cellUnits(2 + n)).concat(sizes.map((n) => cellUnits(4 + n))))) {
          const perSlab = Math.floor(SLAB_BYTES / 16 / u);
          bound += Math.max(1, Math.ceil(((cells.get(u) ?? 0) * 4) / 3 / perSlab)) + 1;
        }
        expect(arena.slabCount).toBeLessThanOrEqual(bound);
      }),
      { numRuns: 60 },
    );
  });

  it('gives back the slabs a removal empties: 4/5 of the entries removed, most of their slabs go', () => {
    const arena = new EntryArena();
    const shard = arena.newShard(0, 'c');
    const key = (k: number): Uint8Array => Uint8Array.from(`key-${k}`.padStart(10, '0'), (c) => c.charCodeAt(0));
    const n = 4000;
    for (let k = 0; k < n; k++) arena.set(shard, key(k), new Uint8Array(300).fill(k & 255), 0);
    const full = arena.slabCount;
    expect(full).toBeGreaterThanOrEqual(Math.ceil(n / Math.floor(SLAB_BYTES / (cellUnits(310) * 16))));
    // Every fifth entry stays: scattered over every slab (a fifth of each, under the quarter that
    // lets a slab be evacuated), so only evacuation gives any back.
    for (let k = 0; k < n; k++) if (k % 5 !== 0) arena.remove(arena.find(shard, key(k)));
    expect(arena.slabCount).toBeLessThanOrEqual(Math.ceil(full / 5) + 2);
    for (let k = 0; k < n; k += 5) {
      const slot = arena.find(shard, key(k));
      expect(arena.valueEquals(slot, new Uint8Array(300).fill(k & 255))).toBe(true);
    }
    // And back: the cells freed are reused before any new slab.
    for (let k = 0; k < n; k++) if (k % 5 !== 0) arena.set(shard, key(k), new Uint8Array(300).fill(k & 255), 0);
    expect(arena.slabCount).toBeLessThanOrEqual(full + 1);
    for (let k = 0; k < n; k++) expect(arena.valueEquals(arena.find(shard, key(k)), new Uint8Array(300).fill(k & 255))).toBe(true);
  });

  it('rewrites a small entry of the same class in place, and copies it out to readers', () => {
    const arena = new EntryArena();
    const shard = arena.newShard(0, 'c');
    const k = keyOf(3);
    const slot = arena.set(shard, k, new Uint8Array(40).fill(1), 7);
    const read = arena.valueBytes(slot);
    const slabs = arena.slabCount;
    expect(arena.set(shard, k, new Uint8Array(41).fill(2), 8)).toBe(slot);
    expect(arena.previousExpireAt).toBe(7);
    expect(hex(read)).toBe(hex(new Uint8Array(40).fill(1))); // the copy handed out is its own
    expect(arena.valueString(slot)).toBe(latin1(new Uint8Array(41).fill(2)));
    // Another class: the entry moves to a cell of that class, under the same slot.
    expect(arena.set(shard, k, new Uint8Array(100).fill(3), 9)).toBe(slot);
    expect(arena.valueBytes(slot)).toEqual(new Uint8Array(100).fill(3));
    expect(arena.slabCount).toBe(slabs + 1);
    expect(arena.bytes).toBe(k.length + 100);
  });
});

