/**
 * Canonical key encoding. Every key has exactly one byte string; the partition of a key is the
 * MurmurHash3_x86_32 (seed 0) of those bytes modulo the partition count. The byte layout is
 * specified in docs/affinity.md; in short, one tag byte followed by a payload:
 *
 *   0x01                 false
 *   0x02                 true
 *   0x03 zigzag-LEB128   integer: every integral number (incl. -0) and every bigint, by value
 *   0x04 f64 LE          non-integral finite numbers and +/-Infinity
 *   0x05 LEB128 n, UTF-8 string (n = byte length; lone surrogates are rejected)
 *   0x06 LEB128 n, bytes Uint8Array
 *   0x07 LEB128 n, keys  composite: n element encodings, each self-delimiting
 *
 * Short ASCII strings are hashed straight from their characters; other keys are encoded into one
 * reused scratch buffer, so `partitionOf` allocates nothing for ordinary keys.
 */
import { InvalidKeyError, AffinityArgumentError } from './errors.js';
import { murmurPrefix } from './murmur3.js';

/** A grid key: a scalar, a byte array, or an array of keys (a composite key). */
export type GridKey = string | number | bigint | boolean | Uint8Array | GridKey[];

export const KeyTag = {
  FALSE: 0x01,
  TRUE: 0x02,
  INTEGER: 0x03,
  FLOAT64: 0x04,
  STRING: 0x05,
  BYTES: 0x06,
  COMPOSITE: 0x07,
} as const;

/** Composite keys may nest at most this deep (the outermost array is depth 1). */
export const MAX_KEY_DEPTH = 32;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

const INITIAL_SCRATCH = 1024;
const MAX_RETAINED_SCRATCH = 64 * 1024;
let buf = new Uint8Array(INITIAL_SCRATCH);
let pos = 0;
let busy = false;

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function ensure(extra: number): void {
  const need = pos + extra;
  if (need <= buf.length) return;
  let size = buf.length * 2;
  while (size < need) size *= 2;
  const next = new Uint8Array(size);
  next.set(buf.subarray(0, pos));
  buf = next;
}

/** Unsigned LEB128 of a non-negative integer up to 2^53 - 1. */
function writeVarint(v: number): void {
  ensure(8);
  if (v < 0x80) {
    buf[pos++] = v;
    return;
  }
  while (v >= 0x80) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[pos++] = v;
}

/**
 * Integer form for a safe integer (or -0): zigzag (2m for m >= 0, 2|m| - 1 for m < 0) then
 * unsigned LEB128. Computed without forming 2m, which could exceed 2^53.
 */
function writeSafeInteger(n: number): void {
  ensure(10);
  buf[pos++] = KeyTag.INTEGER;
  let m: number;
  let sign: number;
  if (n >= 0) {
    m = n;
    sign = 0;
  } else {
    m = -n - 1;
    sign = 1;
  }
  // Low 7 bits of the zigzag value are (m mod 64) * 2 + sign; the rest is floor(m / 64).
  if (m < 64) {
    buf[pos++] = m * 2 + sign;
    return;
  }
  buf[pos++] = ((m % 64) * 2 + sign) | 0x80;
  writeVarint(Math.floor(m / 64));
}

function writeBigInteger(b: bigint): void {
  let m: bigint;
  let sign: number;
  if (b >= 0n) {
    m = b;
    sign = 0;
  } else {
    m = -b - 1n;
    sign = 1;
  }
  if (m <= MAX_SAFE_BIG) {
    writeSafeInteger(sign === 0 ? Number(m) : -Number(m) - 1);
    return;
  }
  // m >= 2^53: at least 8 LEB128 groups.
  ensure(2);
  buf[pos++] = KeyTag.INTEGER;
  buf[pos++] = ((Number(m & 63n) * 2) + sign) | 0x80;
  let r = m >> 6n;
  while (r > MAX_SAFE_BIG) {
    ensure(1);
    buf[pos++] = Number(r & 0x7fn) | 0x80;
    r >>= 7n;
  }
  writeVarint(Number(r));
}

function writeNumber(n: number): void {
  if (Number.isInteger(n)) {
    if (n <= MAX_SAFE && n >= -MAX_SAFE) writeSafeInteger(n);
    else writeBigInteger(BigInt(n));
    return;
  }
  if (n !== n) throw new InvalidKeyError('NaN is not a valid key');
  ensure(9);
  buf[pos++] = KeyTag.FLOAT64;
  f64[0] = n;
  if (littleEndian) {
    for (let i = 0; i < 8; i++) buf[pos++] = f64Bytes[i]!;
  } else {
    for (let i = 7; i >= 0; i--) buf[pos++] = f64Bytes[i]!;
  }
}

/** Tag, LEB128 byte length, UTF-8. ASCII strings take a single pass. */
function writeString(s: string): void {
  const n = s.length;
  ensure(n + 9);
  const b = buf;
  b[pos++] = KeyTag.STRING;
  const start = pos;
  if (n < 0x80) b[pos++] = n;
  else writeVarint(n);
  let p = pos;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      pos = start;
      writeUtf8Slow(s);
      return;
    }
    b[p++] = c;
  }
  pos = p;
}

const NOT_ASCII = 0x100000000;
const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/**
 * murmur3x86_32(encodeKey(s), 0) for an ASCII string shorter than 128 characters, computed from
 * the string itself (its encoding is 0x05, length, the characters), as a signed 32-bit integer.
 * Returns NOT_ASCII (not a 32-bit integer) when the string is longer or not ASCII, so the caller
 * takes the general path.
 */
function hashShortAscii(s: string): number {
  const n = s.length;
  if (n >= 0x80) return NOT_ASCII;
  const total = n + 2;
  let h = 0;
  let k: number;
  // First block: tag, length, then the first two characters (if any).
  let i = 0;
  if (n >= 2) {
    const c0 = s.charCodeAt(0);
    const c1 = s.charCodeAt(1);
    if ((c0 | c1) >= 0x80) return NOT_ASCII;
    k = KeyTag.STRING | (n << 8) | (c0 << 16) | (c1 << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    i = 2;
    const end = i + ((n - 2) & ~3);
    for (; i < end; i += 4) {
      const a = s.charCodeAt(i);
      const b = s.charCodeAt(i + 1);
      const c = s.charCodeAt(i + 2);
      const d = s.charCodeAt(i + 3);
      if ((a | b | c | d) >= 0x80) return NOT_ASCII;
      k = a | (b << 8) | (c << 16) | (d << 24);
      k = Math.imul(k, C1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, C2);
      h ^= k;
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    }
    k = 0;
    const rem = n - i;
    if (rem === 0) {
      h ^= total;
      return finish(h);
    }
    const c2 = rem === 3 ? s.charCodeAt(i + 2) : 0;
    const c1r = rem >= 2 ? s.charCodeAt(i + 1) : 0;
    const c0r = s.charCodeAt(i);
    if ((c0r | c1r | c2) >= 0x80) return NOT_ASCII;
    k = c0r | (c1r << 8) | (c2 << 16);
  } else {
    // 2 or 3 bytes in total: a single tail block.
    k = KeyTag.STRING | (n << 8);
    if (n === 1) {
      const c0 = s.charCodeAt(0);
      if (c0 >= 0x80) return NOT_ASCII;
      k |= c0 << 16;
    }
  }
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h ^= total;
  return finish(h);
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function utf8Length(s: string): number {
  let len = 0;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) len += 1;
    else if (c < 0x800) len += 2;
    else if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) {
        throw new InvalidKeyError(`string key has a lone surrogate at index ${i}; keys must be valid Unicode`);
      }
      len += 4;
      i++;
    } else len += 3;
  }
  return len;
}

function writeUtf8Slow(s: string): void {
  const len = utf8Length(s);
  writeVarint(len);
  ensure(len);
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[pos++] = c;
    } else if (c < 0x800) {
      buf[pos++] = 0xc0 | (c >> 6);
      buf[pos++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdbff) {
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
      buf[pos++] = 0xf0 | (c >> 18);
      buf[pos++] = 0x80 | ((c >> 12) & 0x3f);
      buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
      buf[pos++] = 0x80 | (c & 0x3f);
    } else {
      buf[pos++] = 0xe0 | (c >> 12);
      buf[pos++] = 0x80 | ((c >> 6) & 0x3f);
      buf[pos++] = 0x80 | (c & 0x3f);
    }
  }
}

function isUint8Array(v: object): v is Uint8Array {
  return v instanceof Uint8Array || Object.prototype.toString.call(v) === '[object Uint8Array]';
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return v.constructor?.name ?? 'object';
  return typeof v;
}

function writeKey(key: unknown, depth: number): void {
  switch (typeof key) {
    case 'string':
      writeString(key);
      return;
    case 'number':
      writeNumber(key);
      return;
    case 'bigint':
      writeBigInteger(key);
      return;
    case 'boolean':
      ensure(1);
      buf[pos++] = key ? KeyTag.TRUE : KeyTag.FALSE;
      return;
    case 'object':
      if (key === null) break;
      if (Array.isArray(key)) {
        if (depth >= MAX_KEY_DEPTH) {
          throw new InvalidKeyError(`composite key nests deeper than ${MAX_KEY_DEPTH} levels`);
        }
        const n = key.length;
        ensure(1);
        buf[pos++] = KeyTag.COMPOSITE;
        writeVarint(n);
        for (let i = 0; i < n; i++) writeKey(key[i], depth + 1);
        return;
      }
      if (isUint8Array(key)) {
        const n = key.length;
        ensure(1);
        buf[pos++] = KeyTag.BYTES;
        writeVarint(n);
        ensure(n);
        buf.set(key, pos);
        pos += n;
        return;
      }
      break;
    default:
      break;
  }
  throw new InvalidKeyError(
    `unsupported key type ${describe(key)}; keys are string, number, bigint, boolean, Uint8Array or arrays of those`,
  );
}

/** Encodes into the scratch buffer and returns the length; the bytes are `buf[0..length)`. */
function encodeToScratch(key: GridKey): number {
  if (busy) throw new InvalidKeyError('key encoding re-entered (a composite key element getter encoded another key)');
  busy = true;
  pos = 0;
  try {
    if (typeof key === 'string') writeString(key);
    else writeKey(key, 0);
    return pos;
  } catch (err) {
    releaseScratch();
    throw err;
  } finally {
    busy = false;
  }
}

/** The encoding of a string shorter than 128 characters if it is ASCII, written directly. */
function encodeShortAscii(s: string): Uint8Array | undefined {
  const n = s.length;
  const out = new Uint8Array(n + 2);
  out[0] = KeyTag.STRING;
  out[1] = n;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) return undefined;
    out[i + 2] = c;
  }
  return out;
}

/** Drops a scratch buffer that an unusually large key grew, so it is not retained. */
function releaseScratch(): void {
  if (buf.length > MAX_RETAINED_SCRATCH) buf = new Uint8Array(INITIAL_SCRATCH);
}

/** The canonical bytes of `key` (a fresh array). Throws InvalidKeyError for keys it cannot encode. */
export function encodeKey(key: GridKey): Uint8Array {
  if (typeof key === 'string' && key.length < 0x80) {
    const out = encodeShortAscii(key);
    if (out !== undefined) return out;
  }
  const n = encodeToScratch(key);
  const out = buf.slice(0, n);
  releaseScratch();
  return out;
}

function checkPartitions(partitions: number): void {
  if (!(partitions >= 1 && partitions <= 0x100000000 && Number.isInteger(partitions))) {
    throw new AffinityArgumentError('partitions', `must be an integer from 1 to 2^32, got ${String(partitions)}`);
  }
}

/** Partition of `key`: murmur3x86_32(encodeKey(key), 0) % partitions. Allocates nothing for most keys. */
export function partitionOf(key: GridKey, partitions: number): number {
  checkPartitions(partitions);
  let h: number;
  if (typeof key !== 'string' || (h = hashShortAscii(key)) === NOT_ASCII) {
    const n = encodeToScratch(key);
    h = murmurPrefix(buf, n, 0);
    releaseScratch();
  }
  return (h >>> 0) % partitions;
}

/** Hash of a key's canonical bytes (what `partitionOf` reduces modulo the partition count). */
export function hashKey(key: GridKey): number {
  let h: number;
  if (typeof key !== 'string' || (h = hashShortAscii(key)) === NOT_ASCII) {
    const n = encodeToScratch(key);
    h = murmurPrefix(buf, n, 0);
    releaseScratch();
  }
  return h >>> 0;
}

/** Partition of already-encoded key bytes (what a node receives): murmur3x86_32(bytes, 0) % partitions. */
export function partitionOfBytes(bytes: Uint8Array, partitions: number): number {
  checkPartitions(partitions);
  return (murmurPrefix(bytes, bytes.length, 0) >>> 0) % partitions;
}
