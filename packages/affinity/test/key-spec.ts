/**
 * An independent reader of the key encoding as docs/affinity.md specifies it, used to check
 * the encoder: decoding must consume exactly the encoded bytes and give back the key's value.
 */

export type DecodedKey =
  | { t: 'bool'; v: boolean }
  | { t: 'int'; v: bigint }
  | { t: 'f64'; v: number }
  | { t: 'str'; v: string }
  | { t: 'bytes'; v: string }
  | { t: 'list'; v: DecodedKey[] };

export function decodeKey(bytes: Uint8Array): DecodedKey {
  const r = { pos: 0 };
  const key = readKey(bytes, r);
  if (r.pos !== bytes.length) throw new Error(`trailing bytes at ${r.pos}`);
  return key;
}

function readVarint(b: Uint8Array, r: { pos: number }): bigint {
  let v = 0n;
  let shift = 0n;
  for (;;) {
    const byte = b[r.pos++];
    if (byte === undefined) throw new Error('truncated varint');
    v |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
    if ((byte & 0x80) === 0) {
      if (byte === 0 && shift > 7n) throw new Error('non-minimal varint');
      return v;
    }
  }
}

function readKey(b: Uint8Array, r: { pos: number }): DecodedKey {
  const tag = b[r.pos++];
  switch (tag) {
    case 0x01:
      return { t: 'bool', v: false };
    case 0x02:
      return { t: 'bool', v: true };
    case 0x03: {
      const z = readVarint(b, r);
      return { t: 'int', v: (z & 1n) === 0n ? z >> 1n : -(z >> 1n) - 1n };
    }
    case 0x04: {
      const view = new DataView(b.buffer, b.byteOffset + r.pos, 8);
      r.pos += 8;
      return { t: 'f64', v: view.getFloat64(0, true) };
    }
    case 0x05: {
      const n = Number(readVarint(b, r));
      const s = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(r.pos, r.pos + n));
      r.pos += n;
      return { t: 'str', v: s };
    }
    case 0x06: {
      const n = Number(readVarint(b, r));
      if (r.pos + n > b.length) throw new Error('truncated bytes');
      const hex = Buffer.from(b.subarray(r.pos, r.pos + n)).toString('hex');
      r.pos += n;
      return { t: 'bytes', v: hex };
    }
    case 0x07: {
      const n = Number(readVarint(b, r));
      const items: DecodedKey[] = [];
      for (let i = 0; i < n; i++) items.push(readKey(b, r));
      return { t: 'list', v: items };
    }
    default:
      throw new Error(`unknown tag ${String(tag)} at ${r.pos - 1}`);
  }
}

/** What a key means under the spec: the value decodeKey should return for it. */
export function keyValue(key: unknown): DecodedKey {
  if (typeof key === 'boolean') return { t: 'bool', v: key };
  if (typeof key === 'bigint') return { t: 'int', v: key };
  if (typeof key === 'number') return Number.isInteger(key) ? { t: 'int', v: BigInt(key) } : { t: 'f64', v: key };
  if (typeof key === 'string') return { t: 'str', v: key };
  if (key instanceof Uint8Array) return { t: 'bytes', v: Buffer.from(key).toString('hex') };
  if (Array.isArray(key)) return { t: 'list', v: key.map(keyValue) };
  throw new Error('not a key');
}
