import { describe, expect, it } from 'vitest';
import { DEFAULT_TIMING, LocalCluster, MemoryControlPlane, NodeConfigError, resolveNodeOptions, startNode, type NodeOptions, type NodeTiming } from '@gridlink/node';
import { Op } from '@gridlink/protocol';
import { TestConnection } from './helpers/client.js';

const base = (): NodeOptions => ({ id: 'n1', controlPlane: new MemoryControlPlane() });

describe('node configuration', () => {
  it('announces advertisePort (port mapping, NAT, a proxy) instead of the listen port; by default the listen port', async () => {
    const cp = new MemoryControlPlane();
    const mapped = await startNode({ id: 'mapped', controlPlane: cp, port: 0, advertisePort: 31999, partitions: 4, backups: 0 });
    try {
      const deadline = Date.now() + 10_000;
      while (mapped.topology()?.members['mapped'] === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(mapped.topology()!.members['mapped']).toMatchObject({ host: '127.0.0.1', port: 31999 });
      expect(mapped.port).not.toBe(31999);
    } finally {
      mapped.kill();
    }
    expect(resolveNodeOptions(base()).advertisePort).toBeUndefined();
  });

  it('fills every default', () => {
    const o = resolveNodeOptions(base());
    expect(o).toMatchObject({
      host: '127.0.0.1',
      port: 10800,
      partitions: 1024,
      backups: 1,
      leaseMs: 1000,
      renewIntervalMs: 250,
      leaseMarginMs: 150,
      replicationTimeoutMs: 3000,
      idleTimeoutMs: 30_000,
      dedupWindowMs: 120_000,
      pullConcurrency: 8,
      transferUnitBytes: 131_072,
      autoAdjust: { enabled: true, softTimeoutMs: 10_000, hardTimeoutMs: 60_000 },
    });
  });

  it.each([
    [{ id: 'bad id!' }, 'id'],
    [{ controlPlane: {} as never }, 'controlPlane'],
    [{ port: 70000 }, 'port'],
    [{ partitions: 0 }, 'partitions'],
    [{ backups: -1 }, 'backups'],
    [{ leaseMs: 1000, renewIntervalMs: 1000 }, 'renewIntervalMs'],
    [{ leaseMs: 1000, renewIntervalMs: 500, leaseMarginMs: 600 }, 'leaseMarginMs'],
    [{ autoAdjust: { softTimeoutMs: 10, hardTimeoutMs: 5 } }, 'autoAdjust.hardTimeoutMs'],
    [{ weight: 0 }, 'weight'],
    [{ maxEntries: 0 }, 'maxEntries'],
    [{ advertisePort: 0 }, 'advertisePort'],
    [{ advertisePort: 65536 }, 'advertisePort'],
    [{ advertisePort: 1.5 }, 'advertisePort'],
    // below what the frame codec accepts (and a node announces it to clients: ADR 0009)
    [{ maxFrameSize: 255 }, 'maxFrameSize'],
    [{ maxFrameSize: 2 ** 32 }, 'maxFrameSize'],
    [{ transferUnitBytes: 16 * 1024 - 1 }, 'transferUnitBytes'],
    [{ transferUnitBytes: 2 ** 30 + 1 }, 'transferUnitBytes'],
    // null is not "left out" (these took it, and '', for the default), as for port or zone
    [{ host: null }, 'host'],
    [{ advertiseHost: '' }, 'advertiseHost'],
    [{ advertiseHost: null }, 'advertiseHost'],
    [{ httpHost: '' }, 'httpHost'],
    [{ clusterId: '' }, 'clusterId'],
    [{ clusterId: null }, 'clusterId'],
    [{ logger: null }, 'logger'],
    [{ logger: { info: () => undefined } }, 'logger'],
    [{ caches: null }, 'caches'],
    // cache configs with the store's own rules, at construction (they failed start() with a
    // StoreError naming "config.<field>"), cacheDefaults too (not checked at all before)
    [{ caches: { c: { partitionLossPolicy: 'NOPE' } } }, 'caches.c.partitionLossPolicy'],
    [{ caches: { c: { ttlMs: -1 } } }, 'caches.c.ttlMs'],
    [{ caches: { c: 'x' } }, 'caches.c'],
    [{ cacheDefaults: { ttlMs: 1.5 } }, 'cacheDefaults.ttlMs'],
    [{ cacheDefaults: { backups: 17 } }, 'cacheDefaults.backups'],
    [{ cacheDefaults: null }, 'cacheDefaults'],
    [{ cacheDefaults: { ttlMs: null } }, 'cacheDefaults.ttlMs'],
    // a default TTL past what an expiry can hold: every write to the cache failed
    [{ caches: { c: { ttlMs: Number.MAX_SAFE_INTEGER } } }, 'caches.c.ttlMs'],
    [{ cacheDefaults: { ttlMs: 2 ** 52 + 1 } }, 'cacheDefaults.ttlMs'],
    [{ caches: { c: { partitionLossPolicy: null } } }, 'caches.c.partitionLossPolicy'],
  ] as [Partial<NodeOptions>, string][])('rejects %j naming %s', (patch, field) => {
    let err: unknown;
    try {
      resolveNodeOptions({ ...base(), ...patch });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NodeConfigError);
    expect((err as NodeConfigError).field).toBe(field);
    expect((err as NodeConfigError).message).toContain(field);
    expect((err as NodeConfigError).message).toBe(`${field}: ${(err as NodeConfigError).reason}`);
  });

  it("a node configured with another partition count or cluster id than the cluster's is refused at start, naming the setting, and never becomes a member", async () => {
    const cp = new MemoryControlPlane();
    const a = await startNode({ id: 'a', controlPlane: cp, port: 0, partitions: 8, backups: 0 });
    try {
      const deadline = Date.now() + 10_000;
      while (a.topology()?.members['a'] === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(a.topology()?.members['a']).toBeDefined();
      // It used to start, be listed as a member by the coordinator, and ignore every topology
      // record as malformed: never ready, an error in its log.
      for (const [patch, field, said] of [
        [{ partitions: 16 }, 'partitions', 'has 8 partitions, this node is configured with 16'],
        [{ clusterId: 'other' }, 'clusterId', 'is "gridlink", this node is configured with "other"'],
      ] as [Partial<NodeOptions>, string, string][]) {
        const err = await startNode({ id: 'b', controlPlane: cp, port: 0, partitions: 8, backups: 0, caches: { 'b-only': { ttlMs: 1000 } }, ...patch }).then(
          (b) => {
            b.kill();
            return null;
          },
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(NodeConfigError);
        expect((err as NodeConfigError).field).toBe(field);
        expect((err as NodeConfigError).message).toContain(said);
      }
      // Nothing of it was written: no lease (the coordinator has nobody to add), no cache config
      // (the other cluster's nodes would have created its caches).
      expect(await cp.get('lease.b')).toBeNull();
      expect(await cp.get('cache.b-only')).toBeNull();
      expect(Object.keys(a.topology()!.members)).toEqual(['a']);
    } finally {
      a.kill();
    }
  });

  it('every timing option is held to what a timer takes, 2^31 - 1 ms (a longer one fired after 1 ms: a node given handshakeTimeoutMs 3e9 refused every handshake at once)', async () => {
    for (const k of Object.keys(DEFAULT_TIMING) as (keyof NodeTiming)[]) {
      let err: unknown;
      try {
        resolveNodeOptions({ ...base(), [k]: 2 ** 31 });
      } catch (e) {
        err = e;
      }
      expect([k, err instanceof NodeConfigError ? err.field : err]).toEqual([k, k]);
      expect((err as NodeConfigError).reason).toBe(`must be an integer in [1, ${2 ** 31 - 1}], got ${2 ** 31}`);
    }
    // The longest allowed works as a timer: a client handshakes and is served, not cut off.
    const cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 4, handshakeTimeoutMs: 2 ** 31 - 1, idleTimeoutMs: 2 ** 31 - 1 });
    try {
      const conn = await TestConnection.connect(cluster.endpoints[0]!);
      try {
        expect(conn.handshake.idleTimeoutMs).toBe(2 ** 31 - 1);
        expect(await conn.call(Op.HEARTBEAT, {})).toEqual({});
        expect(conn.closed).toBe(false);
      } finally {
        conn.close();
      }
    } finally {
      await cluster.stop();
    }
  });

  it('LocalCluster validates its own options', async () => {
    await expect(LocalCluster.start({ nodes: 0 })).rejects.toBeInstanceOf(NodeConfigError);
  });
});
