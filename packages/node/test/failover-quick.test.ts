import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { Op, PushKind } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestClusterClient, TestConnection } from './helpers/client.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe('failover', () => {
  let cluster: LocalCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
  });

  it('a killed primary: backups take over, acknowledged writes survive, clients get pushed', async () => {
    cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 32 });
    const c = cluster;
    const client = new TestClusterClient(() => c.endpoints);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    for (const k of keys) await client.call(Op.CACHE_PUT, { cache: 'c', key: encodeKey(k), value: enc.encode(k), seq: client.nextSeq() });
    const victim = c.primaryOf(partitionOf('k0', 32))!;
    const survivor = c.nodeIds.find((id) => id !== victim)!;
    const watcher = await TestConnection.connect(c.endpointOf(survivor));
    const v0 = c.topologyVersion;
    const t0 = Date.now();
    await c.kill(victim);
    await client.call(Op.CACHE_PUT, { cache: 'c', key: encodeKey('k0'), value: enc.encode('after'), seq: client.nextSeq() });
    const pause = Date.now() - t0;
    expect(c.primaryOf(partitionOf('k0', 32))).not.toBe(victim);
    for (const k of keys.slice(1)) {
      const r = await client.call<{ value: Uint8Array }>(Op.CACHE_GET, { cache: 'c', key: encodeKey(k) });
      expect(dec.decode(r.value)).toBe(k);
    }
    expect(watcher.pushes.some((p) => p.push === PushKind.TOPOLOGY_CHANGED && p.topologyVersion > v0)).toBe(true);
    expect(pause).toBeGreaterThan(0);
    watcher.close();
    client.close();
  });
});
