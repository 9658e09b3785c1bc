/**
 * The compact binary replication message (ADR 0027): it stands for exactly the map-form message
 * it replaces, survives the frame codec, is used only for plain puts, and malformed bytes give a
 * typed error, never another exception.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decode, encode } from '@msgpack/msgpack';
import { ErrorCode, FrameKind, Op, decodeFrame, encodeFrame } from '@gridlink/protocol';
import { GridNodeError } from '../src/errors.js';
import { decodeReplicate, encodeReplicate, replicateWriter, putView, readReplicate, wellFormedPut, wellFormedView } from '../src/peers/replicate-codec.js';
import { normaliseRecord } from '../src/store/records.js';
import { NodeStore, type ReplicationRecord } from '../src/store/index.js';
import { EMPTY } from '../src/store/cache-ops.js';
import { FakeClock } from './store-helpers.js';

const nat = fc.maxSafeNat();
const bytes = fc.uint8Array({ maxLength: 300 });
const str = fc.string({ unit: 'grapheme', maxLength: 40 });

const putRecord = fc.record({
  counter: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
  at: nat,
  cache: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
  key: bytes,
  value: bytes,
  expireAt: nat,
  dedup: fc.option(fc.record({ session: str, seq: nat, op: fc.integer({ min: 0, max: 0xffff }), ack: fc.option(nat, { nil: undefined }) }), { nil: null }),
});

type PutRecord = typeof putRecord extends fc.Arbitrary<infer T> ? T : never;

function toRecord(r: PutRecord): ReplicationRecord {
  return {
    v: 1,
    counter: r.counter,
    at: r.at,
    effects: [{ t: 'put', cache: r.cache, key: r.key, value: r.value, expireAt: r.expireAt }],
    dedup: r.dedup === null ? null : { session: r.dedup.session, seq: r.dedup.seq, op: r.dedup.op, result: EMPTY, ...(r.dedup.ack !== undefined ? { ack: r.dedup.ack } : {}) },
  };
}

/** What the map form gives after the frame codec: plain data, the empty result as a fresh {}. */
function plain(rec: object): unknown {
  return decode(encode(rec));
}

describe('binary replication message', () => {
  it('written straight into a batch frame (ADR 0077), gives the bytes of its own array, and no others', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(putRecord, fc.nat({ max: 0xffffffff }), nat, str, str), { minLength: 1, maxLength: 6 }), fc.nat(40), (items, pad) => {
        const writers = items.map(([r, p, v, from, epoch]) => replicateWriter(p, v, from, epoch, toRecord(r))!);
        const arrays = items.map(([r, p, v, from, epoch]) => encodeReplicate(p, v, from, epoch, toRecord(r))!);
        writers.forEach((w, i) => {
          // Exactly byteLength bytes at the offset, nothing around them.
          const out = new Uint8Array(pad + w.byteLength + 3).fill(0xee);
          w.writeTo(out, pad);
          expect(Buffer.from(out.subarray(pad, pad + w.byteLength)).equals(Buffer.from(arrays[i]!))).toBe(true);
          expect([...out.subarray(0, pad), ...out.subarray(pad + w.byteLength)].every((x) => x === 0xee)).toBe(true);
        });
        // The frame encoder's fast path writes the writers; the bytes are those of the arrays.
        const frame = (batch: unknown[]): Uint8Array => encodeFrame({ kind: FrameKind.REQUEST, op: Op.PEER_REPLICATE, id: 7, flags: 0, payload: { batch, compactAck: true } });
        const viaWriters = frame(writers);
        expect(Buffer.from(viaWriters).equals(Buffer.from(frame(arrays)))).toBe(true);
        const back = decodeFrame(viaWriters) as { payload: { batch: Uint8Array[] } };
        back.payload.batch.forEach((bin, i) => expect(decodeReplicate(bin).p).toBe(items[i]![1]));
      }),
      { numRuns: 150 },
    );
  });

  it('decodes, after the frame codec, to the message the map form would have given', () => {
    fc.assert(
      fc.property(putRecord, fc.nat({ max: 0xffffffff }), nat, str, str, (r, p, v, from, epoch) => {
        const rec = toRecord(r);
        const bin = encodeReplicate(p, v, from, epoch, rec);
        expect(bin).not.toBeNull();
        const wire = decode(encode({ batch: [bin] })) as { batch: Uint8Array[] };
        const m = decodeReplicate(wire.batch[0]!);
        expect({ ...m, rec: plain(m.rec!) }).toEqual({ p, v, from, epoch, rec: plain(rec) });
      }),
      { numRuns: 300 },
    );
  });

  it('is used for plain puts only: other effects and other results keep the map form', () => {
    const key = new Uint8Array([1]);
    const base = { v: 1 as const, counter: 1, at: 0 };
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [{ t: 'del', cache: 'c', key }], dedup: null })).toBeNull();
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [], dedup: null })).toBeNull();
    const put = { t: 'put' as const, cache: 'c', key, value: key, expireAt: 0 };
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [put, put], dedup: null })).toBeNull();
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [put], dedup: { session: 's', seq: 1, op: Op.CACHE_PUT_IF_ABSENT, result: { applied: true } } })).toBeNull();
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [put], dedup: { session: 's', seq: 1, op: Op.CACHE_PUT, result: new Uint8Array(0) } })).toBeNull();
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [put], dedup: { session: 's', seq: 1, op: Op.CACHE_PUT, result: [] } })).toBeNull();
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [put], dedup: { session: 's', seq: 1, op: Op.CACHE_PUT, result: {} } })).not.toBeNull();
    expect(encodeReplicate(0, 1, 'x'.repeat(70_000), 'e', { ...base, effects: [put], dedup: null })).toBeNull();
    expect(encodeReplicate(0, 1, 'n', 'e', { ...base, effects: [put], dedup: { session: 's', seq: 1, op: Op.CACHE_PUT, result: EMPTY } })).not.toBeNull();
  });

  it('a store given the decoded record ends in the state of one given the map form', () => {
    fc.assert(
      fc.property(fc.array(putRecord, { minLength: 1, maxLength: 8 }), (rs) => {
        const clock = new FakeClock();
        const a = new NodeStore({ clock });
        const b = new NodeStore({ clock });
        rs.forEach((r, i) => {
          // A valid record (the store refuses an ack above seq whatever its form).
          const dedup = r.dedup === null ? null : { ...r.dedup, ack: r.dedup.ack === undefined ? undefined : Math.min(r.dedup.ack, r.dedup.seq) };
          const rec = { ...toRecord({ ...r, dedup }), counter: i + 1, at: 1_000, effects: [{ ...toRecord(r).effects[0]!, expireAt: 0 }] };
          expect(a.applyRecord(3, plain(rec) as ReplicationRecord)).toBe(true);
          const decoded = decodeReplicate(encodeReplicate(3, 1, 'n', 'e', rec)!).rec!;
          // the backup's path: a well-formed binary put is applied without a checked copy
          expect(wellFormedPut(decoded)).toBe(true);
          expect(b.applyRecord(3, decoded, true)).toBe(true);
        });
        expect(plain(b.snapshot(3))).toEqual(plain(a.snapshot(3)));
      }),
      { numRuns: 100 },
    );
  });

  it('a store given the record in place (applyPut) ends in the state of one given the map form, whatever it keeps', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(putRecord, fc.boolean()), { minLength: 1, maxLength: 8 }), fc.nat(3), (rs, gap) => {
        const clock = new FakeClock();
        const a = new NodeStore({ clock });
        const b = new NodeStore({ clock });
        const view = putView();
        rs.forEach(([r, keep], i) => {
          const dedup = r.dedup === null ? null : { ...r.dedup, ack: r.dedup.ack === undefined ? undefined : Math.min(r.dedup.ack, r.dedup.seq) };
          // Now and then a record that skips a counter value: both refuse it (a gap), changing nothing.
          const counter = i === gap ? i + 2 : i + 1;
          const full = { ...toRecord({ ...r, dedup }), counter, at: 1_000, effects: [{ ...toRecord(r).effects[0]!, expireAt: 0 }] };
          // A copy that does not hold the cache applies the record without its effect.
          const rec = keep ? full : { ...full, effects: [] };
          const h = readReplicate(encodeReplicate(3, 1, 'n', 'e', full)!, view);
          expect(wellFormedView(h)).toBe(true);
          expect(b.applyPut(3, h, keep)).toBe(a.applyRecord(3, plain(rec) as ReplicationRecord));
        });
        expect(plain(b.snapshot(3))).toEqual(plain(a.snapshot(3)));
        expect(b.inspect(3).dedup.length).toBe(a.inspect(3).dedup.length);
      }),
      { numRuns: 200 },
    );
  });

  // A plain put's record with any double in the numeric fields (NaN, ±Infinity, -0, fractions,
  // beyond 2^53) and any cache length.
  const num = fc.oneof(fc.double(), nat, fc.constantFrom(-0, 0, 1, -1, 0.5, 2 ** 53, Number.NaN, Infinity));
  const putFields = fc.record({
    counter: num,
    at: num,
    cache: fc.string({ maxLength: 300 }),
    expireAt: num,
    dedup: fc.option(fc.record({ session: str, seq: num, op: fc.integer({ min: 0, max: 0xffff }), ack: fc.option(num, { nil: undefined }) }), { nil: null }),
  });
  type PutFields = typeof putFields extends fc.Arbitrary<infer T> ? T : never;
  const recordOf = (r: PutFields): ReplicationRecord => ({
    v: 1,
    counter: r.counter,
    at: r.at,
    effects: [{ t: 'put', cache: r.cache, key: new Uint8Array([1]), value: new Uint8Array([2]), expireAt: r.expireAt }],
    dedup: r.dedup === null ? null : { session: r.dedup.session, seq: r.dedup.seq, op: r.dedup.op, result: EMPTY, ...(r.dedup.ack !== undefined ? { ack: r.dedup.ack } : {}) },
  });

  it('wellFormedView of a record read in place agrees with wellFormedPut of the decoded one', () => {
    fc.assert(
      fc.property(putFields, (r) => {
        const bin = encodeReplicate(0, 1, 'n', 'e', recordOf(r));
        if (bin === null) return;
        expect(wellFormedView(readReplicate(bin, putView()))).toBe(wellFormedPut(decodeReplicate(bin).rec!));
      }),
      { numRuns: 1000 },
    );
  });

  it('wellFormedPut holds exactly when the store would accept the decoded record as it is', () => {
    fc.assert(
      fc.property(putFields, (r) => {
        const bin = encodeReplicate(0, 1, 'n', 'e', recordOf(r));
        if (bin === null) return; // a string too long for the binary form
        const decoded = decodeReplicate(bin).rec!;
        let accepted: ReplicationRecord | null = null;
        try {
          accepted = normaliseRecord(decoded);
        } catch {
          accepted = null;
        }
        expect(wellFormedPut(decoded)).toBe(accepted !== null);
        if (accepted !== null) expect(accepted).toEqual(decoded);
      }),
      { numRuns: 1000 },
    );
  });

  it('malformed bytes give GridNodeError BAD_REQUEST, never another exception', () => {
    const check = (bin: Uint8Array): void => {
      try {
        decodeReplicate(bin);
      } catch (err) {
        expect(err).toBeInstanceOf(GridNodeError);
        expect((err as GridNodeError).wireCode).toBe(ErrorCode.BAD_REQUEST);
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), check), { numRuns: 500 });
    // A valid message cut short, or with bytes added, is always refused.
    fc.assert(
      fc.property(putRecord, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 8 }), (r, cut, extra) => {
        const bin = encodeReplicate(1, 2, 'n', 'e', toRecord(r))!;
        const short = bin.subarray(0, cut % bin.length);
        const long = new Uint8Array([...bin, ...extra]);
        for (const bad of [short, long]) {
          expect(() => decodeReplicate(bad)).toThrow(GridNodeError);
          check(bad);
        }
      }),
      { numRuns: 200 },
    );
  });
});
