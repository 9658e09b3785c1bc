import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  FrameKind,
  isPeerOp,
  MAX_SCAN_COUNT,
  MAX_TTL_MS,
  MUTATING_OPS,
  Op,
  opName,
  ProtocolError,
  validateRequest,
  validateResponse,
  type RequestFrame,
} from '@gridlink/protocol';
import { CLIENT_OPS, msgpackValue, partitionMap, requestPayloads, responsePayloads } from './arbitraries.js';

const bin = new Uint8Array([1]);

/** Values that must be refused, by the type of field (keyed by field name). */
const WRONG: Record<string, unknown[]> = {};
const uintWrong = [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, '1', null, true, bin, [], {}];
const intWrong = [1.5, NaN, Infinity, 2 ** 53, -(2 ** 53), '1', null, bin];
const bytesWrong = ['k', 1, null, [], {}, [1, 2], true];
for (const f of ['key', 'value', 'expected', 'name']) WRONG[f] = bytesWrong;
for (const f of ['seq', 'ack', 'knownVersion', 'partition', 'token']) WRONG[f] = uintWrong;
// A write's TTL past MAX_TTL_MS has an expiry no safe integer holds (or soon will not).
WRONG.ttlMs = [MAX_TTL_MS + 1, Number.MAX_SAFE_INTEGER, ...uintWrong];
// Lock leases and waits arm timers on the node: longer than a timer takes is refused.
WRONG.waitMs = [2 ** 31, ...uintWrong];
for (const f of ['delta', 'initial']) WRONG[f] = intWrong;
WRONG.cache = ['', 'x'.repeat(256), '€'.repeat(86), 1, null, bin, ['c']];
WRONG.leaseMs = [0, 2 ** 31, ...uintWrong];
WRONG.count = [0, MAX_SCAN_COUNT + 1, ...uintWrong];
WRONG.cursor = ['c', 1, [], {}];
WRONG.owner = ['', 'x'.repeat(65), 'é', 1, null, bin];
WRONG.keys = ['k', bin, [bin, 'k'], [null], null, {}];
WRONG.entries = [[[bin]], [[bin, 'v']], [[bin, bin, bin]], [bin], 'e', null, { 0: [bin, bin] }];
WRONG.ifAbsent = [1, 0, 'true', null, bin, []];
WRONG.config = [null, 'c', [], { ttlMs: -1 }, { backups: 1.5 }, { other: 1 }, bin];

const frame = (op: number, payload: unknown): RequestFrame => ({ kind: FrameKind.REQUEST, op, id: 1, flags: 0, payload }) as RequestFrame;

function refusal(op: number, payload: unknown): ProtocolError {
  try {
    validateRequest(frame(op, payload));
  } catch (err) {
    expect(err).toBeInstanceOf(ProtocolError);
    return err as ProtocolError;
  }
  throw new Error(`${opName(op)} accepted ${JSON.stringify(payload)}`);
}

describe('validateRequest', () => {
  it('accepts every valid payload of every client op', () => {
    for (const op of CLIENT_OPS) {
      fc.assert(fc.property(requestPayloads[op]!, (p) => validateRequest(frame(op, p))), { numRuns: 100 });
    }
  });

  it('every mutating op carries seq; every client op has a generator', () => {
    for (const op of Object.values(Op).filter((o) => !isPeerOp(o))) expect(CLIENT_OPS).toContain(op);
    for (const op of MUTATING_OPS) {
      const p = fc.sample(requestPayloads[op]!, 1)[0]!;
      expect(p).toHaveProperty('seq');
      const { seq: _seq, ...rest } = p;
      expect(refusal(op, rest).message).toMatch(/"seq"/);
    }
  });

  it('rejects a wrongly typed field, naming it, with BAD_REQUEST', () => {
    for (const op of CLIENT_OPS) {
      fc.assert(
        fc.property(requestPayloads[op]!, fc.nat(), fc.nat(), (p, i, j) => {
          const fields = Object.keys(p);
          if (fields.length === 0) return;
          const field = fields[i % fields.length]!;
          const wrong = WRONG[field];
          expect(wrong, `no wrong values for ${field}`).toBeDefined();
          const e = refusal(op, { ...p, [field]: wrong![j % wrong!.length] });
          expect(e.wireCode).toBe(ErrorCode.BAD_REQUEST);
          expect(e.code).toBe('GRID_BAD_REQUEST');
          expect(e.message).toContain(`"${field}"`);
          expect(e.message).toContain(opName(op));
        }),
        { numRuns: 60 },
      );
    }
  });

  it('rejects a missing required field, an unknown field and a payload that is not a map', () => {
    for (const op of CLIENT_OPS) {
      fc.assert(
        fc.property(requestPayloads[op]!, fc.nat(), msgpackValue, (p, i, junk) => {
          const fields = Object.keys(p).filter((f) => !['ttlMs', 'initial', 'knownVersion', 'ack', 'owner', 'ifAbsent'].includes(f));
          if (fields.length > 0) {
            const field = fields[i % fields.length]!;
            const { [field]: _drop, ...rest } = p;
            expect(refusal(op, rest).message).toMatch(new RegExp(`missing field "${field}"`));
          }
          expect(refusal(op, { ...p, extra: junk }).message).toMatch(/unknown field "extra"/);
          for (const notMap of [null, [], bin, 'p', 1, [p]]) expect(refusal(op, notMap).message).toMatch(/must be a map/);
        }),
        { numRuns: 30 },
      );
    }
  });

  it("refuses a write's ttlMs above MAX_TTL_MS (2^52 ms, the node's longest cache TTL) with BAD_REQUEST naming ttlMs, on every op that takes one; it used to pass, and the node stored it or not depending on the clock", () => {
    expect(MAX_TTL_MS).toBe(2 ** 52);
    const base: Record<number, Record<string, unknown>> = {
      [Op.CACHE_PUT]: { cache: 'c', key: bin, seq: 1, value: bin },
      [Op.CACHE_PUT_ALL]: { cache: 'c', seq: 1, entries: [[bin, bin]] },
      [Op.CACHE_PUT_IF_ABSENT]: { cache: 'c', key: bin, seq: 1, value: bin },
      [Op.CACHE_REPLACE]: { cache: 'c', key: bin, seq: 1, value: bin },
      [Op.CACHE_REPLACE_IF_EQUALS]: { cache: 'c', key: bin, seq: 1, expected: bin, value: bin },
      [Op.CACHE_GET_AND_PUT]: { cache: 'c', key: bin, seq: 1, value: bin },
      [Op.CACHE_INCREMENT]: { cache: 'c', key: bin, seq: 1, delta: 1 },
      [Op.LOCK_PUT_RELEASE]: { cache: 'c', key: bin, seq: 1, token: 1, value: bin },
    };
    // Every client op whose request has a ttlMs is here (the arbitraries hold them all).
    const withTtl = CLIENT_OPS.filter((op) => fc.sample(requestPayloads[op]!, 200).some((p) => 'ttlMs' in p));
    expect(withTtl.sort((a, b) => a - b)).toEqual(Object.keys(base).map(Number));
    for (const op of withTtl) {
      for (const ttlMs of [0, 1, MAX_TTL_MS]) expect(() => validateRequest(frame(op, { ...base[op], ttlMs }))).not.toThrow();
      for (const ttlMs of [MAX_TTL_MS + 1, 2 ** 53 - 2, Number.MAX_SAFE_INTEGER]) {
        const e = refusal(op, { ...base[op], ttlMs });
        expect([opName(op), e.wireCode]).toEqual([opName(op), ErrorCode.BAD_REQUEST]);
        expect(e.message).toContain('"ttlMs"');
        expect(e.message).toContain(String(MAX_TTL_MS));
      }
    }
  });

  it('treats undefined optional fields as absent (payloads built in JS)', () => {
    validateRequest(frame(Op.CACHE_PUT, { cache: 'c', key: bin, seq: 1, value: bin, ttlMs: undefined }));
    expect(refusal(Op.CACHE_PUT, { cache: 'c', key: bin, seq: 1, value: bin, ttlMs: null }).message).toMatch(/ttlMs/);
  });

  it('UNKNOWN_OP for unassigned client op codes; peer ops pass as opaque', () => {
    for (const op of [0, 4, 9, 26, 39, 46, 99]) {
      expect(refusal(op, {}).wireCode).toBe(ErrorCode.UNKNOWN_OP);
    }
    fc.assert(fc.property(fc.integer({ min: 100, max: 0xffff }), msgpackValue, (op, p) => validateRequest(frame(op, p))));
  });
});

describe('validateResponse', () => {
  it('accepts every valid response payload and rejects one with a field of the wrong type', () => {
    for (const op of CLIENT_OPS) {
      fc.assert(
        fc.property(responsePayloads[op]!, (p) => {
          validateResponse(op, p);
          const rec = p as Record<string, unknown>;
          for (const k of Object.keys(rec)) {
            expect(() => validateResponse(op, { ...rec, [k]: 'wrong' })).toThrow(ProtocolError);
          }
          expect(() => validateResponse(op, { ...rec, extra: 1 })).toThrow(ProtocolError);
        }),
        { numRuns: 40 },
      );
    }
  });

  it('checks partition maps: primaries length and indexes', () => {
    fc.assert(
      fc.property(partitionMap, (m) => {
        validateResponse(Op.TOPOLOGY, m);
        expect(() => validateResponse(Op.TOPOLOGY, { ...m, primaries: m.primaries.slice(1) })).toThrow(/primaries/);
        expect(() => validateResponse(Op.TOPOLOGY, { ...m, primaries: m.primaries.map(() => m.nodes.length) })).toThrow(/primaries/);
      }),
      { numRuns: 50 },
    );
  });

  it('UNKNOWN_OP for unknown client ops, peer ops pass', () => {
    expect(() => validateResponse(5, {})).toThrow(ProtocolError);
    validateResponse(Op.PEER_FORWARD, 'anything');
  });
});
