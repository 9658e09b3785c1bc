/**
 * natsAddressFinder given a shared NATS connection: close() leaves nothing on that connection —
 * its status iterator (which watches for reconnects) ends at once, not at the connection's next
 * status event. Against a real nats-server and a real grid node announcing itself.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { natsAddressFinder } from '@gridlink/client/nats';
import { NatsControlPlane, startNode, type GridNode } from '@gridlink/node';
import { NatsCluster, SilentServer } from '@gridlink/testkit';
import { rejection, settle, waitFor } from './helpers/wait.js';

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
      // No servers: with a shared connection they are not needed (nor required by the type).
      const finder = natsAddressFinder({ connection: nc, bucket: 'finder-close' });
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

  /**
   * Holds the finder's first snapshot (its `kv.keys()`) until `release()`: the KV bucket the
   * finder opens is the real one, its key listing is made to wait for the test.
   */
  function holdSnapshot(): { reached: Promise<void>; release: () => void; restore: () => void } {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let reach!: () => void;
    const reached = new Promise<void>((r) => (reach = r));
    const proto = Kvm.prototype as unknown as { open: (this: Kvm, ...args: Parameters<Kvm['open']>) => Promise<KV> };
    const open = proto.open;
    const spy = vi.spyOn(Kvm.prototype, 'open').mockImplementation(async function (this: Kvm, ...args: Parameters<Kvm['open']>): Promise<KV> {
      const kv = await open.apply(this, args);
      const keys = kv.keys.bind(kv);
      kv.keys = async (...k: Parameters<KV['keys']>) => {
        reach();
        await gate;
        return keys(...k);
      };
      return kv;
    });
    return { reached, release, restore: () => spy.mockRestore() };
  }

  /** A finder on a shared connection whose first snapshot is held, and its first resolve(). */
  async function startHeld(): Promise<{ nc: NatsConnection; held: ReturnType<typeof holdSnapshot>; finder: ReturnType<typeof natsAddressFinder>; resolving: Promise<string[]> }> {
    const nc = await connect({ servers: nats.urls });
    const held = holdSnapshot();
    const finder = natsAddressFinder({ connection: nc, bucket: 'finder-close', timeoutMs: 60_000 });
    const resolving = finder.resolve();
    resolving.catch(() => undefined);
    return { nc, held, finder, resolving };
  }

  it('close() during the first snapshot: the resolve rejects at once, and never answers the endpoints', async () => {
    const { nc, held, finder, resolving } = await startHeld();
    try {
      await held.reached;
      await finder.close();
      // Rejected while the snapshot is still held: close() does not wait for the start to end.
      const early = await settle(resolving, 2000);
      held.release();
      expect(early, 'resolve() still pending after close()').not.toBe('pending');
      expect(early !== 'pending' && early.ok, 'resolve() answered after close()').toBe(false);
      expect(String((early as { error: unknown }).error)).toMatch(/closed/);
    } finally {
      held.release();
      held.restore();
      await nc.close();
    }
  });

  it('close() as the first snapshot completes: the resolve rejects rather than answering the endpoints', async () => {
    const { nc, held, finder, resolving } = await startHeld();
    try {
      await held.reached;
      // The snapshot goes on in the same turn as close(): nothing stops it now but `closed`.
      held.release();
      await finder.close();
      expect(String(await rejection(resolving, 10_000))).toMatch(/closed/);
    } finally {
      held.release();
      held.restore();
      await nc.close();
    }
  });
});

describe('natsAddressFinder with a connection of its own', () => {
  it('close() while it is still connecting to NATS: the resolve rejects at once, not when the connect ends', async () => {
    // Accepts the TCP connection and never sends NATS's INFO: the connect hangs until its timeout.
    const silent = await SilentServer.start();
    try {
      const finder = natsAddressFinder({ servers: `nats://127.0.0.1:${silent.port}`, timeoutMs: 60_000 });
      const resolving = finder.resolve();
      resolving.catch(() => undefined);
      await waitFor(() => silent.connections > 0, 5000, 'the finder connecting');
      await finder.close();
      const r = await settle(resolving, 2000);
      expect(r, 'resolve() still pending after close() (waiting for the connect)').not.toBe('pending');
      expect(r !== 'pending' && r.ok).toBe(false);
      expect(String((r as { error: unknown }).error)).toMatch(/closed/);
    } finally {
      // Ends the hung connect (the connection is refused): the start fails and leaves nothing open.
      await silent.close();
    }
  });
});
