import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from '@gridlink/client/internal';

describe('latency histogram', () => {
  it('percentiles are within 4% (or 1 µs) above the exact value', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 10_000, noNaN: true }), { minLength: 1, maxLength: 300 }), fc.constantFrom(0.5, 0.9, 0.99, 1), (samples, q) => {
        const h = new LatencyHistogram();
        for (const s of samples) h.record(s);
        const sorted = [...samples].sort((a, b) => a - b);
        const exact = sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] as number;
        const got = h.percentile(q);
        expect(got).toBeGreaterThanOrEqual(exact - 1e-9);
        expect(got).toBeLessThanOrEqual(exact * 1.04 + 0.001);
      }),
    );
  });

  it('is empty-safe and ignores junk', () => {
    const h = new LatencyHistogram();
    expect(h.percentile(0.5)).toBe(0);
    h.record(NaN);
    h.record(-1);
    expect(h.count).toBe(0);
  });
});
