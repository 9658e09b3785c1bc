import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelay } from '@gridlink/client/internal';

const policyArb = fc
  .record({
    minDelay: fc.integer({ min: 0, max: 1000 }),
    extra: fc.integer({ min: 0, max: 10_000 }),
    factor: fc.double({ min: 1, max: 4, noNaN: true }),
    jitter: fc.double({ min: 0, max: 1, noNaN: true }),
  })
  .map(({ minDelay, extra, factor, jitter }) => ({ minDelay, maxDelay: minDelay + extra, factor, jitter }));

describe('backoff policy', () => {
  it('stays within [min*(1-jitter), max] for any attempt and random draw', () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 0, max: 10_000 }), fc.double({ min: 0, max: 1, noNaN: true }), (p, attempt, r) => {
        const d = backoffDelay(p, attempt, r);
        expect(d).toBeGreaterThanOrEqual(Math.floor(p.minDelay * (1 - p.jitter)));
        expect(d).toBeLessThanOrEqual(p.maxDelay);
      }),
    );
  });

  it('without jitter grows monotonically to the cap', () => {
    fc.assert(
      fc.property(policyArb, fc.integer({ min: 0, max: 200 }), (p, attempt) => {
        const q = { ...p, jitter: 0 };
        expect(backoffDelay(q, attempt + 1, 0.5)).toBeGreaterThanOrEqual(backoffDelay(q, attempt, 0.5));
        expect(backoffDelay(q, 10_000, 0.5)).toBe(Math.round(Math.min(q.maxDelay, q.minDelay * Math.pow(q.factor, 64))));
      }),
    );
  });
});
