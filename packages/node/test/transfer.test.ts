import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { LocalCluster } from '@gridlink/node';
import { TestClusterClient } from './helpers/client.js';

describe('state transfer of partitions larger than a frame', () => {
  let cluster: LocalCluster | undefined;
  let cl: TestClusterClient | undefined;
  afterEach(async () => {
    cl?.close();
    await cluster?.stop();
  });

  it('pulls a snapshot in parts and serves every entry after the other copy dies', async () => {
    const c = await LocalCluster.start({ nodes: 2, backups: 1, partitions: 4, maxFrameSize: 64 * 1024, autoAdjust: { enabled: false } });
    cluster = c;
    const client = new TestClusterClient(() => c.endpoints);
    cl = client;
    const value = (i: number): Uint8Array => new Uint8Array(4096).fill(i % 251);
    for (let i = 0; i < 80; i++) await client.call(Op.CACHE_PUT, { cache: 'big', key: encodeKey(`b${i}`), value: value(i), seq: client.nextSeq() });
    const [n1, n2] = c.nodeIds as [string, string];
    await c.restart(n2);
    await c.waitForStable();
    expect(c.node(n2).transfers).toBe(4);
    await c.kill(n1);
    await c.waitForTopology((t) => t.members[n1] === undefined && t.lost.length === 0);
    for (let i = 0; i < 80; i++) {
      const r = await client.call<{ value: Uint8Array }>(Op.CACHE_GET, { cache: 'big', key: encodeKey(`b${i}`) });
      expect(r.value.length).toBe(4096);
      expect(r.value[0]).toBe(i % 251);
    }
  });
});
