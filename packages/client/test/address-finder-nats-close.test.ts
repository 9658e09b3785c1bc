/**
 * natsAddressFinder given a shared NATS connection: close() leaves nothing on that connection —
 * its status iterator (which watches for reconnects) ends at once, not at the connection's next
 * status event. Against a real nats-server and a real grid node announcing itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { natsAddressFinder } from '@gridlink/client/nats';
import { NatsControlPlane, startNode, type GridNode } from '@gridlink/node';
import { NatsCluster } from '@gridlink/testkit';
import { rejection, waitFor } from './helpers/wait.js';

let nats: NatsCluster;
let plane: NatsControlPlane | undefined;
let node: GridNode | undefined;

beforeAll(async () => {
  nats = await NatsCluster.start({ servers: 1 });
  plane = await NatsControlPlane.connect({ servers: nats.urls, bucket: 'finder-close', connectTimeoutMs: 10_000 });
  node = await startNode({ id: 'a', controlPlane: plane, port: 0, partitions: 16, backups: 0 });
});

afterAll(async () => {
  await node?.stop().catch(() => undefined);
  await plane?.close();
  await nats?.close();
});

/**
 * The status iterators open on `nc`. nats.js keeps them in its protocol handler's `listeners`
 * (removed when an iterator ends); no public accessor counts them.
 */
function statusIterators(nc: NatsConnection): number {
  const listeners = (nc as unknown as { protocol?: { listeners?: unknown[] } }).protocol?.listeners;
  if (!Array.isArray(listeners)) throw new Error('this nats.js keeps no protocol.listeners: the test needs another way to count status iterators');
  return listeners.length;
}

describe('natsAddressFinder on a shared connection', () => {
  it('close() ends its status iterator at once, with no status event on the connection', async () => {
    const nc = await connect({ servers: nats.urls });
    try {
      const base = statusIterators(nc);
      const finder = natsAddressFinder({ servers: [], connection: nc, bucket: 'finder-close' });
      expect(await finder.resolve()).toEqual([`127.0.0.1:${node?.port}`]);
      // The finder's own, and the KV watch's (its consumer re-subscribes on a reconnect).
      expect(statusIterators(nc)).toBeGreaterThan(base);
      await finder.close();
      // Polled only for the iterator's own microtasks: no status event comes on this connection.
      await waitFor(() => statusIterators(nc) === base, 1000, `the finder's status iterator gone (${statusIterators(nc)} open, ${base} before)`);
      // The shared connection is the caller's: still open and usable.
      expect(nc.isClosed()).toBe(false);
      await nc.flush();
    } finally {
      await nc.close();
    }
  });

  it('close() while the first resolve is still starting: the resolve rejects at once (not at its timeout), and no status iterator is left', async () => {
    const nc = await connect({ servers: nats.urls });
    try {
      const base = statusIterators(nc);
      const finder = natsAddressFinder({ servers: [], connection: nc, bucket: 'finder-close', timeoutMs: 60_000 });
      const resolving = finder.resolve();
      // Judged after close(): handled from now on, so its rejection is not reported as unhandled meanwhile.
      resolving.catch(() => undefined);
      await finder.close();
      // A bound on a hang, far below the 60 s timeout the start would otherwise wait for.
      await rejection(resolving, 10_000);
      await waitFor(() => statusIterators(nc) === base, 1000, `no status iterator left (${statusIterators(nc)} open, ${base} before)`);
    } finally {
      await nc.close();
    }
  });
});
