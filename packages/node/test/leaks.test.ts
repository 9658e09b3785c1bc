/**
 * Leaks of a long-running node under churn, on a real embedded cluster: whatever clients and
 * peers coming and going put into a node's tables, queues and timers is gone again once they
 * are (GridNode.bookkeeping(), internal). Every check polls its condition under a deadline.
 *
 * - Clients that connect, write, take locks (released, dropped, waited for and given up) and go:
 *   their connections, (session, seq) outcomes, sessions, lock leases and lock waiters are
 *   forgotten — outcomes and sessions a `dedupWindowMs` after their last use, as documented.
 * - Peers restarted (killed, stopped) and a node whose lease lapses (it asks its peers for
 *   promises, ADR 0007): the node's peer links and peer connections are one per other node
 *   again, and the promises it held, once run out, are forgotten.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { GridClient } from '@gridlink/client';
import { LocalCluster, type GridNode, type LocalClusterOptions } from '@gridlink/node';
import { connectClient } from './helpers/grid.js';
import { eventually } from './helpers/until.js';

type Bookkeeping = ReturnType<GridNode['bookkeeping']>;

const opened: { clients: GridClient[]; clusters: LocalCluster[] } = { clients: [], clusters: [] };
afterEach(async () => {
  await Promise.all(opened.clients.splice(0).map((c) => c.close()));
  for (const c of opened.clusters.splice(0)) await c.stop();
});
async function start(options: LocalClusterOptions): Promise<LocalCluster> {
  const c = await LocalCluster.start(options);
  opened.clusters.push(c);
  return c;
}

function bookkeeping(cluster: LocalCluster): Record<string, Bookkeeping> {
  return Object.fromEntries(cluster.nodeIds.map((id) => [id, cluster.node(id).bookkeeping()]));
}

describe('clients that come and go', () => {
  it('their connections, outcomes, sessions, locks and lock waiters are forgotten', async () => {
    const WINDOW = 1500;
    const cluster = await start({ nodes: 3, backups: 1, partitions: 64, dedupWindowMs: WINDOW, sweepIntervalMs: 50 });
    const sum = (f: (b: Bookkeeping) => number): number => Object.values(bookkeeping(cluster)).reduce((n, b) => n + f(b), 0);

    // A lock held for the whole churn: some clients wait for it, give up and go while the node
    // still waits on their behalf.
    const holder = await connectClient(cluster.endpoints);
    opened.clients.push(holder);
    const busy = await holder.lock('busy').acquire({ leaseMs: 10_000 });

    const WAVES = 5;
    const PER_WAVE = 20;
    let waitersSeen = 0;
    for (let wave = 0; wave < WAVES; wave++) {
      const clients = await Promise.all(Array.from({ length: PER_WAVE }, () => connectClient(cluster.endpoints)));
      await Promise.all(
        clients.map(async (c, i) => {
          const cache = c.cache<string, number>('churn');
          for (let k = 0; k < 5; k++) await cache.increment(`n${(i + k) % 30}`);
          await cache.putAll([[`a${i}`, i], [`b${i}`, i]]);
          const lock = c.lock(`lock-${wave}-${i}`);
          if (i % 3 === 0) {
            await (await lock.acquire({ leaseMs: 5000 })).release();
          } else if (i % 3 === 1) {
            // Dropped without release: the lease runs out on the node.
            expect(await lock.tryAcquire({ leaseMs: 300 })).not.toBeNull();
          } else {
            // Waits on the node for a lock held elsewhere; the client gives up first. (The node
            // may still take the lock for it once freed: then its lease runs out.)
            const ac = new AbortController();
            const waiting = c.lock('busy').acquire({ waitMs: 1000, leaseMs: 300, signal: ac.signal });
            await eventually(() => sum((b) => b.lockWaiters) > 0, 5000, 'a waiter on the node', () => bookkeeping(cluster));
            waitersSeen = Math.max(waitersSeen, sum((b) => b.lockWaiters));
            ac.abort();
            await expect(waiting).rejects.toMatchObject({ code: 'GRID_ABORTED' });
          }
          await c.close();
        }),
      );
    }
    // The tables did fill: the last wave's sessions are still remembered, waiters were seen.
    expect(sum((b) => b.sessions)).toBeGreaterThanOrEqual(PER_WAVE);
    expect(sum((b) => b.outcomes)).toBeGreaterThan(0);
    expect(waitersSeen).toBeGreaterThan(0);
    await busy.release();
    await holder.close();
    opened.clients.length = 0;

    // Gone: connections at once, waiters and leases when their time is up, outcomes and sessions
    // a window after their last use. Timers: the peer connections' (idle checks) as before.
    await eventually(
      () =>
        cluster.nodeIds.every((id) => {
          const b = cluster.node(id).bookkeeping();
          return (
            b.clientConnections === 0 &&
            b.lockWaiters === 0 &&
            b.locks === 0 &&
            b.outcomes === 0 &&
            b.sessions === 0 &&
            b.forwards === 0 &&
            b.replications === 0 &&
            b.topologyWaiters === 0 &&
            b.peerConnections <= cluster.nodeIds.length - 1 &&
            b.timeouts <= b.peerConnections
          );
        }),
      WINDOW + 10_000,
      'every node back to idle',
      () => bookkeeping(cluster),
    );
  });
});

describe('peers that restart, a lease that lapses', () => {
  it('one peer link and connection per other node, and no promise kept once run out', async () => {
    // A lapse of the lease (renewal older than leaseMs - leaseMarginMs) well before the node is
    // declared gone (leaseMs without a renewal).
    const cluster = await start({ nodes: 3, backups: 1, partitions: 64, leaseMs: 2000, leaseMarginMs: 1000 });
    const client = await connectClient(cluster.endpoints);
    opened.clients.push(client);
    const cache = client.cache<string, number>('load');
    let stop = false;
    let acked = 0;
    const load = Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          // Progress is what counts here; a write failing would be another test's business.
          if (await cache.put(`k${w}-${i % 50}`, i).then(() => true, () => false)) acked++;
        }
      }),
    );
    const progress = async (what: string): Promise<void> => {
      const target = acked + 50;
      await eventually(() => acked >= target, 20_000, what, () => acked);
    };

    try {
      await progress('writes replicated between all three');
      const n1 = (): GridNode => cluster.node('node-1');
      let maxHeld = 0;
      for (const [peer, how] of [
        ['node-2', 'kill'],
        ['node-3', 'stop'],
      ] as const) {
        if (how === 'kill') await cluster.kill(peer);
        else await cluster.stopNode(peer);
        await cluster.restart(peer); // a new epoch
        await cluster.waitForStable(20_000);
        await progress(`writes after ${peer} came back`);
        // node-1 freezes until its lease lapses, then asks its peers for promises to serve on.
        const epoch = n1().epoch;
        cluster.hang('node-1');
        await eventually(() => !n1().leaseValid(), 5000, 'the lease of node-1 to lapse', () => n1().bookkeeping());
        cluster.resume('node-1');
        await eventually(() => n1().bookkeeping().promisesHeld > 0 || n1().epoch !== epoch, 5000, 'promises held by node-1', () => n1().bookkeeping());
        maxHeld = Math.max(maxHeld, n1().bookkeeping().promisesHeld);
        // Once its lease is trusted again, the promises run out and are forgotten.
        await eventually(() => n1().leaseValid() && n1().bookkeeping().promisesHeld === 0, 10_000, 'the promises of node-1 forgotten', () => n1().bookkeeping());
        await progress('writes after the lapse');
      }
      expect(maxHeld).toBeGreaterThan(0);
    } finally {
      stop = true;
      await load;
    }

    await eventually(
      () =>
        cluster.nodeIds.every((id) => {
          const b = cluster.node(id).bookkeeping();
          return (
            b.peerLinks === 2 &&
            b.peerConnections === 2 &&
            b.promisesHeld === 0 &&
            b.forwards === 0 &&
            b.replications === 0 &&
            b.lockWaiters === 0 &&
            b.topologyWaiters === 0 &&
            b.pulls === 0 &&
            b.deferred === 0 &&
            b.timeouts <= b.peerConnections + b.clientConnections + b.outgoingSnapshots
          );
        }),
      10_000,
      'every node back to idle',
      () => bookkeeping(cluster),
    );
  });
});
