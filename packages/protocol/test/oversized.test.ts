/**
 * FrameDecoder.pushRequests (ADR 0009): a REQUEST frame over the decoder's maxFrameSize is
 * reported by its header (op, id, flags, length) and its body skipped unread, so the receiver can
 * answer that request alone and keep the connection. Any other oversized frame still fails the
 * stream, and `push` keeps failing on every oversized frame.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  ErrorCode,
  FrameDecoder,
  FrameKind,
  MAGIC,
  MIN_MAX_FRAME_SIZE,
  ProtocolError,
  type Frame,
  type OversizedRequest,
} from '@gridlink/protocol';
import { anyFrame, applyChunking, chunking, concat, u16, u32, u8 } from './arbitraries.js';

const MAX = MIN_MAX_FRAME_SIZE;

/**
 * The bytes of a REQUEST frame with a length field of `length` (> MAX) whose body is 0xC1, the
 * one byte MessagePack never uses: decoding any of it would fail the stream.
 */
function oversizedBytes(op: number, id: number, flags: number, length: number): Uint8Array {
  const out = new Uint8Array(4 + length).fill(0xc1);
  new DataView(out.buffer).setUint32(0, length);
  out[4] = FrameKind.REQUEST;
  new DataView(out.buffer).setUint16(5, op);
  new DataView(out.buffer).setUint32(7, id);
  out[11] = flags;
  return out;
}

/** A frame that fits in MAX, or an oversized request. */
type Item = { frame: Frame } | { oversized: OversizedRequest };

const fitting = anyFrame.filter((f) => encodeFrame(f).length - 4 <= MAX);
const oversized: fc.Arbitrary<OversizedRequest> = fc
  .record({ op: u16, id: u32, flags: u8, length: fc.integer({ min: MAX + 1, max: 3 * MAX }) })
  .map((r) => ({ kind: 'oversized-request' as const, ...r }));
const items: fc.Arbitrary<Item[]> = fc.array(
  fc.oneof(
    fitting.map((frame) => ({ frame })),
    oversized.map((o) => ({ oversized: o })),
  ),
  { minLength: 1, maxLength: 12 },
);

const bytesOf = (it: Item): Uint8Array =>
  'frame' in it ? encodeFrame(it.frame) : oversizedBytes(it.oversized.op, it.oversized.id, it.oversized.flags, it.oversized.length);
const expected = (it: Item): Frame | OversizedRequest => ('frame' in it ? it.frame : it.oversized);

function thrown(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return e as ProtocolError;
  }
  throw new Error('expected a ProtocolError');
}

describe('FrameDecoder.pushRequests: oversized requests are reported and skipped', () => {
  it('any mix of frames and oversized requests, cut anywhere, after MAGIC: each comes back in order, nothing more is buffered than one frame within the limit', () => {
    fc.assert(
      fc.property(items, chunking, (list, c) => {
        const stream = concat([MAGIC, ...list.map(bytesOf)]);
        const decoder = new FrameDecoder({ maxFrameSize: MAX, expectMagic: true });
        const out: (Frame | OversizedRequest)[] = [];
        for (const chunk of applyChunking(stream, c)) {
          out.push(...decoder.pushRequests(chunk));
          expect(decoder.buffered).toBeLessThanOrEqual(4 + MAX);
        }
        expect(out).toEqual(list.map(expected));
        expect(decoder.buffered).toBe(0);
        expect(decoder.skipping).toBe(0);
        expect(decoder.midFrame).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('reports an oversized request as soon as its 8-byte header is in, before its body; the body keeps the decoder mid-frame until its last byte', () => {
    fc.assert(
      fc.property(fitting, oversized, fitting, (before, o, after) => {
        const a = encodeFrame(before);
        const stream = concat([a, oversizedBytes(o.op, o.id, o.flags, o.length), encodeFrame(after)]);
        const headerEnd = a.length + 4 + 8;
        const bodyEnd = a.length + 4 + o.length;
        const decoder = new FrameDecoder({ maxFrameSize: MAX });
        for (let i = 0; i < stream.length; i++) {
          const got = decoder.pushRequests(stream.subarray(i, i + 1));
          const at = i + 1;
          if (at === a.length) expect(got).toEqual([before]);
          else if (at === headerEnd) expect(got).toEqual([o]);
          else if (at === stream.length) expect(got).toEqual([after]);
          else expect(got).toEqual([]);
          if (at > headerEnd && at < bodyEnd) {
            expect(decoder.skipping).toBe(bodyEnd - at);
            expect(decoder.buffered).toBe(0);
            expect(decoder.midFrame).toBe(true);
          }
        }
        expect(decoder.midFrame).toBe(false);
      }),
      { numRuns: 60 },
    );
  });

  it('a huge body is skipped as it arrives, never buffered', () => {
    const decoder = new FrameDecoder();
    const length = 0xffff_fff0;
    const header = oversizedBytes(12, 77, 0, 300).subarray(0, 12);
    new DataView(header.buffer, header.byteOffset).setUint32(0, length);
    expect(decoder.pushRequests(header)).toEqual([{ kind: 'oversized-request', op: 12, id: 77, flags: 0, length }]);
    const chunk = new Uint8Array(64 * 1024).fill(0xc1);
    for (let i = 0; i < 160; i++) {
      expect(decoder.pushRequests(chunk)).toEqual([]);
      expect(decoder.buffered).toBe(0);
    }
    expect(decoder.skipping).toBe(length - 8 - 160 * chunk.length);
  });

  it('an oversized frame of any other kind fails the stream with FRAME_TOO_LARGE as soon as its kind byte arrives', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(FrameKind.HANDSHAKE, FrameKind.HANDSHAKE_OK, FrameKind.HANDSHAKE_ERROR, FrameKind.RESPONSE, FrameKind.PUSH, 6, 99, 255),
        fc.integer({ min: MAX + 1, max: 0xffffffff }),
        fc.boolean(),
        (kind, length, split) => {
          const bytes = new Uint8Array([length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff, kind, 0, 0]);
          const decoder = new FrameDecoder({ maxFrameSize: MAX });
          if (split) expect(decoder.pushRequests(bytes.subarray(0, 4))).toEqual([]);
          const e = thrown(() => decoder.pushRequests(split ? bytes.subarray(4, 5) : bytes));
          expect(e.wireCode).toBe(ErrorCode.FRAME_TOO_LARGE);
          expect(e.message).toMatch(/exceeds the maximum frame size 256/);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('push (not pushRequests) still fails on an oversized request at its length prefix', () => {
    const decoder = new FrameDecoder({ maxFrameSize: MAX });
    const e = thrown(() => decoder.push(oversizedBytes(12, 1, 0, MAX + 1).subarray(0, 4)));
    expect(e.wireCode).toBe(ErrorCode.FRAME_TOO_LARGE);
    expect(() => decoder.pushRequests(new Uint8Array(1))).toThrow(ProtocolError); // dead after a failure
  });

  it('malformed frames after a skipped body still fail the stream (the skip keeps it in step)', () => {
    const decoder = new FrameDecoder({ maxFrameSize: MAX });
    const stream = concat([oversizedBytes(12, 5, 0, MAX + 10), new Uint8Array([0, 0, 0, 2, 42, 0])]);
    const e = thrown(() => decoder.pushRequests(stream));
    expect(e.message).toMatch(/unknown frame kind 42/);
  });
});
