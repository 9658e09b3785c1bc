import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeFrame, encodeFrame, FrameKind, isPeerOp, validateRequest, type Frame } from '@gridlink/protocol';
import { fromJson, GOLDEN, toJson } from './vectors/frames.js';

interface Vector {
  name: string;
  frame: unknown;
  hex: string;
}

const vectors = JSON.parse(readFileSync(new URL('./vectors/frames.json', import.meta.url), 'utf8')) as Vector[];

describe('golden frames (test/vectors/frames.json)', () => {
  it('the JSON file matches the list it is generated from', () => {
    expect(vectors.map((v) => v.name)).toEqual(GOLDEN.map((g) => g.name));
    vectors.forEach((v, i) => expect(v.frame).toEqual(toJson(GOLDEN[i]!.frame)));
  });

  it('covers every frame kind', () => {
    const kinds = new Set(vectors.map((v) => (v.frame as { kind: number }).kind));
    expect([...kinds].sort()).toEqual(Object.values(FrameKind).sort());
  });

  for (const v of vectors) {
    it(`${v.name}: encodes to the golden bytes and decodes back`, () => {
      const frame = fromJson(v.frame) as Frame;
      expect(Buffer.from(encodeFrame(frame)).toString('hex')).toBe(v.hex);
      expect(decodeFrame(Uint8Array.from(Buffer.from(v.hex, 'hex')))).toEqual(frame);
      if (frame.kind === FrameKind.REQUEST && !isPeerOp(frame.op)) validateRequest(frame);
    });
  }
});
