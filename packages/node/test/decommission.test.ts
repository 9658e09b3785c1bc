/**
 * Decommission without loss: a baseline change builds the new copies first (the leaving owners
 * stay owners, and the primary stays where the data is, until every alive target owner has
 * pulled), then takes the old owners out. Property-tested on the pure nextTopology with a model
 * of which node holds a full copy of which partition; then end to end on LocalCluster with
 * backups = 0, where any shortcut would lose data.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { type LeaseRecord, type TopologyRecord } from '@gridlink/node';
import { initialTopology, nextTopology } from '@gridlink/node/internal';
import { perTestCluster } from './helpers/grid.js';

const IDS = ['a', 'b', 'c', 'd', 'e'];
const P = 12;

type Step = { kind: 'baseline'; pick: boolean[] } | { kind: 'sync'; which: number } | { kind: 'tick' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('baseline' as const), pick: fc.array(fc.boolean(), { minLength: IDS.length, maxLength: IDS.length }) }),
  fc.record({ kind: fc.constant('sync' as const), which: fc.nat() }),
  fc.constant({ kind: 'tick' as const }),
);

describe('nextTopology: baseline changes never lose a copy', () => {
  it('owners always hold the data, and no partition is lost by a baseline change (backups 0..2)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.array(stepArb, { minLength: 1, maxLength: 40 }), (backups, steps) => {
        const leases = new Map<string, LeaseRecord>(IDS.map((id) => [id, { id, epoch: `${id}-1`, host: 'h', port: 1, synced: {} }]));
        const off = { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 };
        let t: TopologyRecord = initialTopology({ clusterId: 'c', partitions: P, backups, leases: [...leases.values()], autoAdjust: off });
        // A fresh cluster: the first owners hold (empty) data.
        const has = new Map<string, Set<number>>(IDS.map((id) => [id, new Set<number>()]));
        t.owners.forEach((o, p) => o.forEach((id) => has.get(id)!.add(p)));
        for (const s of steps) {
          if (s.kind === 'baseline') {
            const ids = IDS.filter((_, i) => s.pick[i]);
            if (ids.length === 0) continue;
            t = { ...t, version: t.version + 1, baseline: ids.map((id) => ({ id })) };
          } else if (s.kind === 'sync') {
            const pending = t.syncing.flatMap((es, p) => es.map((e) => ({ p, e })));
            if (pending.length === 0) continue;
            const { p, e } = pending[s.which % pending.length]!;
            // The pull copies from the primary, which must hold the data.
            const primary = t.owners[p]![0]!;
            expect(has.get(primary)!.has(p)).toBe(true);
            has.get(e.id)!.add(p);
            leases.get(e.id)!.synced[String(p)] = e.since;
          }
          const next = nextTopology(t, [...leases.values()], 0);
          if (next === null) continue;
          t = next;
          expect(t.lost).toEqual([]);
          for (let p = 0; p < P; p++) {
            const o = t.owners[p]!;
            expect(o.length).toBeGreaterThan(0);
            for (const id of o) expect(has.get(id)!.has(p)).toBe(true);
          }
          // A node neither owning nor pulling a partition drops its copy (and its synced mark).
          for (const id of IDS) {
            for (let p = 0; p < P; p++) {
              if (!t.owners[p]!.includes(id) && !t.syncing[p]!.some((e) => e.id === id)) {
                has.get(id)!.delete(p);
                delete leases.get(id)!.synced[String(p)];
              }
            }
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('decommission on LocalCluster (backups = 0)', () => {
  const fx = perTestCluster();

  it('removing a node from the baseline moves its data first; stopping it then loses nothing', async () => {
    const cluster = await fx.start({ nodes: 3, partitions: 16, backups: 0, autoAdjust: { enabled: false } });
    const c = cluster;
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 10_000 });
    const cache = client.cache<string, number>('d');
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) await cache.put(k, i);
    const [leaving, ...staying] = c.nodeIds as [string, ...string[]];
    expect(c.topology().owners.some((o) => o.includes(leaving))).toBe(true);
    await c.setBaseline(staying);
    const t = await c.waitForStable(15_000);
    expect(t.owners.every((o) => !o.includes(leaving))).toBe(true);
    expect(t.lost).toEqual([]);
    await c.stopNode(leaving);
    await c.waitForTopology((x) => x.members[leaving] === undefined);
    for (const [i, k] of keys.entries()) expect(await cache.get(k)).toBe(i);
  }, 30_000);

  it('a node stopped right after its removal from the baseline first lets its data move', async () => {
    const cluster = await fx.start({ nodes: 3, partitions: 16, backups: 0, autoAdjust: { enabled: false } });
    const c = cluster;
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 10_000 });
    const cache = client.cache<string, number>('d');
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) await cache.put(k, i);
    const [leaving, ...staying] = c.nodeIds as [string, ...string[]];
    await c.setBaseline(staying);
    await c.stopNode(leaving);
    const t = await c.waitForStable(15_000, staying);
    expect(t.lost).toEqual([]);
    for (const [i, k] of keys.entries()) expect(await cache.get(k)).toBe(i);
  }, 30_000);
});
