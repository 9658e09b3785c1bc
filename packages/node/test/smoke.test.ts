import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { ErrorCode, Op, PushKind, ResponseFlag } from '@gridlink/protocol';
import { bytesSerializer, type GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { GridError, TestClusterClient, TestConnection } from './helpers/client.js';
import { connectClient } from './helpers/grid.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe('LocalCluster basics', () => {
  let cluster: LocalCluster;
  let clients: GridClient[] = [];
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 64 });
  });
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
  });
  afterAll(async () => {
    await cluster.stop();
  });

  async function client(): Promise<GridClient> {
    const c = await connectClient(cluster.endpoints);
    clients.push(c);
    return c;
  }

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
    const cache = (await client()).cache<string, Uint8Array>('c', { serializer: bytesSerializer });
    for (let i = 0; i < 50; i++) await cache.put(`k${i}`, enc.encode(`v${i}`));
    // Reads on the wire, through each node in turn, to see the response flags.
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
    expect(await cache.size()).toBe(50);
    // Replaying one (session, seq) needs the protocol-level client: the real one never does it on purpose.
    const raw = new TestClusterClient(() => cluster.endpoints);
    try {
      const inc1 = await raw.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key: encodeKey('ctr'), delta: 5, seq: raw.nextSeq() });
      const seq = raw.nextSeq();
      const inc2 = await raw.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key: encodeKey('ctr'), delta: 5, seq });
      const inc3 = await raw.call<{ value: number }>(Op.CACHE_INCREMENT, { cache: 'n', key: encodeKey('ctr'), delta: 5, seq });
      expect([inc1.value, inc2.value, inc3.value]).toEqual([5, 10, 10]);
    } finally {
      raw.close();
    }
  });

  it('answers a bad payload with BAD_REQUEST and keeps the connection', async () => {
    const c = await TestConnection.connect(cluster.endpoints[1]!);
    await expect(c.call(Op.CACHE_GET, { cache: 'c' })).rejects.toSatisfy((e) => e instanceof GridError && e.code === ErrorCode.BAD_REQUEST);
    await c.call(Op.HEARTBEAT, {});
    c.close();
  });

  it('a graceful stop tells clients, gives up the lease at once and loses nothing', async () => {
    const g = (await client()).cache<string, string>('g');
    for (let i = 0; i < 30; i++) await g.put(`g${i}`, `${i}`);
    const id = cluster.nodeIds[2]!;
    const watcher = await TestConnection.connect(cluster.endpointOf(id));
    await cluster.stopNode(id);
    await watcher.closedPromise;
    expect(watcher.pushes.some((p) => p.push === PushKind.NODE_STOPPING)).toBe(true);
    // It gave its lease up (no waiting for expiry) and the cluster moved on.
    expect(cluster.controlPlane.peek(`lease.${id}`)).toBeNull();
    await cluster.waitForTopology((t) => t.members[id] === undefined);
    for (let i = 0; i < 30; i++) expect(await g.get(`g${i}`)).toBe(`${i}`);
    watcher.close();
  });
});

