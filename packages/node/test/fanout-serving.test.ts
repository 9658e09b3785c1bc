/**
 * Cluster-wide size and clear judge each partition as single-key ops do (ADR 0007): a node counts
 * or clears a partition only while it may act as its primary — lease valid, or vouched for by
 * every backup — and otherwise refuses (retryable NOT_READY) before touching anything, instead of
 * silently leaving its partitions out of the answer.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Op } from '@gridlink/protocol';
import { MemoryControlPlane, silentLogger, startNode, type GridNode } from '@gridlink/node';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { GridError, TestConnection } from './helpers/client.js';
import { connectClient, startThree } from './helpers/grid.js';
import { peerClientTo } from './helpers/peer.js';
import { until } from './helpers/until.js';

async function codeOf(p: Promise<unknown>): Promise<number> {
  try {
    await p;
  } catch (err) {
    if (err instanceof GridError) return err.code;
    throw err;
  }
  throw new Error('expected a refusal, got an answer');
}

const nodes: GridNode[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.kill();
});

describe('size and clear while a node may not act as primary', () => {
  it('every lease lapsed, primaries vouched for by their backups: size stays exact', async () => {
    const cp = new FlakyControlPlane();
    await startThree(nodes, () => cp);
    const client = await connectClient(nodes.map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 3000 });
    try {
      const cache = client.cache<string, number>('s');
      for (let i = 0; i < 40; i++) await cache.put(`k${i}`, i);
      expect(await cache.size()).toBe(40);
      cp.failWrites = true;
      await until(() => nodes.every((n) => !n.leaseValid()), 'every lease to lapse');
      // No lease is valid; each primary serves on its backup's promise, and so does size.
      const failedBefore = cp.failedWrites;
      while (cp.failedWrites - failedBefore < 24) {
        expect(nodes.every((n) => n.isServing())).toBe(true);
        expect(await cache.size()).toBe(40);
      }
      expect(nodes.some((n) => n.leaseValid())).toBe(false);
      cp.failWrites = false;
      await until(() => nodes.every((n) => n.leaseValid()), 'leases valid again');
    } finally {
      await client.close();
    }
  });

  it('a primary that can vouch for nothing refuses size and clear with retryable NOT_READY, clearing nothing, and answers again once it can', async () => {
    const cp = new FlakyControlPlane();
    const n = await startNode({ id: 'solo', controlPlane: cp, port: 0, partitions: 8, backups: 0, logger: silentLogger });
    nodes.push(n);
    await until(() => n.isServing(), 'the node to serve');
    const client = await connectClient([`127.0.0.1:${n.port}`], { operationTimeout: 3000 });
    const conn = await TestConnection.connect(`127.0.0.1:${n.port}`);
    try {
      const cache = client.cache<string, number>('s');
      for (let i = 0; i < 20; i++) await cache.put(`k${i}`, i);
      cp.failWrites = true;
      await until(() => !n.leaseValid() && !n.isServing(), 'the lease to lapse');
      // Without a backup nobody vouches: the node must not answer "0 entries".
      expect(await codeOf(conn.call(Op.CACHE_SIZE, { cache: 's' }))).toBe(ErrorCode.NOT_READY);
      expect(await codeOf(conn.call(Op.CACHE_CLEAR, { cache: 's', seq: 1 }))).toBe(ErrorCode.NOT_READY);
      cp.failWrites = false;
      await until(() => n.isServing(), 'the node to serve again');
      expect((await conn.call<{ size: number }>(Op.CACHE_SIZE, { cache: 's' })).size).toBe(20);
      for (let i = 0; i < 20; i++) expect(await cache.get(`k${i}`)).toBe(i);
      await cache.clear();
      expect(await cache.size()).toBe(0);
    } finally {
      conn.close();
      await client.close();
    }
  });

  it('a node asked for a share of partitions counts it only if it is primary of every one; otherwise, or when malformed, it refuses', async () => {
    const cp = new MemoryControlPlane();
    nodes.push(...(await Promise.all(['a', 'b'].map((id) => startNode({ id, controlPlane: cp, port: 0, partitions: 8, backups: 1, bootstrapNodes: 2, logger: silentLogger })))));
    const a = nodes[0]!;
    await until(() => nodes.every((n) => n.topology() !== null && Object.keys(n.topology()!.members).length === 2 && n.isServing()), 'two serving members');
    const owners = a.topology()!.owners;
    const ofA = owners.findIndex((o) => o[0] === 'a');
    const notA = owners.findIndex((o) => o[0] !== 'a');
    expect(Math.min(ofA, notA)).toBeGreaterThanOrEqual(0);
    const peer = peerClientTo(a.port, 'a');
    try {
      expect(await peer.request(Op.PEER_SIZE, { cache: 's', parts: [ofA] }, 2000)).toBe(0);
      await expect(peer.request(Op.PEER_SIZE, { cache: 's', parts: [ofA, notA] }, 2000)).rejects.toMatchObject({ wireCode: ErrorCode.NOT_PRIMARY, retryable: true });
      await expect(peer.request(Op.PEER_CLEAR, { cache: 's', seq: 1, session: 'x', parts: [notA] }, 2000)).rejects.toMatchObject({ wireCode: ErrorCode.NOT_PRIMARY });
      await expect(peer.request(Op.PEER_SIZE, { cache: 's', parts: [99] }, 2000)).rejects.toMatchObject({ wireCode: ErrorCode.BAD_REQUEST });
      await expect(peer.request(Op.PEER_SIZE, { cache: 's', parts: 'all' }, 2000)).rejects.toMatchObject({ wireCode: ErrorCode.BAD_REQUEST });
    } finally {
      peer.destroy();
    }
  });
});
