import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decode, encode } from '@msgpack/msgpack';
import { binWriterBytes, fastDecode, fastSize, fastWrite, isBinWriter, NO_MATCH, type BinWriter } from '../src/fastpath.js';
import { msgpackValue } from './arbitraries.js';

const general = (v: unknown): Uint8Array => encode(v, { ignoreUndefined: true });

/** Byte arrays as hex strings, so that big ones compare quickly. */
function norm(v: unknown): unknown {
  if (v instanceof Uint8Array) return `bin:${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  if (Array.isArray(v)) return v.map(norm);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
  return v;
}

function fastEncode(v: unknown): Uint8Array | null {
  const n = fastSize(v);
  if (n < 0) return null;
  const out = new Uint8Array(n);
  fastWrite(out, 0, v);
  return out;
}

/** Sizes around every MessagePack header boundary. */
const len = fc.oneof(fc.nat(40), fc.constantFrom(0, 31, 32, 255, 256, 65535, 65536, 70000));
const blob = len.map((n) => new Uint8Array(n).map((_, i) => (i * 31) & 0xff));
const uintAtBoundaries = fc.oneof(
  fc.constantFrom(0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER),
  fc.maxSafeNat(),
);
const asciiName = fc.oneof(
  fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 40 }),
  fc.constantFrom(31, 32, 255).map((n) => 'c'.repeat(n)),
);
const opt = { noNullPrototype: true } as const;

const fastShapes = fc.oneof(
  fc.constant({}),
  fc.record({ value: fc.option(blob, { nil: null }) }, opt),
  fc.record({ cache: asciiName, key: blob }, opt),
  fc.record({ cache: asciiName, key: blob, seq: uintAtBoundaries, value: blob }, opt),
  fc.record({ cache: asciiName, key: blob, seq: uintAtBoundaries, value: blob, ttlMs: uintAtBoundaries }, opt),
  fc.record({ cache: asciiName, key: blob, seq: uintAtBoundaries, value: blob, ttlMs: fc.constant(undefined) }, opt),
  fc.record({ cache: asciiName, key: blob, seq: uintAtBoundaries, ack: uintAtBoundaries, value: blob }, opt),
  fc.record({ cache: asciiName, key: blob, seq: uintAtBoundaries, ack: uintAtBoundaries, value: blob, ttlMs: uintAtBoundaries }, opt),
  fc.record({ batch: fc.array(fc.nat(300).map((n) => new Uint8Array(n).fill(n & 0xff)), { maxLength: 20 }), compactAck: fc.constant(true) }, opt),
  ...lockShapes(),
);

/** The lock operations' shapes (ADR 0083), each optional field present or absent, in canonical order. */
function lockShapes(): fc.Arbitrary<Record<string, unknown>>[] {
  const owner = fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 40 }), fc.constantFrom('aZ09-_aZ09-_aZ09', 'o'.repeat(31), 'o'.repeat(32), 'o'.repeat(255)));
  const maybe = <T,>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });
  const drop = (r: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined));
  return [
    fc.record({ released: fc.boolean() }, opt),
    fc
      .record({ acquired: fc.boolean(), token: maybe(uintAtBoundaries), heldForMs: maybe(uintAtBoundaries), value: fc.option(blob, { nil: null }) }, opt)
      .map(drop),
    fc
      .record({ cache: asciiName, key: blob, seq: uintAtBoundaries, ack: maybe(uintAtBoundaries), owner, leaseMs: uintAtBoundaries, ifAbsent: maybe(fc.constant(true)) }, opt)
      .map(drop),
    fc
      .record({ cache: asciiName, key: blob, seq: uintAtBoundaries, ack: maybe(uintAtBoundaries), owner, token: uintAtBoundaries, value: blob, ttlMs: maybe(uintAtBoundaries) }, opt)
      .map(drop),
  ];
}

describe('shape fast path', () => {
  it('encodes the fast shapes to exactly the bytes of the general MessagePack encoder', () => {
    fc.assert(
      fc.property(fastShapes, (p) => {
        const fast = fastEncode(p);
        expect(fast).not.toBeNull();
        expect(Buffer.from(fast!).equals(Buffer.from(general(p)))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('writes BinWriter elements of a batch as the bins of their bytes, and declines them elsewhere', () => {
    const writer = (b: Uint8Array): BinWriter => ({ byteLength: b.length, writeTo: (out, at) => out.set(b, at) });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ maxLength: 300 }), fc.boolean()), { maxLength: 20 }), (items) => {
        const asBytes = { batch: items.map(([b]) => b), compactAck: true };
        const mixed = { batch: items.map(([b, w]) => (w ? writer(b) : b)), compactAck: true };
        const fast = fastEncode(mixed);
        expect(fast).not.toBeNull();
        expect(Buffer.from(fast!).equals(Buffer.from(general(asBytes)))).toBe(true);
        for (const [b, w] of items) expect(Buffer.from(binWriterBytes(w ? writer(b) : b)).equals(Buffer.from(b))).toBe(true);
      }),
      { numRuns: 200 },
    );
    const w = writer(new Uint8Array(3));
    expect(isBinWriter(w)).toBe(true);
    for (const x of [new Uint8Array(3), Buffer.alloc(3), { byteLength: 3 }, { writeTo() {} }, null, 3]) expect(isBinWriter(x)).toBe(false);
    // Only a batch takes writers: a writer as a value, or in a batch next to a map, is not the fast path's.
    expect(fastEncode({ value: w })).toBeNull();
    expect(fastEncode({ batch: [w, { p: 1 }], compactAck: true })).toBeNull();
  });

  it('declines payloads outside the shapes (non-ASCII names, wrong types, other fields)', () => {
    const k = new Uint8Array(1);
    for (const p of [
      { cache: 'é', key: k },
      { cache: 'c'.repeat(256), key: k },
      { cache: 'c', key: 'k' },
      { cache: 'c', keys: [k] },
      { cache: 'c', key: k, seq: -1, value: k },
      { cache: 'c', key: k, seq: 1.5, value: k },
      { cache: 'c', key: k, seq: 1, value: null },
      { cache: 'c', key: k, seq: 1, value: k, ttlMs: -1 },
      { cache: 'c', key: k, seq: 1, expected: k },
      { value: 5 },
      { other: k },
      { batch: [k], compactAck: false },
      { batch: [k, 1], compactAck: true },
      { batch: k, compactAck: true },
      { batch: [k] },
      { released: 1 },
      { released: true, value: null },
      { acquired: 'yes', value: null },
      { acquired: true, token: -1, value: null },
      { acquired: true, token: 1 },
      { acquired: true, token: 1, value: null, reentrant: true },
      { cache: 'c', key: k, leaseMs: 1, owner: 'é', seq: 1 },
      { cache: 'c', key: k, leaseMs: 1, owner: 'o', ifAbsent: false, seq: 1 },
      { cache: 'c', key: k, leaseMs: 1.5, owner: 'o', seq: 1 },
      { cache: 'c', key: k, leaseMs: 1, owner: 'o' },
      { cache: 'c', key: k, leaseMs: 1, owner: 'o', seq: 1, value: k },
      { cache: 'c', key: k, token: 1, owner: 'o', seq: 1 },
      { cache: 'c', key: k, token: 1, value: k, owner: 7, seq: 1 },
      { cache: 'c', key: k, token: 1, value: k, owner: 'o', seq: 1, ifAbsent: true },
      { cache: 'c', key: k, token: 1, value: k, owner: 'o', seq: 1, extra: 1 },
      [],
      null,
      k,
      new Date(0),
    ]) {
      expect(fastSize(p)).toBe(-1);
    }
  });

  it('decodes the fast shapes written by the general encoder (the path is really taken)', () => {
    fc.assert(
      fc.property(fastShapes, (p) => {
        const bytes = general(p);
        const got = fastDecode(bytes);
        expect(got).not.toBe(NO_MATCH);
        expect(norm(got)).toEqual(norm(decode(bytes)));
      }),
      { numRuns: 300 },
    );
  });

  it('on any bytes, either declines or agrees with the general decoder (and declines where it throws)', () => {
    const mutate = fc.tuple(fc.oneof(fastShapes, msgpackValue), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('flip', 'cut', 'append', 'none'));
    fc.assert(
      fc.property(mutate, ([v, at, byte, how]) => {
        let bytes = general(v);
        const i = bytes.length === 0 ? 0 : at % bytes.length;
        if (how === 'flip') bytes[i] = byte;
        else if (how === 'cut') bytes = bytes.subarray(0, i);
        else if (how === 'append') bytes = Uint8Array.from([...bytes, byte]);
        let expected: unknown;
        let threw = false;
        try {
          expected = decode(bytes);
        } catch {
          threw = true;
        }
        const got = fastDecode(bytes);
        if (threw) expect(got).toBe(NO_MATCH);
        else if (got !== NO_MATCH) expect(norm(got)).toEqual(norm(expected));
      }),
      { numRuns: 1000 },
    );
  });

  it('decodes in place: bytes before start and after end never change the outcome', () => {
    fc.assert(
      fc.property(fc.oneof(fastShapes, msgpackValue), fc.uint8Array({ maxLength: 12 }), fc.uint8Array({ maxLength: 12 }), fc.nat(), (v, before, after, cutAt) => {
        const whole = general(v);
        const bytes = whole.subarray(0, whole.length === 0 ? 0 : 1 + (cutAt % whole.length));
        const padded = Uint8Array.from([...before, ...bytes, ...after]);
        const alone = fastDecode(Uint8Array.from(bytes));
        const inPlace = fastDecode(padded, before.length, before.length + bytes.length);
        if (alone === NO_MATCH) expect(inPlace).toBe(NO_MATCH);
        else expect(norm(inPlace)).toEqual(norm(alone));
      }),
      { numRuns: 1000 },
    );
  });

  it('a batch of 65 536 records or more takes the array32 header both ways', () => {
    const p = { batch: Array.from({ length: 70_000 }, (_, i) => new Uint8Array(i % 3)), compactAck: true };
    const bytes = fastEncode(p)!;
    expect(Buffer.from(bytes).equals(Buffer.from(general(p)))).toBe(true);
    expect(norm(fastDecode(bytes))).toEqual(norm(p));
  });

  it("takes the lock operations' payloads as the client and the node build them", () => {
    const key = new Uint8Array([1, 2, 3]);
    // As the client builds them: the invoker appends seq and ack last.
    const acquire = { cache: 'dedupe', key, leaseMs: 30_000, owner: 'Ab-_0123456789xy', ifAbsent: true, seq: 7, ack: 5 };
    const putRelease = { cache: 'dedupe', key, token: 42, value: key, owner: 'Ab-_0123456789xy', ttlMs: 60_000, seq: 8, ack: 5 };
    // As the node builds a lock result: the plan's fields, then the value.
    const result = { acquired: true, token: 42, value: null };
    for (const p of [acquire, putRelease, result, { released: true }]) {
      const fast = fastEncode(p);
      expect(fast).not.toBeNull();
      expect(norm(decode(fast!))).toEqual(norm(p));
      expect(norm(fastDecode(fast!))).toEqual(norm(p));
    }
  });

  it('declines non-minimal but valid encodings, which the general decoder then reads', () => {
    // {cache: "c", key: bin} with the key name written as str8 instead of fixstr
    const bytes = Uint8Array.from([0x82, 0xa5, ...Buffer.from('cache'), 0xa1, 0x63, 0xd9, 3, ...Buffer.from('key'), 0xc4, 1, 7]);
    expect(fastDecode(bytes)).toBe(NO_MATCH);
    expect(decode(bytes)).toEqual({ cache: 'c', key: new Uint8Array([7]) });
    // seq as a uint64 >= 2^53 is left to the general decoder
    const big = general({ cache: 'c', key: new Uint8Array(0), seq: 1, value: new Uint8Array(0) });
    const at = big.indexOf(0x01, 12);
    const wide = Uint8Array.from([...big.subarray(0, at), 0xcf, 0x00, 0x20, 0, 0, 0, 0, 0, 0, ...big.subarray(at + 1)]);
    expect(fastDecode(wide)).toBe(NO_MATCH);
  });
});
