/**
 * ADR 0066: while the coordinator's watch cannot be trusted, it reads the other nodes' lease keys
 * directly; two reads showing the same revision a lease apart, while its own renewals were
 * accepted throughout, mean that node's lease ran out. Checked on random timelines of renewals
 * and reads (each read answers the newest revision committed at some moment between its start and
 * its answer, as a read served by the stream leader does).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LeaseReads, coveredByAcks } from '../src/membership/liveness.js';

const LEASE = 1000;

/** Renewals committed at `commits` (ascending); reads of `reads` [start, latency, where in between it looks]. */
function replay(commits: number[], reads: [number, number, number][], accepted: (from: number, to: number) => boolean): number[] {
  const r = new LeaseReads();
  const silences: number[] = [];
  const sorted = [...reads].map(([start, latency, at]) => ({ start, answer: start + latency, looks: start + Math.floor(latency * at) })).sort((a, b) => a.answer - b.answer);
  for (const q of sorted) {
    const revision = commits.filter((c) => c <= q.looks).length;
    if (revision === 0) continue;
    r.answered('x', revision, q.start, q.answer);
    silences.push(r.silentFor('x', accepted));
  }
  return silences;
}

const always = (): boolean => true;

describe('LeaseReads (ADR 0066)', () => {
  it('property: a node that commits a renewal at least every 900 ms is never read as silent for a lease', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 900 }), { minLength: 5, maxLength: 40 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 20_000 }), fc.integer({ min: 0, max: 3000 }), fc.double({ min: 0, max: 1, noNaN: true })), { maxLength: 60 }),
        (gaps, reads) => {
          const commits: number[] = [];
          let t = 0;
          for (const g of gaps) commits.push((t += g));
          // Reads only while it renews (after its last renewal, it is silent for real).
          const within = reads.filter(([start, latency]) => start + latency <= t);
          for (const s of replay(commits, within, always)) expect(s).toBeLessThan(LEASE);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('property: a node that stopped renewing is read as silent for a lease once reads a lease apart show it, and never while own writes were refused', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 400 }), fc.integer({ min: 0, max: 300 }), (lastCommit, every, latency) => {
        const reads: [number, number, number][] = [];
        for (let s = lastCommit + 1; s <= lastCommit + 3 * LEASE; s += every) reads.push([s, latency, 0]);
        const silences = replay([lastCommit], reads, always);
        expect(Math.max(...silences)).toBeGreaterThanOrEqual(LEASE);
        // The first read that says so started a lease after the first answer (no sooner).
        const firstAnswer = lastCommit + 1 + latency;
        const k = silences.findIndex((x) => x >= LEASE);
        expect(reads[k]![0]).toBeGreaterThanOrEqual(firstAnswer + LEASE);
        expect(replay([lastCommit], reads, () => false).every((x) => x === 0)).toBe(true);
      }),
    );
  });

  it('a newer revision, from a read or the watch, starts over; an older (stale) answer changes nothing', () => {
    const r = new LeaseReads();
    r.answered('x', 5, 0, 10);
    r.answered('x', 5, 1010, 1020);
    expect(r.silentFor('x', always)).toBeGreaterThanOrEqual(LEASE);
    r.answered('x', 4, 2000, 2010);
    expect(r.silentFor('x', always)).toBe(1000);
    r.watched('x', 6);
    expect(r.silentFor('x', always)).toBe(0);
    r.answered('x', 6, 3000, 3010);
    r.answered('x', 7, 3100, 3110);
    r.answered('x', 7, 3500, 3520);
    expect(r.silentFor('x', always)).toBe(390);
    r.retain(() => false);
    expect(r.silentFor('x', always)).toBe(0);
  });
});

describe('coveredByAcks (ADR 0066)', () => {
  it('property: the same as "every point of [from, to] has an acknowledgement within maxGap after the previous one or from"', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5000 }), { maxLength: 40 }), fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 1000 }), (raw, a, b, gap) => {
        const acks = [...raw].sort((x, y) => x - y);
        const [from, to] = a <= b ? [a, b] : [b, a];
        const points = [from, ...acks.filter((x) => x >= from && x <= to), to];
        const expected = points.every((p, i) => i === 0 || p - points[i - 1]! <= gap);
        expect(coveredByAcks(acks, from, to, gap)).toBe(expected);
      }),
    );
    expect(coveredByAcks([100], 200, 100, 500)).toBe(false);
  });
});
