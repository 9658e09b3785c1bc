/** Byte helpers: keys are held in maps under a latin1 string (one char per byte, order-preserving). */

export type Bytes = Uint8Array;

/** Map key for a byte string. Comparing these strings with `<` compares the bytes lexicographically. */
export function keyString(bytes: Bytes): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
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
 * Bytes of a latin1 string made by keyString, in a buffer of their own (not a slice of Node's
 * shared pool, so a caller keeping the array keeps only these bytes alive).
 */
export function toBytes(str: string, offset = 0): Bytes {
  const buf = Buffer.allocUnsafeSlow(offset + str.length);
  buf.write(str, offset, 'latin1');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
