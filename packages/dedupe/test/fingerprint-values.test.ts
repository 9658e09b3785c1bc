/**
 * What a fingerprint, tenant-free payload or body may hold and how values compare (docs/api.md,
 * "Fingerprint values"): distinct values hash distinctly — NaN is not the string "NaN", 5n is not
 * "5n", Infinity is not "Infinity" — while every plain JSON value keeps the digest it had before,
 * so the payload fingerprints and keys of responses stored before an upgrade still match.
 */
import { createHash } from 'node:crypto';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, payloadHash, scopedKeyHash } from '@gridlink/dedupe';

/**
 * A JSON value's canonical text, written for JSON values alone: sorted keys (JSON.stringify
 * itself would put integer-like keys first).
 */
function sortedJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${sortedJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
const digest = (text: string): string => createHash('sha256').update(text).digest('base64url');

const scope = { method: 'POST', route: '/orders', tenant: undefined };
const fingerprintKey = (fields: unknown): string => scopedKeyHash(scope, 'f', canonicalJson(fields));

describe('digests of plain JSON values are those of earlier releases', () => {
  it('pins the digests stored records carry today', () => {
    // Taken from the release before special values were told apart: a change here strands every
    // stored record (a retry across the upgrade gets 422, or runs again under a new key).
    const pinned: [unknown, string][] = [
      [null, 'dCNOmK_nSY-12vHzasLXiswzlGT5UHA7jAGYkvmCuQs'],
      [true, 'tb6kG2xiP3wJ8b8k3K5Y66s8DN2QrZZrxDpFtEhn4Ss'],
      [0, 'X-zrZv_IbzjZUnhsbWlsecLbwjndTpG0ZynXOif7V-k'],
      [-0, 'X-zrZv_IbzjZUnhsbWlsecLbwjndTpG0ZynXOif7V-k'],
      [-1.5e-7, 'XRUjw8fsLLAXrm1N452txxqFehCgX6iXruG7cSE6kWg'],
      ['NaN', 'iDLCP8FJIAJ6ch59CViBebbk4BBTFlNnfrVxeHOheYg'],
      ['5n', '10S5mA5iDGjiCfoKhD0Ee_pYpF0qxrU2br5h-bol3Zk'],
      ['Infinity', '9yQOdGri53KAt76PzAQXNJLuB8yCDjEgQxkAo0SecaM'],
      ['', 'Eq4yyx7ALQHto1gbEnwf7jsNxTVy7WuvI5choD2C4SY'],
      [{ b: [1, 'x', null], a: { é: false } }, 'ZnOFVahj5VPq0ovosmPIu2hBKEfY-lFXDVMroSLPO4I'],
      [[], 'T1PNoYwrqgwDVLtfmj7L5e0Sq02OEbqHPC8RFhICuUU'],
      [{}, 'RBNvo1WzZ4oRRq0W9-hknpT7T8If536DEMBg9hyq_4o'],
      [12345678901234567890, 'r9zTMhovzbNBTLaaDJLGu410wGBm1yEIPMAf7GZKuX8'],
      ['b:0102', 'cRHhgJ-SFUfZ7L3mHaKqMc4rRCB3T3edXg9gpDYt1Pw'],
      ['2024-01-02T03:04:05.000Z', '3y8Jv7zjcWnOrXQW7gHFhDk21p9isI8cpPkW3_CoEBQ'],
    ];
    for (const [value, hash] of pinned) expect([value, payloadHash(value)]).toEqual([value, hash]);
    // Raw bodies (express.raw()) and Dates keep theirs too: bytes hash as "b:" and their hex,
    // a Date as its ISO text (what JSON.stringify makes of it).
    expect(payloadHash(Buffer.from([1, 2]))).toBe('cRHhgJ-SFUfZ7L3mHaKqMc4rRCB3T3edXg9gpDYt1Pw');
    expect(payloadHash(new Date('2024-01-02T03:04:05.000Z'))).toBe('3y8Jv7zjcWnOrXQW7gHFhDk21p9isI8cpPkW3_CoEBQ');
    expect(fingerprintKey(['u1', 42])).toBe('k4EZ72UPREPl-1oC3sgGH99u0p8lTRcD2N_iHAAikY4');
    expect(scopedKeyHash({ method: 'post', route: '/orders/:id', tenant: 'acme' }, 'h', 'k-1')).toBe('2evIZ5eMw9YIvYK8VvSGIqerhiUQOsYA_DzqyAmeWuA');
  });

  it('hashes any JSON value as SHA-256 of its sorted-key JSON text, as before', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(v)).toBe(sortedJson(v));
        expect(payloadHash(v)).toBe(digest(sortedJson(v)));
      }),
      { numRuns: 500 },
    );
  });
});

/**
 * The documented comparison, as a model: numbers by value (-0 is 0, NaN is NaN), bigints by
 * value and never equal to a number or string, a Date as its ISO text, bytes as "b:" and their
 * hex, an undefined array item as null, undefined fields as absent, objects field by field.
 */
function model(v: unknown): unknown {
  if (v === undefined || v === null) return null;
  if (typeof v === 'number') return Number.isFinite(v) ? v + 0 : { special: String(v) };
  if (typeof v === 'bigint') return { bigint: v.toString() };
  if (typeof v !== 'object') return v;
  if (v instanceof Date) return v.toISOString();
  if (ArrayBuffer.isView(v)) return `b:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (Array.isArray(v)) return v.map(model);
  const o = v as Record<string, unknown>;
  return {
    object: Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => [k, model(o[k])]),
  };
}
const same = (a: unknown, b: unknown): boolean => JSON.stringify(model(a)) === JSON.stringify(model(b));

describe('distinct values hash distinctly', () => {
  const specials = [NaN, Infinity, -Infinity, 5n, -5n, 0n, 5, -5, 0, -0, 'NaN', 'Infinity', '-Infinity', '5n', '-5n', '0n', '5', 'null', null, undefined, true, 'true'];

  it('NaN, Infinity, -Infinity and bigints are not the strings or numbers that look like them', () => {
    for (const [a, b] of [
      [NaN, 'NaN'],
      [Infinity, 'Infinity'],
      [-Infinity, '-Infinity'],
      [5n, '5n'],
      [5n, 5],
      [5n, '5'],
      [-5n, '-5n'],
      [NaN, null],
      [Infinity, -Infinity],
      [[NaN], ['NaN']],
      [{ amount: 5n }, { amount: '5n' }],
    ] as [unknown, unknown][]) {
      expect(payloadHash(a), `${String(a)} vs ${JSON.stringify(b)}`).not.toBe(payloadHash(b));
      expect(fingerprintKey(a)).not.toBe(fingerprintKey(b));
    }
    expect(payloadHash(NaN)).toBe(payloadHash(Number('x')));
    expect(payloadHash(10n ** 30n)).toBe(payloadHash(BigInt('1' + '0'.repeat(30))));
  });

  it('digests are equal exactly when the values compare equal (property)', () => {
    const leaf = fc.oneof(
      { arbitrary: fc.constantFrom(...specials), weight: 12 },
      fc.bigInt(),
      fc.double(),
      fc.string({ maxLength: 4 }),
      fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }),
      fc.uint8Array({ maxLength: 3 }).map((b) => Buffer.from(b)),
      fc.uint8Array({ maxLength: 3 }).map((b) => `b:${Buffer.from(b).toString('hex')}`),
    );
    const { value } = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 3 }), fc.dictionary(fc.constantFrom('a', 'b', 'NaN'), tie('value'), { maxKeys: 3 })),
    }));
    // Pairs drawn from a few constants meet equal values often, not only distinct ones.
    fc.assert(
      fc.property(value, value, (a, b) => {
        expect(payloadHash(a) === payloadHash(b)).toBe(same(a, b));
        expect(fingerprintKey(a) === fingerprintKey(b)).toBe(same(a, b));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('values whose contents are not enumerable fields are refused', () => {
  it('throws for boxed primitives, URLs, regular expressions, errors and field-less class instances', () => {
    class Money {
      get amount(): number {
        return 5;
      }
    }
    for (const v of [Object(5), Object('ab'), Object(true), Object(5n), new URL('https://a.example/x'), /a/, new Error('e'), new Money(), new ArrayBuffer(2), [new URL('https://a.example/')]]) {
      expect(() => canonicalJson(v), String(v)).toThrow(TypeError);
    }
    expect(() => canonicalJson({ at: new Date(NaN) })).toThrow(RangeError); // no ISO text
    // Class instances with fields are their fields; an object without a prototype is a plain one.
    class Point {
      constructor(
        readonly x: number,
        readonly y: number,
      ) {}
    }
    expect(canonicalJson(new Point(1, 2))).toBe('{"x":1,"y":2}');
    expect(canonicalJson(Object.create(null))).toBe('{}');
    expect(canonicalJson(runInNewContext('({})'))).toBe('{}'); // another realm's Object.prototype
  });
});
