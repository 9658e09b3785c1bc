import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decodeKey, encodeKey, hashKey, murmur3x86_32, partitionOf, partitionOfBytes } from '@gridlink/affinity';
import { normalised } from './arbitraries.js';
import { referenceHash32 } from './mmh3-reference.js';
import { GOLDEN_KEYS, goldenVectors, type GoldenVector } from './vectors/generate.js';
import { keyFromJson } from './vectors/notation.js';

const file = JSON.parse(readFileSync(new URL('./vectors/partition.json', import.meta.url), 'utf8')) as {
  partitionCounts: number[];
  vectors: GoldenVector[];
};

describe('golden key vectors (test/vectors/partition.json)', () => {
  it('has at least 100 vectors covering every key type', () => {
    expect(file.vectors.length).toBeGreaterThanOrEqual(100);
    const keys = file.vectors.map((v) => keyFromJson(v.key));
    const has = (pred: (k: unknown) => boolean): boolean => keys.some(pred);
    expect(has((k) => k === '')).toBe(true);
    expect(has((k) => typeof k === 'string' && /[^\x00-\x7f]/.test(k))).toBe(true);
    expect(has((k) => typeof k === 'string' && /[\u{10000}-\u{10ffff}]/u.test(k))).toBe(true);
    expect(has((k) => typeof k === 'number' && k < -(2 ** 31))).toBe(true);
    expect(has((k) => typeof k === 'number' && k > 2 ** 53)).toBe(true);
    expect(has((k) => typeof k === 'number' && !Number.isInteger(k))).toBe(true);
    expect(has((k) => typeof k === 'bigint' && k > 2n ** 64n)).toBe(true);
    expect(has((k) => typeof k === 'bigint' && k < 0n)).toBe(true);
    expect(has((k) => typeof k === 'boolean')).toBe(true);
    expect(has((k) => k instanceof Uint8Array && k.length === 0)).toBe(true);
    expect(has((k) => k instanceof Uint8Array && k.length > 0)).toBe(true);
    expect(has((k) => Array.isArray(k) && k.some(Array.isArray))).toBe(true);
    expect(file.partitionCounts).toEqual([1024, 271]);
  });

  it.each(file.vectors.map((v, i) => [i, JSON.stringify(v.key).slice(0, 60), v] as const))(
    '#%i %s',
    (_i, _label, v) => {
      const key = keyFromJson(v.key);
      const bytes = Uint8Array.from(Buffer.from(v.bytes, 'hex'));
      expect(Buffer.from(encodeKey(key)).toString('hex')).toBe(v.bytes);
      expect(decodeKey(bytes)).toStrictEqual(normalised(key));
      expect(murmur3x86_32(bytes, 0)).toBe(v.hash);
      expect(referenceHash32(bytes, 0)).toBe(v.hash);
      expect(hashKey(key)).toBe(v.hash);
      for (const p of file.partitionCounts) {
        expect(partitionOf(key, p)).toBe(v.partition[String(p)]);
        expect(partitionOfBytes(bytes, p)).toBe(v.partition[String(p)]);
      }
    },
  );

  it('is what the generator script produces from its key list', () => {
    expect(goldenVectors()).toEqual(file.vectors);
    expect(GOLDEN_KEYS.length).toBe(file.vectors.length);
  });
});
