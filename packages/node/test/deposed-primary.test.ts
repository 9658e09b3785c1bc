/**
 * A primary dropped from a partition's owners while alive (a baseline change, a rebalance onto a
 * node that came back) must not serve the partition once its successor does: the successor's
 * promotion fence waits until the old primary has seen the topology that deposed it (ADR 0068).
 * Here the old primary's watch stalls on exactly that record, as a lagging NATS watch does.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { MemoryControlPlane, TOPOLOGY_KEY, type GridNode, type TopologyRecord } from '@gridlink/node';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { GridError, TestConnection, untilAnswered } from './helpers/client.js';
import { THREE_PARTITIONS, startThree } from './helpers/grid.js';
import { untilValue } from './helpers/until.js';

const P = THREE_PARTITIONS;

describe('a deposed primary (ADR 0068)', () => {
  const nodes: GridNode[] = [];
  const conns: TestConnection[] = [];
  afterEach(() => {
    for (const c of conns.splice(0)) c.close();
    for (const n of nodes.splice(0)) n.kill();
  });

  it('dropped from the owners while its watch lags: its successor serves only once it has seen that, so it never answers a read with what the successor overwrote', async () => {
    const inner = new MemoryControlPlane();
    const planes = new Map(['a', 'b', 'c'].map((id) => [id, new FlakyControlPlane(inner)]));
    await startThree(nodes, (id) => planes.get(id)!);
    const [, b] = nodes as [GridNode, GridNode, GridNode];
    // A key whose primary is b (a is the coordinator: the lowest id).
    const topo = b.topology()!;
    let key: Uint8Array | null = null;
    for (let i = 0; key === null; i++) {
      const k = encodeKey(`k${i}`);
      if (topo.owners[partitionOfBytes(k, P)]![0] === 'b') key = k;
    }
    const p = partitionOfBytes(key, P);
    const toB = await TestConnection.connect(`127.0.0.1:${b.port}`);
    conns.push(toB);
    await toB.call(Op.CACHE_PUT, { cache: 'c', key, value: new Uint8Array([1]), seq: 1 });

    // b stops hearing of topology records from the first one that takes p from it.
    planes.get('b')!.stallWatchesFrom((e) => e.key === TOPOLOGY_KEY && e.type === 'put' && (e.value as TopologyRecord).owners[p]?.[0] !== 'b', TOPOLOGY_KEY);
    try {
      // The baseline without b: p moves to a and c, and b leaves its owners — alive, a member.
      const cur = (await inner.get<TopologyRecord>(TOPOLOGY_KEY))!;
      await inner.update(TOPOLOGY_KEY, { ...cur.value, version: cur.value.version + 1, baseline: [{ id: 'a' }, { id: 'c' }], adjust: null }, cur.revision);
      const moved = await untilValue(
        async () => {
          const t = (await inner.get<TopologyRecord>(TOPOLOGY_KEY))!.value;
          return !t.owners[p]!.includes('b') && (t.syncing[p] ?? []).length === 0 && t.members['b'] !== undefined ? t : null;
        },
        'p moved off b',
        10_000,
      );
      const successor = nodes.find((n) => n.id === moved.owners[p]![0])!;
      const toNew = await TestConnection.connect(`127.0.0.1:${successor.port}`);
      conns.push(toNew);
      // The successor acknowledges a write once its fence is done (NOT_READY / NOT_PRIMARY meanwhile).
      await untilAnswered(() => toNew.call(Op.CACHE_PUT, { cache: 'c', key, value: new Uint8Array([2]), seq: 2 }), 'the successor acknowledges a write', 10_000);
      // b answers a read of p with the new value (forwarded) or refuses it: never the old one.
      let got: string;
      try {
        const r = await toB.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache: 'c', key });
        got = `value ${r.value === null ? 'null' : r.value[0]}`;
      } catch (err) {
        if (!(err instanceof GridError)) throw err;
        got = 'refused';
      }
      expect(['value 2', 'refused']).toContain(got);
    } finally {
      planes.get('b')!.releaseWatches();
    }
  }, 30_000);
});
