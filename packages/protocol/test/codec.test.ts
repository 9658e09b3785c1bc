import { describe, expect, it } from 'vitest';
import { encode } from '@msgpack/msgpack';
import {
  ALL_FEATURES,
  decodeFrame,
  DEFAULT_MAX_FRAME_SIZE,
  encodeFrame,
  ErrorCode,
  errorPayload,
  errorResponse,
  FrameDecoder,
  FrameKind,
  handshakeError,
  MAX_ERROR_MESSAGE_BYTES,
  Feature,
  negotiateFeatures,
  negotiateVersion,
  Op,
  payloadForFeatures,
  ProtocolConfigError,
  ProtocolError,
  PushKind,
  ResponseFlag,
  utf8Length,
  type Frame,
  type RequestFrame,
} from '@gridlink/protocol';
import { concat } from './arbitraries.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** A frame body (kind byte onwards) with its length prefix. */
function framed(body: number[] | Uint8Array): Uint8Array {
  const b = body instanceof Uint8Array ? body : new Uint8Array(body);
  return concat([new Uint8Array([b.length >>> 24, (b.length >>> 16) & 0xff, (b.length >>> 8) & 0xff, b.length & 0xff]), b]);
}

function decodeError(bytes: Uint8Array): ProtocolError {
  try {
    new FrameDecoder().push(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error('expected a ProtocolError');
}

describe('byte layout (the golden frames of docs/protocol.md)', () => {
  it('REQUEST: u32 length, kind 3, u16 op, u32 id, u8 flags, msgpack payload', () => {
    const f = encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 0x01020304, flags: 0, payload: { cache: 'c', key: new Uint8Array([0xaa]) } });
    // payload: 82 | a5 "cache" | a1 "c" | a3 "key" | c4 01 aa  (16 bytes); length = 8 + 16 = 24
    expect(hex(f)).toBe('00000018' + '03' + '000a' + '01020304' + '00' + '82a56361636865a163a36b6579c401aa');
  });

  it('RESPONSE: u32 length, kind 4, u32 id, u8 flags, u64 topology version, payload', () => {
    const f = encodeFrame({ kind: FrameKind.RESPONSE, id: 7, flags: ResponseFlag.REFRESH_MAP, topologyVersion: 2 ** 32 + 5, payload: { value: null } });
    // payload: 81 | a5 "value" | c0  (8 bytes); length = 14 + 8 = 22
    expect(hex(f)).toBe('00000016' + '04' + '00000007' + '02' + '0000000100000005' + '81a576616c7565c0');
  });

  it('PUSH: u32 length, kind 5, u16 push kind, u64 topology version, payload', () => {
    const f = encodeFrame({ kind: FrameKind.PUSH, push: PushKind.TOPOLOGY_CHANGED, topologyVersion: 9, payload: { version: 9 } });
    // payload: 81 | a7 "version" | 09  (10 bytes); length = 11 + 10 = 21
    expect(hex(f)).toBe('00000015' + '05' + '0001' + '0000000000000009' + '81a776657273696f6e09');
  });

  it('HANDSHAKE*: u32 length, kind byte, payload', () => {
    const f = encodeFrame({ kind: FrameKind.HANDSHAKE_ERROR, body: { code: 12, message: '' } });
    // payload: 82 | a4 "code" | 0c | a7 "message" | a0  (16 bytes); length = 1 + 16 = 17
    expect(hex(f)).toBe('00000011' + '02' + '82a4636f64650ca76d657373616765a0');
  });

  it('topology versions up to 2^53 - 1 round-trip; 2^53 and more are refused both ways', () => {
    const max = Number.MAX_SAFE_INTEGER;
    const f: Frame = { kind: FrameKind.RESPONSE, id: 1, flags: 0, topologyVersion: max, payload: {} };
    expect(decodeFrame(encodeFrame(f))).toEqual(f);
    expect(() => encodeFrame({ ...f, topologyVersion: 2 ** 53 })).toThrow(ProtocolError);
    expect(() => encodeFrame({ ...f, topologyVersion: -1 })).toThrow(ProtocolError);
    expect(() => encodeFrame({ ...f, topologyVersion: 1.5 })).toThrow(ProtocolError);
    const bytes = encodeFrame(f);
    bytes[10] = 0x00;
    bytes[11] = 0x20; // high word 0x00200000 -> 2^53
    expect(decodeError(bytes).message).toMatch(/2\^53/);
  });
});

describe('encodeFrame', () => {
  const req = (over: Partial<RequestFrame>): RequestFrame => ({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 0, payload: {}, ...over });

  it('refuses header fields out of range with ProtocolError', () => {
    for (const bad of [req({ id: -1 }), req({ id: 2 ** 32 }), req({ id: 1.5 }), req({ flags: 256 }), req({ op: 0x10000 as Op })]) {
      expect(() => encodeFrame(bad)).toThrow(ProtocolError);
    }
    expect(() => encodeFrame({ kind: 9 } as unknown as Frame)).toThrow(ProtocolError);
  });

  it('refuses payloads MessagePack cannot carry (bigint, symbol, functions) with ProtocolError', () => {
    for (const payload of [{ n: 1n }, { s: Symbol('x') }, { f: () => 1 }]) {
      expect(() => encodeFrame(req({ op: Op.PEER_FORWARD, payload }))).toThrow(ProtocolError);
    }
  });

  it('refuses frames over maxFrameSize with FRAME_TOO_LARGE, and checks the option', () => {
    const big = req({ op: Op.PEER_REPLICATE, payload: new Uint8Array(DEFAULT_MAX_FRAME_SIZE) });
    try {
      encodeFrame(big);
      throw new Error('expected FRAME_TOO_LARGE');
    } catch (err) {
      expect((err as ProtocolError).wireCode).toBe(ErrorCode.FRAME_TOO_LARGE);
    }
    expect(encodeFrame(big, { maxFrameSize: 2 * DEFAULT_MAX_FRAME_SIZE }).length).toBeGreaterThan(DEFAULT_MAX_FRAME_SIZE);
    expect(() => encodeFrame(big, { maxFrameSize: 10 })).toThrow(ProtocolConfigError);
  });

  it('omits undefined optional fields instead of sending nil', () => {
    const f = encodeFrame(req({ op: Op.CACHE_PUT, payload: { cache: 'c', key: new Uint8Array(1), seq: 1, value: new Uint8Array(1), ttlMs: undefined } }));
    const back = decodeFrame(f) as RequestFrame;
    expect(Object.keys(back.payload as object)).toEqual(['cache', 'key', 'seq', 'value']);
  });

  it('never returns overlapping arrays (small frames share a slab, large ones have their own buffer)', () => {
    const frames = Array.from({ length: 2000 }, (_, i) =>
      encodeFrame(req({ op: Op.PEER_FORWARD, id: i, payload: new Uint8Array(i % 7 === 0 ? 5000 : i % 300) })),
    );
    const byBuffer = new Map<ArrayBufferLike, [number, number][]>();
    for (const f of frames) {
      const list = byBuffer.get(f.buffer) ?? [];
      list.push([f.byteOffset, f.byteOffset + f.byteLength]);
      byBuffer.set(f.buffer, list);
    }
    expect(byBuffer.size).toBeLessThan(frames.length);
    for (const ranges of byBuffer.values()) {
      ranges.sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBeGreaterThanOrEqual(ranges[i - 1]![1]);
    }
    frames.forEach((f, i) => expect((decodeFrame(f) as RequestFrame).id).toBe(i));
  });
});

describe('FrameDecoder', () => {
  it('decodes frames that lie inside one chunk in place (payload bytes are views of the chunk)', () => {
    const chunk = concat([
      encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 1, flags: 0, payload: { cache: 'c', key: new Uint8Array([1, 2, 3]) } }),
      encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 2, flags: 0, payload: { cache: 'c', key: new Uint8Array([4, 5]) } }),
    ]);
    const [a, b] = new FrameDecoder().push(chunk) as [RequestFrame<typeof Op.CACHE_GET>, RequestFrame<typeof Op.CACHE_GET>];
    expect(a.payload.key.buffer).toBe(chunk.buffer);
    expect(b.payload.key.buffer).toBe(chunk.buffer);
    expect(Array.from(b.payload.key)).toEqual([4, 5]);
  });

  it('copies a frame that straddles chunks into its own buffer, and keeps later frames in place', () => {
    const one = encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 1, flags: 0, payload: { cache: 'c', key: new Uint8Array([1, 2, 3]) } });
    const two = encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 2, flags: 0, payload: { cache: 'c', key: new Uint8Array([4]) } });
    const d = new FrameDecoder();
    const first = one.slice(0, 10);
    const second = concat([one.subarray(10), two]);
    expect(d.push(first)).toEqual([]);
    expect(d.buffered).toBe(10);
    const [a, b] = d.push(second) as [RequestFrame<typeof Op.CACHE_GET>, RequestFrame<typeof Op.CACHE_GET>];
    expect(a.payload.key.buffer).not.toBe(first.buffer);
    expect(a.payload.key.buffer).not.toBe(second.buffer);
    expect(Array.from(a.payload.key)).toEqual([1, 2, 3]);
    expect(b.payload.key.buffer).toBe(second.buffer);
    expect(d.buffered).toBe(0);
  });

  it('copies a small held-over partial frame out of a large read buffer (Buffer chunks too)', () => {
    const frame = encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 9, flags: 0, payload: { cache: 'c', key: new Uint8Array([5, 6]) } });
    const readBuffer = Buffer.alloc(64 * 1024);
    const filler = encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 0, payload: {} });
    readBuffer.set(filler, 0);
    readBuffer.set(frame.subarray(0, 10), filler.length);
    const d = new FrameDecoder();
    expect(d.push(readBuffer.subarray(0, filler.length + 10))).toHaveLength(1);
    readBuffer.fill(0xee); // the socket layer reuses its buffer
    const [f] = d.push(frame.subarray(10)) as [RequestFrame<typeof Op.CACHE_GET>];
    expect(f.id).toBe(9);
    expect(Array.from(f.payload.key)).toEqual([5, 6]);
  });

  it('ignores empty chunks', () => {
    const d = new FrameDecoder();
    expect(d.push(new Uint8Array(0))).toEqual([]);
    expect(d.buffered).toBe(0);
  });

  it('validates its options, naming the field', () => {
    expect(() => new FrameDecoder({ maxFrameSize: 0 })).toThrow(/maxFrameSize/);
    expect(() => new FrameDecoder({ maxFrameSize: 2 ** 32 })).toThrow(/maxFrameSize/);
    expect(() => new FrameDecoder({ maxFrameSize: 1000.5 })).toThrow(ProtocolConfigError);
    expect(() => new FrameDecoder({ expectMagic: 'yes' as unknown as boolean })).toThrow(/expectMagic/);
    const e = (() => {
      try {
        new FrameDecoder({ maxFrameSize: -1 });
      } catch (err) {
        return err as ProtocolConfigError;
      }
      return null;
    })();
    expect(e?.code).toBe('GRID_INVALID_CONFIG');
    expect(new FrameDecoder({ maxFrameSize: 1024 }).maxFrameSize).toBe(1024);
  });

  it('rejects unknown frame kinds, empty frames, short headers and missing payloads', () => {
    expect(decodeError(framed([9, 0x80])).message).toMatch(/unknown frame kind 9/);
    expect(decodeError(framed([])).message).toMatch(/length 0/);
    expect(decodeError(framed([3, 0, 10, 0, 0, 0, 1, 0])).message).toMatch(/too short/);
    expect(decodeError(framed([4, 0, 0, 0, 1, 0])).message).toMatch(/too short/);
    expect(decodeError(framed([0])).message).toMatch(/too short/);
  });

  it('rejects trailing bytes after the payload value and malformed MessagePack', () => {
    expect(decodeError(framed([3, 0, 1, 0, 0, 0, 1, 0, 0x80, 0x80])).message).toMatch(/malformed payload/);
    expect(decodeError(framed([3, 0, 1, 0, 0, 0, 1, 0, 0xc1])).message).toMatch(/malformed payload/); // never-used byte
    expect(decodeError(framed([3, 0, 1, 0, 0, 0, 1, 0, 0x92, 0x01])).message).toMatch(/malformed payload/); // truncated array
    expect(decodeError(framed([3, 0, 1, 0, 0, 0, 1, 0, 0xdd, 0xff, 0xff, 0xff, 0xff])).message).toMatch(/malformed payload/);
    // map with a bin key
    expect(decodeError(framed([3, 0, 1, 0, 0, 0, 1, 0, 0x81, 0xc4, 0x01, 0x00, 0x01])).message).toMatch(/malformed payload/);
    // __proto__ key
    const proto = new Uint8Array([0x81, 0xa9, ...new TextEncoder().encode('__proto__'), 0x80]);
    expect(decodeError(framed([3, 0, 1, 0, 0, 0, 1, 0, ...proto])).message).toMatch(/malformed payload/);
  });

  it('checks handshake bodies: required fields, types, bounds', () => {
    const hs = (body: unknown): Uint8Array => framed(concat([new Uint8Array([FrameKind.HANDSHAKE]), encode(body)]));
    const good = { minVersion: 1, maxVersion: 1, features: 3, sessionId: 's' };
    expect(new FrameDecoder().push(hs(good))).toHaveLength(1);
    // unknown fields are tolerated in the handshake (it is read before versions are settled)
    expect(new FrameDecoder().push(hs({ ...good, futureField: [1, 2] }))).toHaveLength(1);
    for (const bad of [
      [],
      'hello',
      { ...good, minVersion: 2, maxVersion: 1 },
      { ...good, minVersion: -1 },
      { ...good, maxVersion: 70000 },
      { ...good, features: 'all' },
      { ...good, sessionId: '' },
      { ...good, sessionId: 'x'.repeat(129) },
      { ...good, sessionId: undefined },
      { ...good, authToken: 5 },
      { ...good, authToken: null },
      { ...good, clusterId: 'x'.repeat(257) },
    ]) {
      expect(decodeError(hs(bad)).message).toMatch(/HANDSHAKE/);
    }
    const ok = { version: 1, features: 3, nodeId: 'n1', clusterId: 'c', topologyVersion: 4, partitions: 1024, idleTimeoutMs: 30000 };
    const hsOk = (body: unknown): Uint8Array => framed(concat([new Uint8Array([FrameKind.HANDSHAKE_OK]), encode(body)]));
    expect(new FrameDecoder().push(hsOk(ok))).toHaveLength(1);
    for (const bad of [{ ...ok, partitions: 0 }, { ...ok, nodeId: '' }, { ...ok, topologyVersion: -1 }, { ...ok, idleTimeoutMs: 'x' }]) {
      expect(decodeError(hsOk(bad)).message).toMatch(/HANDSHAKE_OK/);
    }
    // maxFrameSize (ADR 0009): optional on both sides; when present, a u32 of at least 256
    for (const maxFrameSize of [256, 65536, 0xffffffff]) {
      expect(new FrameDecoder().push(hs({ ...good, maxFrameSize }))).toEqual([{ kind: FrameKind.HANDSHAKE, body: { ...good, maxFrameSize } }]);
      expect(new FrameDecoder().push(hsOk({ ...ok, maxFrameSize }))).toEqual([{ kind: FrameKind.HANDSHAKE_OK, body: { ...ok, maxFrameSize } }]);
    }
    for (const maxFrameSize of [255, 0, -1, 1.5, 2 ** 32, '4194304', null, true]) {
      expect(decodeError(hs({ ...good, maxFrameSize })).message).toMatch(/HANDSHAKE: field "maxFrameSize" must be a u32 of at least 256/);
      expect(decodeError(hsOk({ ...ok, maxFrameSize })).message).toMatch(/HANDSHAKE_OK: field "maxFrameSize" must be a u32 of at least 256/);
    }
    const hsErr = (body: unknown): Uint8Array => framed(concat([new Uint8Array([FrameKind.HANDSHAKE_ERROR]), encode(body)]));
    expect(decodeError(hsErr({ code: 'x', message: '' })).message).toMatch(/HANDSHAKE_ERROR/);
  });

  it('checks the error payload of responses with the ERROR flag, and known push payloads', () => {
    const resp = (flags: number, payload: unknown): Uint8Array =>
      framed(concat([new Uint8Array([4, 0, 0, 0, 1, flags, 0, 0, 0, 0, 0, 0, 0, 1]), encode(payload)]));
    expect(new FrameDecoder().push(resp(ResponseFlag.ERROR, { code: 4, message: 'm', partition: 3 }))).toHaveLength(1);
    expect(new FrameDecoder().push(resp(0, 'anything'))).toHaveLength(1);
    expect(decodeError(resp(ResponseFlag.ERROR, { message: 'm' })).message).toMatch(/error payload/);
    expect(decodeError(resp(ResponseFlag.ERROR, { code: 4, message: 'm', partition: -1 })).message).toMatch(/partition/);
    const push = (kind: number, payload: unknown): Uint8Array =>
      framed(concat([new Uint8Array([5, 0, kind, 0, 0, 0, 0, 0, 0, 0, 1]), encode(payload)]));
    expect(decodeError(push(PushKind.TOPOLOGY_CHANGED, { version: 'x' })).message).toMatch(/version/);
    expect(new FrameDecoder().push(push(77, 'ignored'))).toHaveLength(1);
  });

  it('decodeFrame wants exactly one whole frame', () => {
    const f = encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 0, payload: {} });
    expect(decodeFrame(f)).toEqual({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 0, payload: {} });
    expect(() => decodeFrame(concat([f, f]))).toThrow(ProtocolError);
    expect(() => decodeFrame(f.subarray(0, f.length - 1))).toThrow(ProtocolError);
  });
});

describe('helpers', () => {
  it('negotiateVersion picks the highest common version or null', () => {
    expect(negotiateVersion({ minVersion: 1, maxVersion: 1 })).toBe(1);
    expect(negotiateVersion({ minVersion: 1, maxVersion: 9 })).toBe(1);
    expect(negotiateVersion({ minVersion: 2, maxVersion: 9 })).toBeNull();
    expect(negotiateVersion({ minVersion: 2, maxVersion: 9 }, { min: 1, max: 4 })).toBe(4);
    expect(negotiateVersion({ minVersion: 0, maxVersion: 3 }, { min: 1, max: 4 })).toBe(3);
    expect(negotiateVersion({ minVersion: 5, maxVersion: 6 }, { min: 1, max: 4 })).toBeNull();
  });

  it('negotiateFeatures intersects the bits', () => {
    expect(negotiateFeatures(0xffffffff)).toBe(ALL_FEATURES);
    expect(negotiateFeatures(1, 2)).toBe(0);
    expect(negotiateFeatures(3, 2)).toBe(2);
  });

  it('payloadForFeatures drops only the fields of features the node did not grant, in a copy', () => {
    const p = { cache: 'c', key: new Uint8Array([1]), seq: 1, leaseMs: 10, ifAbsent: true };
    const older = payloadForFeatures(Op.LOCK_TRY_ACQUIRE_GET, p, Feature.TOPOLOGY_PUSH | Feature.LOCKS);
    expect(older).toEqual({ cache: 'c', key: p.key, seq: 1, leaseMs: 10 });
    expect(p.ifAbsent).toBe(true);
    expect(payloadForFeatures(Op.LOCK_TRY_ACQUIRE_GET, p, ALL_FEATURES)).toBe(p);
    const plain = { cache: 'c', key: p.key, seq: 1, leaseMs: 10 };
    expect(payloadForFeatures(Op.LOCK_TRY_ACQUIRE_GET, plain, 0)).toBe(plain);
    expect(payloadForFeatures(Op.CACHE_PUT, p, 0)).toBe(p);
    expect(payloadForFeatures(Op.LOCK_TRY_ACQUIRE_GET, null, 0)).toBeNull();
  });

  it('errorPayload bounds the message and includes the partition only when given', () => {
    expect(errorPayload(ErrorCode.NOT_PRIMARY, 'x')).toEqual({ code: 4, message: 'x' });
    expect(Object.keys(errorPayload(ErrorCode.NOT_PRIMARY, 'x'))).not.toContain('partition');
    expect(errorPayload(ErrorCode.PARTITION_LOST, 'y', 0)).toEqual({ code: 6, message: 'y', partition: 0 });
    for (const long of ['a'.repeat(10000), '€'.repeat(5000), '😀'.repeat(3000)]) {
      const p = errorPayload(ErrorCode.INTERNAL, long);
      expect(utf8Length(p.message)).toBeLessThanOrEqual(MAX_ERROR_MESSAGE_BYTES);
      expect(p.message.endsWith('...')).toBe(true);
      // still decodable as an error payload
      const f = encodeFrame(errorResponse(1, 1, ErrorCode.INTERNAL, long));
      expect(new FrameDecoder().push(f)).toHaveLength(1);
    }
  });

  it('errorResponse and handshakeError build frames the decoder accepts', () => {
    const r = errorResponse(5, 3, ErrorCode.PARTITION_MOVING, 'moving', 17, ResponseFlag.REFRESH_MAP);
    expect(r.flags).toBe(ResponseFlag.ERROR | ResponseFlag.REFRESH_MAP);
    expect(decodeFrame(encodeFrame(r))).toEqual(r);
    const h = handshakeError(ErrorCode.VERSION_MISMATCH, 'no common version');
    expect(decodeFrame(encodeFrame(h))).toEqual(h);
  });

  it('utf8Length matches TextEncoder', () => {
    for (const s of ['', 'abc', 'é', '€', '😀', 'a😀b€', '\ud800', '\ud800x', '\udc00']) {
      expect(utf8Length(s)).toBe(new TextEncoder().encode(s).length);
    }
  });

  it('ProtocolError keeps instanceof across copies (Symbol.for brand) and carries code/retryable', () => {
    const e = new ProtocolError('x', ErrorCode.FRAME_TOO_LARGE);
    const fake = { [Symbol.for('gridlink.ProtocolError')]: true };
    expect(fake instanceof ProtocolError).toBe(true);
    expect(e.code).toBe('GRID_FRAME_TOO_LARGE');
    expect(e.retryable).toBe(false);
  });
});
