import { afterEach, describe, expect, it } from 'vitest';
import { bytesSerializer, type GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { connectClient } from './helpers/grid.js';

describe('state transfer of partitions larger than a frame', () => {
  let cluster: LocalCluster | undefined;
  let cl: GridClient | undefined;
  afterEach(async () => {
    await cl?.close();
    cl = undefined;
    await cluster?.stop();
    cluster = undefined;
  });

  it('pulls a snapshot in parts and serves every entry after the other copy dies', async () => {
    const c = await LocalCluster.start({ nodes: 2, backups: 1, partitions: 4, maxFrameSize: 64 * 1024, autoAdjust: { enabled: false } });
    cluster = c;
    cl = await connectClient(c.endpoints);
    const big = cl.cache<string, Uint8Array>('big', { serializer: bytesSerializer });
    const value = (i: number): Uint8Array => new Uint8Array(4096).fill(i % 251);
    for (let i = 0; i < 80; i++) await big.put(`b${i}`, value(i));
    const [n1, n2] = c.nodeIds as [string, string];
    await c.restart(n2);
    await c.waitForStable();
    expect(c.node(n2).transfers).toBe(4);
    await c.kill(n1);
    await c.waitForTopology((t) => t.members[n1] === undefined && t.lost.length === 0);
    for (let i = 0; i < 80; i++) {
      const v = await big.get(`b${i}`);
      expect(v?.length).toBe(4096);
      expect(v?.[0]).toBe(i % 251);
    }
  });
});
