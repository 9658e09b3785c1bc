import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { ErrorCode, Op, PushKind, ResponseFlag } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { GridError, TestClusterClient, TestConnection } from './helpers/client.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe('LocalCluster basics', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 64 });
  });
  afterAll(async () => {
    await cluster.stop();
  });

  it('handshakes with node id, cluster id, topology version and partition count', async () => {
    const c = await TestConnection.connect(cluster.endpoints[0]!);
    expect(c.handshake.nodeId).toBe(cluster.nodeIds[0]);
    expect(c.handshake.partitions).toBe(64);
    expect(c.handshake.topologyVersion).toBeGreaterThan(0);
    expect(c.handshake.clusterId).toBe('gridlink');
    await c.call(Op.HEARTBEAT, {});
    const map = await c.call<{ primaries: number[]; nodes: { id: string }[] }>(Op.TOPOLOGY, {});
    expect(map.primaries).toHaveLength(64);
    expect(map.primaries.every((i) => i >= 0)).toBe(true);
    expect(map.nodes.map((n) => n.id).sort()).toEqual([...cluster.nodeIds].sort());
    c.close();
  });

  it('puts through one node and reads through every node, forwarding misrouted requests', async () => {
    const client = new TestClusterClient(() => cluster.endpoints);
    for (let i = 0; i < 50; i++) {
      await client.call(Op.CACHE_PUT, { cache: 'c', key: encodeKey(`k${i}`), value: enc.encode(`v${i}`), seq: client.nextSeq() });
    }
    let forwarded = 0;
    for (const ep of cluster.endpoints) {
      const c = await TestConnection.connect(ep);
      for (let i = 0; i < 50; i++) {
        const f = await c.request(Op.CACHE_GET, { cache: 'c', key: encodeKey(`k${i}`) });
        expect(f.flags & ResponseFlag.ERROR).toBe(0);
        expect(dec.decode((f.payload as { value: Uint8Array }).value)).toBe(`v${i}`);
        if (f.flags & ResponseFlag.FORWARDED) {
          forwarded++;
          expect(f.flags & ResponseFlag.REFRESH_MAP).not.toBe(0);
        }
      }
      c.close();
    }
    expect(forwarded).toBeGreaterThan(0);
    const size = await client.call<{ size: number }>(Op.CACHE_SIZE, { cache: 'c' });
    expect(size.size).toBe(50);
    const inc1 = await client.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key: encodeKey('ctr'), delta: 5, seq: client.nextSeq() });
    const seq = client.nextSeq();
    const inc2 = await client.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key: encodeKey('ctr'), delta: 5, seq });
    const inc3 = await client.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key: encodeKey('ctr'), delta: 5, seq });
    expect([inc1.value, inc2.value, inc3.value]).toEqual([5, 10, 10]);
    client.close();
  });

  it('answers a bad payload with BAD_REQUEST and keeps the connection', async () => {
    const c = await TestConnection.connect(cluster.endpoints[1]!);
    await expect(c.call(Op.CACHE_GET, { cache: 'c' })).rejects.toSatisfy((e) => e instanceof GridError && e.code === ErrorCode.BAD_REQUEST);
    await c.call(Op.HEARTBEAT, {});
    c.close();
  });

  it('a graceful stop tells clients, gives up the lease at once and loses nothing', async () => {
    const client = new TestClusterClient(() => cluster.endpoints);
    for (let i = 0; i < 30; i++) {
      await client.call(Op.CACHE_PUT, { cache: 'g', key: encodeKey(`g${i}`), value: enc.encode(`${i}`), seq: client.nextSeq() });
    }
    const id = cluster.nodeIds[2]!;
    const watcher = await TestConnection.connect(cluster.endpointOf(id));
    await cluster.stopNode(id);
    await watcher.closedPromise;
    expect(watcher.pushes.some((p) => p.push === PushKind.NODE_STOPPING)).toBe(true);
    // It gave its lease up (no waiting for expiry) and the cluster moved on.
    expect(cluster.controlPlane.peek(`lease.${id}`)).toBeNull();
    await cluster.waitForTopology((t) => t.members[id] === undefined);
    for (let i = 0; i < 30; i++) {
      const r = await client.call<{ value: Uint8Array }>(Op.CACHE_GET, { cache: 'g', key: encodeKey(`g${i}`) });
      expect(dec.decode(r.value)).toBe(`${i}`);
    }
    watcher.close();
    client.close();
  });
});

