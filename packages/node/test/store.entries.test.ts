/**
 * The entry arena (store/entries.ts) against a Map model, with entries kept as strings, as bytes
 * of their own (big entries), or both mixed: every read answers the same whatever the form, and
 * an entry that grows past the threshold or shrinks below it changes form without losing itself.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { EntryArena, NONE } from '../src/store/entries.js';

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
});
