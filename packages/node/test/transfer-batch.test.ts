import { describe, expect, it } from 'vitest';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { bytesSerializer } from '@gridlink/client';
import { DEFAULT_TRANSFER_UNIT_BYTES as TRANSFER_UNIT_BYTES } from '../src/config.js';
import { perTestCluster } from './helpers/grid.js';
import { until } from './helpers/until.js';

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

  it('partitions that hold data come one transfer unit at a time, one pull in flight, and whole (ADR 0074)', async () => {
    const c = await fx.start({ nodes: 3, backups: 1, partitions: 64, autoAdjust: { enabled: false } });
    const cl = await fx.connectFast(c.endpoints);
    const cache = cl.cache<string, Uint8Array>('data', { serializer: bytesSerializer });
    const value = (i: number): Uint8Array => new Uint8Array(1024).fill(i % 251);
    // ~32 KiB in most partitions (several to a unit), and ~300 KiB in partition 5 (three units:
    // pulled alone, in parts). With 2 MiB answers and two primaries pulled from at once, the
    // restarted node took in ~700 KiB at a time.
    const keys = Array.from({ length: 2048 }, (_, i) => `d${i}`);
    for (let i = 0; keys.length < 2048 + 300; i++) if (partitionOfBytes(encodeKey(`p5-${i}`), 64) === 5) keys.push(`p5-${i}`);
    for (let i = 0; i < keys.length; i += 128) await Promise.all(keys.slice(i, i + 128).map((k, j) => cache.put(k, value(i + j))));
    const n3 = c.nodeIds[2]!;
    await c.restart(n3);
    await c.waitForStable();
    const node = c.node(n3);
    const held = c.topology().owners.filter((o) => o.includes(n3)).length;
    expect(node.transfers).toBe(held);
    expect(node.mostPullsInFlight).toBe(1);
    expect(node.largestPullAnswerBytes).toBeGreaterThan(TRANSFER_UNIT_BYTES / 4);
    expect(node.largestPullAnswerBytes).toBeLessThanOrEqual(TRANSFER_UNIT_BYTES);
    // Its copies are whole: with both other nodes gone, everything it holds is still there.
    const owned = keys.map((k, i) => [k, i] as const).filter(([k]) => c.topology().owners[partitionOfBytes(encodeKey(k), 64)]!.includes(n3));
    expect(owned.length).toBeGreaterThan(1000);
    const [n1, n2] = c.nodeIds as [string, string];
    await c.kill(n1);
    await c.kill(n2);
    await c.waitForTopology((t) => t.members[n1] === undefined && t.members[n2] === undefined);
    for (const [k, i] of owned) expect((await cache.get(k))?.[0], k).toBe(i % 251);
  });

  it('a source that does not answer holds back the pulls from the others no longer than SLOW_PULL_MS, not until its request times out (ADR 0074)', async () => {
    // Requests time out after 60 s here: waiting them out would outlast the test's deadline.
    const c = await fx.start({ nodes: 3, backups: 1, partitions: 64, replicationTimeoutMs: 60_000, autoAdjust: { enabled: false } });
    const cl = await fx.connectFast(c.endpoints);
    const cache = cl.cache<string, Uint8Array>('data', { serializer: bytesSerializer });
    // ~32 KiB a partition: every answer carries data, so pulls run one at a time.
    for (let i = 0; i < 2048; i += 128) await Promise.all(Array.from({ length: 128 }, (_, j) => cache.put(`d${i + j}`, new Uint8Array(1024).fill(7))));
    const [n1, n2, n3] = c.nodeIds as [string, string, string];
    // n1 takes every state pull and never answers (until released).
    const transfer = (c.node(n1) as unknown as { transfer: { onStatePull: (m: unknown) => Promise<unknown> } }).transfer;
    const serve = transfer.onStatePull.bind(transfer);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    transfer.onStatePull = async (m) => {
      await released;
      return serve(m);
    };
    try {
      await c.restart(n3);
      // The partitions n3 pulls from n2 all arrive (n3 reports them synced and becomes their
      // owner) while n1 answers nothing.
      const pulling = (from: string): number[] => {
        const t = c.topology();
        return t.owners.flatMap((o, p) => (o[0] === from && t.syncing[p]!.some((s) => s.id === n3) ? [p] : []));
      };
      await until(() => pulling(n1).length > 0 && pulling(n2).length > 0, 'n3 pulling from both');
      const fromN2 = pulling(n2);
      await until(() => fromN2.every((p) => c.topology().owners[p]!.includes(n3)), `the ${fromN2.length} pulls from n2 done while n1 hangs`, 20_000);
      expect(pulling(n1).length).toBeGreaterThan(0);
    } finally {
      release();
    }
    await c.waitForStable();
    expect(c.node(n3).transfers).toBe(c.topology().owners.filter((o) => o.includes(n3)).length);
  });
});
