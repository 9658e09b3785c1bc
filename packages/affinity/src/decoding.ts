/**
 * Decoding of canonical key bytes (the inverse of `encodeKey`). The decoder is strict: it accepts
 * exactly the byte strings the encoder can write, so a decoded key re-encodes to the very bytes it
 * came from, and any other input is an `InvalidKeyError`. Layout: docs/affinity.md §2.
 */
import { InvalidKeyError } from './errors.js';
import { KeyTag, MAX_KEY_DEPTH, type GridKey } from './encoding.js';

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** Varints of up to this many bytes (49 bits) are read with exact number arithmetic. */
const NUMBER_VARINT_BYTES = 7;

/** Strings up to this many bytes that are all ASCII are built without a TextDecoder call. */
const SHORT_STRING = 64;

// fatal: invalid UTF-8 (overlong forms, encoded surrogates, > U+10FFFF, truncated sequences)
// throws instead of becoming U+FFFD; ignoreBOM: a leading U+FEFF is part of the key, not dropped.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function isUint8Array(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array || Object.prototype.toString.call(v) === '[object Uint8Array]';
}

function invalid(what: string, at: number): InvalidKeyError {
  return new InvalidKeyError(`not a canonical key encoding: ${what} at byte ${at}`);
}

/** Reader state: the input and the offset of the next unread byte. */
interface Reader {
  readonly b: Uint8Array;
  pos: number;
}

/**
 * The end (exclusive) of the LEB128 varint starting at `r.pos`, checked to be complete and
 * minimal (its last byte is not 0 unless it is the only byte). Does not move `r.pos`.
 */
function varintEnd(r: Reader, what: string): number {
  const b = r.b;
  const n = b.length;
  let i = r.pos;
  for (;;) {
    if (i >= n) throw invalid(`truncated ${what}`, r.pos);
    const byte = b[i++]!;
    if (byte < 0x80) {
      if (byte === 0 && i - r.pos > 1) throw invalid(`non-minimal LEB128 ${what}`, r.pos);
      return i;
    }
  }
}

/** The value of the LEB128 groups `b[start, end)`, summed as a number (exact below 2^53: at most 7 groups here). */
function varintValue(b: Uint8Array, start: number, end: number): number {
  let v = 0;
  let scale = 1;
  for (let i = start; i < end; i++) {
    v += (b[i]! & 0x7f) * scale;
    scale *= 0x80;
  }
  return v;
}

/** A LEB128 length or count, checked not to exceed the bytes left after it (a composite element takes at least one). */
function readLength(r: Reader, what: string): number {
  const start = r.pos;
  const end = varintEnd(r, what);
  // Eight or more groups mean at least 2^49: more than any input can hold.
  if (end - start > NUMBER_VARINT_BYTES) throw invalid(`${what} beyond the input`, start);
  const b = r.b;
  const v = varintValue(b, start, end);
  r.pos = end;
  if (v > b.length - end) throw invalid(`${what} ${v} beyond the input (${b.length - end} bytes left)`, start);
  return v;
}

/**
 * An integer payload: zigzag LEB128 of any size. A safe integer becomes a number, anything larger a
 * bigint. Varints of up to 7 bytes are summed as numbers (below 2^49, exact); longer ones are
 * turned into hexadecimal digits 28 bits at a time and parsed once, so a long integer costs time
 * linear in its length.
 */
function readInteger(r: Reader): number | bigint {
  const start = r.pos;
  const end = varintEnd(r, 'integer');
  const b = r.b;
  r.pos = end;
  const len = end - start;
  if (len <= NUMBER_VARINT_BYTES) {
    const z = varintValue(b, start, end);
    const m = Math.floor(z / 2);
    // m is at most 2^48 - 1 here; -m - 1 for an odd z never yields -0.
    return z % 2 === 0 ? m : -m - 1;
  }
  const chunks: string[] = [];
  for (let i = start; i < end; i += 4) {
    let c = 0;
    const stop = Math.min(i + 4, end);
    for (let j = stop - 1; j >= i; j--) c = c * 0x80 + (b[j]! & 0x7f);
    chunks.push(c.toString(16).padStart(7, '0'));
  }
  chunks.reverse();
  const z = BigInt(`0x${chunks.join('')}`);
  const m = z >> 1n;
  const v = (z & 1n) === 0n ? m : -m - 1n;
  return v <= MAX_SAFE_BIG && v >= -MAX_SAFE_BIG ? Number(v) : v;
}

/** A float64 payload: 8 bytes little-endian, never NaN and never integral (those use the integer form). */
function readFloat(r: Reader): number {
  const start = r.pos;
  const b = r.b;
  if (b.length - start < 8) throw invalid('truncated float64', start);
  if (littleEndian) {
    for (let i = 0; i < 8; i++) f64Bytes[i] = b[start + i]!;
  } else {
    for (let i = 0; i < 8; i++) f64Bytes[7 - i] = b[start + i]!;
  }
  const v = f64[0]!;
  if (v !== v) throw invalid('NaN float64', start);
  if (Number.isInteger(v)) throw invalid(`integral float64 ${v} (integers use tag 0x03)`, start);
  r.pos = start + 8;
  return v;
}

/** A string payload: LEB128 byte length, then well-formed UTF-8. */
function readString(r: Reader): string {
  const n = readLength(r, 'string length');
  const b = r.b;
  const start = r.pos;
  const end = start + n;
  r.pos = end;
  if (n <= SHORT_STRING) {
    let s = '';
    let i = start;
    for (; i < end; i++) {
      const c = b[i]!;
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === end) return s;
  }
  // Browsers' TextDecoder refuses views of shared memory: decode a copy of those.
  const view = typeof SharedArrayBuffer !== 'undefined' && b.buffer instanceof SharedArrayBuffer ? b.slice(start, end) : b.subarray(start, end);
  try {
    return utf8.decode(view);
  } catch {
    throw invalid('string that is not well-formed UTF-8', start);
  }
}

function readKey(r: Reader, depth: number): GridKey {
  const b = r.b;
  const at = r.pos;
  if (at >= b.length) throw invalid('missing key', at);
  const tag = b[at]!;
  r.pos = at + 1;
  switch (tag) {
    case KeyTag.FALSE:
      return false;
    case KeyTag.TRUE:
      return true;
    case KeyTag.INTEGER:
      return readInteger(r);
    case KeyTag.FLOAT64:
      return readFloat(r);
    case KeyTag.STRING:
      return readString(r);
    case KeyTag.BYTES: {
      const n = readLength(r, 'byte length');
      const start = r.pos;
      r.pos = start + n;
      // A fresh plain Uint8Array (not a view: the input may be a pooled buffer or a Buffer).
      const out = new Uint8Array(n);
      out.set(b.subarray(start, start + n));
      return out;
    }
    case KeyTag.COMPOSITE: {
      if (depth >= MAX_KEY_DEPTH) throw invalid(`composite nested deeper than ${MAX_KEY_DEPTH} levels`, at);
      // Every element takes at least one byte, so the count is checked against the bytes left.
      const n = readLength(r, 'element count');
      const items: GridKey[] = [];
      for (let i = 0; i < n; i++) items.push(readKey(r, depth + 1));
      return items;
    }
    default:
      throw invalid(`unknown tag 0x${tag.toString(16).padStart(2, '0')}`, at);
  }
}

/**
 * The key whose canonical encoding is `bytes`: the exact inverse of `encodeKey`, so
 * `encodeKey(decodeKey(b))` is `b` byte for byte. Keys come back normalised, as the encoding
 * keys them by value:
 * - an integer (tag 0x03) is a `number` when it is a safe integer (|v| <= 2^53 - 1), else a
 *   `bigint`: `1n` and `1.0` decode as `1`, `2 ** 60` (a number) as `2n ** 60n`, `-0` as `0`;
 * - bytes (tag 0x06) are a fresh plain `Uint8Array`, also when the key was a `Buffer`; the result
 *   never shares memory with `bytes`.
 *
 * Strict: anything that is not exactly one canonical encoding throws `InvalidKeyError`
 * (`GRID_INVALID_KEY`): empty input, an unknown tag, truncated or trailing bytes, a non-minimal
 * LEB128, a length or count beyond the input, invalid UTF-8 (a lone surrogate included), a NaN or
 * integral float64, composites nested deeper than `MAX_KEY_DEPTH`, or an argument that is not a
 * `Uint8Array`. Time and memory are linear in the input length; no length read from the input is
 * allocated before it is checked against the bytes that are there.
 */
export function decodeKey(bytes: Uint8Array): GridKey {
  if (!isUint8Array(bytes)) throw new InvalidKeyError('decodeKey expects the key bytes as a Uint8Array');
  const r: Reader = { b: bytes, pos: 0 };
  const key = readKey(r, 0);
  if (r.pos !== bytes.length) throw invalid(`${bytes.length - r.pos} trailing byte(s)`, r.pos);
  return key;
}
