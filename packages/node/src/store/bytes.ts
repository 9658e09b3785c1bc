/** Byte helpers: keys are held in maps under a latin1 string (one char per byte, order-preserving). */

export type Bytes = Uint8Array;

/** Map key for a byte string. Comparing these strings with `<` compares the bytes lexicographically. */
// Buffer's native latin1 decoder works on any Uint8Array; calling it directly avoids wrapping
// every key in a Buffer first.
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string })
  .latin1Slice;

export function keyString(bytes: Bytes): string {
  return latin1Slice.call(bytes, 0, bytes.byteLength);
}

export function bytesEqual(a: Bytes, b: Bytes): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * An own copy of the bytes. Payloads decoded from a frame are views into the frame's buffer;
 * keeping a view would keep the whole frame alive, so stored keys and values are always copied.
 */
export function copyBytes(b: Bytes): Bytes {
  return new Uint8Array(b);
}

export function isBytes(v: unknown): v is Bytes {
  return v instanceof Uint8Array;
}

/**
 * Bytes of a latin1 string made by keyString, for short-lived use (responses): small arrays may
 * share one of Node's pool slabs with other buffers.
 */
export function toBytes(str: string): Bytes {
  const buf = Buffer.from(str, 'latin1');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Bytes of a latin1 string in a buffer of their own (offset bytes left free at the start), for
 * arrays that are kept: they keep only their own bytes alive.
 */
export function ownBytes(str: string, offset = 0): Bytes {
  const buf = Buffer.allocUnsafeSlow(offset + str.length);
  buf.write(str, offset, 'latin1');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
