import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AffinityArgumentError,
  InvalidKeyError,
  MAX_KEY_DEPTH,
  encodeKey,
  hashKey,
  murmur3x86_32,
  partitionOf,
  partitionOfBytes,
  type GridKey,
} from '@gridlink/affinity';
import { decodeKey, keyValue } from './key-spec.js';
import { anyKey, wellFormed } from './arbitraries.js';

const hex = (k: GridKey): string => Buffer.from(encodeKey(k)).toString('hex');

describe('encodeKey: the documented byte layout', () => {
  it.each<[string, GridKey, string]>([
    ['false', false, '01'],
    ['true', true, '02'],
    ['0', 0, '0300'],
    ['1', 1, '0302'],
    ['-1', -1, '0301'],
    ['63', 63, '037e'],
    ['64', 64, '038001'],
    ['-64', -64, '037f'],
    ['-65', -65, '038101'],
    ['2^53 - 1', 2 ** 53 - 1, '03feffffffffffff1f'],
    ['-(2^53 - 1)', -(2 ** 53 - 1), '03fdffffffffffff1f'],
    ['2^53 (a number)', 2 ** 53, '038080808080808020'],
    ['2^64n', 2n ** 64n, '0380808080808080808004'],
    ['-(2^64n)', -(2n ** 64n), '03ffffffffffffffffff03'],
    ['1.5', 1.5, '04000000000000f83f'],
    ['-0.5', -0.5, '04000000000000e0bf'],
    ['Infinity', Infinity, '04000000000000f07f'],
    ['-Infinity', -Infinity, '04000000000000f0ff'],
    ['""', '', '0500'],
    ['"ab"', 'ab', '05026162'],
    ['"é"', 'é', '0502c3a9'],
    ['"🌈"', '🌈', '0504f09f8c88'],
    ['bytes []', new Uint8Array(0), '0600'],
    ['bytes [1,2]', Uint8Array.of(1, 2), '06020102'],
    ['[]', [], '0700'],
    ['["ab","c"]', ['ab', 'c'], '070205026162050163'],
    ['[1,[true]]', [1, [true]], '07020302070102'],
  ])('%s -> %s', (_name, key, expected) => {
    expect(hex(key)).toBe(expected);
  });

  it('writes a two-byte length for strings of 128+ bytes', () => {
    const s = 'x'.repeat(200);
    expect(hex(s).slice(0, 6)).toBe('05c801');
    expect(encodeKey(s).length).toBe(203);
    // 100 two-byte characters = 200 UTF-8 bytes
    expect(hex('é'.repeat(100)).slice(0, 10)).toBe('05c801c3a9');
  });
});

describe('encodeKey: one key, one encoding', () => {
  it('treats 1 and 1.0 and 1n as one key, and -0, 0 and 0n as one key', () => {
    expect(hex(1.0)).toBe(hex(1));
    expect(hex(1n)).toBe(hex(1));
    expect(hex(-0)).toBe(hex(0));
    expect(hex(0n)).toBe(hex(0));
    expect(hex([-0, 'a'])).toBe(hex([0, 'a']));
    expect(partitionOf(-0, 1024)).toBe(partitionOf(0, 1024));
  });

  it('encodes every integral number like the bigint of the same value', () => {
    fc.assert(
      fc.property(fc.oneof(fc.maxSafeInteger(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }).map(Math.trunc)), (n) => {
        expect(hex(n)).toBe(hex(BigInt(n)));
      }),
      { numRuns: 500 },
    );
    expect(hex(2 ** 60)).toBe(hex(2n ** 60n));
    expect(hex(-(2 ** 63))).toBe(hex(-(2n ** 63n)));
    expect(hex(1e300)).toBe(hex(BigInt(1e300)));
    expect(hex(Number.MAX_VALUE)).toBe(hex(BigInt(Number.MAX_VALUE)));
  });

  it('keeps keys of different types or shapes apart', () => {
    const distinct: GridKey[] = [
      1, '1', true, 1.5, [1], Uint8Array.of(1), 0, '', false, [], new Uint8Array(0), [[]], [''],
      ['ab', 'c'], ['a', 'bc'], ['abc'], 'abc', [[1]], [1, 2], [[1, 2]], [[1], 2], Uint8Array.of(0x61, 0x62, 0x63),
      Infinity, -Infinity, 0.5, -0.5, [true, false], [false, true],
    ];
    const encodings = new Set(distinct.map(hex));
    expect(encodings.size).toBe(distinct.length);
  });

  it('decodes back to the same value, consuming exactly the encoded bytes (so the encoding is injective)', () => {
    fc.assert(
      fc.property(anyKey, (key) => {
        expect(decodeKey(encodeKey(key))).toEqual(keyValue(key));
      }),
      { numRuns: 400 },
    );
  });

  it('encodes strings as their UTF-8 bytes (as TextEncoder does) after a length prefix', () => {
    const enc = new TextEncoder();
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }).filter(wellFormed), (s) => {
        const utf8 = enc.encode(s);
        const out = encodeKey(s);
        const prefix = utf8.length < 128 ? 2 : 3;
        expect(out.length).toBe(utf8.length + prefix);
        expect(Buffer.from(out.subarray(prefix)).equals(Buffer.from(utf8))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('returns a fresh array each time', () => {
    const a = encodeKey('same');
    a[0] = 0xee;
    expect(encodeKey('same')[0]).toBe(0x05);
  });

  it('handles keys larger than its scratch buffer and stays correct afterwards', () => {
    const big = 'k'.repeat(200_000);
    const bytesKey = new Uint8Array(100_000).fill(7);
    expect(encodeKey(big).length).toBe(200_004);
    expect(encodeKey([big, bytesKey]).length).toBe(2 + 200_004 + 100_004);
    expect(partitionOf(big, 1024)).toBe(murmur3x86_32(encodeKey(big)) % 1024);
    expect(hex('ab')).toBe('05026162');
  });

  it('accepts composites up to MAX_KEY_DEPTH levels', () => {
    let key: GridKey = 'leaf';
    for (let i = 0; i < MAX_KEY_DEPTH; i++) key = [key];
    expect(encodeKey(key).length).toBe(MAX_KEY_DEPTH * 2 + 6);
    expect(() => encodeKey([key])).toThrow(InvalidKeyError);
  });
});

describe('InvalidKeyError', () => {
  const bad: [string, unknown][] = [
    ['NaN', NaN],
    ['NaN in a composite', ['a', [1, NaN]]],
    ['null', null],
    ['undefined', undefined],
    ['an object', { id: 1 }],
    ['a symbol', Symbol('k')],
    ['a function', () => 1],
    ['a Date', new Date(0)],
    ['an Int8Array', new Int8Array(2)],
    ['an ArrayBuffer', new ArrayBuffer(2)],
    ['a lone high surrogate', 'a\ud800b'],
    ['a lone low surrogate', '\udc00'],
    ['a reversed surrogate pair', '\udc00\ud800'],
    ['a trailing high surrogate', 'abc\ud83c'],
  ];

  it.each(bad)('rejects %s', (_name, key) => {
    for (const f of [() => encodeKey(key as GridKey), () => partitionOf(key as GridKey, 1024), () => hashKey(key as GridKey)]) {
      let caught: unknown;
      try {
        f();
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(InvalidKeyError);
      expect(caught).toBeInstanceOf(TypeError);
      expect((caught as InvalidKeyError).code).toBe('GRID_INVALID_KEY');
      expect((caught as InvalidKeyError).retryable).toBe(false);
    }
  });

  it('rejects a cyclic composite instead of overflowing the stack', () => {
    const cyclic: GridKey[] = ['a'];
    cyclic.push(cyclic);
    expect(() => encodeKey(cyclic)).toThrow(InvalidKeyError);
    expect(hex(['a'])).toBe('07010501' + '61');
  });

  it('is recognised by its Symbol.for brand, as a copy from a duplicate install would be', () => {
    const foreign = Object.assign(new Error('x'), { [Symbol.for('gridlink.InvalidKeyError')]: true });
    expect(foreign).toBeInstanceOf(InvalidKeyError);
    expect(new Error('x')).not.toBeInstanceOf(InvalidKeyError);
  });
});

describe('partitionOf / partitionOfBytes', () => {
  it('is murmur3x86_32(encodeKey(key), 0) % partitions, on every path', () => {
    fc.assert(
      fc.property(
        fc.oneof(anyKey, fc.string({ unit: fc.constantFrom('a', 'Z', '0', ':', 'é', '日'), maxLength: 140 })),
        fc.integer({ min: 1, max: 100_000 }),
        (key, partitions) => {
          const bytes = encodeKey(key);
          const expected = murmur3x86_32(bytes, 0) % partitions;
          expect(partitionOf(key, partitions)).toBe(expected);
          expect(partitionOfBytes(bytes, partitions)).toBe(expected);
          expect(hashKey(key)).toBe(murmur3x86_32(bytes, 0));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('takes the ASCII fast path for every short ASCII length and agrees with the encoder', () => {
    for (let n = 0; n < 140; n++) {
      const s = Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 7 + n) % 95))).join('');
      expect(hashKey(s)).toBe(murmur3x86_32(encodeKey(s)));
      // the same string with one non-ASCII character at the end takes the general path
      expect(hashKey(`${s}é`)).toBe(murmur3x86_32(encodeKey(`${s}é`)));
    }
  });

  it('accepts 1 and 2^32 partitions', () => {
    expect(partitionOf('k', 1)).toBe(0);
    expect(partitionOf('k', 2 ** 32)).toBe(hashKey('k'));
  });

  it.each([0, -1, 1.5, NaN, Infinity, 2 ** 32 + 1])('rejects a partition count of %s, naming the field', (p) => {
    expect(() => partitionOf('k', p)).toThrow(AffinityArgumentError);
    expect(() => partitionOfBytes(encodeKey('k'), p)).toThrow(/partitions/);
  });
});
