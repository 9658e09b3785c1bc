/**
 * Value serializers. The default is MessagePack; a `Uint8Array` value round-trips as a
 * `Uint8Array` (a MessagePack bin). `bytesSerializer` stores raw bytes with no framing at all,
 * for caches shared with other languages or holding pre-encoded data.
 */
import { decode, encode } from '@msgpack/msgpack';
import { GridSerializationError } from './errors.js';

/** A plain Uint8Array copy (socket data arrives as Buffer views into shared chunks). */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

export interface Serializer<V> {
  serialize(value: V): Uint8Array;
  deserialize(bytes: Uint8Array): V;
}

/**
 * MessagePack for every value. A `Uint8Array` is stored as a MessagePack bin and comes back as a
 * `Uint8Array`. Counters written by `increment` are MessagePack integers and read back as numbers.
 */
export const msgpackSerializer: Serializer<unknown> = {
  serialize(value) {
    try {
      return encode(value, { ignoreUndefined: true });
    } catch (e) {
      throw new GridSerializationError(`cannot serialise value: ${(e as Error).message}`, { cause: e });
    }
  },
  deserialize(bytes) {
    try {
      return decode(copyBytes(bytes), { useBigInt64: false });
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
