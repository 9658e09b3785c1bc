/**
 * The exactly-once outcome table (store/outcomes.ts) against a plain list model: whatever the
 * order of adds (times out of order included), floors, window prunes, partition drops and idle
 * session prunes, it holds exactly the outcomes the model holds and finds each by (partition,
 * session, seq).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OutcomeTable } from '../src/store/outcomes.js';

const WINDOW = 100;
const SESSIONS = ['a', 'b', 'c'];
const PARTS = [0, 1, 2, 3];

interface M {
  session: string;
  seq: number;
  op: number;
  at: number;
  counter: number;
  partition: number;
}

type Cmd =
  | { k: 'add'; s: string; seq: number; p: number; dt: number }
  | { k: 'advance'; s: string; floor: number; dt: number }
  | { k: 'prune'; dt: number; budget: number }
  | { k: 'drop'; p: number }
  | { k: 'sessions'; dt: number };

/** Seqs: mostly a small dense range, some beyond 2^32 (the index mixes the high bits too). */
const seqArb = fc.oneof({ weight: 5, arbitrary: fc.nat(40) }, { weight: 1, arbitrary: fc.nat(40).map((n) => 2 ** 40 + n) });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ k: fc.constant('add' as const), s: fc.constantFrom(...SESSIONS), seq: seqArb, p: fc.constantFrom(...PARTS), dt: fc.integer({ min: -30, max: 20 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('advance' as const), s: fc.constantFrom(...SESSIONS), floor: seqArb, dt: fc.integer({ min: 0, max: 10 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('prune' as const), dt: fc.integer({ min: 0, max: 60 }), budget: fc.oneof(fc.constant(Infinity), fc.nat(5)) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('drop' as const), p: fc.constantFrom(...PARTS) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('sessions' as const), dt: fc.integer({ min: 0, max: 150 }) }) },
);

describe('OutcomeTable', () => {
  it('holds exactly what a list model holds, under any mix of adds, floors, prunes and drops', () => {
    fc.assert(
      fc.property(fc.array(cmdArb, { minLength: 1, maxLength: 200 }), fc.constantFrom(0, 2, 1024), (cmds, compactMin) => {
        const table = new OutcomeTable(WINDOW, compactMin);
        let held: M[] = [];
        const floors = new Map<string, number>();
        let now = 1000;
        let counter = 0;
        for (const c of cmds) {
          switch (c.k) {
            case 'add': {
              // `at` may step back: outcomes from snapshots and other primaries come out of order.
              const at = now + c.dt;
              if (c.dt > 0) now += c.dt;
              const expected = c.seq >= (floors.get(c.s) ?? 0);
              counter++;
              expect(table.add(c.s, c.seq, 7, { counter }, at, counter, c.p)).toBe(expected);
              if (expected) {
                held = held.filter((o) => !(o.session === c.s && o.seq === c.seq && o.partition === c.p));
                held.push({ session: c.s, seq: c.seq, op: 7, at, counter, partition: c.p });
              }
              break;
            }
            case 'advance': {
              now += c.dt;
              table.advance(c.s, c.floor, now);
              const f = Math.max(floors.get(c.s) ?? 0, c.floor);
              if (c.floor > 0) floors.set(c.s, f);
              held = held.filter((o) => o.session !== c.s || o.seq >= f);
              break;
            }
            case 'prune': {
              now += c.dt;
              if (c.budget === Infinity) {
                table.prune(now, Infinity);
                held = held.filter((o) => o.at + WINDOW > now);
                expect(table.due(now)).toBe(false);
              } else {
                // A bounded prune forgets only expired outcomes, oldest first.
                table.prune(now, c.budget);
                const kept = held.filter((o) => table.get(o.partition, o.session, o.seq)?.counter === o.counter);
                const gone = held.filter((o) => !kept.includes(o));
                for (const g of gone) {
                  expect(g.at + WINDOW).toBeLessThanOrEqual(now);
                  for (const k of kept) expect(k.at).toBeGreaterThanOrEqual(g.at);
                }
                held = kept;
              }
              break;
            }
            case 'drop':
              expect(table.dropPartition(c.p)).toBe(held.filter((o) => o.partition === c.p).length);
              held = held.filter((o) => o.partition !== c.p);
              break;
            case 'sessions':
              now += c.dt;
              table.prune(now, Infinity);
              held = held.filter((o) => o.at + WINDOW > now);
              table.pruneSessions(now, Infinity);
              break;
          }
          expect(table.size).toBe(held.length);
          for (const o of held) {
            const got = table.get(o.partition, o.session, o.seq);
            expect(got?.counter).toBe(o.counter);
            expect(got?.at).toBe(o.at);
          }
          for (const p of PARTS) {
            expect(table.ofPartition(p).map((o) => o.counter)).toEqual(held.filter((o) => o.partition === p).map((o) => o.counter));
          }
          for (const s of SESSIONS) {
            // A floor outlives its outcomes until the session is idle for a window.
            const f = table.floor(s);
            expect(f === 0 || f === floors.get(s)).toBe(true);
            if (f === 0) floors.delete(s);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a client with acks in steady state keeps only its requests in flight, whatever the number of writes', () => {
    const table = new OutcomeTable(60_000);
    const inFlight = 256;
    for (let seq = 1; seq <= 200_000; seq++) {
      const floor = Math.max(1, seq - inFlight + 1);
      table.advance('s', floor, seq);
      table.add('s', seq, 1, {}, seq, seq, seq % 16);
      if (table.due(seq)) table.prune(seq, Infinity);
    }
    expect(table.size).toBe(inFlight);
    for (let seq = 200_000 - inFlight + 1; seq <= 200_000; seq++) expect(table.get(seq % 16, 's', seq)?.seq).toBe(seq);
    expect(table.get(0, 's', 200_000 - inFlight)).toBeUndefined();
  });
});
