/**
 * ADR 0065: two members that cannot reach each other while both reach the rest. Each reports the
 * other in its lease (`unreachable`); the coordinator asks one of each reported pair to stop
 * renewing (`TopologyRecord.fenced`), one node at a time, never one whose going would lose a
 * partition, and holds a later life of it back until it reaches every member. The rules are
 * pure (`reach-fence.ts`); checked here on random clusters, owner lists and reports.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LeaseRecord, TopologyRecord } from '../src/control/topology.js';
import { initialTopology, nextTopology, nodeSafety } from '../src/control/topology.js';
import { leaseProblem, topologyProblem } from '../src/control/records.js';
import { admissionHeld, reachFence, reachedAgain, reportedPairs, reportersOf, soleHolderOf } from '../src/membership/reach-fence.js';
import { lease } from './helpers/coordinator.js';

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `node-${i + 1}`);

/** A topology of `n` members with the given owner lists (as written by some earlier steps). */
function topologyOf(n: number, owners: string[][]): TopologyRecord {
  const t = initialTopology({ clusterId: 'c', partitions: owners.length, backups: 1, leases: ids(n).map((id) => lease(id)) });
  return { ...t, owners: owners.map((o) => [...o]), syncing: owners.map(() => []) };
}

const withReports = (l: LeaseRecord, unreachable: string[]): LeaseRecord => (unreachable.length > 0 ? { ...l, unreachable } : l);

/** n nodes, 8 partitions with 1–3 distinct owners each, some leases alive, random reports. */
const scenarios = fc.integer({ min: 2, max: 7 }).chain((n) =>
  fc.record({
    n: fc.constant(n),
    owners: fc.array(fc.uniqueArray(fc.integer({ min: 0, max: n - 1 }), { minLength: 1, maxLength: Math.min(3, n) }), { minLength: 8, maxLength: 8 }),
    alive: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
    reports: fc.array(fc.tuple(fc.integer({ min: 0, max: n - 1 }), fc.integer({ min: 0, max: n - 1 })), { maxLength: 8 }),
  }),
);

function build(s: { n: number; owners: number[][]; alive: boolean[]; reports: [number, number][] }): { topo: TopologyRecord; alive: LeaseRecord[] } {
  const all = ids(s.n);
  const topo = topologyOf(
    s.n,
    s.owners.map((o) => o.map((i) => all[i]!)),
  );
  const unreachable = new Map<string, Set<string>>();
  for (const [a, b] of s.reports) {
    const set = unreachable.get(all[a]!) ?? new Set<string>();
    set.add(all[b]!);
    unreachable.set(all[a]!, set);
  }
  const alive = all.filter((_, i) => s.alive[i]).map((id) => withReports(lease(id), [...(unreachable.get(id) ?? [])].sort()));
  return { topo, alive };
}

describe('reachFence (ADR 0065)', () => {
  it('property: fences only a live member of a reported pair whose going loses no partition; the same whatever the order of leases', () => {
    fc.assert(
      fc.property(scenarios, (s) => {
        const { topo, alive } = build(s);
        const pairs = reportedPairs(topo, alive);
        const d = reachFence(topo, alive, pairs);
        const aliveIds = new Set(alive.map((l) => l.id));
        if (pairs.length === 0) expect(d).toBeNull();
        if (d === null) {
          // Nobody fenced only when every node of every pair would lose a partition.
          for (const p of pairs) for (const id of p) expect(soleHolderOf(topo, id, aliveIds)).toBeGreaterThan(0);
          return;
        }
        expect(d.kind).toBe('fence');
        if (d.kind !== 'fence') return;
        expect(aliveIds.has(d.id)).toBe(true);
        expect(pairs.some((p) => p.includes(d.id))).toBe(true);
        expect(d.epoch).toBe(`${d.id}-1`);
        // Every partition it owns keeps another owner alive.
        for (const o of topo.owners) if (o.includes(d.id)) expect(o.some((x) => x !== d.id && aliveIds.has(x))).toBe(true);
        const again = reachFence(topo, [...alive].reverse(), [...reportedPairs(topo, [...alive].reverse())].reverse());
        expect(again).toEqual(d);
      }),
      { numRuns: 500 },
    );
  });

  it('property: while a fenced node is a member under the fenced epoch, nobody else is fenced; its fence is withdrawn once it holds the only copy of a partition', () => {
    fc.assert(
      fc.property(scenarios, fc.nat(), (s, pick) => {
        const { topo, alive } = build(s);
        const victim = ids(s.n)[pick % s.n]!;
        const fencedTopo: TopologyRecord = { ...topo, fenced: { [victim]: `${victim}-1` } };
        const rest = alive.filter((l) => l.id !== victim);
        const d = reachFence(fencedTopo, rest, reportedPairs(fencedTopo, rest));
        const sole = soleHolderOf(fencedTopo, victim, new Set(rest.map((l) => l.id))) > 0;
        expect(d).toEqual(sole ? { kind: 'withdraw', id: victim, reason: 'sole holder' } : null);
        // Once that life left the members (declared gone), the next pair may be fenced.
        const after: TopologyRecord = { ...fencedTopo, members: Object.fromEntries(Object.entries(topo.members).filter(([id]) => id !== victim)) };
        const later = reachFence(after, rest, reportedPairs(after, rest));
        if (later !== null) expect(later.kind).toBe('fence');
      }),
      { numRuns: 300 },
    );
  });

  it('a pair cut from each other: the higher id goes; a node cut off from everyone goes, not the others; a report of a non-member or of an old epoch counts nothing', () => {
    const topo = topologyOf(3, [
      ['node-1', 'node-2'],
      ['node-2', 'node-3'],
      ['node-3', 'node-1'],
    ]);
    const pair = [lease('node-1'), withReports(lease('node-2'), ['node-3']), withReports(lease('node-3'), ['node-2'])];
    expect(reachFence(topo, pair, reportedPairs(topo, pair))).toMatchObject({ kind: 'fence', id: 'node-3', pairs: [['node-2', 'node-3']] });
    // One side only reports: the same pair.
    const oneSided = [lease('node-1'), lease('node-2'), withReports(lease('node-3'), ['node-2'])];
    expect(reachFence(topo, oneSided, reportedPairs(topo, oneSided))).toMatchObject({ kind: 'fence', id: 'node-3' });
    // node-1 cut off from both: node-1 is in both pairs.
    const lowest = [withReports(lease('node-1'), ['node-2', 'node-3']), withReports(lease('node-2'), ['node-1']), withReports(lease('node-3'), ['node-1'])];
    expect(reachFence(topo, lowest, reportedPairs(topo, lowest))).toMatchObject({ kind: 'fence', id: 'node-1' });
    // node-2 dead: node-3's going would lose partition 0, so the other node of the pair goes.
    const riskyTopo = topologyOf(3, [
      ['node-2', 'node-3'],
      ['node-1', 'node-3'],
      ['node-3', 'node-1'],
    ]);
    const risky = [lease('node-1'), withReports(lease('node-3'), ['node-1'])];
    expect(reachFence(riskyTopo, risky, reportedPairs(riskyTopo, risky))).toMatchObject({ kind: 'fence', id: 'node-1' });
    // In `topo` with node-2 dead, either going would lose a partition: nobody.
    expect(reachFence(topo, risky, reportedPairs(topo, risky))).toBeNull();
    const noneSafe = topologyOf(2, [['node-1'], ['node-2']]);
    const both = [withReports(lease('node-1'), ['node-2']), lease('node-2')];
    expect(reachFence(noneSafe, both, reportedPairs(noneSafe, both))).toBeNull();
    // Reports about a node that is not a member, or under an epoch that is not the member's.
    const stale = [lease('node-1'), withReports(lease('node-2'), ['node-9']), withReports(lease('node-3', 'node-3-2'), ['node-2'])];
    expect(reportedPairs(topo, stale)).toEqual([]);
    // Pairs not (yet) settled count nothing.
    expect(reachFence(topo, pair, [])).toBeNull();
  });
});

describe('admissionHeld (ADR 0065)', () => {
  const topo: TopologyRecord = { ...topologyOf(2, [['node-1', 'node-2']]), fenced: { 'node-3': 'node-3-1' } };
  const members = new Set(['node-1', 'node-2']);

  it('holds a later life of a fenced node for holdMs, then while it reports an alive member unreachable', () => {
    const next = lease('node-3', 'node-3-2');
    expect(admissionHeld(topo, next, 1999, members, 2000)).toBe(true);
    expect(admissionHeld(topo, next, 2000, members, 2000)).toBe(false);
    expect(admissionHeld(topo, { ...next, unreachable: ['node-2'] }, 60_000, members, 2000)).toBe(true);
    // A report of a node no longer alive holds nothing.
    expect(admissionHeld(topo, { ...next, unreachable: ['node-7'] }, 60_000, members, 2000)).toBe(false);
  });

  it('holds nobody else: the fenced life itself, other nodes, a node without an entry', () => {
    expect(admissionHeld(topo, lease('node-3', 'node-3-1'), 0, members, 2000)).toBe(false);
    expect(admissionHeld(topo, lease('node-4'), 0, members, 2000)).toBe(false);
    expect(admissionHeld({ ...topo, fenced: undefined }, lease('node-3', 'node-3-2'), 0, members, 2000)).toBe(false);
  });
});

describe('TopologyRecord.fenced through nextTopology (ADR 0065)', () => {
  it('stays while the fenced life is a member or gone, and goes once a later life is a member', () => {
    const t0 = { ...initialTopology({ clusterId: 'c', partitions: 4, backups: 1, leases: ids(3).map((id) => lease(id)) }), fenced: { 'node-3': 'node-3-1' } };
    // Still renewing (it has not seen the request yet): nothing changes, the entry stays.
    expect(nextTopology(t0, ids(3).map((id) => lease(id)), 0)).toBeNull();
    // Its lease ran out: dropped, the entry stays (a later life is held back on it).
    const t1 = nextTopology(t0, [lease('node-1'), lease('node-2')], 0)!;
    expect(t1.members['node-3']).toBeUndefined();
    expect(t1.departed).toEqual({ 'node-3': 'node-3-1' });
    expect(t1.fenced).toEqual({ 'node-3': 'node-3-1' });
    // A later life admitted: the entry goes.
    const t2 = nextTopology(t1, [lease('node-1'), lease('node-2'), lease('node-3', 'node-3-2')], 0)!;
    expect(t2.members['node-3']?.epoch).toBe('node-3-2');
    expect(t2.fenced).toBeUndefined();
  });

  it('is checked when read: a map of epochs in the topology, a list of ids in a lease', () => {
    const t = initialTopology({ clusterId: 'c', partitions: 4, backups: 1, leases: [lease('node-1')] });
    expect(topologyProblem({ ...t, fenced: { 'node-1': 'e' } })).toBeNull();
    expect(topologyProblem({ ...t, fenced: { 'node-1': 3 } })).toBe('fenced: not a map of epochs');
    expect(topologyProblem({ ...t, fenced: ['node-1'] })).toBe('fenced: not a map of epochs');
    expect(leaseProblem({ ...lease('node-1'), unreachable: ['node-2'] }, 'node-1')).toBeNull();
    expect(leaseProblem({ ...lease('node-1'), unreachable: 'node-2' }, 'node-1')).toBe('not a lease record');
  });
});

describe('nodeSafety with a fenced member (ADR 0065)', () => {
  it('a member asked to stop renewing counts for no copy: it and every node sharing a partition with it are unsafe; once it is gone, as usual', () => {
    const t = topologyOf(3, [
      ['node-1', 'node-2'],
      ['node-2', 'node-3'],
      ['node-3', 'node-1'],
    ]);
    expect(['node-1', 'node-2', 'node-3'].map((id) => nodeSafety(t, id).safe)).toEqual([true, true, true]);
    const fenced: TopologyRecord = { ...t, fenced: { 'node-3': 'node-3-1' } };
    expect(nodeSafety(fenced, 'node-3')).toMatchObject({ safe: false, underReplicated: [1, 2] });
    expect(nodeSafety(fenced, 'node-1')).toMatchObject({ safe: false, underReplicated: [2] });
    expect(nodeSafety(fenced, 'node-2')).toMatchObject({ safe: false, underReplicated: [1] });
    // The entry of an earlier life (the node was dropped and came back) counts nothing.
    const earlier: TopologyRecord = { ...t, fenced: { 'node-3': 'node-3-0' } };
    expect(['node-1', 'node-2', 'node-3'].map((id) => nodeSafety(earlier, id).safe)).toEqual([true, true, true]);
  });
});

describe('reachedAgain (ADR 0065)', () => {
  it('only once every member whose report the fence rested on, still alive, reports it no more; never on the fenced node\'s own word', () => {
    const cut = [lease('node-1'), withReports(lease('node-2'), ['node-3']), withReports(lease('node-3'), ['node-2'])];
    expect(reportersOf('node-3', cut)).toEqual(['node-2']);
    expect(reachedAgain('node-3', ['node-2'], cut)).toBe(false);
    const healed = [lease('node-1'), lease('node-2'), withReports(lease('node-3'), ['node-2'])];
    expect(reachedAgain('node-3', ['node-2'], healed)).toBe(true);
    // Nobody but node-3 had reported the cut: the others' silence says nothing.
    expect(reachedAgain('node-3', [], healed)).toBe(false);
    // The reporter is gone too: nothing to go on.
    expect(reachedAgain('node-3', ['node-2'], [lease('node-1')])).toBe(false);
  });
});
