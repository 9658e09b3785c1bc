import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { FastHistogram } from '../src/metrics.js';

describe('FastHistogram', () => {
  it('exposes cumulative buckets, sum and count per series exactly as observed', async () => {
    const bounds = [0.001, 0.01, 0.1, 1];
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom('a', 'b'), fc.double({ min: 0, max: 5, noNaN: true })), { maxLength: 50 }), async (obs) => {
        const registry = new Registry();
        registry.setDefaultLabels({ node: 'n1' });
        const h = new FastHistogram('t_seconds', 'test', bounds, registry);
        const series = { a: h.series({ op: 'a' }), b: h.series({ op: 'b' }) };
        for (const [op, v] of obs) h.observe(series[op], v);
        const text = await registry.metrics();
        for (const op of ['a', 'b'] as const) {
          const mine = obs.filter(([o]) => o === op).map(([, v]) => v);
          if (mine.length === 0) {
            expect(text).not.toContain(`op="${op}"`);
            continue;
          }
          for (const le of bounds) {
            expect(text).toContain(`t_seconds_bucket{op="${op}",le="${le}",node="n1"} ${mine.filter((v) => v <= le).length}\n`);
          }
          expect(text).toContain(`t_seconds_bucket{op="${op}",le="+Inf",node="n1"} ${mine.length}\n`);
          expect(text).toContain(`t_seconds_count{op="${op}",node="n1"} ${mine.length}`);
          const sum = Number(new RegExp(`t_seconds_sum\\{op="${op}",node="n1"\\} (\\S+)`).exec(text)![1]);
          expect(sum).toBeCloseTo(mine.reduce((x, y) => x + y, 0), 9);
        }
      }),
      { numRuns: 100 },
    );
  });
});
