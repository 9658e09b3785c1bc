import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  encodeFrame,
  FrameDecoder,
  FrameKind,
  MAGIC,
  validateRequest,
  validateResponse,
  type Frame,
} from '@gridlink/protocol';
import {
  anyFrame,
  applyChunking,
  chunking,
  CLIENT_OPS,
  concat,
  handshakeFrames,
  pushFrame,
  requestFrame,
  requestPayloads,
  responseFrame,
  responsePayloads,
} from './arbitraries.js';

function decodeAll(chunks: Uint8Array[], opts?: { expectMagic?: boolean; maxFrameSize?: number }): { frames: Frame[]; decoder: FrameDecoder } {
  const decoder = new FrameDecoder(opts);
  const frames: Frame[] = [];
  for (const c of chunks) frames.push(...decoder.push(c));
  return { frames, decoder };
}

function roundTrip(frames: Frame[], c: Parameters<typeof applyChunking>[1]): void {
  const stream = concat(frames.map((f) => encodeFrame(f)));
  const { frames: out, decoder } = decodeAll(applyChunking(stream, c));
  expect(out).toEqual(frames);
  expect(decoder.buffered).toBe(0);
}

describe('round trip: encodeFrame then FrameDecoder gives the same frames', () => {
  it('every client op request payload, under every chunking', () => {
    for (const op of CLIENT_OPS) {
      fc.assert(
        fc.property(fc.array(requestPayloads[op]!, { minLength: 1, maxLength: 4 }), chunking, (payloads, c) => {
          const frames = payloads.map((payload, i) => ({ kind: FrameKind.REQUEST, op, id: i, flags: 0, payload }) as Frame);
          roundTrip(frames, c);
          for (const f of frames) if (f.kind === FrameKind.REQUEST) validateRequest(f);
        }),
        { numRuns: 40 },
      );
    }
  });

  it('every client op response payload, under every chunking', () => {
    for (const op of CLIENT_OPS) {
      fc.assert(
        fc.property(fc.array(responsePayloads[op]!, { minLength: 1, maxLength: 4 }), chunking, fc.nat(2 ** 40), (payloads, c, v) => {
          const frames = payloads.map((payload, i) => ({ kind: FrameKind.RESPONSE, id: i, flags: 0, topologyVersion: v + i, payload }));
          roundTrip(frames, c);
          for (const p of payloads) validateResponse(op, p);
        }),
        { numRuns: 40 },
      );
    }
  });

  it('requests (client and peer ops, any id and flags)', () => {
    fc.assert(fc.property(fc.array(requestFrame, { minLength: 1, maxLength: 6 }), chunking, (f, c) => roundTrip(f, c)), { numRuns: 200 });
  });

  it('responses (results, error payloads, arbitrary peer results)', () => {
    fc.assert(fc.property(fc.array(responseFrame, { minLength: 1, maxLength: 6 }), chunking, (f, c) => roundTrip(f, c)), { numRuns: 200 });
  });

  it('pushes, including push kinds this version does not know', () => {
    fc.assert(fc.property(fc.array(pushFrame, { minLength: 1, maxLength: 6 }), chunking, (f, c) => roundTrip(f, c)), { numRuns: 200 });
  });

  it('handshake, handshake ok and handshake error', () => {
    fc.assert(fc.property(fc.array(handshakeFrames, { minLength: 1, maxLength: 4 }), chunking, (f, c) => roundTrip(f, c)), { numRuns: 200 });
  });

  it('many frames of every kind coalesced in one chunk or cut anywhere, after MAGIC', () => {
    fc.assert(
      fc.property(fc.array(anyFrame, { minLength: 1, maxLength: 40 }), chunking, (frames, c) => {
        const stream = concat([MAGIC, ...frames.map((f) => encodeFrame(f))]);
        const { frames: out, decoder } = decodeAll(applyChunking(stream, c), { expectMagic: true });
        expect(out).toEqual(frames);
        expect(decoder.buffered).toBe(0);
        expect(decoder.magicReceived).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it('yields each frame as soon as its last byte arrives, and never earlier', () => {
    fc.assert(
      fc.property(fc.array(anyFrame, { minLength: 1, maxLength: 8 }), (frames) => {
        const encoded = frames.map((f) => encodeFrame(f));
        const ends = new Set<number>();
        let total = 0;
        for (const e of encoded) ends.add((total += e.length));
        const stream = concat(encoded);
        const decoder = new FrameDecoder();
        for (let i = 0; i < stream.length; i++) {
          const got = decoder.push(stream.subarray(i, i + 1));
          expect(got.length).toBe(ends.has(i + 1) ? 1 : 0);
        }
      }),
      { numRuns: 60 },
    );
  });
});
