/**
 * Shape-specialised MessagePack for the hottest payloads. The bytes are ordinary MessagePack,
 * exactly what the general encoder would write; these functions only skip its generic machinery:
 *
 *   {}                                        HEARTBEAT, PUT and other empty results
 *   { value: bin | nil }                      GET / GET_AND_PUT / GET_AND_REMOVE results
 *   { cache: str, key: bin }                  GET / CONTAINS_KEY requests
 *   { cache, key, seq: uint, ack?: uint, value: bin, ttlMs?: uint }   PUT-like requests
 *   { cache, key, seq: uint, ack?: uint, owner: str, leaseMs: uint, ifAbsent?: true }
 *                                             LOCK_TRY_ACQUIRE_GET requests
 *   { cache, key, seq: uint, ack?: uint, owner: str, token: uint, value: bin, ttlMs?: uint }
 *                                             LOCK_PUT_RELEASE requests
 *   { acquired: bool, token?: uint, heldForMs?: uint, value: bin | nil }   their results
 *   { released: bool }                        (ADR 0083)
 *   { batch: bin[], compactAck: true }        a batch of binary replication records (node to node);
 *                                             an element may be a BinWriter, whose bytes are
 *                                             written straight into the frame
 *
 * The encoder handles these shapes only when every field has the expected type (ASCII cache
 * names); the decoder recognises them only in this exact field order and with minimal headers.
 * Anything else goes through the general MessagePack codec, so a payload decodes to the same
 * value whichever path reads it.
 */

/**
 * Bytes that write themselves into an encoded frame, as one bin element of a batch: a sender
 * whose element would otherwise be encoded into an array of its own only to be copied into the
 * frame (a node's replication record) hands the writer instead. Only the fast path knows it: a
 * payload that the fast path declines must not hold one (see `binWriterBytes`).
 */
export interface BinWriter {
  /** Bytes `writeTo` writes. */
  readonly byteLength: number;
  /** Writes exactly `byteLength` bytes at `at`. */
  writeTo(out: Uint8Array, at: number): void;
}

/** Whether `b` is a BinWriter rather than bytes. */
export function isBinWriter(b: unknown): b is BinWriter {
  return typeof b === 'object' && b !== null && !(b instanceof Uint8Array) && typeof (b as { writeTo?: unknown }).writeTo === 'function' && typeof (b as { byteLength?: unknown }).byteLength === 'number';
}

/** The bytes of a batch element (a BinWriter's, written into an array of their own). */
export function binWriterBytes(b: Uint8Array | BinWriter): Uint8Array {
  if (b instanceof Uint8Array) return b;
  const out = new Uint8Array(b.byteLength);
  b.writeTo(out, 0);
  return out;
}

/** Returned by fastDecode when the payload is not one of the recognised shapes. */
export const NO_MATCH: unique symbol = Symbol('gridlink.noFastPath');

const ascii = (s: string): number[] => Array.from(s, (c) => c.charCodeAt(0));
const K_CACHE = [0xa5, ...ascii('cache')];
const K_KEY = [0xa3, ...ascii('key')];
const K_SEQ = [0xa3, ...ascii('seq')];
const K_ACK = [0xa3, ...ascii('ack')];
const K_VALUE = [0xa5, ...ascii('value')];
const K_TTL = [0xa5, ...ascii('ttlMs')];
const K_BATCH = [0xa5, ...ascii('batch')];
const K_COMPACT_ACK = [0xaa, ...ascii('compactAck')];
const K_LEASE = [0xa7, ...ascii('leaseMs')];
const K_OWNER = [0xa5, ...ascii('owner')];
const K_IF_ABSENT = [0xa8, ...ascii('ifAbsent')];
const K_TOKEN = [0xa5, ...ascii('token')];
const K_ACQUIRED = [0xa8, ...ascii('acquired')];
const K_HELD = [0xa9, ...ascii('heldForMs')];
const K_RELEASED = [0xa8, ...ascii('released')];

const TWO_32 = 0x1_0000_0000;

function isPlain(p: unknown): p is Record<string, unknown> {
  return typeof p === 'object' && p !== null && Object.getPrototypeOf(p) === Object.prototype;
}

/** Number of own enumerable fields whose value is not undefined. */
function definedFields(p: Record<string, unknown>): number {
  let n = 0;
  for (const k in p) if (p[k] !== undefined) n++;
  return n;
}

/** Length of `s` when it is ASCII and shorter than 256 (fixstr / str8), else -1. */
function asciiLength(s: string): number {
  const n = s.length;
  if (n > 255) return -1;
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return -1;
  return n;
}

const strSize = (n: number): number => (n < 32 ? 1 : 2) + n;
const binSize = (n: number): number => (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) + n;
const uintSize = (v: number): number => (v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : v < TWO_32 ? 5 : 9);
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function putKey(out: Uint8Array, at: number, k: number[]): number {
  for (let i = 0; i < k.length; i++) out[at + i] = k[i]!;
  return at + k.length;
}

function putStr(out: Uint8Array, at: number, s: string): number {
  const n = s.length;
  if (n < 32) out[at++] = 0xa0 | n;
  else {
    out[at++] = 0xd9;
    out[at++] = n;
  }
  for (let i = 0; i < n; i++) out[at + i] = s.charCodeAt(i);
  return at + n;
}

function putBin(out: Uint8Array, at: number, b: Uint8Array): number {
  const n = b.length;
  at = putBinHeader(out, at, n);
  out.set(b, at);
  return at + n;
}

/** A bin header for `n` bytes at `at`; returns where the bytes go. */
function putBinHeader(out: Uint8Array, at: number, n: number): number {
  if (n < 0x100) {
    out[at++] = 0xc4;
    out[at++] = n;
  } else if (n < 0x10000) {
    out[at++] = 0xc5;
    out[at++] = n >>> 8;
    out[at++] = n & 0xff;
  } else {
    out[at++] = 0xc6;
    out[at++] = n >>> 24;
    out[at++] = (n >>> 16) & 0xff;
    out[at++] = (n >>> 8) & 0xff;
    out[at++] = n & 0xff;
  }
  return at;
}

function putU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

function putUint(out: Uint8Array, at: number, v: number): number {
  if (v < 0x80) {
    out[at] = v;
    return at + 1;
  }
  if (v < 0x100) {
    out[at] = 0xcc;
    out[at + 1] = v;
    return at + 2;
  }
  if (v < 0x10000) {
    out[at] = 0xcd;
    out[at + 1] = v >>> 8;
    out[at + 2] = v & 0xff;
    return at + 3;
  }
  if (v < TWO_32) {
    out[at] = 0xce;
    putU32(out, at + 1, v);
    return at + 5;
  }
  out[at] = 0xcf;
  putU32(out, at + 1, Math.floor(v / TWO_32));
  putU32(out, at + 5, v >>> 0);
  return at + 9;
}

const arraySize = (n: number): number => (n < 16 ? 1 : n < 0x10000 ? 3 : 5);

const Shape = { NONE: 0, EMPTY: 1, VALUE: 2, CACHE_KEY: 3, PUT: 4, BATCH: 5, RELEASED: 6, LOCK_RESULT: 7, ACQUIRE_GET: 8, PUT_RELEASE: 9 } as const;

/** Size of `value: bin | nil` after its key. */
const valueSize = (v: Uint8Array | null): number => (v === null ? 1 : binSize(v.length));

/** Size of `{ acquired, token?, heldForMs?, value }` (a lock result), or -1 when p is not exactly that. */
function lockResultSize(p: Record<string, unknown>, n: number): number {
  const v = p.value;
  if (typeof p.acquired !== 'boolean' || !(v === null || v instanceof Uint8Array)) return -1;
  let size = 1 + K_ACQUIRED.length + 1 + K_VALUE.length + valueSize(v);
  let fields = 2;
  if (p.token !== undefined) {
    if (!isUint(p.token)) return -1;
    size += K_TOKEN.length + uintSize(p.token);
    fields++;
  }
  if (p.heldForMs !== undefined) {
    if (!isUint(p.heldForMs)) return -1;
    size += K_HELD.length + uintSize(p.heldForMs);
    fields++;
  }
  return n === fields ? size : -1;
}

/** Size of `seq: uint, ack?: uint` (keys included), or -1. */
function seqAckSize(p: Record<string, unknown>): number {
  if (!isUint(p.seq)) return -1;
  let size = K_SEQ.length + uintSize(p.seq);
  if (p.ack !== undefined) {
    if (!isUint(p.ack)) return -1;
    size += K_ACK.length + uintSize(p.ack);
  }
  return size;
}

/** The ASCII owner string's encoded size, or -1. */
function ownerSize(owner: unknown): number {
  if (typeof owner !== 'string') return -1;
  const n = asciiLength(owner);
  return n < 0 ? -1 : K_OWNER.length + strSize(n);
}

/** Size of `{ batch: bin[], compactAck: true }`, or -1 when p is not exactly that. */
function batchSize(p: Record<string, unknown>): number {
  const batch = p.batch;
  if (p.compactAck !== true || !Array.isArray(batch)) return -1;
  let size = 1 + K_BATCH.length + arraySize(batch.length) + K_COMPACT_ACK.length + 1;
  for (let i = 0; i < batch.length; i++) {
    const b: unknown = batch[i];
    if (b instanceof Uint8Array) size += binSize(b.length);
    else if (isBinWriter(b)) size += binSize(b.byteLength);
    else return -1;
  }
  return size;
}

let shape: number = Shape.NONE;

/**
 * Size in bytes of `payload` encoded by the fast path, or -1 when it does not apply. Remembers
 * the shape for the following `fastWrite`.
 */
export function fastSize(payload: unknown): number {
  shape = Shape.NONE;
  if (!isPlain(payload)) return -1;
  const n = definedFields(payload);
  if (n === 0) {
    shape = Shape.EMPTY;
    return 1;
  }
  if (n === 1) {
    const released = payload.released;
    if (typeof released === 'boolean') {
      shape = Shape.RELEASED;
      return 1 + K_RELEASED.length + 1;
    }
    const v = payload.value;
    if (v !== null && !(v instanceof Uint8Array)) return -1;
    shape = Shape.VALUE;
    return 1 + K_VALUE.length + valueSize(v);
  }
  if (payload.acquired !== undefined) {
    const size = lockResultSize(payload, n);
    if (size >= 0) shape = Shape.LOCK_RESULT;
    return size;
  }
  const cache = payload.cache;
  const key = payload.key;
  if (n === 2 && cache === undefined) {
    const size = batchSize(payload);
    if (size >= 0) shape = Shape.BATCH;
    return size;
  }
  if (typeof cache !== 'string' || !(key instanceof Uint8Array)) return -1;
  const cl = asciiLength(cache);
  if (cl < 0) return -1;
  const base = 1 + K_CACHE.length + strSize(cl) + K_KEY.length + binSize(key.length);
  if (n === 2) {
    shape = Shape.CACHE_KEY;
    return base;
  }
  if (payload.owner !== undefined) return lockRequestSize(payload, n, base);
  const value = payload.value;
  const ttl = payload.ttlMs;
  const seqAck = seqAckSize(payload);
  if (seqAck < 0 || !(value instanceof Uint8Array)) return -1;
  let size = base + seqAck + K_VALUE.length + binSize(value.length);
  let fields = payload.ack === undefined ? 4 : 5;
  if (ttl !== undefined) {
    if (!isUint(ttl)) return -1;
    size += K_TTL.length + uintSize(ttl);
    fields++;
  }
  if (n !== fields) return -1;
  shape = Shape.PUT;
  return size;
}

/**
 * Size of a LOCK_TRY_ACQUIRE_GET or LOCK_PUT_RELEASE request whose cache and key (`base` bytes
 * with the map header) are known good, or -1; sets the shape.
 */
function lockRequestSize(p: Record<string, unknown>, n: number, base: number): number {
  const owner = ownerSize(p.owner);
  const seqAck = seqAckSize(p);
  if (owner < 0 || seqAck < 0) return -1;
  let fields = p.ack === undefined ? 5 : 6; // cache, key, owner, seq (+ ack), and one more below
  let size = base + owner + seqAck;
  if (p.leaseMs !== undefined) {
    if (!isUint(p.leaseMs) || p.token !== undefined || p.value !== undefined || p.ttlMs !== undefined) return -1;
    size += K_LEASE.length + uintSize(p.leaseMs);
    if (p.ifAbsent !== undefined) {
      if (p.ifAbsent !== true) return -1;
      size += K_IF_ABSENT.length + 1;
      fields++;
    }
    if (n !== fields) return -1;
    shape = Shape.ACQUIRE_GET;
    return size;
  }
  const value = p.value;
  if (!isUint(p.token) || !(value instanceof Uint8Array) || p.ifAbsent !== undefined) return -1;
  size += K_TOKEN.length + uintSize(p.token) + K_VALUE.length + binSize(value.length);
  fields++; // value
  if (p.ttlMs !== undefined) {
    if (!isUint(p.ttlMs)) return -1;
    size += K_TTL.length + uintSize(p.ttlMs);
    fields++;
  }
  if (n !== fields) return -1;
  shape = Shape.PUT_RELEASE;
  return size;
}

/** Writes a bin, or nil for null. */
function putValueOrNil(out: Uint8Array, i: number, v: Uint8Array | null): void {
  if (v === null) out[i] = 0xc0;
  else putBin(out, i, v);
}

/** Writes `value` and, when present, `ttlMs`: how the storing shapes end. */
function putValueTtl(out: Uint8Array, i: number, p: Record<string, unknown>): void {
  i = putKey(out, i, K_VALUE);
  i = putBin(out, i, p.value as Uint8Array);
  if (p.ttlMs !== undefined) {
    i = putKey(out, i, K_TTL);
    putUint(out, i, p.ttlMs as number);
  }
}

/**
 * Writes the map header `header`, then `cache`, `key`, `seq` and (when present) `ack`: how every
 * mutating shape starts. Returns where the next field goes.
 */
function putCacheKeySeq(out: Uint8Array, at: number, header: number, p: Record<string, unknown>): number {
  out[at] = header;
  let i = putKey(out, at + 1, K_CACHE);
  i = putStr(out, i, p.cache as string);
  i = putKey(out, i, K_KEY);
  i = putBin(out, i, p.key as Uint8Array);
  i = putKey(out, i, K_SEQ);
  i = putUint(out, i, p.seq as number);
  if (p.ack !== undefined) {
    i = putKey(out, i, K_ACK);
    i = putUint(out, i, p.ack as number);
  }
  return i;
}

/** Writes the payload measured by the last `fastSize` call at `at`. */
export function fastWrite(out: Uint8Array, at: number, payload: unknown): void {
  const p = payload as Record<string, unknown>;
  switch (shape) {
    case Shape.EMPTY:
      out[at] = 0x80;
      return;
    case Shape.VALUE: {
      out[at] = 0x81;
      putValueOrNil(out, putKey(out, at + 1, K_VALUE), p.value as Uint8Array | null);
      return;
    }
    case Shape.CACHE_KEY: {
      out[at] = 0x82;
      let i = putKey(out, at + 1, K_CACHE);
      i = putStr(out, i, p.cache as string);
      i = putKey(out, i, K_KEY);
      putBin(out, i, p.key as Uint8Array);
      return;
    }
    case Shape.PUT: {
      const hasTtl = p.ttlMs !== undefined;
      putValueTtl(out, putCacheKeySeq(out, at, 0x84 + (hasTtl ? 1 : 0) + (p.ack !== undefined ? 1 : 0), p), p);
      return;
    }
    case Shape.RELEASED: {
      out[at] = 0x81;
      const i = putKey(out, at + 1, K_RELEASED);
      out[i] = p.released === true ? 0xc3 : 0xc2;
      return;
    }
    case Shape.LOCK_RESULT: {
      const hasToken = p.token !== undefined;
      const hasHeld = p.heldForMs !== undefined;
      out[at] = 0x82 + (hasToken ? 1 : 0) + (hasHeld ? 1 : 0);
      let i = putKey(out, at + 1, K_ACQUIRED);
      out[i++] = p.acquired === true ? 0xc3 : 0xc2;
      if (hasToken) {
        i = putKey(out, i, K_TOKEN);
        i = putUint(out, i, p.token as number);
      }
      if (hasHeld) {
        i = putKey(out, i, K_HELD);
        i = putUint(out, i, p.heldForMs as number);
      }
      putValueOrNil(out, putKey(out, i, K_VALUE), p.value as Uint8Array | null);
      return;
    }
    case Shape.ACQUIRE_GET: {
      const ifAbsent = p.ifAbsent === true;
      let i = putCacheKeySeq(out, at, 0x85 + (ifAbsent ? 1 : 0) + (p.ack !== undefined ? 1 : 0), p);
      i = putKey(out, i, K_OWNER);
      i = putStr(out, i, p.owner as string);
      i = putKey(out, i, K_LEASE);
      i = putUint(out, i, p.leaseMs as number);
      if (ifAbsent) {
        i = putKey(out, i, K_IF_ABSENT);
        out[i] = 0xc3;
      }
      return;
    }
    case Shape.PUT_RELEASE: {
      const hasTtl = p.ttlMs !== undefined;
      let i = putCacheKeySeq(out, at, 0x86 + (hasTtl ? 1 : 0) + (p.ack !== undefined ? 1 : 0), p);
      i = putKey(out, i, K_OWNER);
      i = putStr(out, i, p.owner as string);
      i = putKey(out, i, K_TOKEN);
      i = putUint(out, i, p.token as number);
      putValueTtl(out, i, p);
      return;
    }
    case Shape.BATCH: {
      out[at] = 0x82;
      let i = putKey(out, at + 1, K_BATCH);
      const batch = p.batch as (Uint8Array | BinWriter)[];
      const n = batch.length;
      if (n < 16) out[i++] = 0x90 | n;
      else if (n < 0x10000) {
        out[i++] = 0xdc;
        out[i++] = n >>> 8;
        out[i++] = n & 0xff;
      } else {
        out[i++] = 0xdd;
        putU32(out, i, n);
        i += 4;
      }
      for (let k = 0; k < n; k++) {
        const b = batch[k]!;
        if (b instanceof Uint8Array) i = putBin(out, i, b);
        else {
          i = putBinHeader(out, i, b.byteLength);
          b.writeTo(out, i);
          i += b.byteLength;
        }
      }
      i = putKey(out, i, K_COMPACT_ACK);
      out[i] = 0xc3;
      return;
    }
    default:
      throw new Error('fastWrite without a matching fastSize');
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Cursor shared by the readers below (set on success). */
let pos = 0;

function matchKey(b: Uint8Array, at: number, end: number, k: number[]): boolean {
  if (at + k.length > end) return false;
  for (let i = 0; i < k.length; i++) if (b[at + i] !== k[i]) return false;
  return true;
}

/** Reads bin8/16/32 at `at`; returns a view, or null when not a bin that fits before `end`. */
function readBin(b: Uint8Array, at: number, end: number): Uint8Array | null {
  if (at >= end) return null;
  const h = b[at];
  let n: number;
  let p: number;
  if (h === 0xc4) {
    if (at + 2 > end) return null;
    n = b[at + 1]!;
    p = at + 2;
  } else if (h === 0xc5) {
    if (at + 3 > end) return null;
    n = (b[at + 1]! << 8) | b[at + 2]!;
    p = at + 3;
  } else if (h === 0xc6) {
    if (at + 5 > end) return null;
    n = b[at + 1]! * 0x100_0000 + ((b[at + 2]! << 16) | (b[at + 3]! << 8) | b[at + 4]!);
    p = at + 5;
  } else return null;
  if (p + n > end) return null;
  pos = p + n;
  return b.subarray(p, pos);
}

/** Reads a bin (a view) or nil (null) at `at`; undefined when it is neither. */
function readBinOrNil(b: Uint8Array, at: number, end: number): Uint8Array | null | undefined {
  if (at < end && b[at] === 0xc0) {
    pos = at + 1;
    return null;
  }
  return readBin(b, at, end) ?? undefined;
}

/** Recently decoded short ASCII strings (cache names), to skip rebuilding them. */
const NAME_CACHE_SIZE = 16;
const NAME_MAX = 64;
const nameBytes: Uint8Array[] = [];
const nameStrings: string[] = [];
let nameNext = 0;

function cachedName(b: Uint8Array, p: number, n: number): string | null {
  for (let e = 0; e < nameBytes.length; e++) {
    const c = nameBytes[e]!;
    if (c.length !== n) continue;
    let i = 0;
    while (i < n && c[i] === b[p + i]) i++;
    if (i === n) return nameStrings[e]!;
  }
  return null;
}

function rememberName(b: Uint8Array, p: number, n: number, s: string): void {
  const copy = new Uint8Array(n);
  for (let i = 0; i < n; i++) copy[i] = b[p + i]!;
  nameBytes[nameNext] = copy;
  nameStrings[nameNext] = s;
  nameNext = (nameNext + 1) % NAME_CACHE_SIZE;
}

/**
 * Reads an ASCII fixstr/str8 at `at`, or null. Short ones are looked up in, and added to, the
 * recent names unless `remember` is false (owner ids: new with every lock, they would only push
 * the cache names out).
 */
function readAsciiStr(b: Uint8Array, at: number, end: number, remember = true): string | null {
  if (at >= end) return null;
  const h = b[at]!;
  let n: number;
  let p: number;
  if ((h & 0xe0) === 0xa0) {
    n = h & 0x1f;
    p = at + 1;
  } else if (h === 0xd9) {
    if (at + 2 > end) return null;
    n = b[at + 1]!;
    p = at + 2;
  } else return null;
  if (p + n > end) return null;
  if (remember && n <= NAME_MAX) {
    const known = cachedName(b, p, n);
    if (known !== null) {
      pos = p + n;
      return known;
    }
  }
  let s = '';
  for (let i = p; i < p + n; i++) {
    const c = b[i]!;
    if (c > 0x7f) return null;
    s += String.fromCharCode(c);
  }
  if (remember && n <= NAME_MAX) rememberName(b, p, n, s);
  pos = p + n;
  return s;
}

/** Reads a non-negative integer below 2^53 (fixint, uint8..uint64) at `at`, or -1. */
function readUint(b: Uint8Array, at: number, end: number): number {
  if (at >= end) return -1;
  const h = b[at]!;
  if (h < 0x80) {
    pos = at + 1;
    return h;
  }
  if (h === 0xcc && at + 2 <= end) {
    pos = at + 2;
    return b[at + 1]!;
  }
  if (h === 0xcd && at + 3 <= end) {
    pos = at + 3;
    return (b[at + 1]! << 8) | b[at + 2]!;
  }
  if (h === 0xce && at + 5 <= end) {
    pos = at + 5;
    return b[at + 1]! * 0x100_0000 + ((b[at + 2]! << 16) | (b[at + 3]! << 8) | b[at + 4]!);
  }
  if (h === 0xcf && at + 9 <= end) {
    const hi = b[at + 1]! * 0x100_0000 + ((b[at + 2]! << 16) | (b[at + 3]! << 8) | b[at + 4]!);
    if (hi >= 0x20_0000) return -1;
    const lo = b[at + 5]! * 0x100_0000 + ((b[at + 6]! << 16) | (b[at + 7]! << 8) | b[at + 8]!);
    pos = at + 9;
    return hi * TWO_32 + lo;
  }
  return -1;
}

/**
 * Decodes the payload `b[start, end)` (one whole MessagePack value, nothing after it) when it is
 * one of the recognised shapes; otherwise returns NO_MATCH and the caller uses the general decoder.
 */
export function fastDecode(b: Uint8Array, start = 0, end = b.length): unknown {
  const first = b[start];
  if (first === 0x80) return end === start + 1 ? {} : NO_MATCH;
  if (first === 0x81) {
    if (matchKey(b, start + 1, end, K_RELEASED)) {
      const released = readBool(b, start + 1 + K_RELEASED.length, end);
      return released !== null && pos === end ? { released } : NO_MATCH;
    }
    if (!matchKey(b, start + 1, end, K_VALUE)) return NO_MATCH;
    const value = readBinOrNil(b, start + 1 + K_VALUE.length, end);
    return value !== undefined && pos === end ? { value } : NO_MATCH;
  }
  if (first === undefined || first < 0x82 || first > 0x88) return NO_MATCH;
  if (first === 0x82 && matchKey(b, start + 1, end, K_BATCH)) return decodeBatch(b, start + 1 + K_BATCH.length, end);
  if (first <= 0x84 && matchKey(b, start + 1, end, K_ACQUIRED)) return decodeLockResult(b, first - 0x80, start + 1 + K_ACQUIRED.length, end);
  if (!matchKey(b, start + 1, end, K_CACHE)) return NO_MATCH;
  const cache = readAsciiStr(b, start + 1 + K_CACHE.length, end);
  if (cache === null || !matchKey(b, pos, end, K_KEY)) return NO_MATCH;
  const key = readBin(b, pos + K_KEY.length, end);
  if (key === null) return NO_MATCH;
  if (first === 0x82) return pos === end ? { cache, key } : NO_MATCH;
  if (!readSeqAck(b, pos, end)) return NO_MATCH;
  const seq = seqRead;
  const ack = ackRead;
  if (matchKey(b, pos, end, K_OWNER)) return decodeLockRequest(b, first - 0x80, cache, key, seq, ack, pos + K_OWNER.length, end);
  if (first > 0x86 || !matchKey(b, pos, end, K_VALUE)) return NO_MATCH;
  const value = readBin(b, pos + K_VALUE.length, end);
  if (value === null) return NO_MATCH;
  // Fields so far: cache, key, seq, value (+ ack); the map header says whether ttlMs follows.
  const fields = ack >= 0 ? 5 : 4;
  if (first === 0x80 + fields) {
    if (pos !== end) return NO_MATCH;
    return ack >= 0 ? { cache, key, seq, ack, value } : { cache, key, seq, value };
  }
  if (first !== 0x81 + fields || !matchKey(b, pos, end, K_TTL)) return NO_MATCH;
  const ttlMs = readUint(b, pos + K_TTL.length, end);
  if (ttlMs < 0 || pos !== end) return NO_MATCH;
  return ack >= 0 ? { cache, key, seq, ack, value, ttlMs } : { cache, key, seq, value, ttlMs };
}

/** Reads a bool at `at` (true/false), or null. */
function readBool(b: Uint8Array, at: number, end: number): boolean | null {
  if (at >= end) return null;
  const h = b[at];
  if (h !== 0xc2 && h !== 0xc3) return null;
  pos = at + 1;
  return h === 0xc3;
}

/** Reads `seq` and an optional `ack` from `at` into the two slots; false when malformed. */
let seqRead = 0;
let ackRead = -1;
function readSeqAck(b: Uint8Array, at: number, end: number): boolean {
  if (!matchKey(b, at, end, K_SEQ)) return false;
  seqRead = readUint(b, at + K_SEQ.length, end);
  if (seqRead < 0) return false;
  ackRead = -1;
  if (matchKey(b, pos, end, K_ACK)) {
    ackRead = readUint(b, pos + K_ACK.length, end);
    if (ackRead < 0) return false;
  }
  return true;
}

/** The rest of `{ acquired, token?, heldForMs?, value }` after `acquired`'s key, or NO_MATCH. */
function decodeLockResult(b: Uint8Array, fields: number, at: number, end: number): unknown {
  const acquired = readBool(b, at, end);
  if (acquired === null) return NO_MATCH;
  let token = -1;
  let heldForMs = -1;
  let n = 2;
  if (matchKey(b, pos, end, K_TOKEN)) {
    token = readUint(b, pos + K_TOKEN.length, end);
    if (token < 0) return NO_MATCH;
    n++;
  }
  if (matchKey(b, pos, end, K_HELD)) {
    heldForMs = readUint(b, pos + K_HELD.length, end);
    if (heldForMs < 0) return NO_MATCH;
    n++;
  }
  if (n !== fields || !matchKey(b, pos, end, K_VALUE)) return NO_MATCH;
  const value = readBinOrNil(b, pos + K_VALUE.length, end);
  if (value === undefined || pos !== end) return NO_MATCH;
  if (token >= 0 && heldForMs >= 0) return { acquired, token, heldForMs, value };
  if (token >= 0) return { acquired, token, value };
  if (heldForMs >= 0) return { acquired, heldForMs, value };
  return { acquired, value };
}

/**
 * The rest of a LOCK_TRY_ACQUIRE_GET (`leaseMs` next) or LOCK_PUT_RELEASE (`token` next) request
 * after `owner`'s key, `fields` the map's count, or NO_MATCH.
 */
function decodeLockRequest(b: Uint8Array, fields: number, cache: string, key: Uint8Array, seq: number, ack: number, at: number, end: number): unknown {
  const owner = readAsciiStr(b, at, end, false);
  if (owner === null) return NO_MATCH;
  const seqAck = ack >= 0 ? 2 : 1;
  if (matchKey(b, pos, end, K_LEASE)) {
    const leaseMs = readUint(b, pos + K_LEASE.length, end);
    if (leaseMs < 0) return NO_MATCH;
    let ifAbsent = false;
    if (matchKey(b, pos, end, K_IF_ABSENT)) {
      const flag = pos + K_IF_ABSENT.length;
      if (flag >= end || b[flag] !== 0xc3) return NO_MATCH;
      pos = flag + 1;
      ifAbsent = true;
    }
    if (pos !== end || fields !== 4 + seqAck + (ifAbsent ? 1 : 0)) return NO_MATCH;
    if (ifAbsent) return ack >= 0 ? { cache, key, seq, ack, owner, leaseMs, ifAbsent } : { cache, key, seq, owner, leaseMs, ifAbsent };
    return ack >= 0 ? { cache, key, seq, ack, owner, leaseMs } : { cache, key, seq, owner, leaseMs };
  }
  if (!matchKey(b, pos, end, K_TOKEN)) return NO_MATCH;
  const token = readUint(b, pos + K_TOKEN.length, end);
  if (token < 0 || !matchKey(b, pos, end, K_VALUE)) return NO_MATCH;
  const value = readBin(b, pos + K_VALUE.length, end);
  if (value === null) return NO_MATCH;
  let ttlMs = -1;
  if (matchKey(b, pos, end, K_TTL)) {
    ttlMs = readUint(b, pos + K_TTL.length, end);
    if (ttlMs < 0) return NO_MATCH;
  }
  if (pos !== end || fields !== 5 + seqAck + (ttlMs >= 0 ? 1 : 0)) return NO_MATCH;
  if (ttlMs >= 0) return ack >= 0 ? { cache, key, seq, ack, owner, token, value, ttlMs } : { cache, key, seq, owner, token, value, ttlMs };
  return ack >= 0 ? { cache, key, seq, ack, owner, token, value } : { cache, key, seq, owner, token, value };
}

/** The rest of `{ batch: bin[], compactAck: true }` from the array header at `at`, or NO_MATCH. */
function decodeBatch(b: Uint8Array, at: number, end: number): unknown {
  if (at >= end) return NO_MATCH;
  const h = b[at]!;
  let n: number;
  let p: number;
  if ((h & 0xf0) === 0x90) {
    n = h & 0x0f;
    p = at + 1;
  } else if (h === 0xdc && at + 3 <= end) {
    n = (b[at + 1]! << 8) | b[at + 2]!;
    if (n < 16) return NO_MATCH;
    p = at + 3;
  } else if (h === 0xdd && at + 5 <= end) {
    n = b[at + 1]! * 0x100_0000 + ((b[at + 2]! << 16) | (b[at + 3]! << 8) | b[at + 4]!);
    if (n < 0x10000) return NO_MATCH;
    p = at + 5;
  } else return NO_MATCH;
  // Every bin takes at least 2 bytes: a count that cannot fit is refused before allocating.
  if (n * 2 > end - p) return NO_MATCH;
  const batch = new Array<Uint8Array>(n);
  for (let i = 0; i < n; i++) {
    const v = readBin(b, p, end);
    if (v === null) return NO_MATCH;
    batch[i] = v;
    p = pos;
  }
  if (!matchKey(b, p, end, K_COMPACT_ACK) || p + K_COMPACT_ACK.length + 1 !== end || b[p + K_COMPACT_ACK.length] !== 0xc3) return NO_MATCH;
  return { batch, compactAck: true };
}
