import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur3x86_32 } from '@gridlink/affinity';
import { referenceHash32 } from './mmh3-reference.js';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('murmur3x86_32', () => {
  // Published MurmurHash3_x86_32 test vectors.
  const vectors: [Uint8Array, number, number][] = [
    [bytes(), 0, 0x00000000],
    [bytes(), 1, 0x514e28b7],
    [bytes(), 0xffffffff, 0x81f16f39],
    [bytes(0xff, 0xff, 0xff, 0xff), 0, 0x76293b50],
    [bytes(0x21, 0x43, 0x65, 0x87), 0, 0xf55b516b],
    [bytes(0x21, 0x43, 0x65, 0x87), 0x5082edee, 0x2362f9de],
    [bytes(0x21, 0x43, 0x65), 0, 0x7e4a8634],
    [bytes(0x21, 0x43), 0, 0xa0f7b07a],
    [bytes(0x21), 0, 0x72661cf4],
    [bytes(0, 0, 0, 0), 0, 0x2362f9de],
    [bytes(0, 0, 0), 0, 0x85f0b427],
    [bytes(0, 0), 0, 0x30f4c306],
    [bytes(0), 0, 0x514e28b7],
    [utf8(''), 0x9747b28c, 0xebb6c228],
    [utf8('aaaa'), 0x9747b28c, 0x5a97808a],
    [utf8('aaa'), 0x9747b28c, 0x283e0130],
    [utf8('aa'), 0x9747b28c, 0x5d211726],
    [utf8('a'), 0x9747b28c, 0x7fa09ea6],
    [utf8('abcd'), 0x9747b28c, 0xf0478627],
    [utf8('abc'), 0x9747b28c, 0xc84a62dd],
    [utf8('ab'), 0x9747b28c, 0x74875592],
    [utf8('Hello, world!'), 0x9747b28c, 0x24884cba],
    [utf8('ππππππππ'), 0x9747b28c, 0xd58063c1],
    [utf8('abc'), 0, 0xb3dd93fa],
    [utf8('The quick brown fox jumps over the lazy dog'), 0x9747b28c, 0x2fa826cd],
    [utf8('I will not buy this record, it is scratched.'), 0, 2832214938],
    [utf8('My hovercraft is full of eels.'), 25, 2520298415],
  ];

  it.each(vectors.map(([b, seed, h]) => [Buffer.from(b).toString('hex') || '(empty)', seed, h, b] as const))(
    'bytes %s seed %i -> %i',
    (_hex, seed, expected, input) => {
      expect(murmur3x86_32(input, seed)).toBe(expected);
    },
  );

  it('defaults the seed to 0 and returns an unsigned 32-bit integer', () => {
    expect(murmur3x86_32(bytes(0xff, 0xff, 0xff, 0xff))).toBe(0x76293b50);
    const h = murmur3x86_32(utf8('Hello, world!'), 0x9747b28c);
    expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
  });

  it("matches SMHasher's verification value 0xB0F57EE3", () => {
    // SMHasher VerificationTest: hash keys {0}, {0,1}, ... (lengths 0..255) with seed 256 - len,
    // concatenate the hashes little-endian, and hash that with seed 0.
    const key = new Uint8Array(256);
    const hashes = new Uint8Array(256 * 4);
    for (let i = 0; i < 256; i++) {
      key[i] = i;
      const h = murmur3x86_32(key.subarray(0, i), 256 - i);
      hashes[i * 4] = h & 0xff;
      hashes[i * 4 + 1] = (h >>> 8) & 0xff;
      hashes[i * 4 + 2] = (h >>> 16) & 0xff;
      hashes[i * 4 + 3] = h >>> 24;
    }
    expect(murmur3x86_32(hashes, 0)).toBe(0xb0f57ee3);
  });

  it('hashes a subarray view by its own bytes, not the underlying buffer', () => {
    const whole = utf8('xxHello, world!yy');
    expect(murmur3x86_32(whole.subarray(2, 15), 0x9747b28c)).toBe(0x24884cba);
  });

  it('equals murmurhash3js-revisited x86.hash32 on random bytes and seeds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 0xffffffff }), (input, seed) => {
        expect(murmur3x86_32(input, seed)).toBe(referenceHash32(input, seed));
      }),
      { numRuns: 1000 },
    );
  });
});
