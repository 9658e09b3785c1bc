import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  ErrorCode,
  FrameDecoder,
  MAGIC,
  ProtocolError,
  validateRequest,
  type Frame,
  type OversizedRequest,
  type RequestFrame,
} from '@gridlink/protocol';
import { anyFrame, applyChunking, chunking, concat, cut, msgpackValue, requestFrame } from './arbitraries.js';

const MAX = 512;
const BOUND = 4 + MAX;

/**
 * Feeds chunks to a decoder and checks the decoder's contract: each push returns frames or throws
 * ProtocolError (never anything else), buffered stays under 4 + maxFrameSize, and after a failure
 * every later push throws ProtocolError too.
 */
function feed(
  chunks: Uint8Array[],
  opts: { maxFrameSize: number; expectMagic?: boolean } = { maxFrameSize: MAX },
  skipOversizedRequests = false,
): {
  frames: (Frame | OversizedRequest)[];
  error: ProtocolError | null;
  decoder: FrameDecoder;
} {
  const decoder = new FrameDecoder(opts);
  const frames: (Frame | OversizedRequest)[] = [];
  const bound = 4 + opts.maxFrameSize + (opts.expectMagic === true ? 4 : 0);
  for (const c of chunks) {
    try {
      frames.push(...(skipOversizedRequests ? decoder.pushRequests(c) : decoder.push(c)));
    } catch (err) {
      expect(err).toBeInstanceOf(ProtocolError);
      expect(decoder.buffered).toBe(0);
      expect(() => decoder.push(new Uint8Array([0, 0, 0, 1, 3]))).toThrow(ProtocolError);
      return { frames, error: err as ProtocolError, decoder };
    }
    expect(decoder.buffered).toBeLessThan(bound);
  }
  return { frames, error: null, decoder };
}

const smallFrame = anyFrame.filter((f) => encodeFrame(f).length <= BOUND);

describe('fuzz: the decoder yields frames or ProtocolError, and buffers boundedly', () => {
  it('random bytes under random chunkings', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), chunking, fc.boolean(), (bytes, c, magic) => {
        feed(applyChunking(bytes, c), { maxFrameSize: MAX, expectMagic: magic });
      }),
      { numRuns: 400 },
    );
  });

  it('random bytes and mutated streams through pushRequests (oversized requests skipped): the same contract', () => {
    const mutation = fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 3000 }),
          fc
            .tuple(fc.array(smallFrame, { minLength: 1, maxLength: 6 }), fc.array(mutation, { maxLength: 3 }))
            .map(([frames, muts]) => {
              const bytes = concat(frames.map((f) => encodeFrame(f)));
              for (const m of muts) bytes[m.at % bytes.length] = bytes[m.at % bytes.length]! ^ m.xor;
              return bytes;
            }),
        ),
        chunking,
        (bytes, c) => {
          const { frames, decoder } = feed(applyChunking(bytes, c), { maxFrameSize: MAX }, true);
          for (const f of frames) if (f.kind === 'oversized-request') expect(f.length).toBeGreaterThan(MAX);
          expect(decoder.skipping).toBeLessThan(0x1_0000_0000);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('random bytes behind a plausible header (small length prefix, valid kind byte)', () => {
    fc.assert(
      fc.property(fc.nat(5), fc.uint8Array({ maxLength: 200 }), chunking, (kind, rest, c) => {
        const body = concat([new Uint8Array([kind]), rest]);
        const frame = concat([new Uint8Array([0, 0, body.length >>> 8, body.length & 0xff]), body]);
        const { frames, error } = feed(applyChunking(frame, c));
        expect(frames.length + (error === null ? 0 : 1)).toBe(1);
      }),
      { numRuns: 500 },
    );
  });

  it('random msgpack payloads in request frames: decoded as frames, validateRequest throws only ProtocolError', () => {
    fc.assert(
      fc.property(fc.nat({ max: 130 }), msgpackValue, (op, payload) => {
        const frame = { kind: 3, op, id: 1, flags: 0, payload } as RequestFrame;
        const { frames } = feed([encodeFrame(frame, { maxFrameSize: 1 << 20 })], { maxFrameSize: 1 << 20 });
        expect(frames).toHaveLength(1);
        try {
          validateRequest(frames[0] as RequestFrame);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('truncated streams yield the whole frames before the cut and hold the rest', () => {
    fc.assert(
      fc.property(fc.array(smallFrame, { minLength: 1, maxLength: 10 }), fc.nat(), chunking, (frames, at, c) => {
        const encoded = frames.map((f) => encodeFrame(f));
        const stream = concat(encoded);
        const cutAt = at % (stream.length + 1);
        let whole = 0;
        let end = 0;
        for (const e of encoded) {
          if (end + e.length > cutAt) break;
          end += e.length;
          whole++;
        }
        const { frames: out, error, decoder } = feed(applyChunking(stream.subarray(0, cutAt), c));
        expect(error).toBeNull();
        expect(out).toEqual(frames.slice(0, whole));
        expect(decoder.buffered).toBe(cutAt - end);
      }),
      { numRuns: 300 },
    );
  });

  it('mutated valid streams (flipped, inserted and deleted bytes)', () => {
    const mutation = fc.oneof(
      fc.record({ type: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
      fc.record({ type: fc.constant('insert' as const), at: fc.nat(), byte: fc.nat(255) }),
      fc.record({ type: fc.constant('delete' as const), at: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(smallFrame, { minLength: 1, maxLength: 6 }), fc.array(mutation, { minLength: 1, maxLength: 4 }), chunking, (frames, muts, c) => {
        const bytes = Array.from(concat(frames.map((f) => encodeFrame(f))));
        for (const m of muts) {
          const at = m.at % (bytes.length + 1);
          if (m.type === 'flip' && at < bytes.length) bytes[at] = bytes[at]! ^ m.xor;
          else if (m.type === 'insert') bytes.splice(at, 0, m.byte);
          else if (m.type === 'delete') bytes.splice(at, 1);
        }
        feed(applyChunking(new Uint8Array(bytes), c));
      }),
      { numRuns: 400 },
    );
  });

  it('oversized length prefixes fail with FRAME_TOO_LARGE as soon as the prefix is in, buffering nothing', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX + 1, max: 0xffffffff }), fc.uint8Array({ maxLength: 64 }), fc.nat(3), (len, tail, split) => {
        const prefix = new Uint8Array([len >>> 24, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff]);
        const decoder = new FrameDecoder({ maxFrameSize: MAX });
        if (split > 0) expect(decoder.push(prefix.subarray(0, split))).toEqual([]);
        let caught: unknown;
        try {
          decoder.push(concat([prefix.subarray(split), tail]));
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(ProtocolError);
        expect((caught as ProtocolError).wireCode).toBe(ErrorCode.FRAME_TOO_LARGE);
        expect((caught as ProtocolError).code).toBe('GRID_FRAME_TOO_LARGE');
        expect(decoder.buffered).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('a frame of exactly maxFrameSize passes; one byte more does not', () => {
    const frame = (payloadLen: number): Uint8Array =>
      encodeFrame({ kind: 3, op: 100, id: 1, flags: 0, payload: new Uint8Array(payloadLen) }, { maxFrameSize: 1 << 20 });
    // 8 header bytes + bin16 header (3 bytes) + data: choose data so that the length field is MAX.
    const exact = frame(MAX - 8 - 3);
    expect(exact.length).toBe(4 + MAX);
    for (const chunks of [[exact], cut(exact, [1, 2, 3, 100, 300])]) {
      expect(feed(chunks).frames).toHaveLength(1);
    }
    const over = frame(MAX - 8 - 3 + 1);
    const { error } = feed(cut(over, [2, 50]));
    expect(error?.wireCode).toBe(ErrorCode.FRAME_TOO_LARGE);
  });

  it('valid frames followed by garbage: bounded, typed failure', () => {
    fc.assert(
      fc.property(fc.array(smallFrame, { maxLength: 4 }), fc.uint8Array({ minLength: 1, maxLength: 2000 }), chunking, (frames, junk, c) => {
        feed(applyChunking(concat([...frames.map((f) => encodeFrame(f)), junk]), c));
      }),
      { numRuns: 300 },
    );
  });

  it('a non-gridlink client (HTTP, TLS hello) fails at its first byte with expectMagic', () => {
    for (const first of ['GET / HTTP/1.1\r\n', '\x16\x03\x01\x02\x00', 'GLNX']) {
      const bytes = new TextEncoder().encode(first);
      const decoder = new FrameDecoder({ expectMagic: true });
      expect(() => decoder.push(bytes)).toThrow(ProtocolError);
    }
    const decoder = new FrameDecoder({ expectMagic: true });
    expect(decoder.push(MAGIC.subarray(0, 2))).toEqual([]);
    expect(decoder.magicReceived).toBe(false);
    expect(decoder.push(MAGIC.subarray(2))).toEqual([]);
    expect(decoder.magicReceived).toBe(true);
  });

  it('random requests through validateRequest after random mutation of the frame bytes', () => {
    fc.assert(
      fc.property(requestFrame, fc.nat(), fc.integer({ min: 1, max: 255 }), (frame, at, xor) => {
        const bytes = encodeFrame(frame, { maxFrameSize: 1 << 20 });
        const i = 4 + (at % (bytes.length - 4));
        bytes[i] = bytes[i]! ^ xor;
        const { frames } = feed([bytes], { maxFrameSize: 1 << 20 });
        for (const f of frames) {
          if (f.kind !== 3) continue;
          try {
            validateRequest(f);
          } catch (err) {
            expect(err).toBeInstanceOf(ProtocolError);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
