import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PartitionMap } from '@gridlink/protocol';
import { RoundRobin, primaryOf, route, splitByPrimary } from '@gridlink/client/internal';

const ids = ['n0', 'n1', 'n2', 'n3'];
const mapArb = (partitions: number): fc.Arbitrary<PartitionMap> =>
  fc.record({
    version: fc.nat(),
    partitions: fc.constant(partitions),
    backups: fc.constant(1),
    nodes: fc.constant(ids.map((id, i) => ({ id, host: 'h', port: i + 1, alive: true }))),
    primaries: fc.array(fc.integer({ min: -1, max: ids.length - 1 }), { minLength: partitions, maxLength: partitions }),
  });
const healthyArb = fc.subarray(ids);

describe('routing', () => {
  it('single-key: primary when connected, else a healthy node; null when none', () => {
    fc.assert(
      fc.property(mapArb(16), healthyArb, fc.integer({ min: 0, max: 15 }), fc.boolean(), (map, healthy, p, aware) => {
        const r = route(healthy, new RoundRobin(), map, p, aware);
        if (healthy.length === 0) {
          expect(r).toBeNull();
          return;
        }
        const primary = primaryOf(map, p);
        if (aware && primary !== null && healthy.includes(primary.id)) {
          expect(r).toEqual({ nodeId: primary.id, reason: 'primary' });
        } else {
          expect(r?.reason).toBe('round-robin');
          expect(healthy).toContain(r?.nodeId);
        }
      }),
    );
  });

  it('round-robin visits every healthy node evenly', () => {
    fc.assert(
      fc.property(fc.subarray(ids, { minLength: 1 }), fc.integer({ min: 1, max: 5 }), (healthy, rounds) => {
        const rr = new RoundRobin();
        const counts = new Map<string, number>();
        for (let i = 0; i < healthy.length * rounds; i++) {
          const r = route(healthy, rr, null, undefined);
          counts.set(r!.nodeId, (counts.get(r!.nodeId) ?? 0) + 1);
        }
        for (const h of healthy) expect(counts.get(h)).toBe(rounds);
      }),
    );
  });

  it('multi-key split: every item in exactly one group, grouped by connected primary', () => {
    fc.assert(
      fc.property(mapArb(16), healthyArb, fc.array(fc.integer({ min: 0, max: 15 }), { maxLength: 40 }), (map, healthy, parts) => {
        const set = new Set(healthy);
        const groups = splitByPrimary(parts, map, set);
        const all = [...groups.values()].flat().sort((a, b) => a - b);
        expect(all).toEqual(parts.map((_, i) => i));
        for (const [node, idx] of groups) {
          for (const i of idx) {
            const primary = primaryOf(map, parts[i] as number);
            if (node === null) expect(primary === null || !set.has(primary.id)).toBe(true);
            else expect(primary?.id).toBe(node);
          }
          // order within a group is preserved
          expect([...idx].sort((a, b) => a - b)).toEqual(idx);
        }
      }),
    );
  });
});
