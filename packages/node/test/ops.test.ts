import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { bytesSerializer, type GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { connectClient } from './helpers/grid.js';
import { until, untilValue } from './helpers/until.js';

const P = 16;

describe('cache operations, expiry, eviction and operating endpoints', () => {
  let c: LocalCluster;
  let cl: GridClient;
  beforeAll(async () => {
    c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, http: true, sweepIntervalMs: 50, maxEntries: 500 });
    cl = await connectClient(c.endpoints);
  });
  afterAll(async () => {
    await cl?.close();
    await c?.stop();
  });

  it('multi-key ops split by partition; size, scan and clear cover the cluster', async () => {
    const multi = cl.cache<string, string>('multi');
    const entries: [string, string][] = Array.from({ length: 40 }, (_, i) => [`m${i}`, `v${i}`]);
    await multi.putAll(entries);
    const all = await multi.getAll([...entries.map((e) => e[0]), 'missing']);
    expect(all).toEqual([...entries.map((_, i) => `v${i}`), undefined]);
    expect(await multi.size()).toBe(40);
    const scanned: string[] = [];
    for await (const k of multi.scan({ batchSize: 3 })) scanned.push(Buffer.from(k).toString('hex'));
    expect(scanned.sort()).toEqual(entries.map((e) => Buffer.from(encodeKey(e[0])).toString('hex')).sort());
    await multi.clear();
    expect(await multi.size()).toBe(0);
  });

  it('conditional ops', async () => {
    const cache = cl.cache<string, string>('c');
    const key = 'cond';
    expect(await cache.putIfAbsent(key, 'a')).toBe(true);
    expect(await cache.putIfAbsent(key, 'b')).toBe(false);
    expect(await cache.replaceIfEquals(key, 'x', 'b')).toBe(false);
    expect(await cache.replaceIfEquals(key, 'a', 'b')).toBe(true);
    expect(await cache.getAndPut(key, 'c')).toBe('b');
    expect(await cache.containsKey(key)).toBe(true);
    expect(await cache.getAndRemove(key)).toBe('c');
    expect(await cache.containsKey(key)).toBe(false);
  });

  it('a cache created on one node has its TTL on every node; the sweep removes expired entries', async () => {
    const ttl = cl.cache<string, string>('ttl');
    // The create request reaches one node; the others learn the config from it.
    await ttl.create({ ttlMs: 150 });
    for (const id of c.nodeIds) expect(c.node(id).store.cacheConfig('ttl')).toEqual({ ttlMs: 150 });
    const keys = Array.from({ length: 20 }, (_, i) => `t${i}`);
    for (const k of keys) await ttl.put(k, k);
    const expiredBefore = c.nodeIds.reduce((n, id) => n + c.node(id).store.stats().expired, 0);
    // Without any access, the background sweep removes them from primaries and backups.
    await until(() => c.nodeIds.reduce((n, id) => n + c.node(id).store.stats().expired, 0) >= expiredBefore + 2 * keys.length, 'the sweep to expire every copy', 5000);
    expect(await ttl.get('t0')).toBeUndefined();
  });

  it('the per-node entry bound evicts least recently used entries and counts them', async () => {
    const lru = cl.cache<string, Uint8Array>('lru', { serializer: bytesSerializer });
    const value = new Uint8Array(10);
    for (let i = 0; i < 900; i++) await lru.put(`e${i}`, value);
    for (const id of c.nodeIds) expect(c.node(id).store.stats().entries).toBeLessThanOrEqual(500);
    const evictions = c.nodeIds.reduce((n, id) => n + c.node(id).store.stats().evictions, 0);
    expect(evictions).toBeGreaterThan(0);
    const text = await (await fetch(`http://127.0.0.1:${c.node(c.nodeIds[0]!).httpPort}/metrics`)).text();
    expect(text).toMatch(/gridlink_node_evictions_total\{node="node-1"\} \d+/);
  });

  it('/health/live, /health/ready and /metrics per node', async () => {
    for (const id of c.nodeIds) {
      const base = `http://127.0.0.1:${c.node(id).httpPort}`;
      expect((await fetch(`${base}/health/live`)).status).toBe(200);
      expect((await fetch(`${base}/health/ready`)).status).toBe(200);
      const text = await (await fetch(`${base}/metrics`)).text();
      expect(text).toContain(`gridlink_node_topology_version{node="${id}"} ${c.node(id).topologyVersion()}`);
      expect(text).toMatch(new RegExp(`gridlink_node_ops_total\\{op="CACHE_PUT",outcome="ok",node="${id}"\\} \\d+`));
      expect(text).toContain('gridlink_node_op_duration_seconds_bucket');
      expect(text).toMatch(/gridlink_node_partitions\{state="primary",node="[^"]+"\} \d+/);
      expect(text).toContain('gridlink_node_replication_lag_writes');
      expect(text).toContain('gridlink_node_connected_clients');
    }
    const counts = c.nodeIds.map((id) => c.node(id).partitionCounts());
    expect(counts.reduce((n, x) => n + x.primary, 0)).toBe(P);
    expect(counts.reduce((n, x) => n + x.owned, 0)).toBe(2 * P);
  });

  it('/health/ready is false while a restarted node catches up, true after', async () => {
    const id = c.nodeIds[2]!;
    // Give the node data to pull.
    const r = cl.cache<string, string>('r');
    for (let p = 0; p < 40; p++) await r.put(`r${p}`, 'x');
    const node = await c.restart(id);
    expect(node.isReady()).toBe(false);
    await c.waitForStable();
    await untilValue(async () => ((await fetch(`http://127.0.0.1:${node.httpPort}/health/ready`)).status === 200 ? true : null), '/health/ready to answer 200', 5000);
    expect(node.transfers).toBeGreaterThan(0);
  });
});
