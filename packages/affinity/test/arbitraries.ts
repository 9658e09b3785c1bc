/** Key generators and the decoder's normal form, shared by the encoding and decoding tests. */
import fc from 'fast-check';
import type { GridKey } from '@gridlink/affinity';

/** No lone surrogates (the Cs category only matches unpaired halves in a u-mode regexp). */
export const wellFormed = (s: string): boolean => !/\p{Cs}/u.test(s);

/** Keys of every kind but composites: unicode strings, integers, bigints, doubles, bytes. */
export const scalarKey: fc.Arbitrary<GridKey> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }).filter(wellFormed),
  fc.string({ maxLength: 200 }),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double({ noNaN: true }),
  fc.bigInt(),
  fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }),
  fc.boolean(),
  fc.uint8Array({ maxLength: 40 }),
);

/** Keys of every type, nested composites included. */
export const anyKey: fc.Arbitrary<GridKey> = fc.letrec<{ key: GridKey }>((tie) => ({
  key: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalarKey, fc.array(tie('key'), { maxLength: 4 })),
})).key;

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * The key `decodeKey` gives back for `key`: integers (numbers and bigints alike) as a number when
 * safe, else as a bigint (so -0 is 0), bytes as a plain Uint8Array, composites element-wise.
 */
export function normalised(key: GridKey): GridKey {
  if (typeof key === 'number') {
    if (!Number.isInteger(key)) return key;
    return Number.isSafeInteger(key) ? key + 0 : BigInt(key);
  }
  if (typeof key === 'bigint') return key <= MAX_SAFE_BIG && key >= -MAX_SAFE_BIG ? Number(key) : key;
  if (Array.isArray(key)) return key.map(normalised);
  if (key instanceof Uint8Array) return new Uint8Array(key);
  return key;
}
