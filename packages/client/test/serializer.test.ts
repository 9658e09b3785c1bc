/**
 * Values the MessagePack serializer encodes but could not decode again (an own `__proto__` key,
 * as JSON.parse makes) are refused at put time with GridSerializationError; everything it accepts
 * round-trips through put and get.
 */
import fc from 'fast-check';
import { decode, encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { GridSerializationError, msgpackSerializer } from '@gridlink/client';
import { oneNodeGrid } from './helpers/grid.js';

const grid = oneNodeGrid();

/** What the msgpack library itself says: does `v` encode, and does the encoding decode? */
function roundTrips(v: unknown): boolean {
  let bytes: Uint8Array;
  try {
    bytes = encode(v, { ignoreUndefined: true });
  } catch {
    return false;
  }
  try {
    decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** JSON values, some wrapped in or holding objects with an own `__proto__` key (as JSON.parse makes). */
const values: fc.Arbitrary<unknown> = fc.oneof(
  fc.json().map((j) => JSON.parse(j) as unknown),
  fc.json().map((j) => JSON.parse(`{"__proto__":${j}}`) as unknown),
  fc.tuple(fc.json(), fc.json()).map(([a, b]) => JSON.parse(`{"a":[1,{"b":${a},"__proto__":${b}}]}`) as unknown),
  // The key's bytes inside values that are fine: a string, a nested key name, raw bytes.
  fc.json().map((j) => ({ s: '__proto__', t: { __proto___: JSON.parse(j) as unknown } })),
  fc.uint8Array({ maxLength: 64 }).map((b) => ({ bin: Uint8Array.from([...b, 0xa9, ...Buffer.from('__proto__')]) })),
  fc.uint8Array({ maxLength: 300 }),
);

function expectRefused(e: unknown): void {
  expect(e).toBeInstanceOf(GridSerializationError);
  expect((e as GridSerializationError).code).toBe('GRID_SERIALIZATION');
  expect((e as GridSerializationError).retryable).toBe(false);
}

describe('msgpack values that would not decode', () => {
  it('put of an object with an own __proto__ key is refused and stores nothing', async () => {
    const c = grid.client.cache<string, unknown>('ser-proto');
    for (const bad of [JSON.parse('{"__proto__":1}'), JSON.parse('{"a":{"b":[{"__proto__":{"x":1}}]}}'), [JSON.parse('{"__proto__":null}')]]) {
      const err = await c.put('k', bad).then(
        () => null,
        (e: unknown) => e,
      );
      expectRefused(err);
      expect(await c.get('k')).toBeUndefined();
    }
    // Other writes that carry a value refuse it the same way.
    const bad = JSON.parse('{"__proto__":1}') as unknown;
    await expect(c.putIfAbsent('k', bad)).rejects.toBeInstanceOf(GridSerializationError);
    await expect(c.putAll([['k', bad]])).rejects.toBeInstanceOf(GridSerializationError);
    await expect(c.getAndPut('k', bad)).rejects.toBeInstanceOf(GridSerializationError);
    expect(await c.containsKey('k')).toBe(false);
  });

  it('the key name as a string value, a longer key or inside bytes is accepted and round-trips', async () => {
    const c = grid.client.cache<string, unknown>('ser-proto-ok');
    const ok = { s: '__proto__', t: { __proto___: 1 }, b: Uint8Array.from([0xa9, ...Buffer.from('__proto__')]) };
    await c.put('k', ok);
    expect(await c.get('k')).toEqual(ok);
  });

  it('putAndRelease with such a value is refused before anything is sent; the lock stays held', async () => {
    const c = grid.client.cache<string, unknown>('ser-proto-lock');
    const r = await grid.client.lock('ser-lock').attemptGet(c);
    expect(r.acquired).toBe(true);
    if (!r.acquired) return;
    const err = await r.handle.putAndRelease(c, JSON.parse('{"__proto__":1}')).then(
      () => null,
      (e: unknown) => e,
    );
    expectRefused(err);
    expect(r.handle.held).toBe(true);
    await r.handle.putAndRelease(c, { fine: true });
    expect(await c.get('ser-lock')).toEqual({ fine: true });
  });

  it('property: serialize refuses exactly what would not decode; what it accepts deserialises to an equal value', () => {
    fc.assert(
      fc.property(values, (v) => {
        let bytes: Uint8Array;
        try {
          bytes = msgpackSerializer.serialize(v);
        } catch (e) {
          expectRefused(e);
          expect(roundTrips(v)).toBe(false);
          return;
        }
        expect(roundTrips(v)).toBe(true);
        expect(msgpackSerializer.deserialize(bytes)).toEqual(v);
      }),
      { numRuns: 1000 },
    );
  });

  it('property: any value put accepts round-trips through get', async () => {
    const c = grid.client.cache<number, unknown>('ser-prop');
    let key = 0;
    await fc.assert(
      fc.asyncProperty(values, async (v) => {
        const k = key++;
        const stored = await c.put(k, v).then(
          () => true,
          (e: unknown) => {
            expectRefused(e);
            return false;
          },
        );
        if (stored) expect(await c.get(k)).toEqual(v);
        else expect(await c.containsKey(k)).toBe(false);
        expect(stored).toBe(roundTrips(v));
      }),
      { numRuns: 150 },
    );
  });
});
