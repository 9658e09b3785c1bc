import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AffinityArgumentError,
  compareNodeIds,
  computeAssignment,
  diffAssignments,
  murmur3x86_32,
  nodeHash,
  ownerScore,
  tieHash,
  rankOwners,
  type Assignment,
  type NodeSpec,
} from '@gridlink/affinity';

const ZONES = ['zone-a', 'zone-b', 'zone-c', 'zone-d'];

const nodeId = fc.oneof(
  fc.stringMatching(/^[a-z][a-z0-9-]{0,9}$/),
  fc.string({ minLength: 1, maxLength: 6 }),
);

function nodesArb(opts: { min?: number; max?: number; zones?: boolean; weights?: boolean } = {}): fc.Arbitrary<NodeSpec[]> {
  return fc
    .uniqueArray(nodeId, { minLength: opts.min ?? 1, maxLength: opts.max ?? 10 })
    .chain((ids) =>
      fc.tuple(
        ...ids.map((id) =>
          fc.record(
            {
              id: fc.constant(id),
              zone: opts.zones === false ? fc.constant(undefined) : fc.option(fc.constantFrom(...ZONES), { nil: undefined }),
              weight: opts.weights === false ? fc.constant(undefined) : fc.constantFrom(undefined, 0.5, 1, 2, 3.5),
            },
            { requiredKeys: ['id'] },
          ),
        ),
      ),
    )
    .map((specs) => specs.map(({ id, zone, weight }) => ({ id, ...(zone === undefined ? {} : { zone }), ...(weight === undefined ? {} : { weight }) })));
}

const shuffled = <T>(xs: readonly T[]): fc.Arbitrary<T[]> =>
  fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: xs.length, maxLength: xs.length }).map((r) =>
    xs.map((x, i) => [r[i]!, i, x] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, , x]) => x),
  );

const assign = (baseline: NodeSpec[], backups: number, partitions = 128, alive?: Iterable<string>): Assignment =>
  computeAssignment({ partitions, backups, baseline, alive: alive ?? baseline.map((n) => n.id) });

const zoneOf = (nodes: NodeSpec[], id: string): string => nodes.find((n) => n.id === id)?.zone ?? '';

/** A direct transcription of the documented ranking rule, with a full sort, as an oracle. */
function referenceRank(p: number, nodes: NodeSpec[]): string[] {
  const le32 = Uint8Array.of(p & 0xff, (p >>> 8) & 0xff, (p >>> 16) & 0xff, p >>> 24);
  const weighted = nodes.some((n) => (n.weight ?? 1) !== (nodes[0]?.weight ?? 1));
  const keyed = nodes.map((n) => {
    const utf8 = new TextEncoder().encode(n.id);
    const score = murmur3x86_32(le32, murmur3x86_32(utf8, 0));
    const tie = murmur3x86_32(le32, murmur3x86_32(utf8, 1));
    const key = weighted ? -(n.weight ?? 1) / Math.log((score + 0.5) / 2 ** 32) : score;
    return { id: n.id, zone: n.zone ?? '', key, tie };
  });
  keyed.sort((a, b) => b.key - a.key || b.tie - a.tie || compareNodeIds(a.id, b.id));
  const out: typeof keyed = [];
  const rest = [...keyed];
  const used = new Set<string>();
  const zoneCount = new Set(keyed.map((k) => k.zone)).size;
  while (rest.length > 0) {
    let idx = out.length > 0 && used.size < zoneCount ? rest.findIndex((k) => !used.has(k.zone)) : 0;
    if (idx < 0) idx = 0;
    const [pick] = rest.splice(idx, 1);
    out.push(pick!);
    used.add(pick!.zone);
  }
  return out.map((k) => k.id);
}

describe('rankOwners', () => {
  it('follows the documented rule: score = murmur3x86_32(le32(p), seed = murmur3x86_32(utf8(id))), zone-aware', () => {
    fc.assert(
      fc.property(nodesArb({ max: 12 }), fc.nat({ max: 0xffffffff }), (nodes, p) => {
        expect(rankOwners(p, nodes)).toEqual(referenceRank(p, nodes));
      }),
      { numRuns: 300 },
    );
  });

  it('is deterministic and independent of the order nodes are listed', () => {
    fc.assert(
      fc.property(
        nodesArb().chain((nodes) => fc.tuple(fc.constant(nodes), shuffled(nodes))),
        fc.nat({ max: 100_000 }),
        ([nodes, reordered], p) => {
          const ranked = rankOwners(p, nodes);
          expect(rankOwners(p, nodes)).toEqual(ranked);
          expect(rankOwners(p, reordered)).toEqual(ranked);
          expect([...ranked].sort()).toEqual(nodes.map((n) => n.id).sort());
        },
      ),
      { numRuns: 200 },
    );
  });

  it('exposes the score and node hash it ranks by', () => {
    expect(nodeHash('node-1')).toBe(murmur3x86_32(new TextEncoder().encode('node-1'), 0));
    expect(ownerScore(7, 'node-1')).toBe(murmur3x86_32(Uint8Array.of(7, 0, 0, 0), nodeHash('node-1')));
    const nodes = ['n1', 'n2', 'n3'].map((id) => ({ id }));
    const top = [...nodes].sort((a, b) => ownerScore(9, b.id) - ownerScore(9, a.id))[0]!.id;
    expect(rankOwners(9, nodes)[0]).toBe(top);
  });

  it('orders nodes whose id hashes collide by the tie score, so neither is always behind the other', () => {
    // "n40665" and "n93112" have the same murmur3x86_32 (seed 0), so they tie on every partition.
    expect(nodeHash('n40665')).toBe(nodeHash('n93112'));
    expect(tieHash('n40665')).not.toBe(tieHash('n93112'));
    for (const extra of [[], ['x1', 'x2', 'x3', 'x4', 'x5', 'x6', 'x7']]) {
      const nodes = ['n93112', 'n40665', ...extra].map((id) => ({ id }));
      let firstOfPair = 0;
      const assignment = computeAssignment({ partitions: 400, backups: 1, baseline: nodes, alive: [] });
      for (let p = 0; p < 400; p++) {
        expect(ownerScore(p, 'n40665')).toBe(ownerScore(p, 'n93112'));
        const ranked = rankOwners(p, nodes);
        expect(ranked).toEqual(referenceRank(p, nodes));
        const a = ranked.indexOf('n40665');
        const b = ranked.indexOf('n93112');
        expect(Math.abs(a - b)).toBe(1);
        if (a < b) firstOfPair++;
        expect(assignment.owners[p]).toEqual(ranked.slice(0, 2));
      }
      expect(firstOfPair).toBeGreaterThan(150);
      expect(firstOfPair).toBeLessThan(250);
    }
    // equal weights keep the tie; the weighted path orders it the same way
    const weighted = [{ id: 'n93112', weight: 2 }, { id: 'n40665', weight: 2 }, { id: 'other', weight: 1 }];
    for (let p = 0; p < 50; p++) expect(rankOwners(p, weighted)).toEqual(referenceRank(p, weighted));
  });

  it('orders node ids by code point (UTF-8 byte order), not UTF-16 code unit', () => {
    expect(compareNodeIds('a', 'b')).toBeLessThan(0);
    expect(compareNodeIds('ab', 'a')).toBeGreaterThan(0);
    expect(compareNodeIds('x', 'x')).toBe(0);
    // U+FFFD (EF BF BD) sorts before U+1F308 (F0 9F 8C 88) in UTF-8, unlike in UTF-16 units.
    expect(compareNodeIds('\ufffd', '🌈')).toBeLessThan(0);
    expect(compareNodeIds('🌈', '\ufffd')).toBeGreaterThan(0);
  });
});

describe('computeAssignment', () => {
  it('owner lists are the first backups+1 of rankOwners, distinct, from the baseline', () => {
    fc.assert(
      fc.property(nodesArb({ max: 12 }), fc.integer({ min: 0, max: 9 }), (nodes, backups) => {
        const a = assign(nodes, backups, 64);
        expect(a.partitions).toBe(64);
        expect(a.backups).toBe(backups);
        for (let p = 0; p < 64; p++) {
          const owners = a.owners[p]!;
          expect(owners.length).toBe(Math.min(backups + 1, nodes.length));
          expect(owners).toEqual(rankOwners(p, nodes).slice(0, owners.length));
        }
      }),
      { numRuns: 150 },
    );
  });

  it('is deterministic and independent of baseline order and alive order', () => {
    fc.assert(
      fc.property(
        nodesArb().chain((nodes) => fc.tuple(fc.constant(nodes), shuffled(nodes), fc.subarray(nodes.map((n) => n.id)))),
        fc.integer({ min: 0, max: 3 }),
        ([nodes, reordered, alive], backups) => {
          const a = assign(nodes, backups, 128, alive);
          expect(assign(nodes, backups, 128, alive)).toEqual(a);
          expect(assign(reordered, backups, 128, [...alive].reverse())).toEqual(a);
          expect(assign(reordered, backups, 128, new Set(alive))).toEqual(a);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('primary is the first alive owner, or null when every owner is down', () => {
    fc.assert(
      fc.property(
        nodesArb().chain((nodes) => fc.tuple(fc.constant(nodes), fc.subarray(nodes.map((n) => n.id)))),
        fc.integer({ min: 0, max: 3 }),
        ([nodes, alive], backups) => {
          const a = assign(nodes, backups, 128, [...alive, 'not-in-baseline']);
          const up = new Set(alive);
          for (let p = 0; p < 128; p++) {
            expect(a.primaries[p]).toBe(a.owners[p]!.find((id) => up.has(id)) ?? null);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('marks a partition lost when all its owners are down even if other nodes are alive', () => {
    const nodes = ['n1', 'n2', 'n3', 'n4'].map((id) => ({ id }));
    const full = assign(nodes, 1, 256);
    const p = full.owners.findIndex((o) => o.includes('n1') && o.includes('n2'));
    expect(p).toBeGreaterThanOrEqual(0);
    const degraded = assign(nodes, 1, 256, ['n3', 'n4']);
    expect(degraded.owners[p]).toEqual(full.owners[p]);
    expect(degraded.primaries[p]).toBeNull();
  });

  it('removing a node changes the owners only of partitions it owned', () => {
    fc.assert(
      fc.property(
        nodesArb({ min: 2 }).chain((nodes) => fc.tuple(fc.constant(nodes), fc.nat({ max: nodes.length - 1 }))),
        fc.integer({ min: 0, max: 3 }),
        ([nodes, victim], backups) => {
          const gone = nodes[victim]!.id;
          const before = assign(nodes, backups, 256);
          const after = assign(nodes.filter((n) => n.id !== gone), backups, 256);
          for (let p = 0; p < 256; p++) {
            if (!before.owners[p]!.includes(gone)) expect(after.owners[p]).toEqual(before.owners[p]);
            else expect(after.owners[p]).not.toContain(gone);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('adding a node changes only the partitions it enters', () => {
    fc.assert(
      fc.property(
        nodesArb({ min: 2, max: 11 }).chain((nodes) => fc.tuple(fc.constant(nodes.slice(1)), fc.constant(nodes[0]!))),
        fc.integer({ min: 0, max: 3 }),
        ([nodes, joiner], backups) => {
          const before = assign(nodes, backups, 256);
          const after = assign([...nodes, joiner], backups, 256);
          for (let p = 0; p < 256; p++) {
            if (!after.owners[p]!.includes(joiner.id)) expect(after.owners[p]).toEqual(before.owners[p]);
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('spreads owners over at least two zones when there are two or more zones and backups >= 1', () => {
    fc.assert(
      fc.property(
        nodesArb({ min: 2, max: 12 }).filter((nodes) => new Set(nodes.map((n) => n.zone ?? '')).size >= 2),
        fc.integer({ min: 1, max: 4 }),
        (nodes, backups) => {
          const zoneCount = new Set(nodes.map((n) => n.zone ?? '')).size;
          const a = assign(nodes, backups, 128);
          for (const owners of a.owners) {
            const zones = new Set(owners.map((id) => zoneOf(nodes, id)));
            expect(zones.size).toBeGreaterThanOrEqual(2);
            expect(zones.size).toBe(Math.min(owners.length, zoneCount));
          }
        },
      ),
      { numRuns: 150 },
    );
  });

  it('gives each node a share of primaries in proportion to its weight (fixed seeds)', () => {
    const partitions = 4096;
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.stringMatching(/^node-[a-z0-9]{1,8}$/), { minLength: 2, maxLength: 8 }),
        fc.array(fc.constantFrom(0.5, 1, 2, 3, 5), { minLength: 8, maxLength: 8 }),
        (ids, weights) => {
          const nodes = ids.map((id, i) => ({ id, weight: weights[i]! }));
          const total = nodes.reduce((s, n) => s + n.weight, 0);
          const a = assign(nodes, 0, partitions);
          const counts = new Map<string, number>();
          for (const id of a.primaries) counts.set(id!, (counts.get(id!) ?? 0) + 1);
          for (const n of nodes) {
            const q = n.weight / total;
            const expected = partitions * q;
            const sd = Math.sqrt(partitions * q * (1 - q));
            // 4.5 standard deviations: a fair scheme fails this about once in 150,000 checks.
            expect(Math.abs((counts.get(n.id) ?? 0) - expected)).toBeLessThanOrEqual(4.5 * sd + 1);
          }
        },
      ),
      { seed: 20261121, numRuns: 25 },
    );
  });

  it('doubling one node weight roughly doubles its share', () => {
    const nodes = Array.from({ length: 6 }, (_, i) => ({ id: `node-${i}`, weight: i === 0 ? 2 : 1 }));
    const a = assign(nodes, 0, 8192);
    const share = a.primaries.filter((id) => id === 'node-0').length / 8192;
    expect(share).toBeGreaterThan((2 / 7) * 0.9);
    expect(share).toBeLessThan((2 / 7) * 1.1);
    // equal weights, whatever their value, rank exactly like no weights
    const scaled = nodes.map((n) => ({ id: n.id, weight: 3 }));
    expect(assign(scaled, 2, 512)).toEqual(assign(nodes.map((n) => ({ id: n.id })), 2, 512));
  });

  it('handles an empty baseline (every partition lost) and backups beyond the node count', () => {
    const empty = assign([], 2, 8);
    expect(empty.owners).toEqual(Array.from({ length: 8 }, () => []));
    expect(empty.primaries).toEqual(Array.from({ length: 8 }, () => null));
    const small = assign([{ id: 'a' }, { id: 'b' }], 5, 8);
    for (const owners of small.owners) expect([...owners].sort()).toEqual(['a', 'b']);
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['partitions 0', { partitions: 0 }, 'partitions'],
    ['partitions 1.5', { partitions: 1.5 }, 'partitions'],
    ['backups -1', { backups: -1 }, 'backups'],
    ['backups NaN', { backups: NaN }, 'backups'],
    ['baseline not an array', { baseline: 'a,b' }, 'baseline'],
    ['a duplicate node id', { baseline: [{ id: 'a' }, { id: 'a' }] }, 'baseline[1].id'],
    ['an empty node id', { baseline: [{ id: '' }] }, 'baseline[0].id'],
    ['weight 0', { baseline: [{ id: 'a', weight: 0 }] }, 'baseline[0].weight'],
    ['weight Infinity', { baseline: [{ id: 'a', weight: Infinity }] }, 'baseline[0].weight'],
    ['a numeric zone', { baseline: [{ id: 'a', zone: 3 }] }, 'baseline[0].zone'],
    ['alive not iterable', { alive: 5 }, 'alive'],
  ])('rejects %s with an AffinityArgumentError naming the field', (_name, patch, field) => {
    const opts = { partitions: 16, backups: 1, baseline: [{ id: 'a' }, { id: 'b' }], alive: ['a'], ...patch };
    let caught: unknown;
    try {
      computeAssignment(opts);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AffinityArgumentError);
    expect((caught as AffinityArgumentError).field).toBe(field);
    expect((caught as AffinityArgumentError).code).toBe('GRID_INVALID_ARGUMENT');
    expect((caught as AffinityArgumentError).retryable).toBe(false);
  });

  it('rankOwners rejects a bad partition number', () => {
    expect(() => rankOwners(-1, [{ id: 'a' }])).toThrow(AffinityArgumentError);
    expect(() => rankOwners(0.5, [{ id: 'a' }])).toThrow(/partition/);
  });
});

describe('diffAssignments', () => {
  it('lists exactly the partitions whose primary or owner list differ', () => {
    fc.assert(
      fc.property(
        nodesArb({ min: 2, max: 8 }).chain((nodes) =>
          fc.tuple(fc.constant(nodes), fc.subarray(nodes.map((n) => n.id)), fc.subarray(nodes, { minLength: 1 })),
        ),
        ([nodes, alive, baseline2]) => {
          const a = assign(nodes, 1, 64);
          const b = assign(baseline2, 1, 64, alive);
          const diff = diffAssignments(a, b);
          const expected = [];
          for (let p = 0; p < 64; p++) {
            const primaryChanged = a.primaries[p] !== b.primaries[p];
            const ownersChanged = a.owners[p]!.join('\u0000') !== b.owners[p]!.join('\u0000');
            if (primaryChanged || ownersChanged) {
              expect(primaryChanged || ownersChanged).toBe(true);
              expected.push({ partition: p, primaryChanged, ownersChanged, before: a.owners[p], after: b.owners[p] });
            }
          }
          expect(diff).toEqual(expected);
          expect(diffAssignments(a, a)).toEqual([]);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('reports a primary change without an owner change when a node goes down', () => {
    const nodes = ['a', 'b', 'c'].map((id) => ({ id }));
    const before = assign(nodes, 1, 32);
    const after = assign(nodes, 1, 32, ['b', 'c']);
    const diff = diffAssignments(before, after);
    expect(diff.length).toBe(before.primaries.filter((id) => id === 'a').length);
    for (const d of diff) {
      expect(d.primaryChanged).toBe(true);
      expect(d.ownersChanged).toBe(false);
    }
  });

  it('refuses to compare assignments of different partition counts', () => {
    const nodes = [{ id: 'a' }];
    expect(() => diffAssignments(assign(nodes, 0, 8), assign(nodes, 0, 16))).toThrow(AffinityArgumentError);
  });
});
