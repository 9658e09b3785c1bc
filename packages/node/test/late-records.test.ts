/**
 * A write the previous primary applied before it learned that its partition went back to a
 * rejoined node reaches that node while its promotion fence runs (ADR 0079): the new primary takes
 * it as the backup it was, so the write is acknowledged once, both copies stay equal, and the fence
 * pushes no snapshot (it used to refuse the record — the write failed over to a retry — and then
 * overwrite the previous primary's whole partition). Here the previous primary's watch stalls on
 * the topology that hands the partition back, and its reads fail, so it answers the new primary's
 * probe only once its watch runs again: the fence stays open while it keeps serving.
 */
import { describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { MemoryControlPlane, silentLogger, startNode, TOPOLOGY_KEY, type TopologyRecord } from '@gridlink/node';
import { Op } from '@gridlink/protocol';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { TestConnection } from './helpers/client.js';
import { THREE_PARTITIONS, optionsOf, perTestNodes, startThree } from './helpers/grid.js';
import { until, untilValue } from './helpers/until.js';

describe('records of the previous primary that reach a node during its promotion fence (ADR 0079)', () => {
  const { nodes } = perTestNodes();

  it('are taken: the write is acknowledged, the new primary holds it, no snapshot is pushed', async () => {
    const inner = new MemoryControlPlane();
    const planes = new Map(['a', 'b', 'c'].map((id) => [id, new FlakyControlPlane(inner)]));
    await startThree(nodes, (id) => planes.get(id)!);
    // A partition neither of whose owners is the coordinator (a): the coordinator stays in place
    // and reads the control plane as usual while the others are stalled, and hands the partition
    // back once the restarted node has caught up.
    const topo = nodes[0]!.topology()!;
    let key: Uint8Array | null = null;
    for (let i = 0; key === null; i++) {
      const k = encodeKey(`k${i}`);
      if (!topo.owners[partitionOfBytes(k, THREE_PARTITIONS)]!.includes('a')) key = k;
    }
    const p = partitionOfBytes(key, THREE_PARTITIONS);
    const [homeId, interimId] = topo.owners[p] as [string, string];
    const home = nodes.find((n) => n.id === homeId)!;
    const interim = nodes.find((n) => n.id === interimId)!;

    // The home primary dies: the interim one (its backup) takes p over.
    home.kill();
    nodes.splice(nodes.indexOf(home), 1);
    await until(() => interim.topology()?.owners[p]?.[0] === interimId, 'the backup to take p over', 10_000);
    const toInterim = await TestConnection.connect(`127.0.0.1:${interim.port}`);
    let seq = 0;
    try {
      await toInterim.call(Op.CACHE_PUT, { cache: 'c', key, value: new Uint8Array([1]), seq: ++seq });
      // From the record that hands p back, the interim primary hears of no topology and reads
      // none: it keeps serving p, and answers a probe only once its watch runs again.
      const plane = planes.get(interimId)!;
      plane.stallWatchesFrom((e) => e.key === TOPOLOGY_KEY && e.type === 'put' && (e.value as TopologyRecord).owners[p]?.[0] === homeId, TOPOLOGY_KEY);
      plane.failReads = true;
      const back = await startNode(optionsOf(homeId, new FlakyControlPlane(inner), { port: home.port, logger: silentLogger }));
      nodes.push(back);
      await until(() => back.topology()?.owners[p]?.[0] === homeId, 'p to be handed back', 20_000);
      const resyncsBefore = back.resyncs;
      expect(interim.topology()!.owners[p]![0]).toBe(interimId); // it has not heard

      // A write to the interim primary: applied there, replicated to the rejoined node, which is
      // primary now and fencing. It is acknowledged.
      const reply = await toInterim.call<{ applied?: boolean }>(Op.CACHE_PUT, { cache: 'c', key, value: new Uint8Array([2]), seq: ++seq });
      expect(reply).toBeDefined();

      plane.failReads = false;
      plane.releaseWatches();
      const toBack = await TestConnection.connect(`127.0.0.1:${back.port}`);
      try {
        // Served by the new primary once its fence is done: the write is there, and the fence
        // found the previous primary's copy equal to its own.
        const got = await untilValue(
          async () => {
            try {
              return { value: (await toBack.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache: 'c', key })).value };
            } catch {
              return null; // NOT_READY / NOT_PRIMARY while the fence runs
            }
          },
          'the new primary to serve p',
          10_000,
        );
        expect([...(got.value ?? [])]).toEqual([2]);
        expect(back.resyncs).toBe(resyncsBefore);
      } finally {
        toBack.close();
      }
    } finally {
      toInterim.close();
      planes.get(interimId)!.releaseWatches();
    }
  }, 60_000);
});
