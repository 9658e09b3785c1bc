import { describe, expect, it } from 'vitest';
import { bytesSerializer } from '@gridlink/client';
import { perTestCluster } from './helpers/grid.js';

/**
 * ADR 0056: a rejoining node pulls the partitions of one primary in batches, not one request per
 * partition. What it installs, and what survives the loss of the other copy, is unchanged.
 */
describe('state transfer in batches', () => {
  const fx = perTestCluster();

  it('a node restarted empty pulls hundreds of mostly empty partitions in a few requests, and loses nothing', async () => {
    const c = await fx.start({ nodes: 3, backups: 1, partitions: 512, autoAdjust: { enabled: false } });
    const cl = await fx.connectFast(c.endpoints);
    const cache = cl.cache<string, string>('few');
    for (let i = 0; i < 200; i++) await cache.put(`k${i}`, `v${i}`);
    const [n1, , n3] = c.nodeIds as [string, string, string];
    await c.restart(n3);
    await c.waitForStable();
    const node = c.node(n3);
    const held = c.topology().owners.filter((o) => o.includes(n3)).length;
    expect(node.transfers).toBe(held);
    expect(held).toBeGreaterThan(200);
    // One request per primary it pulls from, give or take a retry; it was one per partition.
    expect(node.pullRequests).toBeLessThan(held / 20);
    // Its copies are whole: with the survivor of the kill gone too, every write is still there.
    await c.kill(n1);
    await c.waitForTopology((t) => t.members[n1] === undefined && t.lost.length === 0 && t.syncing.every((s) => s.length === 0));
    for (let i = 0; i < 200; i++) expect(await cache.get(`k${i}`)).toBe(`v${i}`);
  });

  it('snapshots beyond a frame budget come in later batches; a partition too big for one part is pulled alone', async () => {
    const c = await fx.start({ nodes: 2, backups: 1, partitions: 64, maxFrameSize: 64 * 1024, autoAdjust: { enabled: false } });
    const cl = await fx.connectFast(c.endpoints);
    const big = cl.cache<string, Uint8Array>('big', { serializer: bytesSerializer });
    const value = (i: number, n: number): Uint8Array => new Uint8Array(n).fill(i % 251);
    // About 3 KiB in most partitions (a 32 KiB budget takes ~10 per batch), and ~80 KiB in a few.
    for (let i = 0; i < 192; i++) await big.put(`s${i}`, value(i, 1024));
    for (let i = 0; i < 24; i++) await big.put(`b${i}`, value(i, 10_000));
    const [n1, n2] = c.nodeIds as [string, string];
    await c.restart(n2);
    await c.waitForStable();
    const node = c.node(n2);
    expect(node.transfers).toBe(64);
    expect(node.pullRequests).toBeGreaterThan(1);
    expect(node.pullRequests).toBeLessThan(64);
    await c.kill(n1);
    await c.waitForTopology((t) => t.members[n1] === undefined && t.lost.length === 0);
    for (let i = 0; i < 192; i++) {
      const v = await big.get(`s${i}`);
      expect(v?.length).toBe(1024);
      expect(v?.[0]).toBe(i % 251);
    }
    for (let i = 0; i < 24; i++) expect((await big.get(`b${i}`))?.length).toBe(10_000);
  });
});
