/**
 * Packed snapshots between nodes (ADR 0080): a primary pushes a backup that missed records a
 * snapshot whose entries travel packed in byte blobs, and the peer link unpacks it for a node
 * that does not grant Feature.PACKED_SNAPSHOTS (a node of an older release would install the
 * caches without their entries). Through a backup's stall of each kind, then the loss of every
 * other copy, the remaining node holds every acknowledged write.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { partitionOf } from '@gridlink/affinity';
import { ALL_FEATURES, Feature } from '@gridlink/protocol';
import { MemoryControlPlane, silentLogger, startNode, type GridNode, type NodeOptions } from '@gridlink/node';
import { withNodeFeatures } from '@gridlink/node/internal';
import { connectClient } from './helpers/grid.js';
import { until } from './helpers/until.js';

const nodes: GridNode[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.kill();
});

/** Values of every size class, small (slab cells) and big (arrays of their own). */
/** Keys written before the stalls: about 100 KB per partition. */
const KEYS = 1200;

const valueOf = (i: number, round: number): string => `${round}:${i}:`.padEnd(((i * 97) % 1500) + 8, String.fromCharCode(97 + (i % 26)));

describe('packed snapshots between nodes of both kinds', () => {
  it('a stalled backup is resynced, packed or unpacked as its node takes them, and alone keeps every acknowledged write', async () => {
    const cp = new MemoryControlPlane();
    const base = (id: string): NodeOptions => ({
      id,
      controlPlane: cp,
      port: 0,
      partitions: 8,
      // Every node holds every partition: each one is a backup of the others' primaries.
      backups: 2,
      bootstrapNodes: 3,
      replicationTimeoutMs: 250,
      // Parts of at most 16 KiB: each partition's resync travels in several parts, more than
      // are sent ahead of the answers (RESYNC_WINDOW).
      maxFrameSize: 32 * 1024,
      leaseMs: 3000,
      renewIntervalMs: 500,
      leaseMarginMs: 300,
      logger: silentLogger,
    });
    const features = ALL_FEATURES & ~Feature.PACKED_SNAPSHOTS;
    for (const id of ['a', 'b', 'old']) nodes.push(await startNode(id === 'old' ? withNodeFeatures(base(id), features) : base(id)));
    const [a, b, old] = nodes as [GridNode, GridNode, GridNode];
    await until(() => nodes.every((n) => n.isServing() && Object.keys(n.topology()?.members ?? {}).length === 3), 'three serving members');
    const client = await connectClient(nodes.map((n) => `127.0.0.1:${n.port}`));
    const cache = client.cache<string, string>('packed');
    const acked = new Map<string, string>();
    /** Writes keys [from, to) of a round, one after the other. */
    const write = async (round: number, from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) {
        const v = valueOf(i, round);
        await cache.put(`k${i}`, v);
        acked.set(`k${i}`, v);
      }
    };
    const resyncs = (): number => nodes.reduce((n, x) => n + x.resyncs, 0);
    try {
      await write(0, 0, KEYS);
      // Each backup in turn stalls past the replication timeout (its lease still valid) while
      // writes go on: it misses their records, and gets a snapshot once it is back.
      for (const [round, stalled] of [[1, old], [2, b]] as const) {
        const before = resyncs();
        // One key of each partition the stalled node is a backup of (not a primary: those would
        // wait for it): each write waits out the replication timeout and is retried (the primary
        // resyncs a target that missed a record before it acknowledges anything more) until
        // the node is back, well inside its lease.
        const owners = a.topology()!.owners;
        const byPartition = new Map<number, string>();
        for (const k of acked.keys()) {
          const p = partitionOf(k, 8);
          if (owners[p]![0] !== stalled.id && !byPartition.has(p)) byPartition.set(p, k);
        }
        stalled.hang();
        const during = Promise.all(
          [...byPartition.values()].map(async (k) => {
            const v = `${round}:${k}`;
            await cache.put(k, v);
            acked.set(k, v);
          }),
        );
        await new Promise((r) => setTimeout(r, 800)); // the fault's duration, not a synchronisation
        stalled.resume();
        // Acknowledged once the stalled node took its snapshot: no key is written again after
        // it, so the keys of round 0 live on that node only through the snapshot.
        await during;
        expect(Object.keys(a.topology()!.members).sort()).toEqual(['a', 'b', 'old']);
        expect(resyncs()).toBeGreaterThan(before);
      }
      // One kind of node at a time keeps the data: first the current ones lose a, then…
      a.kill();
      await until(() => !('a' in (old.topology()?.members ?? {})) && !('a' in (b.topology()?.members ?? {})), 'a declared gone');
      for (const [k, v] of acked) expect(await cache.get(k)).toBe(v);
      await write(3, 0, 200);
      // …the remaining current node goes too: the node that took snapshots unpacked holds everything.
      b.kill();
      await until(() => !('b' in (old.topology()?.members ?? {})), 'b declared gone');
      for (const [k, v] of acked) expect(await cache.get(k)).toBe(v);
    } finally {
      await client.close();
    }
  });
});
