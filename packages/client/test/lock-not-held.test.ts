/**
 * A lock handle that no longer holds its lock — released (release, putAndRelease), released by
 * the client's close(), or lost — answers its holder at once, with the typed error of its state,
 * instead of asking the node: nothing it could send would be of use, and a renewal that reached
 * a node where the lease still ran would extend a lock no handle releases any more. Against a
 * real one-node LocalCluster; what was sent is read from the client's own counters (`stats()`).
 */
import { describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient, GridClosedError, GridTimeoutError, LockNotHeldError, type LockHandle } from '@gridlink/client';
import { oneNodeGrid, perTest } from './helpers/grid.js';
import { waitFor } from './helpers/wait.js';

const grid = oneNodeGrid();

const { cleanups, connect } = perTest(grid);

/**
 * Operations the client began and requests it sent to nodes (its heartbeats and map refreshes
 * are not counted: between two reads with no call of the test's in between, nothing else moves).
 */
function sent(client: GridClient): { operations: number; requests: number } {
  const s = client.stats();
  return { operations: s.operations, requests: s.nodes.reduce((n, node) => n + node.requests, 0) };
}

/** A handle of `a` on `key` that is lost: its short lease ran out, `b` took the lock, and a renewal learnt of it. */
async function lostHandle(a: GridClient, b: GridClient, key: string): Promise<{ lost: LockHandle; taker: LockHandle }> {
  const lost = await a.lock(key).acquire({ leaseMs: 100 });
  let taker: LockHandle | null = null;
  await waitFor(async () => (taker = await b.lock(key).tryAcquire({ leaseMs: 30_000 })) !== null, 10_000, `the other client takes ${key}`);
  await expect(lost.renew()).rejects.toBeInstanceOf(LockNotHeldError);
  expect(lost.held).toBe(false);
  return { lost, taker: taker as unknown as LockHandle };
}

describe('renew() of a handle that no longer holds its lock', () => {
  it('after release(), putAndRelease() or a loss rejects with LockNotHeldError without sending anything', async () => {
    const a = await connect();
    const b = await connect();
    const released = await a.lock('nh-release').acquire({ leaseMs: 30_000, autoRenew: true });
    await released.release();
    const putReleased = await a.lock('nh-put').acquire({ leaseMs: 30_000 });
    await putReleased.putAndRelease(a.cache<string, number>('lock-not-held'), 1);
    const { lost, taker } = await lostHandle(a, b, 'nh-lost');

    const before = sent(a);
    for (const h of [released, putReleased, lost]) {
      await expect(h.renew()).rejects.toBeInstanceOf(LockNotHeldError);
      await expect(h.renew({ leaseMs: 5000 })).rejects.toBeInstanceOf(LockNotHeldError);
    }
    expect(sent(a)).toEqual(before);
    expect([released, putReleased, lost].map((h) => h.renewals)).toEqual([0, 0, 0]);
    // The other client's lock is untouched.
    expect(taker.held).toBe(true);
    await taker.release();
  });

  it('after close() rejects with GridClosedError without sending anything', async () => {
    const a = await connect();
    const h = await a.lock('nh-close').acquire({ leaseMs: 30_000, autoRenew: true });
    await a.close();
    const before = sent(a);
    await expect(h.renew()).rejects.toBeInstanceOf(GridClosedError);
    expect(sent(a)).toEqual(before);
  });
});

describe('automatic renewal of a handle its holder released', () => {
  it('does not resume when a renewal in flight is answered after release() was called, even if the release failed', async () => {
    const cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8 });
    cleanups.push(() => cluster.stop());
    const nodeId = cluster.nodeIds[0]!;
    const a = await GridClient.connect({ endpoints: cluster.endpoints, connectTimeout: 3000 });
    a.on('error', () => undefined);
    cleanups.push(() => a.close());
    const h = await a.lock('released-mid-renewal').acquire({ leaseMs: 600, autoRenew: true });
    // The node stops answering; the first renewal goes out (its schedule leaves the table) and waits.
    cluster.hang(nodeId);
    cleanups.push(async () => cluster.resume(nodeId));
    await waitFor(() => a.bookkeeping().renewals === 0, 5000, 'the renewal sent to the hung node');
    // The holder releases; the release is not answered in time and fails, leaving the lock to its lease.
    await expect(h.release({ timeoutMs: 200 })).rejects.toBeInstanceOf(GridTimeoutError);
    // The node answers the renewal it held (then the late release).
    cluster.resume(nodeId);
    await waitFor(() => h.renewals === 1, 5000, 'the renewal answered');
    // The holder asked for no more renewals: none is scheduled (before, the answer scheduled the
    // next one, and the handle kept renewing a lock its holder had given up on).
    expect(a.bookkeeping().renewals).toBe(0);
    expect(a.bookkeeping().renewalTimer).toBe(false);
  });
});
