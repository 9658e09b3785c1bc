/**
 * Per-cache backups (ADR 0038): the topology ranks every partition's owners as deep as the
 * cache with the most backups; a cache with b backups lives on the first b + 1 of them.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { partitionOf } from '@gridlink/affinity';
import type { LeaseRecord, TopologyRecord } from '@gridlink/node';
import type { ReplicationRecord } from '@gridlink/node/internal';
import { cacheOwners, handOffRefused, initialTopology, isBalanced, lossDepth, missesCaches, nextTopology, rankOf, rankingDepth, recordForRank } from '@gridlink/node/internal';
import { perTestCluster } from './helpers/grid.js';

const IDS = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];
const lease = (id: string, epoch = 'e0', synced: Record<string, number> = {}): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced });

/** Steps the record until nothing changes, completing every pull as soon as it is asked for. */
function settle(rec: TopologyRecord, leases: LeaseRecord[], caches: Parameters<typeof nextTopology>[3]): TopologyRecord {
  let now = 0;
  for (let i = 0; i < 20; i++) {
    for (const l of leases) {
      for (let p = 0; p < rec.partitions; p++) if (rec.syncing[p]!.some((s) => s.id === l.id)) l.synced[String(p)] = rec.version;
    }
    const next = nextTopology(rec, leases, (now += 10), caches);
    if (next === null) return rec;
    rec = next;
  }
  return rec;
}

describe('owner ranking per cache (pure)', () => {
  it('a cache with b backups has exactly min(b, nodes - 1) backup owners, a prefix of the ranking, the primary never one of them', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: IDS.length }),
        fc.integer({ min: 0, max: 3 }),
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 4 }),
        (nodes, clusterBackups, cacheBackups) => {
          const leases = IDS.slice(0, nodes).map((id) => lease(id));
          const caches = cacheBackups.map((b, i) => ({ name: `c${i}`, backups: b, policy: 'READ_WRITE_SAFE' as const }));
          // The cluster starts at its own backups; the registry raises the ranking's depth.
          const rec = settle(initialTopology({ clusterId: 'c', partitions: 8, backups: clusterBackups, leases }), leases, caches);
          expect(rec.backups).toBe(rankingDepth(clusterBackups, caches));
          expect(isBalanced(rec)).toBe(true);
          for (let p = 0; p < rec.partitions; p++) {
            const ranking = rec.owners[p]!;
            expect(new Set(ranking).size).toBe(ranking.length);
            for (const c of caches) {
              const owners = cacheOwners(ranking, c.backups);
              const [primary, ...backups] = owners;
              expect(primary).toBe(ranking[0]);
              expect(backups).toHaveLength(Math.min(c.backups, nodes - 1));
              expect(owners).toEqual(ranking.slice(0, owners.length));
              expect(backups).not.toContain(primary);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a change of owners loses a cache exactly when its primary and first b backups are all gone', () => {
    fc.assert(
      fc.property(fc.subarray(IDS, { minLength: 1 }), fc.subarray(IDS), fc.integer({ min: 0, max: 6 }), (before, gone, b) => {
        const kept = (id: string): boolean => !gone.includes(id);
        const depth = lossDepth(before, kept);
        const lost = cacheOwners(before, b).every((id) => !kept(id));
        expect(b < depth).toBe(lost);
      }),
    );
  });

  it('a copy ranked r applies exactly the effects of caches with at least r backups, and the counter moves on regardless', () => {
    const effect = fc.oneof(
      fc.record({ t: fc.constant('put' as const), cache: fc.constantFrom('a', 'b', 'c'), key: fc.uint8Array({ maxLength: 2 }), value: fc.uint8Array({ maxLength: 2 }), expireAt: fc.constant(0) }),
      fc.record({ t: fc.constant('unlock' as const), name: fc.uint8Array({ maxLength: 2 }) }),
    );
    const backups: Record<string, number> = { a: 0, b: 1, c: 2 };
    fc.assert(
      fc.property(fc.array(effect, { maxLength: 6 }), fc.integer({ min: 0, max: 3 }), (effects, rank) => {
        const rec: ReplicationRecord = { v: 1, counter: 7, at: 1, effects, dedup: null };
        const out = recordForRank(rec, rank, (c) => backups[c]!);
        expect(out.counter).toBe(7);
        expect(out.effects).toEqual(effects.filter((e) => !('cache' in e) || backups[e.cache]! >= rank));
        if (out.effects.length === effects.length) expect(out).toBe(rec);
      }),
    );
    expect(missesCaches(2, 1, [0, 1, 2])).toBe(true);
    expect(missesCaches(2, 1, [0, 2])).toBe(false);
    expect(missesCaches(1, 2, [1])).toBe(false);
  });

  it('the coordinator marks a partition lost for one cache alone when its owners all died, and IGNORE caches never', () => {
    const leases = ['n1', 'n2', 'n3'].map((id) => lease(id));
    const caches = [
      { name: 'thin', backups: 0, policy: 'READ_WRITE_SAFE' as const },
      { name: 'scratch', backups: 0, policy: 'IGNORE' as const },
      { name: 'deep', backups: 2, policy: 'READ_WRITE_SAFE' as const },
    ];
    const rec = settle(initialTopology({ clusterId: 'c', partitions: 16, backups: 1, leases }), leases, caches);
    expect(rec.owners.every((o) => o.length === 3)).toBe(true);
    const next = nextTopology(rec, leases.slice(1), 1_000, caches)!;
    const primaryWasN1 = rec.owners.flatMap((o, p) => (o[0] === 'n1' ? [p] : []));
    expect(next.lost).toEqual([]);
    expect(next.lostCaches).toEqual({ thin: primaryWasN1 });
  });
});

describe('owners behind their rank (pure)', () => {
  it('an owner ranked higher after a death is judged on what it held until its lease reports it caught up', () => {
    const caches = [
      { name: 'mid', backups: 1, policy: 'READ_WRITE_SAFE' as const },
      { name: 'deep', backups: 2, policy: 'READ_WRITE_SAFE' as const },
    ];
    const leases = ['n1', 'n2', 'n3'].map((id) => lease(id));
    const rec = settle(initialTopology({ clusterId: 'c', partitions: 16, backups: 0, leases }), leases, caches);
    const ledByN1 = rec.owners.flatMap((o, p) => (o[0] === 'n1' ? [p] : []));
    const afterFirst = nextTopology(rec, leases.slice(1), 1_000, caches)!;
    expect(afterFirst.lostCaches).toBeUndefined();
    // Wherever n1 was ahead of a survivor ranked 2, that survivor is now ranked 1 but holds rank 2.
    const behindPs = Object.keys(afterFirst.behind ?? {}).map(Number).sort((a, b) => a - b);
    const expected = rec.owners.flatMap((o, p) => (o.indexOf('n1') >= 0 && o.indexOf('n1') < 2 ? [p] : [])).sort((a, b) => a - b);
    expect(behindPs).toEqual(expected);
    for (const p of behindPs) {
      const [id, e] = Object.entries(afterFirst.behind![String(p)]!)[0]!;
      expect(afterFirst.owners[p]!.indexOf(id)).toBe(1);
      expect(e.rank).toBe(2);
    }
    expect(ledByN1.every((p) => behindPs.includes(p))).toBe(true);
    // Before anyone catches up, losing n2 loses mid wherever only a behind copy is left...
    const survivor = leases.filter((l) => l.id === 'n3');
    const early = nextTopology(afterFirst, survivor, 2_000, caches)!;
    const onlyBehindLeft = behindPs.filter((p) => afterFirst.behind![String(p)]!['n3'] !== undefined);
    expect(early.lostCaches?.['mid'] ?? []).toEqual(onlyBehindLeft);
    expect(early.lost).toEqual([]);
    // ...and nowhere once n3 reports it caught up (the coordinator clears the marks first).
    const n3 = { ...survivor[0]!, caughtUp: Object.fromEntries(behindPs.map((p) => [String(p), afterFirst.version])) };
    const cleared = nextTopology(afterFirst, [leases[1]!, n3], 1_500, caches)!;
    expect(Object.keys(cleared.behind ?? {}).filter((p) => cleared.behind![p]!['n3'] !== undefined)).toEqual([]);
    expect(nextTopology(cleared, [n3], 2_000, caches)!.lostCaches).toBeUndefined();
  });
});

describe('per-cache loss is never silent (pure, with a model of who holds which cache)', () => {
  type Ev = { t: 'die' | 'join' | 'sync' | 'resync' | 'leave'; id: string } | { t: 'step' };
  const NODES = ['n1', 'n2', 'n3', 'n4'];
  const on = (t: 'die' | 'join' | 'sync' | 'resync' | 'leave'): fc.Arbitrary<Ev> => fc.record({ t: fc.constant(t), id: fc.constantFrom(...NODES) });
  // Deaths often (two in a row are what per-cache loss is about), pulls and resyncs between them.
  const ev: fc.Arbitrary<Ev> = fc.oneof(
    { arbitrary: on('die'), weight: 4 },
    { arbitrary: on('join'), weight: 2 },
    { arbitrary: on('sync'), weight: 2 },
    { arbitrary: on('resync'), weight: 2 },
    // A graceful stop begins: the coordinator may hand the node's primaryships over.
    { arbitrary: on('leave'), weight: 1 },
    { arbitrary: fc.constant({ t: 'step' as const }), weight: 1 },
  );

  it('a primary holds every cache of its partition that the topology does not call lost (deaths, graceful stops, rejoins, pulls, resyncs)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 2, maxLength: 3 }), fc.array(ev, { maxLength: 24 }), (depths, events) => {
        const caches = depths.map((b, i) => ({ name: `c${i}`, backups: b, policy: 'READ_WRITE_SAFE' as const }));
        const P = 6;
        let n = 0;
        const alive = new Map<string, LeaseRecord>(NODES.slice(0, 3).map((id) => [id, lease(id, `e${n++}`)]));
        let rec = initialTopology({ clusterId: 'c', partitions: P, backups: rankingDepth(0, caches), leases: [...alive.values()], autoAdjust: { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 } });
        const tag = (id: string): string => `${id}/${alive.get(id)?.epoch ?? rec.members[id]?.epoch}`;
        // holds.get(tag)[p]: the caches of p that copy holds up to date.
        const holds = new Map<string, Set<string>[]>();
        const setOf = (id: string, p: number): Set<string> => {
          let per = holds.get(tag(id));
          if (!per) holds.set(tag(id), (per = Array.from({ length: P }, () => new Set<string>())));
          return per[p]!;
        };
        rec.owners.forEach((o, p) => o.forEach((id, r) => caches.forEach((c) => c.backups >= r && setOf(id, p).add(c.name))));
        const check = (): void => {
          for (let p = 0; p < P; p++) {
            const primary = rec.owners[p]![0];
            if (primary === undefined || rec.lost.includes(p)) continue;
            for (const c of caches) {
              if (rec.lostCaches?.[c.name]?.includes(p)) continue;
              expect(setOf(primary, p).has(c.name), `p${p} ${c.name} (${c.backups} backups) on primary ${primary} of ${JSON.stringify(rec.owners[p])}`).toBe(true);
            }
          }
        };
        let now = 0;
        for (const e of events) {
          if (e.t === 'die') alive.delete(e.id);
          else if (e.t === 'leave') {
            const l = alive.get(e.id);
            if (l) l.leaving = true;
          } else if (e.t === 'join') {
            if (alive.has(e.id)) continue;
            alive.set(e.id, lease(e.id, `e${n++}`));
          } else if (e.t === 'sync' || e.t === 'resync') {
            const l = alive.get(e.id);
            if (!l || rec.members[e.id]?.epoch !== l.epoch) continue;
            for (let p = 0; p < P; p++) {
              const primary = rec.owners[p]![0];
              if (primary === undefined || primary === e.id) continue;
              const pulling = rec.syncing[p]!.find((s) => s.id === e.id);
              const behindSince = rec.behind?.[String(p)]?.[e.id]?.since;
              if (e.t === 'sync' && pulling) {
                // A pull copies the primary's whole partition.
                setOf(e.id, p).clear();
                for (const c of setOf(primary, p)) setOf(e.id, p).add(c);
                l.synced[String(p)] = pulling.since;
              } else if (e.t === 'resync' && behindSince !== undefined) {
                // The primary's snapshot, trimmed to the copy's rank; then the lease says so.
                const r = rankOf(rec, e.id, p);
                setOf(e.id, p).clear();
                for (const c of caches) if (c.backups >= r && setOf(primary, p).has(c.name)) setOf(e.id, p).add(c.name);
                l.caughtUp = { ...(l.caughtUp ?? {}), [String(p)]: rec.version };
              }
            }
          }
          const next = nextTopology(rec, [...alive.values()], (now += 10), caches);
          if (next === null) continue;
          rec = next;
          // Copies drop the caches they are now ranked below.
          for (let p = 0; p < P; p++) {
            for (const id of rec.owners[p]!) {
              const r = rankOf(rec, id, p);
              for (const c of caches) if (c.backups < r) setOf(id, p).delete(c.name);
            }
          }
          check();
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('per-cache backups on LocalCluster', () => {
  const fx = perTestCluster();

  it('a cache with backups=2 survives two kills with no loss; a backups=0 IGNORE cache loses, serves empty and counts it', async () => {
    const P = 16;
    const c = await fx.start({ nodes: 3, partitions: P, backups: 0, autoAdjust: { enabled: false } });
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 8000, heartbeatInterval: 100, heartbeatTimeout: 600 });
    const safe = client.cache<string, number>('safe');
    const scratch = client.cache<string, number>('scratch');
    await safe.create({ backups: 2 });
    await scratch.create({ backups: 0, partitionLossPolicy: 'IGNORE' });
    // The registry raised the ranking to two backups: every partition gets three owners.
    const ranked = await c.waitForTopology((t) => t.backups === 2 && t.owners.every((o) => o.length === 3) && t.syncing.every((s) => s.length === 0));
    const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) {
      await safe.put(k, i);
      await scratch.put(k, i);
    }
    // scratch lives on the primary only; safe on all three owners.
    const [a, b, survivor] = c.nodeIds as [string, string, string];
    for (const id of [a, b, survivor]) {
      const held = keys.filter((k) => ranked.owners[partitionOf(k, P)]![0] === id).length;
      expect(c.node(id).store.localSize('scratch')).toBe(held);
      expect(c.node(id).store.localSize('safe')).toBe(keys.length);
    }

    await c.kill(a);
    await c.waitForTopology((t) => t.members[a] === undefined);
    await c.kill(b);
    const after = await c.waitForTopology((t) => t.members[b] === undefined);
    expect(after.lost).toEqual([]);
    expect(after.lostCaches).toBeUndefined();

    for (const [i, k] of keys.entries()) expect(await safe.get(k)).toBe(i);
    for (const [i, k] of keys.entries()) {
      const keptBySurvivor = ranked.owners[partitionOf(k, P)]![0] === survivor;
      expect(await scratch.get(k)).toBe(keptBySurvivor ? i : undefined);
    }
    // Reads and writes of the lost partitions succeed (served again, empty).
    const lostKey = keys.find((k) => ranked.owners[partitionOf(k, P)]![0] !== survivor)!;
    await scratch.put(lostKey, -1);
    expect(await scratch.get(lostKey)).toBe(-1);
    await safe.put(lostKey, -2);
    expect(await safe.get(lostKey)).toBe(-2);
    // Each partition the survivor did not lead was lost once for scratch, on the survivor.
    const counted = (await c.node(survivor).metrics.lossesIgnored.get()).values.find((v) => v.labels['cache'] === 'scratch')?.value ?? 0;
    expect(counted).toBe(ranked.owners.filter((o) => o[0] !== survivor).length);
  }, 30_000);
});

describe('a graceful stop beside a backups=0 cache, on LocalCluster', () => {
  const fx = perTestCluster();

  it('does not wait out the hand-off timeout for primaryships the coordinator keeps on the stopping node', async () => {
    const warned: string[] = [];
    const noop = (): void => {};
    const logger = { debug: noop, info: noop, error: noop, warn: (msg: string) => void warned.push(msg) };
    const c = await fx.start({ nodes: 3, partitions: 16, backups: 1, autoAdjust: { enabled: false }, caches: { deep: { backups: 1 }, thin: { backups: 0 } }, handoffTimeoutMs: 20_000, logger });
    const client = await fx.connect({ endpoints: c.endpoints, operationTimeout: 8000 });
    const deep = client.cache<string, number>('deep');
    for (let i = 0; i < 40; i++) await deep.put(`k${i}`, i);
    const victim = c.nodeIds[0]!;
    expect(c.topology().owners.some((o) => o[0] === victim)).toBe(true);
    await c.stopNode(victim);
    // It stayed primary of its partitions until its lease was gone (ADR 0038), and did not sit
    // through the 20 s timeout waiting for a hand-off that never comes.
    expect(warned.filter((m) => m.startsWith('handoff timed out'))).toEqual([]);
    expect(c.node(victim).lastHandoffMs).toBeLessThan(20_000);
    for (let i = 0; i < 40; i++) expect(await deep.get(`k${i}`)).toBe(i);
  }, 60_000);
});

describe('ranks move on LocalCluster', () => {
  const fx = perTestCluster();

  it('caches configured at start rank the first topology as deep as they ask', async () => {
    const c = await fx.start({ nodes: 3, partitions: 8, backups: 0, autoAdjust: { enabled: false }, caches: { deep: { backups: 1 }, thin: { backups: 0 } } });
    const t = c.topology();
    expect(t.backups).toBe(1);
    expect(t.owners.every((o) => o.length === 2)).toBe(true);
  });

  it('a copy ranked higher after an owner died gets the caches it now holds at once, so a second death loses nothing', async () => {
    const P = 16;
    const c = await fx.start({ nodes: 3, partitions: P, backups: 0, autoAdjust: { enabled: false } });
    const client = await fx.connect({ endpoints: c.endpoints, requestTimeout: 1000, operationTimeout: 8000, heartbeatInterval: 100, heartbeatTimeout: 600 });
    const deep = client.cache<string, number>('deep');
    const mid = client.cache<string, number>('mid');
    await deep.create({ backups: 2 });
    await mid.create({ backups: 1 });
    await c.waitForTopology((t) => t.owners.every((o) => o.length === 3) && t.syncing.every((s) => s.length === 0));
    const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
    for (const [i, k] of keys.entries()) {
      await deep.put(k, i);
      await mid.put(k, i);
    }
    const [a, b, last] = c.nodeIds as [string, string, string];
    // mid lives on the first two owners of each partition: the last-ranked node lacks some.
    const ranked = c.topology();
    const lastHolds = keys.filter((k) => ranked.owners[partitionOf(k, P)]!.indexOf(last) <= 1).length;
    expect(c.node(last).store.localSize('mid')).toBe(lastHolds);
    expect(lastHolds).toBeLessThan(keys.length);
    await c.kill(a);
    await c.waitForTopology((t) => t.members[a] === undefined);
    // Both survivors now rank in the first two of every partition: the primaries push the
    // missing mid data without waiting for a write.
    const deadline = Date.now() + 10_000;
    while (c.node(last).store.localSize('mid') !== keys.length || c.node(b).store.localSize('mid') !== keys.length) {
      if (Date.now() > deadline) throw new Error(`mid not re-replicated: ${c.node(last).store.localSize('mid')} / ${c.node(b).store.localSize('mid')} of ${keys.length}`);
      await new Promise((r) => setImmediate(r));
    }
    // ...and the coordinator learns from their leases that they caught up (until then it would
    // judge a second death on what they held before).
    await c.waitForTopology((x) => x.behind === undefined);
    await c.kill(b);
    const t = await c.waitForTopology((x) => x.members[b] === undefined);
    expect(t.lost).toEqual([]);
    expect(t.lostCaches).toBeUndefined();
    for (const [i, k] of keys.entries()) {
      expect(await deep.get(k)).toBe(i);
      expect(await mid.get(k)).toBe(i);
    }
  }, 30_000);
});

describe('a graceful stop does not wait for a hand-off the coordinator refuses (pure)', () => {
  it('handOffRefused is true only where the coordinator keeps the leaving node primary, and is where a backups=0 cache lives', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 2, max: 5 }),
        fc.nat(),
        fc.option(fc.nat(), { nil: undefined }),
        (depths, n, who, dies) => {
          const caches = depths.map((b, i) => ({ name: `c${i}`, backups: b, policy: 'READ_WRITE_SAFE' as const }));
          const ids = IDS.slice(0, n);
          let leases = ids.map((id) => lease(id));
          let rec = settle(initialTopology({ clusterId: 'c', partitions: 12, backups: rankingDepth(0, caches), leases }), leases, caches);
          const leaver = ids[who % n]!;
          // Sometimes another node has just died: owners move up and may be behind.
          if (dies !== undefined && n > 2) {
            const dead = ids.filter((id) => id !== leaver)[dies % (n - 1)]!;
            leases = leases.filter((l) => l.id !== dead);
            rec = nextTopology(rec, leases, 1_000, caches) ?? rec;
          }
          const next = nextTopology(rec, leases.map((l) => (l.id === leaver ? { ...l, leaving: true } : l)), 2_000, caches) ?? rec;
          for (let p = 0; p < rec.partitions; p++) {
            if (rec.owners[p]![0] !== leaver || !handOffRefused(rec, p, leaver, caches)) continue;
            expect(next.owners[p]![0], `p${p}: ${JSON.stringify(rec.owners[p])} -> ${JSON.stringify(next.owners[p])}`).toBe(leaver);
          }
        },
      ),
      { numRuns: 300 },
    );
    // Not vacuous: with a backups=0 cache every led partition is refused, without one none.
    const leases = ['n1', 'n2', 'n3'].map((id) => lease(id));
    const deep = [{ name: 'deep', backups: 1, policy: 'READ_WRITE_SAFE' as const }];
    const shallow = [...deep, { name: 'thin', backups: 0, policy: 'READ_WRITE_SAFE' as const }];
    const rec = settle(initialTopology({ clusterId: 'c', partitions: 16, backups: 1, leases }), leases, deep);
    const led = rec.owners.flatMap((o, p) => (o[0] === 'n1' ? [p] : []));
    expect(led.length).toBeGreaterThan(0);
    expect(led.map((p) => handOffRefused(rec, p, 'n1', shallow))).toEqual(led.map(() => true));
    expect(led.map((p) => handOffRefused(rec, p, 'n1', deep))).toEqual(led.map(() => false));
  });
});

describe('graceful hand-off with per-cache backups (pure)', () => {
  it('a leaving primary hands over unless a cache has fewer backups than the owner taking over (then that cache is lost explicitly when it goes)', () => {
    const leases = ['n1', 'n2', 'n3'].map((id) => lease(id));
    const deep = [{ name: 'deep', backups: 2, policy: 'READ_WRITE_SAFE' as const }];
    const shallow = [...deep, { name: 'thin', backups: 0, policy: 'READ_WRITE_SAFE' as const }];
    for (const caches of [deep, shallow]) {
      const rec = settle(initialTopology({ clusterId: 'c', partitions: 16, backups: 1, leases }), leases, caches);
      const led = rec.owners.flatMap((o, p) => (o[0] === 'n1' ? [p] : []));
      expect(led.length).toBeGreaterThan(0);
      const leaving = leases.map((l) => (l.id === 'n1' ? { ...l, leaving: true } : l));
      const handed = nextTopology(rec, leaving, 100, caches);
      for (const p of led) expect(handed?.owners[p]![0] === 'n1').toBe(caches === shallow);
      // The node goes: the deep cache loses nothing either way; thin is lost where n1 led.
      const gone = nextTopology(handed ?? rec, leases.slice(1), 200, caches)!;
      expect(gone.lost).toEqual([]);
      expect(gone.lostCaches).toEqual(caches === shallow ? { thin: led } : undefined);
    }
  });
});
