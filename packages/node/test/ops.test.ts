import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestClusterClient } from './helpers/client.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const P = 16;

async function poll(cond: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('cache operations, expiry, eviction and operating endpoints', () => {
  let c: LocalCluster;
  let cl: TestClusterClient;
  beforeAll(async () => {
    c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, http: true, sweepIntervalMs: 50, maxEntries: 500 });
    cl = new TestClusterClient(() => c.endpoints);
  });
  afterAll(async () => {
    cl.close();
    await c.stop();
  });

  it('multi-key ops split by partition; size, scan and clear cover the cluster', async () => {
    const entries: [Uint8Array, Uint8Array][] = Array.from({ length: 40 }, (_, i) => [encodeKey(`m${i}`), enc.encode(`v${i}`)]);
    await cl.call(Op.CACHE_PUT_ALL, { cache: 'multi', entries, seq: cl.nextSeq() });
    const all = await cl.call<{ values: (Uint8Array | null)[] }>(Op.CACHE_GET_ALL, { cache: 'multi', keys: [...entries.map((e) => e[0]), encodeKey('missing')] });
    expect(all.values.map((v) => (v ? dec.decode(v) : null))).toEqual([...entries.map((_, i) => `v${i}`), null]);
    expect((await cl.call<{ size: number }>(Op.CACHE_SIZE, { cache: 'multi' })).size).toBe(40);
    const scanned: string[] = [];
    for (let p = 0; p < P; p++) {
      let cursor: Uint8Array | null = null;
      do {
        const r: { keys: Uint8Array[]; cursor: Uint8Array | null } = await cl.call(Op.CACHE_SCAN, { cache: 'multi', partition: p, cursor, count: 3 });
        for (const k of r.keys) scanned.push(Buffer.from(k).toString('hex'));
        cursor = r.cursor;
      } while (cursor !== null);
    }
    expect(scanned.sort()).toEqual(entries.map((e) => Buffer.from(e[0]).toString('hex')).sort());
    await cl.call(Op.CACHE_CLEAR, { cache: 'multi', seq: cl.nextSeq() });
    expect((await cl.call<{ size: number }>(Op.CACHE_SIZE, { cache: 'multi' })).size).toBe(0);
  });

  it('conditional ops', async () => {
    const key = encodeKey('cond');
    const s = (v: string) => enc.encode(v);
    expect((await cl.call<{ applied: boolean }>(Op.CACHE_PUT_IF_ABSENT, { cache: 'c', key, value: s('a'), seq: cl.nextSeq() })).applied).toBe(true);
    expect((await cl.call<{ applied: boolean }>(Op.CACHE_PUT_IF_ABSENT, { cache: 'c', key, value: s('b'), seq: cl.nextSeq() })).applied).toBe(false);
    expect((await cl.call<{ applied: boolean }>(Op.CACHE_REPLACE_IF_EQUALS, { cache: 'c', key, expected: s('x'), value: s('b'), seq: cl.nextSeq() })).applied).toBe(false);
    expect((await cl.call<{ applied: boolean }>(Op.CACHE_REPLACE_IF_EQUALS, { cache: 'c', key, expected: s('a'), value: s('b'), seq: cl.nextSeq() })).applied).toBe(true);
    const old = await cl.call<{ value: Uint8Array }>(Op.CACHE_GET_AND_PUT, { cache: 'c', key, value: s('c'), seq: cl.nextSeq() });
    expect(dec.decode(old.value)).toBe('b');
    expect((await cl.call<{ found: boolean }>(Op.CACHE_CONTAINS_KEY, { cache: 'c', key })).found).toBe(true);
    const removed = await cl.call<{ value: Uint8Array }>(Op.CACHE_GET_AND_REMOVE, { cache: 'c', key, seq: cl.nextSeq() });
    expect(dec.decode(removed.value)).toBe('c');
    expect((await cl.call<{ found: boolean }>(Op.CACHE_CONTAINS_KEY, { cache: 'c', key })).found).toBe(false);
  });

  it('a cache created on one node has its TTL on every node; the sweep removes expired entries', async () => {
    await cl.once(Op.CACHE_CREATE, { cache: 'ttl', config: { ttlMs: 150 } }, 3000, c.endpoints[0]);
    for (const id of c.nodeIds) expect(c.node(id).store.cacheConfig('ttl')).toEqual({ ttlMs: 150 });
    const keys = Array.from({ length: 20 }, (_, i) => `t${i}`);
    for (const k of keys) await cl.call(Op.CACHE_PUT, { cache: 'ttl', key: encodeKey(k), value: enc.encode(k), seq: cl.nextSeq() });
    const expiredBefore = c.nodeIds.reduce((n, id) => n + c.node(id).store.stats().expired, 0);
    // Without any access, the background sweep removes them from primaries and backups.
    await poll(() => c.nodeIds.reduce((n, id) => n + c.node(id).store.stats().expired, 0) >= expiredBefore + 2 * keys.length);
    const r = await cl.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache: 'ttl', key: encodeKey('t0') });
    expect(r.value).toBeNull();
  });

  it('the per-node entry bound evicts least recently used entries and counts them', async () => {
    const value = new Uint8Array(10);
    for (let i = 0; i < 900; i++) await cl.call(Op.CACHE_PUT, { cache: 'lru', key: encodeKey(`e${i}`), value, seq: cl.nextSeq() });
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
      expect(text).toContain('gridlink_node_replication_lag');
      expect(text).toContain('gridlink_node_connected_clients');
    }
    const counts = c.nodeIds.map((id) => c.node(id).partitionCounts());
    expect(counts.reduce((n, x) => n + x.primary, 0)).toBe(P);
    expect(counts.reduce((n, x) => n + x.owned, 0)).toBe(2 * P);
  });

  it('/health/ready is false while a restarted node catches up, true after', async () => {
    const id = c.nodeIds[2]!;
    // Give the node data to pull.
    for (let p = 0; p < 40; p++) await cl.call(Op.CACHE_PUT, { cache: 'r', key: encodeKey(`r${p}`), value: enc.encode('x'), seq: cl.nextSeq() });
    const node = await c.restart(id);
    expect(node.isReady()).toBe(false);
    await c.waitForStable();
    await poll(async () => (await fetch(`http://127.0.0.1:${node.httpPort}/health/ready`)).status === 200);
    expect(node.transfers).toBeGreaterThan(0);
  });
});
