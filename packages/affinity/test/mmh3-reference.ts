/** The murmurhash3js-revisited package (no type declarations), loaded for comparisons. */
import { createRequire } from 'node:module';

interface MurmurHash3js {
  x86: { hash32(bytes: Uint8Array | number[], seed?: number): number };
}

const require = createRequire(import.meta.url);

/** Reference MurmurHash3_x86_32. Only ever give it bytes: for a string it returns undefined. */
export const referenceHash32 = (bytes: Uint8Array, seed = 0): number =>
  (require('murmurhash3js-revisited') as MurmurHash3js).x86.hash32(bytes, seed);
