/**
 * Implicit caches are forgotten (ADR 0014), on real nodes and in the coordinator.
 *
 * - LocalCluster, backups 1: 10 000 cache names written without creating them, then emptied by
 *   removes and by expiry: every node's caches and shards (GridNode.bookkeeping(), internal) are
 *   back to what they were before, primaries and backups alike.
 * - A configured cache is kept when empty, on every node.
 * - Through a failover: implicit caches filled and emptied while nodes sweep every few ms, then a
 *   node killed under that load: every acknowledged write is read back from the survivors, and
 *   once emptied the survivors forget the caches too.
 * - The coordinator: its cache rules stay the same array while no config changes (implicit caches
 *   with the default config do not count: they change nothing in the topology, property-tested
 *   against nextTopology), and it serialises them once per change instead of on every tick.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import type { GridClient } from '@gridlink/client';
import { LocalCluster, MemoryControlPlane, type GridNode, type LeaseRecord, type LocalClusterOptions } from '@gridlink/node';
import { initialTopology, nextTopology, rankingDepth, type CacheRule } from '@gridlink/node/internal';
import { Op } from '@gridlink/protocol';
import { LEASE_PREFIX, TOPOLOGY_KEY } from '../src/control/keys.js';
import { inertCacheRules } from '../src/control/topology.js';
import { CacheRuleBook } from '../src/membership/coordinator.js';
import { NodeStore } from '../src/store/index.js';
import { coordinatorOf, lease, settle } from './helpers/coordinator.js';
import { connectClient } from './helpers/grid.js';
import { eventually } from './helpers/until.js';

type Bookkeeping = ReturnType<GridNode['bookkeeping']>;

/** Runs `work(i)` for i in [0, n) with at most `width` at a time. */
async function inParallel(n: number, width: number, work: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await work(next++);
    }),
  );
}

const opened: { clients: GridClient[]; clusters: LocalCluster[] } = { clients: [], clusters: [] };
afterEach(async () => {
  await Promise.all(opened.clients.splice(0).map((c) => c.close()));
  for (const c of opened.clusters.splice(0)) await c.stop();
});
async function start(options: LocalClusterOptions): Promise<{ cluster: LocalCluster; client: GridClient }> {
  const cluster = await LocalCluster.start(options);
  opened.clusters.push(cluster);
  const client = await connectClient(cluster.endpoints);
  opened.clients.push(client);
  return { cluster, client };
}

function running(cluster: LocalCluster): GridNode[] {
  return cluster.nodeIds.map((id) => cluster.node(id)).filter((n) => n.running);
}

const state = (cluster: LocalCluster) => (): unknown =>
  Object.fromEntries(running(cluster).map((n) => [n.id, { ...pick(n.bookkeeping()), entries: n.storeStats().entries }]));
const pick = (b: Bookkeeping): { caches: number; shards: number } => ({ caches: b.caches, shards: b.shards });

describe('implicit caches on LocalCluster (backups 1)', () => {
  it('10 000 cache names written, then removed or expired: every node forgets them, primaries and backups', async () => {
    const { cluster, client } = await start({ nodes: 3, backups: 1, partitions: 256, sweepIntervalMs: 20, caches: { configured: {} } });
    await client.cache<string, number>('configured').put('k', 1);
    const baseline = new Map(running(cluster).map((n) => [n.id, { ...pick(n.bookkeeping()), entries: n.storeStats().entries }]));
    const NAMES = 10_000;
    const TTL = 4000;
    // Even names are removed, odd ones expire.
    await inParallel(NAMES, 64, async (i) => {
      await client.cache<string, number>(`tenant-${i}`).put('k', i, i % 2 === 1 ? { ttlMs: TTL } : {});
    });
    // Every name is held by its primary and its backup (the odd ones unless they expired already).
    const total = (f: (b: Bookkeeping) => number): number => running(cluster).reduce((n, node) => n + f(node.bookkeeping()), 0);
    const base = (f: (b: { caches: number; shards: number }) => number): number => [...baseline.values()].reduce((n, b) => n + f(b), 0);
    expect(total((b) => b.caches) - base((b) => b.caches)).toBeGreaterThanOrEqual(NAMES / 2);
    expect(total((b) => b.shards) - base((b) => b.shards)).toBeGreaterThanOrEqual(NAMES);
    await inParallel(NAMES / 2, 64, async (j) => {
      expect(await client.cache<string, number>(`tenant-${2 * j}`).remove('k')).toBe(true);
    });
    await eventually(
      () => running(cluster).every((n) => {
        const b = baseline.get(n.id)!;
        return n.storeStats().entries === b.entries && n.bookkeeping().caches === b.caches && n.bookkeeping().shards === b.shards;
      }),
      TTL + 10_000,
      'every node back to its caches and shards before the 10 000 names',
      state(cluster),
    );
    expect(await client.cache<string, number>('tenant-1').get('k')).toBeUndefined();
    expect(await client.cache<string, number>('configured').get('k')).toBe(1);
  });

  it('a configured cache is kept when empty, on every node; an implicit one written alongside is forgotten', async () => {
    const { cluster, client } = await start({ nodes: 3, backups: 1, partitions: 64, sweepIntervalMs: 20, caches: { atStart: { ttlMs: 60_000 } } });
    await client.createCache('created', { backups: 1 });
    const keys = Array.from({ length: 64 }, (_, i) => `k${i}`);
    for (const name of ['atStart', 'created', 'implicit']) {
      const c = client.cache<string, number>(name);
      await c.putAll(keys.map((k, i) => [k, i] as const));
      for (const k of keys) expect(await c.remove(k)).toBe(true);
    }
    await eventually(() => running(cluster).every((n) => !n.store.cacheConfigs().some(([name]) => name === 'implicit')), 10_000, 'the implicit cache forgotten', state(cluster));
    for (const n of running(cluster)) {
      expect(n.store.cacheConfigs().map(([name]) => name).sort()).toEqual(['atStart', 'created']);
      expect(n.store.cacheConfig('atStart')).toEqual({ ttlMs: 60_000 });
      // Their empty shards are kept too (two caches, over the partitions the node holds).
      expect(n.bookkeeping().shards).toBeGreaterThan(0);
    }
    await client.cache<string, number>('created').put('again', 1);
    expect(await client.cache<string, number>('created').get('again')).toBe(1);
  });

  it('through a failover under churn, implicit caches keep every acknowledged write and are forgotten once emptied', async () => {
    const { cluster, client } = await start({ nodes: 3, backups: 1, partitions: 128, sweepIntervalMs: 5 });
    const baseline = new Map(running(cluster).map((n) => [n.id, pick(n.bookkeeping())]));
    // Each worker owns its names and keys, so the last acknowledged operation on a key is its state.
    const WORKERS = 24;
    const NAMES_PER_WORKER = 8;
    const KEYS = ['a', 'b'];
    // key → value held, or null when removed; `uncertain`: an operation on it failed (it may
    // still land, so the key is not checked).
    const model = new Map<string, number | null>();
    const uncertain = new Set<string>();
    let stop = false;
    let acked = 0;
    const churn = Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          const name = `w${w}-n${i % NAMES_PER_WORKER}`;
          const key = KEYS[(i >> 3) % KEYS.length]!;
          const id = `${name}/${key}`;
          const cache = client.cache<string, number>(name);
          const put = (i & 1) === 0;
          try {
            if (put) await cache.put(key, i);
            else await cache.remove(key);
            model.set(id, put ? i : null);
            acked++;
          } catch {
            uncertain.add(id);
          }
        }
      }),
    );
    const progress = async (what: string, n: number): Promise<void> => {
      const target = acked + n;
      await eventually(() => acked >= target, 20_000, what, () => acked);
    };
    try {
      await progress('churn before the kill', 2000);
      // It holds implicit caches (primary and backup copies): the survivors serve them on.
      expect(cluster.node('node-2').bookkeeping().shards).toBeGreaterThan(0);
      await cluster.kill('node-2');
      await progress('churn after the kill', 2000);
    } finally {
      stop = true;
      await churn;
    }
    for (const [id, want] of model) {
      if (uncertain.has(id)) continue;
      const [name, key] = id.split('/') as [string, string];
      expect(await client.cache<string, number>(name).get(key), id).toBe(want ?? undefined);
    }
    // Emptied, the survivors forget them (their sweeps ran all along).
    for (const id of model.keys()) {
      const [name, key] = id.split('/') as [string, string];
      await client.cache<string, number>(name).remove(key);
    }
    await eventually(
      () => running(cluster).every((n) => n.storeStats().entries === 0 && n.bookkeeping().caches === baseline.get(n.id)!.caches && n.bookkeeping().shards === 0),
      10_000,
      'the survivors back to no implicit cache',
      state(cluster),
    );
  });
});

describe('the coordinator and implicit caches', () => {
  it('its rules stay the same array while implicit caches with the default config come and go', () => {
    const store = new NodeStore();
    store.createCache('conf', { backups: 1 });
    const book = new CacheRuleBook(store, 1);
    const before = book.rules(1);
    expect(before).toEqual([{ name: 'conf', backups: 1, policy: 'READ_WRITE_SAFE' }]);
    let seq = 0;
    for (let i = 0; i < 10_000; i++) store.mutate(i % 64, Op.CACHE_PUT, { cache: `tenant-${i}`, key: new Uint8Array([1]), value: new Uint8Array([2]), seq: ++seq }, 's');
    expect(store.stats().caches).toBe(10_001);
    expect(book.rules(1)).toBe(before);
    // A configured cache configured again as it was: the same rules; changed: new ones.
    store.createCache('conf', { backups: 1 });
    expect(book.rules(1)).toBe(before);
    store.createCache('conf', { backups: 1, partitionLossPolicy: 'READ_ONLY_SAFE' });
    const after = book.rules(1);
    expect(after).not.toBe(before);
    expect(after).toEqual([{ name: 'conf', backups: 1, policy: 'READ_ONLY_SAFE' }]);
    // A configured cache asks for 2: the ranking goes 2 deep and the implicit caches (1 backup)
    // live on a prefix of it, so a death can lose them alone: now they count, by name.
    store.createCache('conf', { backups: 2 });
    const deep = book.rules(1);
    expect(deep).toHaveLength(10_001);
    expect(book.rules(2)).toBe(deep);
  });

  it('implicit caches whose config matters (fewer backups than the ranking, or IGNORE) stay in the rules by name', () => {
    const store = new NodeStore({ cacheDefaults: { backups: 0 } });
    const book = new CacheRuleBook(store, 1);
    expect(book.rules(1)).toEqual([]);
    store.mutate(0, Op.CACHE_PUT, { cache: 'cheap', key: new Uint8Array([1]), value: new Uint8Array([2]), seq: 1 }, 's');
    const r = book.rules(1);
    expect(r).toEqual([{ name: 'cheap', backups: 0, policy: 'READ_WRITE_SAFE' }]);
    expect(book.rules(1)).toBe(r);
    store.mutate(0, Op.CACHE_REMOVE, { cache: 'cheap', key: new Uint8Array([1]), seq: 2 }, 's');
    store.sweep(10);
    expect(book.rules(1)).toEqual([]);
  });

  it('rules of implicit caches with the ranking depth and no IGNORE change nothing nextTopology decides (deaths, joins, pulls, graceful stops)', () => {
    type Ev = { t: 'die' | 'join' | 'sync' | 'leave'; id: string } | { t: 'step' };
    const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'];
    const on = (t: 'die' | 'join' | 'sync' | 'leave'): fc.Arbitrary<Ev> => fc.record({ t: fc.constant(t), id: fc.constantFrom(...NODES) });
    const ev = fc.oneof({ arbitrary: on('die'), weight: 3 }, { arbitrary: on('join'), weight: 2 }, { arbitrary: on('sync'), weight: 3 }, { arbitrary: on('leave'), weight: 1 }, { arbitrary: fc.constant({ t: 'step' as const }), weight: 1 });
    const policy = fc.constantFrom('READ_WRITE_SAFE' as const, 'READ_ONLY_SAFE' as const, 'IGNORE' as const);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 }),
        fc.array(fc.record({ backups: fc.integer({ min: 0, max: 3 }), policy }), { maxLength: 3 }),
        fc.array(fc.constantFrom('READ_WRITE_SAFE' as const, 'READ_ONLY_SAFE' as const), { minLength: 1, maxLength: 3 }),
        fc.array(ev, { minLength: 1, maxLength: 24, size: 'max' }),
        (clusterBackups, configured, implicitPolicies, events) => {
          const caches: CacheRule[] = configured.map((c, i) => ({ name: `c${i}`, ...c }));
          const P = 6;
          let n = 0;
          const alive = new Map<string, LeaseRecord>(NODES.slice(0, 3).map((id) => [id, { id, epoch: `e${n++}`, host: 'h', port: 1, synced: {} }]));
          let rec = initialTopology({ clusterId: 'c', partitions: P, backups: rankingDepth(clusterBackups, caches), leases: [...alive.values()], autoAdjust: { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 } });
          // Implicit caches held at the ranking's depth: inert.
          const implicit: CacheRule[] = implicitPolicies.map((p, i) => ({ name: `tenant-${i}`, backups: rec.backups, policy: p }));
          expect(inertCacheRules(implicit, rec.backups, caches)).toBe(true);
          const all = [...caches, ...implicit].sort((a, b) => (a.name < b.name ? -1 : 1));
          let now = 0;
          for (const e of events) {
            if (e.t === 'die') alive.delete(e.id);
            else if (e.t === 'join' && !alive.has(e.id)) alive.set(e.id, { id: e.id, epoch: `e${n++}`, host: 'h', port: 1, synced: {} });
            else if (e.t === 'leave' && alive.has(e.id)) alive.get(e.id)!.leaving = true;
            else if (e.t === 'sync' && alive.has(e.id)) {
              const l = alive.get(e.id)!;
              for (let p = 0; p < P; p++) {
                const s = rec.syncing[p]!.find((x) => x.id === e.id);
                if (s) l.synced[String(p)] = s.since;
              }
            }
            now += 10;
            const without = nextTopology(rec, [...alive.values()], now, caches);
            const withImplicit = nextTopology(rec, [...alive.values()], now, all);
            expect(withImplicit).toEqual(without);
            if (without !== null) rec = without;
          }
        },
      ),
      { numRuns: 300 },
    );
    // Not inert: an IGNORE kind, fewer or more backups than the ranking, a configured cache deeper.
    expect(inertCacheRules([{ backups: 1, policy: 'IGNORE' }], 1, [])).toBe(false);
    expect(inertCacheRules([{ backups: 0, policy: 'READ_WRITE_SAFE' }], 1, [])).toBe(false);
    expect(inertCacheRules([{ backups: 2, policy: 'READ_WRITE_SAFE' }], 1, [])).toBe(false);
    expect(inertCacheRules([{ backups: 1, policy: 'READ_WRITE_SAFE' }], 1, [{ name: 'deep', backups: 2, policy: 'READ_WRITE_SAFE' }])).toBe(false);
  });
});

describe('the coordinator serialises its cache rules once per change', () => {
  let now = 1_000_000;
  const closers: (() => void)[] = [];
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    now = 1_000_000;
    vi.setSystemTime(now);
  });
  afterEach(() => {
    for (const c of closers.splice(0)) c();
    vi.useRealTimers();
  });

  it('not on every tick', async () => {
    const kv = new MemoryControlPlane();
    for (const id of ['n1', 'n2']) await kv.put(LEASE_PREFIX + id, lease(id));
    await kv.create(TOPOLOGY_KEY, initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases: ['n1', 'n2'].map((id) => lease(id)) }));
    // Rules that count how often they are serialised.
    let serialised = 0;
    const rule = (name: string): CacheRule => ({ name, backups: 1, policy: 'READ_WRITE_SAFE', toJSON: () => (serialised++, { name }) }) as CacheRule;
    let rules: readonly CacheRule[] = [rule('a'), rule('b')];
    const { coordinator, refreshTopology, close } = coordinatorOf(kv, 'n1', () => rules);
    closers.push(close);
    await coordinator.load();
    await refreshTopology();
    coordinator.started();
    const run = async (ms: number): Promise<number> => {
      let ticks = 0;
      for (let t = 0; t < ms; t += 10) {
        now += 10;
        vi.setSystemTime(now);
        if (now % 250 === 0) for (const id of ['n1', 'n2']) await kv.put(LEASE_PREFIX + id, lease(id));
        await settle();
        if (now % 50 === 0) {
          await coordinator.tick();
          ticks++;
        }
        await settle();
      }
      return ticks;
    };
    await run(2000);
    // Two rules, serialised once over 40 ticks.
    expect(serialised).toBe(2);
    rules = [rule('a'), rule('b'), rule('c')];
    await run(2000);
    expect(serialised).toBe(2 + 3);
  });
});
