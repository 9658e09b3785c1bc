/**
 * The client's open sequence numbers and the floor it sends as `ack`, against a model; and, on a
 * real cluster, what that floor buys: the nodes hold outcomes only for what may still be retried.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SeqWindow } from '@gridlink/client/internal';
import { gridFixture } from './helpers/grid.js';

describe('SeqWindow', () => {
  it('floor is the lowest open seq (or the next one), whatever order seqs settle in', () => {
    const cmd = fc.oneof(fc.record({ k: fc.constant('next' as const) }), fc.record({ k: fc.constant('settle' as const), pick: fc.nat() }), fc.record({ k: fc.constant('again' as const), pick: fc.nat() }));
    fc.assert(
      fc.property(fc.array(cmd, { maxLength: 300 }), (cmds) => {
        const w = new SeqWindow();
        const open = new Set<number>();
        let last = 0;
        for (const c of cmds) {
          if (c.k === 'next') {
            const s = w.next();
            expect(s).toBe(last + 1);
            last = s;
            open.add(s);
          } else if (c.k === 'settle') {
            const list = [...open];
            if (list.length === 0) continue;
            const s = list[c.pick % list.length]!;
            open.delete(s);
            w.settle(s);
          } else if (last > 0) {
            // settling twice, or a seq never opened, changes nothing
            const s = (c.pick % (last + 2)) + 0;
            if (!open.has(s)) w.settle(s);
          }
          expect(w.floor).toBe(open.size === 0 ? last + 1 : Math.min(...open));
          expect(w.open).toBe(open.size);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('outcomes on the nodes stay bounded by what a live client may still retry', () => {
  const grid = gridFixture({ nodes: 2, backups: 1, partitions: 32 });

  const held = (): number => grid.cluster.nodeIds.reduce((n, id) => n + grid.cluster.node(id).store.stats().dedupEntries, 0);

  it('thousands of writes, 16 in flight, leave at most a request window of outcomes on primaries and backups', async () => {
    const c = grid.client.cache<string, number>('bounded');
    const IN_FLIGHT = 16;
    let next = 0;
    let maxHeld = 0;
    const worker = async (): Promise<void> => {
      while (next < 3000) {
        const i = next++;
        if (i % 2 === 0) await c.put(`k${i % 97}`, i);
        else await c.increment(`n${i % 13}`, 1);
        maxHeld = Math.max(maxHeld, held());
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, () => worker()));
    // A node holds only the outcomes of seqs from the floor on: with 16 requests in flight a few
    // dozen (primary and backup copies) unless one request stalls while others go on. Without
    // ack it would be every outcome, twice: 6000.
    expect(maxHeld).toBeLessThan(1000);
    // Once everything has settled, the next write tells both nodes (primary and backup of its
    // partition: two nodes, one backup) that nothing before it will be retried.
    await c.put('last', 0);
    expect(held()).toBeLessThanOrEqual(2);
    // Every increment was applied exactly once.
    let total = 0;
    for (let k = 0; k < 13; k++) total += (await c.get(`n${k}`)) ?? 0;
    expect(total).toBe(1500);
  });
});
