/**
 * Value serializers. The default is MessagePack; a `Uint8Array` value round-trips as a
 * `Uint8Array` (a MessagePack bin). `bytesSerializer` stores raw bytes with no framing at all,
 * for caches shared with other languages or holding pre-encoded data.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import { allocBytes } from '@gridlink/protocol';
import { GridSerializationError } from './errors.js';

// Received values are copied once out of the socket's read buffer (a view would pin the whole
// 64 KiB read). A new Uint8Array of more than 64 bytes gets its own off-heap backing store, which
// costs more than copying a kilobyte into it; so medium copies are carved out of an 8 KiB slab
// instead, as Node's Buffer pool does: a retained value keeps at most one slab (8 KiB) alive.
const VALUE_SLAB_SIZE = 8 * 1024;
const VALUE_SLAB_MIN = 65;
const VALUE_SLAB_MAX = 1024;
let valueSlab = new ArrayBuffer(VALUE_SLAB_SIZE);
let valueSlabAt = 0;

/** A fresh plain Uint8Array of `n` bytes that no other call returns. */
function allocValue(n: number): Uint8Array {
  if (n < VALUE_SLAB_MIN || n > VALUE_SLAB_MAX) return new Uint8Array(n);
  if (valueSlabAt + n > VALUE_SLAB_SIZE) {
    valueSlab = new ArrayBuffer(VALUE_SLAB_SIZE);
    valueSlabAt = 0;
  }
  const out = new Uint8Array(valueSlab, valueSlabAt, n);
  valueSlabAt = (valueSlabAt + n + 7) & ~7;
  return out;
}

/** A plain Uint8Array copy (socket data arrives as Buffer views into shared chunks). */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = allocValue(bytes.length);
  out.set(bytes);
  return out;
}

export interface Serializer<V> {
  serialize(value: V): Uint8Array;
  deserialize(bytes: Uint8Array): V;
}

// Small serialized values are carved out of the protocol's shared slab (`allocBytes`), as frames
// are: a fresh small Uint8Array is moved off-heap the first time a view of it is taken, which costs
// more than encoding it.

// One encoder and one decoder for every call: `encode()` / `decode()` of @msgpack/msgpack build a
// new Encoder (with a 2 KiB buffer) or Decoder on each call. Both classes are re-entrant.
const encoder = new Encoder({ ignoreUndefined: true });
const decoder = new Decoder({ useBigInt64: false });

/** A Uint8Array as a MessagePack bin (what the general encoder writes for it), in a fresh view. */
function encodeBin(value: Uint8Array): Uint8Array {
  const n = value.length;
  const header = n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
  const out = allocBytes(header + n);
  if (header === 2) {
    out[0] = 0xc4;
    out[1] = n;
  } else if (header === 3) {
    out[0] = 0xc5;
    out[1] = n >>> 8;
    out[2] = n & 0xff;
  } else {
    out[0] = 0xc6;
    out[1] = n >>> 24;
    out[2] = (n >>> 16) & 0xff;
    out[3] = (n >>> 8) & 0xff;
    out[4] = n & 0xff;
  }
  out.set(value, header);
  return out;
}

/**
 * When `bytes` is exactly one MessagePack bin, a plain copy of its content (what the general
 * decoder returns for it, without copying the whole input first); otherwise null.
 */
function decodeBin(bytes: Uint8Array): Uint8Array | null {
  const total = bytes.length;
  if (total < 2) return null;
  const h = bytes[0];
  let start: number;
  let n: number;
  if (h === 0xc4) {
    start = 2;
    n = bytes[1]!;
  } else if (h === 0xc5) {
    if (total < 3) return null;
    start = 3;
    n = (bytes[1]! << 8) | bytes[2]!;
  } else if (h === 0xc6) {
    if (total < 5) return null;
    start = 5;
    n = bytes[1]! * 0x100_0000 + ((bytes[2]! << 16) | (bytes[3]! << 8) | bytes[4]!);
  } else {
    return null;
  }
  if (start + n !== total) return null;
  const out = allocValue(n);
  if (n <= 128) {
    for (let i = 0; i < n; i++) out[i] = bytes[start + i]!;
  } else {
    out.set(bytes.subarray(start));
  }
  return out;
}

/** The MessagePack string "__proto__" (a fixstr): how an own `__proto__` key is encoded. */
const PROTO_KEY = Buffer.from([0xa9, ...Buffer.from('__proto__', 'latin1')]);
const indexOf = Buffer.prototype.indexOf as (this: Uint8Array, needle: Uint8Array) => number;

/**
 * Why MessagePack `encoded` would not decode again, or null when it would. The encoder writes an
 * object with an own `__proto__` key (as `JSON.parse('{"__proto__":1}')` makes) but the decoder
 * refuses such a key: stored, the value could never be read. That key is the only thing the
 * encoder writes and the decoder refuses, so the full decode runs only when its bytes occur at
 * all (one native byte search otherwise).
 */
export function whyUndecodable(encoded: Uint8Array): Error | null {
  if (indexOf.call(encoded, PROTO_KEY) < 0) return null;
  try {
    decoder.decode(encoded);
    return null;
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

function refuseUndecodable(encoded: Uint8Array): void {
  const why = whyUndecodable(encoded);
  if (why !== null) throw new GridSerializationError(`cannot serialise value: it would not deserialise again: ${why.message}`, { cause: why });
}

/**
 * MessagePack for every value. A `Uint8Array` is stored as a MessagePack bin and comes back as a
 * `Uint8Array`. A value that would encode but not decode again (an object with an own
 * `__proto__` key) is refused with GridSerializationError at put time, and so is `undefined`:
 * MessagePack has no undefined, it would be stored as nil and read back as null. (Inside a value
 * undefined goes as in JSON: an object property is left out, an array element becomes null.)
 * Counters written by `increment` are MessagePack integers and read back as numbers.
 */
export const msgpackSerializer: Serializer<unknown> = {
  serialize(value) {
    if (value instanceof Uint8Array) return encodeBin(value);
    if (value === undefined) {
      throw new GridSerializationError('cannot serialise value: undefined is not a value MessagePack stores (it would read back as null); store null, or remove the key');
    }
    let encoded: Uint8Array;
    try {
      encoded = encoder.encodeSharedRef(value);
    } catch (e) {
      throw new GridSerializationError(`cannot serialise value: ${(e as Error).message}`, { cause: e });
    }
    if (typeof value === 'object' && value !== null) refuseUndecodable(encoded);
    // encodeSharedRef returns a view of the encoder's buffer, valid until its next call: copy it.
    const out = allocBytes(encoded.length);
    out.set(encoded);
    return out;
  },
  deserialize(bytes) {
    const bin = decodeBin(bytes);
    if (bin !== null) return bin;
    try {
      // Decoded bins are views into the input: decode a copy so they never alias socket buffers.
      return decoder.decode(copyBytes(bytes));
    } catch (e) {
      throw new GridSerializationError(`cannot deserialise value: ${(e as Error).message}`, { cause: e });
    }
  },
};

/** Raw bytes in, raw bytes out (copied so callers never hold views into socket buffers). */
export const bytesSerializer: Serializer<Uint8Array> = {
  serialize(value) {
    if (!(value instanceof Uint8Array)) throw new GridSerializationError('bytesSerializer needs a Uint8Array value');
    return value;
  },
  deserialize(bytes) {
    return copyBytes(bytes);
  },
};
