/**
 * A node whose watch skipped topology records (a lagging NATS watch resumes, or the node re-reads
 * the newest record directly) applies the next one it sees against the last one it held (ADR 0069):
 * - a copy it pulled whole stays its copy, also when the owners it pulled from are gone in the
 *   record it jumps to (the record it skipped had made it an owner);
 * - an epoch the record names as departed is gone, also if this node never saw itself a member
 *   under it (the records that admitted and dropped it were both skipped): it rejoins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { MemoryControlPlane, NodeStore, TOPOLOGY_KEY, resolveNodeOptions, silentLogger, startNode, type GridNode, type LeaseRecord, type TopologyRecord } from '@gridlink/node';
import { initialTopology, NodeMetrics, Scheduler } from '@gridlink/node/internal';
import { ClusterView } from '../src/membership/view.js';
import { ReplicaDriver } from '../src/partitions/driver.js';
import { PartitionTable } from '../src/partitions/table.js';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { until } from './helpers/until.js';

const P = 4;
const D1 = '00000000-0000-4000-8000-0000000000d1';

const lease = (id: string, epoch: string): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced: {} });

describe('a node that skipped topology records (ADR 0069)', () => {
  it('keeps a partition it pulled whole when the record it jumps to has dropped the owners it pulled from', () => {
    const key = encodeKey('k');
    const p = partitionOfBytes(key, P);
    // x owns everything; d (this node) pulls p.
    const t0 = initialTopology({ clusterId: 'c', partitions: P, backups: 1, leases: [lease('x', 'x1'), lease('d', D1)] });
    const r0: TopologyRecord = { ...t0, owners: t0.owners.map(() => ['x']), syncing: t0.syncing.map((_, i) => (i === p ? [{ id: 'd', since: t0.version }] : [])) };
    // Skipped: the record that made d an owner of p. Seen next: x restarted (another epoch), d alone owns p.
    const r2: TopologyRecord = {
      ...r0,
      version: r0.version + 2,
      members: { ...r0.members, x: { ...r0.members['x']!, epoch: 'x2' } },
      owners: r0.owners.map((o, i) => (i === p ? ['d'] : o)),
      syncing: r0.syncing.map(() => []),
    };

    const view = new ClusterView('d', P, new Scheduler(), () => true);
    view.epoch = D1;
    const store = new NodeStore();
    const table = new PartitionTable();
    const synced: Record<string, number> = {};
    const opts = resolveNodeOptions({ id: 'd', controlPlane: new MemoryControlPlane(), partitions: P, backups: 1 });
    const metrics = new NodeMetrics({
      id: 'd',
      partitionCounts: () => ({ owned: 0, primary: 0, moving: 0 }),
      replicationInFlight: () => 0,
      resyncs: 0,
      storeStats: () => ({ entries: 0, bytes: 0, evictions: 0, expired: 0 }),
      leaseAgeSeconds: () => Number.NaN,
      topologyAgeSeconds: () => Number.NaN,
      safety: () => null,
    });
    const driver = new ReplicaDriver({
      store,
      metrics,
      table,
      view,
      synced: () => synced,
      caughtUp: () => ({}),
      topologyVersion: () => view.topologyVersion(),
      enqueuePull: () => {},
      startFence: () => {},
      scheduleLeaseWrite: () => {},
      opts,
      log: silentLogger,
    });
    view.set(r0);
    driver.onTopology(null, r0, false);
    // The pull of p completes: x's snapshot, holding k.
    const source = new NodeStore();
    source.mutate(p, Op.CACHE_PUT, { cache: 'c', key, value: new Uint8Array([7]), seq: 1 }, 's');
    store.install(p, source.snapshot(p));
    driver.installed(p, table.part(p), r0.version);
    expect(synced[String(p)]).toBe(r0.version);

    view.set(r2);
    driver.onTopology(r0, r2, true);
    expect(store.read(p, Op.CACHE_GET, { cache: 'c', key })).toEqual({ value: new Uint8Array([7]) });
  });

  describe('on real nodes', () => {
    const nodes: GridNode[] = [];
    afterEach(() => {
      for (const n of nodes.splice(0)) n.kill();
    });

    it('rejoins under a new epoch when the record it reads names its epoch as departed, though it never saw itself a member', async () => {
      const inner = new MemoryControlPlane();
      const cPlane = new FlakyControlPlane(inner);
      const opts = (id: string, controlPlane: MemoryControlPlane | FlakyControlPlane) => ({ id, controlPlane, port: 0, partitions: P, backups: 1, logger: silentLogger });
      nodes.push(await startNode({ ...opts('a', new FlakyControlPlane(inner)), bootstrapNodes: 2 }), await startNode({ ...opts('b', new FlakyControlPlane(inner)), bootstrapNodes: 2 }));
      await until(() => nodes.every((n) => n.isServing() && Object.keys(n.topology()!.members).length === 2), 'a and b serving');
      // c hears of no topology record after the one it reads at start: not the one that admits it.
      cPlane.stallWatchesFrom((e) => e.key === TOPOLOGY_KEY, TOPOLOGY_KEY);
      const c = await startNode({ ...opts('c', cPlane), bootstrapNodes: 2 });
      nodes.push(c);
      const first = c.epoch;
      const a = nodes[0]!;
      await until(() => a.topology()!.members['c']?.epoch === first, 'c admitted');
      expect(c.topology()!.members['c']).toBeUndefined();
      // Hung past its lease: declared gone (departed under that epoch), in a record c skips too.
      c.hang();
      await until(() => a.topology()!.members['c'] === undefined && a.topology()!.departed?.['c'] === first, 'c declared gone');
      c.resume();
      // Its watch resumes past what it missed; it reads the newest record when its lease lapsed.
      cPlane.releaseWatches(() => false);
      await until(() => a.topology()!.members['c'] !== undefined && a.topology()!.members['c']!.epoch !== first, 'c a member again, under a new epoch', 15_000);
      expect(c.epoch).not.toBe(first);
      const t = (await inner.get<TopologyRecord>(TOPOLOGY_KEY))!.value;
      expect(t.members['c']!.epoch).toBe(c.epoch);
    }, 30_000);
  });
});
