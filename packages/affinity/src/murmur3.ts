/**
 * MurmurHash3, x86 32-bit variant (Austin Appleby's `MurmurHash3_x86_32`), over bytes.
 *
 * Blocks are read little-endian straight from the Uint8Array (no DataView, no copies) and
 * multiplied with Math.imul, so the whole hash stays in 32-bit integer arithmetic.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** MurmurHash3_x86_32 of `bytes` with `seed`, as an unsigned 32-bit integer. */
export function murmur3x86_32(bytes: Uint8Array, seed = 0): number {
  return murmurPrefix(bytes, bytes.length, seed) >>> 0;
}

/**
 * Hash of `bytes[0..length)` as a SIGNED 32-bit integer (internal use: a signed result stays
 * unboxed in V8; callers apply `>>> 0`). `length` must not exceed `bytes.length`.
 */
export function murmurPrefix(bytes: Uint8Array, length: number, seed: number): number {
  let h = seed | 0;
  const nblocks = length & ~3;
  let i = 0;
  for (; i < nblocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rem = length & 3;
  if (rem !== 0) {
    let k = 0;
    if (rem === 3) k ^= bytes[i + 2]! << 16;
    if (rem >= 2) k ^= bytes[i + 1]! << 8;
    k ^= bytes[i]!;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= length;
  return fmix32s(h);
}

/** MurmurHash3's 32-bit finaliser, as a signed 32-bit integer. */
export function fmix32s(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** The body step for one 32-bit block, before it is xored into the state (k1 mixing). */
export function mixBlock(k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  return Math.imul(k, C2);
}

/**
 * `murmur3x86_32(le32(block), seed)` without materialising the 4 bytes: the hash of a single
 * little-endian 32-bit word. `mixedBlock` is `mixBlock(block)`, so callers that hash the same
 * word under many seeds can compute it once.
 */
export function hashMixedWord(mixedBlock: number, seed: number): number {
  let h = seed ^ mixedBlock;
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  h ^= 4;
  return fmix32s(h) >>> 0;
}
