/**
 * Implicit caches are forgotten (ADR 0014), in the store: a cache written without being created
 * first keeps a shard per partition it has entries in and a config while it has any; once a
 * remove, a clear, an expiry or an eviction took the last entry of a shard, the next sweep
 * forgets the shard, and the config goes with the cache's last shard. A configured cache is kept.
 *
 * The property test runs a primary and a backup fed with the primary's records (or a snapshot, as
 * a resync or a pull does), swapping roles now and then (a failover), over random cache names,
 * puts, removes, clears, TTLs, sweeps and explicit creations: every read on either copy matches a
 * model of the acknowledged writes, and after a full sweep each copy holds shards and configs of
 * exactly the implicit caches that still have entries (plus the configured ones).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Op, type CacheConfig } from '@gridlink/protocol';
import { NodeStore } from '../src/store/index.js';
import { FakeClock, b, makeStore, s } from './store-helpers.js';

const seqs = new Map<string, number>();
const next = (session: string): number => {
  const n = (seqs.get(session) ?? 0) + 1;
  seqs.set(session, n);
  return n;
};

describe('implicit caches in the store', () => {
  it('an implicit cache emptied by removes loses its shards at the next sweep and its config with the last one', () => {
    const { store } = makeStore();
    const put = (p: number, cache: string, key: string): void => void store.mutate(p, Op.CACHE_PUT, { cache, key: b(key), value: b('v'), seq: next('s') }, 's');
    const remove = (p: number, cache: string, key: string): unknown => store.mutate(p, Op.CACHE_REMOVE, { cache, key: b(key), seq: next('s') }, 's').result;
    const base = store.stats();
    expect(base).toMatchObject({ caches: 0, shards: 0 });
    put(0, 'tenant-1', 'a');
    put(1, 'tenant-1', 'b');
    put(1, 'tenant-2', 'c');
    expect(store.stats()).toMatchObject({ caches: 2, shards: 3 });
    expect(remove(0, 'tenant-1', 'a')).toEqual({ applied: true });
    // Nothing forgotten on the write path: the sweep does it.
    expect(store.stats()).toMatchObject({ caches: 2, shards: 3 });
    store.sweep(100);
    expect(store.stats()).toMatchObject({ caches: 2, shards: 2 });
    expect(store.cacheConfigs().map(([n]) => n).sort()).toEqual(['tenant-1', 'tenant-2']);
    remove(1, 'tenant-1', 'b');
    remove(1, 'tenant-2', 'c');
    store.sweep(100);
    expect(store.stats()).toMatchObject({ caches: 0, shards: 0, entries: 0 });
    expect(store.cacheConfigs()).toEqual([]);
    // Written again, it is created again, as on first use.
    put(2, 'tenant-1', 'a');
    expect(store.read(2, Op.CACHE_GET, { cache: 'tenant-1', key: b('a') })).toMatchObject({ value: b('v') });
    expect(store.stats()).toMatchObject({ caches: 1, shards: 1 });
  });

  it('a shard filled again before the sweep is kept, with its entry', () => {
    const { store } = makeStore();
    store.mutate(0, Op.CACHE_PUT, { cache: 'q', key: b('a'), value: b('1'), seq: next('s') }, 's');
    store.mutate(0, Op.CACHE_REMOVE, { cache: 'q', key: b('a'), seq: next('s') }, 's');
    store.mutate(0, Op.CACHE_PUT, { cache: 'q', key: b('b'), value: b('2'), seq: next('s') }, 's');
    store.sweep(100);
    expect(store.stats()).toMatchObject({ caches: 1, shards: 1, entries: 1 });
    expect(s((store.read(0, Op.CACHE_GET, { cache: 'q', key: b('b') }) as { value: Uint8Array }).value)).toBe('2');
  });

  it('expiry, clear and eviction empty a shard too; the cache defaults apply again after it was forgotten', () => {
    const { store, clock } = makeStore({ cacheDefaults: { ttlMs: 50 }, maxEntries: 2 });
    store.mutate(0, Op.CACHE_PUT, { cache: 'ttl', key: b('a'), value: b('v'), seq: next('s') }, 's');
    store.mutate(1, Op.CACHE_PUT, { cache: 'cleared', key: b('a'), value: b('v'), ttlMs: 0, seq: next('s') }, 's');
    store.mutate(1, Op.CACHE_CLEAR, { cache: 'cleared', seq: next('s') }, 's');
    clock.advance(50);
    store.sweep(100); // expires 'ttl'/a, then forgets both emptied shards in the same pass
    expect(store.stats()).toMatchObject({ caches: 0, shards: 0, entries: 0 });
    // Evicted: the LRU bound of 2 pushes the first entry out.
    store.mutate(2, Op.CACHE_PUT, { cache: 'old', key: b('a'), value: b('v'), seq: next('s') }, 's');
    store.mutate(2, Op.CACHE_PUT, { cache: 'new', key: b('a'), value: b('v'), seq: next('s') }, 's');
    store.mutate(2, Op.CACHE_PUT, { cache: 'new', key: b('b'), value: b('v'), seq: next('s') }, 's');
    store.sweep(100);
    expect(store.cacheConfigs().map(([n]) => n)).toEqual(['new']);
    expect(store.cacheConfig('new')).toEqual({ ttlMs: 50 });
    // The implicit 'ttl' cache is created again with the defaults: its entries expire again.
    store.mutate(0, Op.CACHE_PUT, { cache: 'ttl', key: b('x'), value: b('v'), seq: next('s') }, 's');
    expect(store.inspect(0).entries.map((e) => e[3])).toEqual([clock.now() + 50]);
  });

  it('a configured cache is kept when empty, shards and config; configuring an emptied implicit cache keeps it too', () => {
    const { store } = makeStore();
    store.createCache('kept', { ttlMs: 1000 });
    store.mutate(0, Op.CACHE_PUT, { cache: 'kept', key: b('a'), value: b('v'), seq: next('s') }, 's');
    store.mutate(0, Op.CACHE_REMOVE, { cache: 'kept', key: b('a'), seq: next('s') }, 's');
    store.mutate(1, Op.CACHE_PUT, { cache: 'late', key: b('a'), value: b('v'), seq: next('s') }, 's');
    store.mutate(1, Op.CACHE_REMOVE, { cache: 'late', key: b('a'), seq: next('s') }, 's');
    store.createCache('late', {}); // configured after it emptied, before the sweep
    store.sweep(100);
    expect(store.stats()).toMatchObject({ caches: 2, shards: 2 });
    expect(store.cacheConfig('kept')).toEqual({ ttlMs: 1000 });
  });

  it('dropping partitions or caches forgets implicit caches no partition holds any more', () => {
    const { store } = makeStore();
    store.createCache('conf', {});
    for (const [p, c] of [[0, 'a'], [1, 'a'], [1, 'b'], [2, 'conf']] as const) {
      store.mutate(p, Op.CACHE_PUT, { cache: c, key: b('k'), value: b('v'), seq: next('s') }, 's');
    }
    store.dropPartition(0);
    expect(store.cacheConfigs().map(([n]) => n).sort()).toEqual(['a', 'b', 'conf']);
    store.dropCaches(1, (c) => c !== 'a');
    expect(store.cacheConfigs().map(([n]) => n).sort()).toEqual(['b', 'conf']);
    store.dropPartition(1);
    store.dropPartition(2);
    expect(store.cacheConfigs().map(([n]) => n)).toEqual(['conf']);
    expect(store.stats()).toMatchObject({ caches: 1, shards: 0, entries: 0 });
  });

  it('a snapshot whose entries of a cache all expired on the way leaves neither shard nor config', () => {
    const clock = new FakeClock();
    const a = new NodeStore({ clock });
    a.mutate(0, Op.CACHE_PUT, { cache: 'brief', key: b('k'), value: b('v'), ttlMs: 10, seq: next('s') }, 's');
    a.mutate(0, Op.CACHE_PUT, { cache: 'stays', key: b('k'), value: b('v'), seq: next('s') }, 's');
    const snap = a.snapshot(0);
    clock.advance(10);
    const bStore = new NodeStore({ clock });
    bStore.install(0, structuredClone(snap));
    expect(bStore.cacheConfigs().map(([n]) => n)).toEqual(['stays']);
    expect(bStore.stats()).toMatchObject({ caches: 1, shards: 1, entries: 1 });
  });

  it('a cache this node does not know has the defaults: config, backups', () => {
    const { store } = makeStore({ cacheDefaults: { ttlMs: 5, backups: 0 } });
    expect(store.cacheConfig('never-seen')).toEqual({ ttlMs: 5, backups: 0 });
    expect(store.cacheBackups('never-seen')).toBe(0);
    store.createCache('two', { backups: 2 });
    expect(store.cacheBackups('two')).toBe(2);
  });
});

describe('implicit caches forgotten while writes, expiry, resyncs and failovers interleave (model)', () => {
  // Few names, partitions and keys: shards empty, fill and get forgotten often.
  const CACHES = ['t0', 't1', 't2'];
  const PARTS = 2;
  const KEYS = ['a', 'b'];
  const DEFAULT_TTL = 30;
  type Cmd =
    | { k: 'put'; p: number; cache: string; key: string; v: number; ttl: number | undefined }
    | { k: 'remove'; p: number; cache: string; key: string }
    | { k: 'clear'; p: number; cache: string }
    | { k: 'advance'; ms: number }
    | { k: 'sweep'; on: 'primary' | 'backup'; budget: number }
    | { k: 'create'; cache: string; ttl: number }
    | { k: 'resync'; p: number; pull: boolean }
    | { k: 'swap' };
  const where = { p: fc.nat(PARTS - 1), cache: fc.constantFrom(...CACHES), key: fc.constantFrom(...KEYS) };
  const cmd: fc.Arbitrary<Cmd> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ k: fc.constant('put' as const), ...where, v: fc.nat(9), ttl: fc.option(fc.constantFrom(0, 10, 40), { nil: undefined }) }) },
    { weight: 5, arbitrary: fc.record({ k: fc.constant('remove' as const), ...where }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('clear' as const), p: where.p, cache: where.cache }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('advance' as const), ms: fc.constantFrom(1, 10, 30) }) },
    { weight: 4, arbitrary: fc.record({ k: fc.constant('sweep' as const), on: fc.constantFrom('primary' as const, 'backup' as const), budget: fc.constantFrom(0, 1, 2, 8) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('create' as const), cache: where.cache, ttl: fc.constantFrom(0, 20) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('resync' as const), p: where.p, pull: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('swap' as const) }) },
  );

  it('no acknowledged write is lost, both copies read like the model, and only caches with entries stay known', () => {
    fc.assert(
      fc.property(fc.array(cmd, { minLength: 5, maxLength: 60, size: 'max' }), fc.boolean(), (cmds, withDefaultTtl) => {
        const clock = new FakeClock();
        const defaults: CacheConfig = withDefaultTtl ? { ttlMs: DEFAULT_TTL } : {};
        let primary = new NodeStore({ clock, cacheDefaults: defaults });
        let backup = new NodeStore({ clock, cacheDefaults: defaults });
        // model: `${p}|${cache}|${key}` → value and absolute expiry (0: never)
        const model = new Map<string, { v: number; at: number }>();
        const explicit = new Map<string, number>();
        let seq = 0;
        const ttlOf = (cache: string, ttl: number | undefined): number => ttl ?? explicit.get(cache) ?? defaults.ttlMs ?? 0;
        const live = (e: { at: number } | undefined): boolean => e !== undefined && (e.at === 0 || e.at > clock.now());
        const mutate = (p: number, op: Op, payload: Record<string, unknown>): unknown => {
          const r = primary.mutate(p, op, { ...payload, seq: ++seq }, 'client');
          if (r.record !== null) expect(backup.applyRecord(p, structuredClone(r.record))).toBe(true);
          return r.result;
        };
        const check = (): void => {
          for (const store of [primary, backup]) {
            for (let p = 0; p < PARTS; p++) {
              for (const cache of CACHES) {
                for (const key of KEYS) {
                  const e = model.get(`${p}|${cache}|${key}`);
                  const got = store.read(p, Op.CACHE_GET, { cache, key: b(key) }) as { value: Uint8Array | null };
                  expect(got.value === null ? null : Number(s(got.value)), `${store === primary ? 'primary' : 'backup'} p${p} ${cache}/${key}`).toBe(live(e) ? e!.v : null);
                }
              }
            }
          }
        };
        for (const c of cmds) {
          switch (c.k) {
            case 'put': {
              const ttl = ttlOf(c.cache, c.ttl);
              const payload: Record<string, unknown> = { cache: c.cache, key: b(c.key), value: b(String(c.v)) };
              if (c.ttl !== undefined) payload['ttlMs'] = c.ttl;
              mutate(c.p, Op.CACHE_PUT, payload);
              model.set(`${c.p}|${c.cache}|${c.key}`, { v: c.v, at: ttl > 0 ? clock.now() + ttl : 0 });
              break;
            }
            case 'remove': {
              const id = `${c.p}|${c.cache}|${c.key}`;
              expect(mutate(c.p, Op.CACHE_REMOVE, { cache: c.cache, key: b(c.key) })).toEqual({ applied: live(model.get(id)) });
              model.delete(id);
              break;
            }
            case 'clear':
              mutate(c.p, Op.CACHE_CLEAR, { cache: c.cache });
              for (const key of KEYS) model.delete(`${c.p}|${c.cache}|${key}`);
              break;
            case 'advance':
              clock.advance(c.ms);
              break;
            case 'sweep':
              (c.on === 'primary' ? primary : backup).sweep(c.budget);
              break;
            case 'create':
              // As the registry does: every node is told.
              primary.createCache(c.cache, { ttlMs: c.ttl });
              backup.createCache(c.cache, { ttlMs: c.ttl });
              explicit.set(c.cache, c.ttl);
              break;
            case 'resync':
              // A resync installs over what the backup holds; a pull starts from nothing.
              if (c.pull) backup.dropPartition(c.p);
              backup.install(c.p, structuredClone(primary.snapshot(c.p)));
              break;
            case 'swap':
              [primary, backup] = [backup, primary];
              break;
          }
          check();
        }
        // A full sweep leaves exactly the implicit caches that have entries, and the configured ones.
        for (const store of [primary, backup]) {
          store.sweep(1_000_000);
          const withEntries = new Set<string>();
          const shardsWithEntries = new Set<string>();
          for (let p = 0; p < PARTS; p++) {
            for (const [cache] of store.inspect(p).entries) {
              withEntries.add(cache);
              shardsWithEntries.add(`${p}|${cache}`);
            }
          }
          const known = store.cacheConfigs().map(([n]) => n).sort();
          expect(known).toEqual([...new Set([...withEntries, ...explicit.keys()])].sort());
          const implicitShards = [...shardsWithEntries].filter((k) => !explicit.has(k.split('|')[1]!)).length;
          const stats = store.stats();
          expect(stats.caches).toBe(known.length);
          // Configured caches may keep empty shards; implicit ones keep none.
          expect(stats.shards - implicitShards).toBeGreaterThanOrEqual(0);
          expect(stats.shards - implicitShards).toBeLessThanOrEqual(explicit.size * PARTS);
        }
      }),
      { numRuns: 300 },
    );
  });
});
