/**
 * Frame codec: `encodeFrame` turns a Frame into bytes, `FrameDecoder` turns a stream of socket
 * chunks back into Frames.
 *
 * Layout (all integers big-endian; docs/protocol.md has the full specification):
 *
 *   u32 length                      number of bytes that follow (kind byte .. end of payload)
 *   u8  kind                        FrameKind
 *   HANDSHAKE / HANDSHAKE_OK / HANDSHAKE_ERROR:   payload
 *   REQUEST:   u16 op, u32 id, u8 flags,          payload
 *   RESPONSE:  u32 id, u8 flags, u64 topology,    payload
 *   PUSH:      u16 push kind, u64 topology,       payload
 *
 * The payload is exactly one MessagePack value filling the rest of the frame.
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
import { ErrorCode, ProtocolError } from './errors.js';
import { fastDecode, fastSize, fastWrite, NO_MATCH } from './fastpath.js';
import {
  DEFAULT_MAX_FRAME_SIZE,
  FrameKind,
  MAGIC,
  MAX_MAX_FRAME_SIZE,
  MIN_MAX_FRAME_SIZE,
  PushKind,
  ResponseFlag,
  type Frame,
  type HandshakeError,
  type HandshakeOk,
  type HandshakeRequest,
  type Op,
} from './messages.js';
import {
  checkErrorPayload,
  checkHandshakeError,
  checkHandshakeOk,
  checkHandshakeRequest,
  checkPushPayload,
  describeValue,
} from './validate.js';

/** Bytes of the length prefix. */
export const LENGTH_PREFIX_SIZE = 4;
/** Header bytes after the length prefix (kind byte included), per frame kind. */
export const HEADER_SIZE = {
  [FrameKind.HANDSHAKE]: 1,
  [FrameKind.HANDSHAKE_OK]: 1,
  [FrameKind.HANDSHAKE_ERROR]: 1,
  [FrameKind.REQUEST]: 8,
  [FrameKind.RESPONSE]: 14,
  [FrameKind.PUSH]: 11,
} as const satisfies Record<FrameKind, number>;

const TWO_32 = 0x1_0000_0000;

const CONFIG_ERROR_BRAND = Symbol.for('gridlink.ProtocolConfigError');

/** Thrown when a codec option is invalid (at construction, naming the option). */
export class ProtocolConfigError extends Error {
  readonly code = 'GRID_INVALID_CONFIG';
  readonly retryable = false;

  constructor(message: string) {
    super(message);
    this.name = 'ProtocolConfigError';
    Object.defineProperty(this, CONFIG_ERROR_BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && CONFIG_ERROR_BRAND in value;
  }
}

function checkMaxFrameSize(value: unknown, field: string): number {
  if (value === undefined) return DEFAULT_MAX_FRAME_SIZE;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE) {
    throw new ProtocolConfigError(
      `${field} must be an integer between ${MIN_MAX_FRAME_SIZE} and ${MAX_MAX_FRAME_SIZE}, got ${describeValue(value)}`,
    );
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// Small-buffer slab
//
// A freshly allocated small Uint8Array lives on the JS heap; the first `subarray`/`buffer` access
// (which the decoder, the msgpack decoder and socket writes all make) moves it off-heap, which
// costs more than encoding the frame. Like Node's Buffer pool, small frames are therefore carved
// out of a shared ArrayBuffer instead. Each returned view is distinct; a retained small frame
// keeps at most one slab alive.

const SLAB_SIZE = 32 * 1024;
const SLAB_MAX_ALLOC = 4 * 1024;

/** Distinct views carved in turn out of a shared ArrayBuffer; a full one is replaced by `make`'s next. */
class Slab {
  private buf: ArrayBuffer;
  private offset = 0;
  constructor(private readonly make: (size: number) => ArrayBuffer) {
    this.buf = make(SLAB_SIZE);
  }
  take(n: number): Uint8Array {
    if (this.offset + n > SLAB_SIZE) {
      this.buf = this.make(SLAB_SIZE);
      this.offset = 0;
    }
    const out = new Uint8Array(this.buf, this.offset, n);
    this.offset = (this.offset + n + 7) & ~7;
    return out;
  }
}

/** allocBytes' slab: zero-filled, and its space is never reused. */
const zeroedSlab = new Slab((size) => new ArrayBuffer(size));
/**
 * allocFilled's slab, not zero-filled: its callers overwrite every byte they get (with 1 KiB
 * frames a new zeroed 32 KiB slab every 30 frames was 3 % of a client's CPU time under puts).
 */
const unfilledSlab = new Slab((size) => Buffer.allocUnsafeSlow(size).buffer);

/**
 * A byte array of length `n` that the caller fills completely (frames being encoded, frames
 * gathered from several chunks), never zero-filled first (zeroing is work thrown away): small
 * ones are carved, like allocBytes', out of a slab of their own, larger ones allocated alone.
 */
function allocFilled(n: number): Uint8Array {
  return n > SLAB_MAX_ALLOC ? Buffer.allocUnsafeSlow(n) : unfilledSlab.take(n);
}

/**
 * A byte array of length `n` (zero-filled: slab space is never reused) that no other call returns.
 * Exported for other hot paths that make many small byte arrays (the client's value serializer).
 */
export function allocBytes(n: number): Uint8Array {
  return n > SLAB_MAX_ALLOC ? new Uint8Array(n) : zeroedSlab.take(n);
}

// ---------------------------------------------------------------------------------------------
// Encoding

const encoder = new Encoder({ useBigInt64: false, ignoreUndefined: true, initialBufferSize: 4096 });

export interface EncodeOptions {
  /** Refuse (FRAME_TOO_LARGE) to encode a frame whose length field would exceed this. */
  maxFrameSize?: number;
}

function encodePayload(payload: unknown): Uint8Array {
  try {
    return encoder.encodeSharedRef(payload);
  } catch (err) {
    throw new ProtocolError(`payload cannot be encoded: ${(err as Error).message}`, ErrorCode.BAD_REQUEST);
  }
}

function badField(field: string, expected: string, value: unknown): ProtocolError {
  return new ProtocolError(`frame ${field} must be ${expected}, got ${describeValue(value)}`, ErrorCode.BAD_REQUEST);
}

function writeU32(out: Uint8Array, at: number, v: number): void {
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

function writeU64(out: Uint8Array, at: number, v: number): void {
  writeU32(out, at, Math.floor(v / TWO_32));
  writeU32(out, at + 4, v >>> 0);
}

function isU32(v: unknown): v is number {
  return typeof v === 'number' && v >>> 0 === v;
}
function isU16(v: unknown): v is number {
  return typeof v === 'number' && (v & 0xffff) === v;
}
function isU8(v: unknown): v is number {
  return typeof v === 'number' && (v & 0xff) === v;
}
function isVersion(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Encodes a frame, length prefix included. Throws ProtocolError (BAD_REQUEST) when a header field
 * is out of range or the payload holds something MessagePack cannot carry, and FRAME_TOO_LARGE
 * when the frame would exceed `maxFrameSize` (default DEFAULT_MAX_FRAME_SIZE).
 *
 * The returned array belongs to the caller: no other call returns an overlapping one. Small
 * frames are views into a shared slab (like Node's pooled Buffers), so use `byteOffset` and
 * `byteLength` rather than `.buffer` alone.
 */
export function encodeFrame(frame: Frame, options?: EncodeOptions): Uint8Array {
  const max = options?.maxFrameSize === undefined ? DEFAULT_MAX_FRAME_SIZE : checkMaxFrameSize(options.maxFrameSize, 'maxFrameSize');
  let header: number;
  switch (frame.kind) {
    case FrameKind.REQUEST:
      if (!isU16(frame.op)) throw badField('op', 'a u16', frame.op);
      if (!isU32(frame.id)) throw badField('id', 'a u32', frame.id);
      if (!isU8(frame.flags)) throw badField('flags', 'a u8', frame.flags);
      header = HEADER_SIZE[FrameKind.REQUEST];
      break;
    case FrameKind.RESPONSE:
      if (!isU32(frame.id)) throw badField('id', 'a u32', frame.id);
      if (!isU8(frame.flags)) throw badField('flags', 'a u8', frame.flags);
      if (!isVersion(frame.topologyVersion)) throw badField('topologyVersion', 'a non-negative safe integer', frame.topologyVersion);
      header = HEADER_SIZE[FrameKind.RESPONSE];
      break;
    case FrameKind.PUSH:
      if (!isU16(frame.push)) throw badField('push', 'a u16', frame.push);
      if (!isVersion(frame.topologyVersion)) throw badField('topologyVersion', 'a non-negative safe integer', frame.topologyVersion);
      header = HEADER_SIZE[FrameKind.PUSH];
      break;
    case FrameKind.HANDSHAKE:
    case FrameKind.HANDSHAKE_OK:
    case FrameKind.HANDSHAKE_ERROR:
      header = 1;
      break;
    default:
      throw badField('kind', 'a FrameKind', (frame as { kind: unknown }).kind);
  }
  const value = frame.kind <= FrameKind.HANDSHAKE_ERROR ? (frame as { body: unknown }).body : (frame as { payload: unknown }).payload;
  const fast = fastSize(value);
  const payload = fast < 0 ? encodePayload(value) : null;
  const length = header + (payload === null ? fast : payload.length);
  if (length > max) {
    throw new ProtocolError(`frame of ${length} bytes exceeds the maximum frame size ${max}`, ErrorCode.FRAME_TOO_LARGE);
  }
  const out = allocFilled(LENGTH_PREFIX_SIZE + length);
  writeU32(out, 0, length);
  out[4] = frame.kind;
  switch (frame.kind) {
    case FrameKind.REQUEST:
      out[5] = frame.op >>> 8;
      out[6] = frame.op & 0xff;
      writeU32(out, 7, frame.id);
      out[11] = frame.flags;
      break;
    case FrameKind.RESPONSE:
      writeU32(out, 5, frame.id);
      out[9] = frame.flags;
      writeU64(out, 10, frame.topologyVersion);
      break;
    case FrameKind.PUSH:
      out[5] = frame.push >>> 8;
      out[6] = frame.push & 0xff;
      writeU64(out, 7, frame.topologyVersion);
      break;
    default:
      break;
  }
  if (payload === null) fastWrite(out, LENGTH_PREFIX_SIZE + header, value);
  else out.set(payload, LENGTH_PREFIX_SIZE + header);
  return out;
}

/**
 * Bytes of the RESPONSE frame (length prefix included) carrying `payload`, when the payload has
 * one of the fast shapes (fastpath.ts: the empty result, `{ value }`, ...), else -1 (use
 * encodeFrame). A server that gathers many responses into one buffer then calls writeResponse
 * for the same payload, before any other encoding: no frame object and no byte array per
 * response.
 */
export function responseSize(payload: unknown): number {
  const fast = fastSize(payload);
  return fast < 0 ? -1 : LENGTH_PREFIX_SIZE + HEADER_SIZE[FrameKind.RESPONSE] + fast;
}

/**
 * Writes at `out[at]` the RESPONSE frame of `size` bytes that the last responseSize call
 * measured for `payload`. The caller vouches for the header fields: `id` a u32, `flags` a u8,
 * `topologyVersion` a non-negative safe integer (what encodeFrame would check).
 */
export function writeResponse(out: Uint8Array, at: number, size: number, id: number, flags: number, topologyVersion: number, payload: unknown): void {
  writeU32(out, at, size - LENGTH_PREFIX_SIZE);
  out[at + 4] = FrameKind.RESPONSE;
  writeU32(out, at + 5, id);
  out[at + 9] = flags;
  writeU64(out, at + 10, topologyVersion);
  fastWrite(out, at + LENGTH_PREFIX_SIZE + HEADER_SIZE[FrameKind.RESPONSE], payload);
}

// ---------------------------------------------------------------------------------------------
// Decoding

const decoders = new Map<number, Decoder>();

/** One MessagePack decoder per distinct frame size limit, shared by every FrameDecoder using it. */
function msgpackDecoder(maxFrameSize: number): Decoder {
  let d = decoders.get(maxFrameSize);
  if (d === undefined) {
    // Every element of a string/bin/array/map takes at least one byte, so nothing longer than the
    // frame can be genuine: refuse such lengths before allocating anything for them.
    d = new Decoder({
      useBigInt64: false,
      maxStrLength: maxFrameSize,
      maxBinLength: maxFrameSize,
      maxArrayLength: maxFrameSize,
      maxMapLength: maxFrameSize,
      maxExtLength: maxFrameSize,
    });
    decoders.set(maxFrameSize, d);
  }
  return d;
}

function readU32(b: Uint8Array, at: number): number {
  return b[at]! * 0x100_0000 + ((b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!);
}

function readU64(b: Uint8Array, at: number): number {
  const hi = readU32(b, at);
  if (hi >= 0x20_0000) throw new ProtocolError('topology version is 2^53 or more', ErrorCode.BAD_REQUEST);
  return hi * TWO_32 + readU32(b, at + 4);
}

/** Decodes the payload `b[start, end)`: one MessagePack value, nothing after it. */
function decodePayload(mp: Decoder, b: Uint8Array, start: number, end: number): unknown {
  if (start >= end) throw new ProtocolError('frame has no payload', ErrorCode.BAD_REQUEST);
  const fast = fastDecode(b, start, end);
  if (fast !== NO_MATCH) return fast;
  try {
    return mp.decode(b.subarray(start, end));
  } catch (err) {
    throw new ProtocolError(`malformed payload: ${err instanceof Error ? err.message : String(err)}`, ErrorCode.BAD_REQUEST);
  }
}

function tooShort(kind: number, length: number): ProtocolError {
  return new ProtocolError(`frame of kind ${kind} too short (${length} bytes)`, ErrorCode.BAD_REQUEST);
}

/**
 * Decodes one frame body (the bytes after the length prefix). Payload byte arrays are views into
 * `body`. Throws ProtocolError only.
 */
export function decodeFrameBody(body: Uint8Array, maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE): Frame {
  return decodeBody(body, 0, body.length, msgpackDecoder(maxFrameSize));
}

/** Decodes the frame body `b[s, end)` in place. */
function decodeBody(b: Uint8Array, s: number, end: number, mp: Decoder): Frame {
  const len = end - s;
  if (len <= 0) throw new ProtocolError('empty frame', ErrorCode.BAD_REQUEST);
  const kind = b[s]!;
  switch (kind) {
    case FrameKind.REQUEST: {
      if (len <= HEADER_SIZE[FrameKind.REQUEST]) throw tooShort(kind, len);
      const op = ((b[s + 1]! << 8) | b[s + 2]!) as Op;
      const id = readU32(b, s + 3);
      const flags = b[s + 7]!;
      const payload = decodePayload(mp, b, s + 8, end);
      return { kind: FrameKind.REQUEST, op, id, flags, payload: payload as never };
    }
    case FrameKind.RESPONSE: {
      if (len <= HEADER_SIZE[FrameKind.RESPONSE]) throw tooShort(kind, len);
      const id = readU32(b, s + 1);
      const flags = b[s + 5]!;
      const topologyVersion = readU64(b, s + 6);
      const payload = decodePayload(mp, b, s + 14, end);
      if ((flags & ResponseFlag.ERROR) !== 0) checkErrorPayload(payload);
      return { kind: FrameKind.RESPONSE, id, flags, topologyVersion, payload };
    }
    case FrameKind.PUSH: {
      if (len <= HEADER_SIZE[FrameKind.PUSH]) throw tooShort(kind, len);
      const push = ((b[s + 1]! << 8) | b[s + 2]!) as PushKind;
      const topologyVersion = readU64(b, s + 3);
      const payload = decodePayload(mp, b, s + 11, end);
      checkPushPayload(push, payload);
      return { kind: FrameKind.PUSH, push, topologyVersion, payload: payload as never };
    }
    case FrameKind.HANDSHAKE: {
      if (len <= 1) throw tooShort(kind, len);
      const body = decodePayload(mp, b, s + 1, end);
      checkHandshakeRequest(body);
      return { kind: FrameKind.HANDSHAKE, body: body as HandshakeRequest };
    }
    case FrameKind.HANDSHAKE_OK: {
      if (len <= 1) throw tooShort(kind, len);
      const body = decodePayload(mp, b, s + 1, end);
      checkHandshakeOk(body);
      return { kind: FrameKind.HANDSHAKE_OK, body: body as HandshakeOk };
    }
    case FrameKind.HANDSHAKE_ERROR: {
      if (len <= 1) throw tooShort(kind, len);
      const body = decodePayload(mp, b, s + 1, end);
      checkHandshakeError(body);
      return { kind: FrameKind.HANDSHAKE_ERROR, body: body as HandshakeError };
    }
    default:
      throw new ProtocolError(`unknown frame kind ${kind}`, ErrorCode.BAD_REQUEST);
  }
}

const REQUEST_HEADER = HEADER_SIZE[FrameKind.REQUEST];

/** The OversizedRequest whose header (kind byte first) starts at `b[s]`. */
function oversized(b: Uint8Array, s: number, length: number): OversizedRequest {
  return { kind: 'oversized-request', op: (b[s + 1]! << 8) | b[s + 2]!, id: readU32(b, s + 3), flags: b[s + 7]!, length };
}

/** Largest held-over tail that is copied out of its chunk rather than kept as a view. */
const COMPACT_TAIL_MAX = 16 * 1024;

/**
 * The bytes of `chunk` from `from` on, to be held until more data arrives. A small tail of a much
 * larger buffer is copied so that a connection idling mid-frame does not pin a whole socket read
 * buffer; otherwise it stays a view.
 */
function compactTail(chunk: Uint8Array, from: number): Uint8Array {
  if (from === 0 && chunk.byteLength === chunk.buffer.byteLength) return chunk;
  const n = chunk.length - from;
  if (n <= COMPACT_TAIL_MAX && n * 2 < chunk.buffer.byteLength) {
    // Not chunk.slice(): on a Node Buffer that is a view, not a copy.
    const copy = new Uint8Array(n);
    copy.set(chunk.subarray(from));
    return copy;
  }
  return from === 0 ? chunk : chunk.subarray(from);
}

export interface FrameDecoderOptions {
  /** Largest accepted length field (bytes after the prefix). Default DEFAULT_MAX_FRAME_SIZE. */
  maxFrameSize?: number;
  /** Node side: consume and check the 4 MAGIC bytes before the first frame. */
  expectMagic?: boolean;
}

/**
 * Not a wire frame: a REQUEST whose length field exceeds the decoder's `maxFrameSize`, as
 * `FrameDecoder.pushRequests` reports it. Its 8-byte header (kind, op, id, flags) was read; its
 * body is skipped unread and never buffered. The receiver answers `id` with FRAME_TOO_LARGE and
 * the connection carries on (ADR 0009).
 */
export interface OversizedRequest {
  kind: 'oversized-request';
  op: number;
  id: number;
  flags: number;
  /** The frame's length field (bytes after the prefix). */
  length: number;
}

/**
 * Incremental frame decoder: feed it socket chunks in order, get back the frames they complete.
 *
 * - A frame that lies inside one chunk is decoded in place: its payload byte arrays are views into
 *   that chunk (so do not reuse a chunk's memory after pushing it). Only a frame that straddles
 *   chunks is copied, once, into a buffer of its own.
 * - The length prefix is checked as soon as its 4 bytes are in: with `push`, a frame over
 *   `maxFrameSize` throws FRAME_TOO_LARGE before any of it is buffered. With `pushRequests`, an
 *   oversized REQUEST frame is instead reported as an OversizedRequest once its header is in,
 *   and its body is skipped as it arrives (an oversized frame of any other kind still throws).
 *   So after `push` returns, `buffered` is below 4 + maxFrameSize. A small partial frame held
 *   over is copied out of its (larger) chunk, so an idle connection does not pin a whole read
 *   buffer.
 * - Malformed input throws ProtocolError (never another exception type); the decoder is then
 *   dead (every later push throws, frames completed earlier in the same chunk are not returned)
 *   and the connection should be closed.
 */
export class FrameDecoder {
  readonly maxFrameSize: number;
  private readonly mp: Decoder;
  private magicLeft: number;
  /** Chunks not yet consumed; the first one from `headOffset`. */
  private chunks: Uint8Array[] = [];
  private headOffset = 0;
  private pending = 0;
  /**
   * Length field of the frame being awaited, or -1 when its prefix has not been read yet. Above
   * maxFrameSize (pushRequests only): an oversized request whose header is still awaited.
   */
  private frameLength = -1;
  /** Bytes of an oversized request's body still to be dropped (nothing is pending meanwhile). */
  private skipLeft = 0;
  private failure: ProtocolError | null = null;

  constructor(options?: FrameDecoderOptions) {
    if (options !== undefined && (typeof options !== 'object' || options === null)) {
      throw new ProtocolConfigError('FrameDecoder options must be an object');
    }
    this.maxFrameSize = checkMaxFrameSize(options?.maxFrameSize, 'maxFrameSize');
    const expectMagic = options?.expectMagic ?? false;
    if (typeof expectMagic !== 'boolean') throw new ProtocolConfigError('expectMagic must be a boolean');
    this.magicLeft = expectMagic ? MAGIC.length : 0;
    this.mp = msgpackDecoder(this.maxFrameSize);
  }

  /** Bytes received but not yet returned as frames (a skipped body's bytes are not kept). */
  get buffered(): number {
    return this.frameLength < 0 ? this.pending : this.pending + LENGTH_PREFIX_SIZE;
  }

  /** Bytes of an oversized request's body still to arrive and be skipped (pushRequests). */
  get skipping(): number {
    return this.skipLeft;
  }

  /** A frame has started arriving and is not complete yet (buffered, or its body being skipped). */
  get midFrame(): boolean {
    return this.pending > 0 || this.frameLength >= 0 || this.skipLeft > 0;
  }

  /** Whether the MAGIC bytes (if expected) have all arrived. */
  get magicReceived(): boolean {
    return this.magicLeft === 0;
  }

  /** The frames `chunk` completes. A frame over maxFrameSize throws FRAME_TOO_LARGE. */
  push(chunk: Uint8Array): Frame[] {
    return this.pushAny(chunk, false) as Frame[];
  }

  /**
   * As `push`, but a REQUEST frame over maxFrameSize does not fail the stream: it comes back, in
   * its place among the frames, as an OversizedRequest, and its body is skipped (the receiving
   * side of a connection, which can answer that request alone). Any other kind of frame over the
   * limit still throws FRAME_TOO_LARGE.
   */
  pushRequests(chunk: Uint8Array): (Frame | OversizedRequest)[] {
    return this.pushAny(chunk, true);
  }

  private pushAny(chunk: Uint8Array, skip: boolean): (Frame | OversizedRequest)[] {
    if (this.failure !== null) throw this.failure;
    try {
      return this.doPush(chunk, skip);
    } catch (err) {
      const pe =
        err instanceof ProtocolError
          ? err
          : new ProtocolError(`decoder failure: ${err instanceof Error ? err.message : String(err)}`, ErrorCode.BAD_REQUEST);
      this.failure = pe;
      this.chunks = [];
      this.pending = 0;
      this.headOffset = 0;
      this.frameLength = -1;
      this.skipLeft = 0;
      throw pe;
    }
  }

  private doPush(input: Uint8Array, skip: boolean): (Frame | OversizedRequest)[] {
    let chunk = input;
    if (!(chunk instanceof Uint8Array)) throw new ProtocolError('chunk must be a Uint8Array', ErrorCode.BAD_REQUEST);
    if (this.magicLeft > 0) {
      let i = 0;
      while (this.magicLeft > 0 && i < chunk.length) {
        const expected = MAGIC[MAGIC.length - this.magicLeft]!;
        if (chunk[i] !== expected) throw new ProtocolError('bad magic bytes: not a gridlink client', ErrorCode.BAD_REQUEST);
        this.magicLeft--;
        i++;
      }
      chunk = i === 0 ? chunk : chunk.subarray(i);
    }
    const out: (Frame | OversizedRequest)[] = [];
    if (this.skipLeft > 0) {
      // The rest of an oversized request's body (nothing else is pending meanwhile).
      const k = Math.min(this.skipLeft, chunk.length);
      this.skipLeft -= k;
      chunk = chunk.subarray(k);
    }
    if (chunk.length === 0) return out;

    if (this.pending === 0 && this.frameLength < 0) {
      // Fast path: nothing held over; decode whole frames straight out of this chunk.
      let pos = 0;
      const n = chunk.length;
      while (n - pos >= LENGTH_PREFIX_SIZE) {
        const length = this.checkLength(readU32(chunk, pos), skip);
        const start = pos + LENGTH_PREFIX_SIZE;
        if (length > this.maxFrameSize) {
          // An oversized request (checkLength let it through): report its header, skip its body.
          if (n - start < REQUEST_HEADER) {
            if (n > start) this.checkOversizedKind(chunk[start]!, length);
            this.frameLength = length;
            pos = start;
            break;
          }
          this.checkOversizedKind(chunk[start]!, length);
          out.push(oversized(chunk, start, length));
          if (n - start >= length) {
            pos = start + length;
            continue;
          }
          this.skipLeft = length - (n - start);
          pos = n;
          break;
        }
        if (n - start < length) {
          this.frameLength = length;
          pos = start;
          break;
        }
        pos = start + length;
        out.push(decodeBody(chunk, start, pos, this.mp));
      }
      if (pos < n) {
        this.chunks.push(compactTail(chunk, pos));
        this.headOffset = 0;
        this.pending = n - pos;
      }
      return out;
    }

    this.chunks.push(chunk);
    this.pending += chunk.length;
    for (;;) {
      if (this.frameLength < 0) {
        if (this.pending < LENGTH_PREFIX_SIZE) break;
        const prefix = this.take(LENGTH_PREFIX_SIZE);
        this.frameLength = this.checkLength(readU32(prefix, 0), skip);
        this.consume(LENGTH_PREFIX_SIZE);
      }
      if (this.frameLength > this.maxFrameSize) {
        const length = this.checkLength(this.frameLength, skip);
        if (this.pending > 0) this.checkOversizedKind(this.chunks[0]![this.headOffset]!, length);
        if (this.pending < REQUEST_HEADER) break;
        out.push(oversized(this.take(REQUEST_HEADER), 0, length));
        this.consume(REQUEST_HEADER);
        this.frameLength = -1;
        const body = length - REQUEST_HEADER;
        const k = Math.min(body, this.pending);
        this.consume(k);
        this.skipLeft = body - k;
        if (this.pending === 0) break;
        continue;
      }
      if (this.pending < this.frameLength) break;
      const body = this.take(this.frameLength);
      this.consume(this.frameLength);
      this.frameLength = -1;
      out.push(decodeBody(body, 0, body.length, this.mp));
      if (this.pending === 0) break;
    }
    if (this.chunks.length === 1 && this.headOffset > 0) {
      this.chunks[0] = compactTail(this.chunks[0]!, this.headOffset);
      this.headOffset = 0;
    }
    return out;
  }

  /** A length field, or FRAME_TOO_LARGE for one over the limit (unless oversized requests are skipped). */
  private checkLength(length: number, skip: boolean): number {
    if (length > this.maxFrameSize && !skip) throw this.tooLarge(length);
    if (length === 0) throw new ProtocolError('frame length 0', ErrorCode.BAD_REQUEST);
    return length;
  }

  /** Only a request can be skipped and answered alone: any other oversized frame fails the stream. */
  private checkOversizedKind(kind: number, length: number): void {
    if (kind !== FrameKind.REQUEST) throw this.tooLarge(length);
  }

  private tooLarge(length: number): ProtocolError {
    return new ProtocolError(`frame length ${length} exceeds the maximum frame size ${this.maxFrameSize}`, ErrorCode.FRAME_TOO_LARGE);
  }

  /**
   * The next `n` pending bytes (n <= pending): a view when they lie in the head chunk, else a copy
   * into a fresh array of `n` bytes.
   */
  private take(n: number): Uint8Array {
    const head = this.chunks[0]!;
    if (head.length - this.headOffset >= n) return head.subarray(this.headOffset, this.headOffset + n);
    const buf = allocFilled(n);
    let filled = 0;
    let offset = this.headOffset;
    for (let i = 0; filled < n; i++) {
      const c = this.chunks[i]!;
      const take = Math.min(c.length - offset, n - filled);
      buf.set(c.subarray(offset, offset + take), filled);
      filled += take;
      offset = 0;
    }
    return buf;
  }

  /** Drops `n` pending bytes from the front. */
  private consume(n: number): void {
    this.pending -= n;
    let left = n;
    while (left > 0) {
      const head = this.chunks[0]!;
      const avail = head.length - this.headOffset;
      if (avail > left) {
        this.headOffset += left;
        return;
      }
      left -= avail;
      this.chunks.shift();
      this.headOffset = 0;
    }
    if (this.chunks.length > 0 && this.chunks[0]!.length === this.headOffset) {
      this.chunks.shift();
      this.headOffset = 0;
    }
  }
}

/** Decodes a buffer holding exactly one whole frame (length prefix included). */
export function decodeFrame(bytes: Uint8Array, maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE): Frame {
  const d = new FrameDecoder({ maxFrameSize });
  const frames = d.push(bytes);
  if (frames.length !== 1 || d.buffered !== 0) {
    throw new ProtocolError(`expected exactly one whole frame, got ${frames.length} and ${d.buffered} spare bytes`, ErrorCode.BAD_REQUEST);
  }
  return frames[0]!;
}
