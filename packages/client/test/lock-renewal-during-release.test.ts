/**
 * An automatic renewal that fails while its holder's release() or putAndRelease() is under way
 * reports no loss (`error` event, `onLost` listeners): either the release takes effect (nothing
 * was lost: the holder gave the lock up), or the lock had been lost before and the release
 * rejects with LockNotHeldError, which tells its caller. Only a release that itself fails (no answer) leaves
 * the handle lost, and the loss reported, as when the renewal's failure came after it.
 *
 * On a real one-node LocalCluster whose node is hung (nothing read or answered until resumed),
 * so that the renewal is in flight when the release is sent and is answered (or gives up) first.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient, GridTimeoutError, LockNotHeldError, type GridClientConfig, type GridError, type LockHandle } from '@gridlink/client';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  cluster: LocalCluster;
  nodeId: string;
  client: GridClient;
  /** What the client reported as a loss: its `error` events and the handle's `onLost` calls, in order. */
  reports: { via: 'error' | 'onLost'; err: GridError }[];
}

async function setup(config: Partial<GridClientConfig> = {}): Promise<Setup> {
  // A membership lease (`leaseMs` of the node) longer than the hangs: a node resumed after its
  // own lease ran out refuses every request (NOT_READY) until it renewed it, and the client's
  // retries of the renewal and of the release would then reach it in no set order.
  const cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8, leaseMs: 30_000 });
  cleanups.push(() => cluster.stop());
  const client = await GridClient.connect({ endpoints: cluster.endpoints, connectTimeout: 3000, ...config });
  const reports: Setup['reports'] = [];
  client.on('error', (err) => reports.push({ via: 'error', err }));
  cleanups.push(() => client.close());
  return { cluster, nodeId: cluster.nodeIds[0]!, client, reports };
}

type Release = 'release' | 'putAndRelease';

const CACHE = 'lock-renewal-during-release';

/** The holder's release of `h` by `how` (putAndRelease stores 1 under the lock's key). */
function release(s: Setup, h: LockHandle, how: Release, timeoutMs?: number): Promise<void> {
  const o = timeoutMs === undefined ? {} : { timeoutMs };
  return how === 'release' ? h.release(o) : h.putAndRelease(s.client.cache<string, number>(CACHE), 1, o);
}

/** Acquires `key` with automatic renewal, hangs the node, and waits until the first renewal has gone out to it. */
async function renewalInFlight(s: Setup, key: string, leaseMs: number): Promise<LockHandle> {
  const h = await s.client.lock(key).acquire({ leaseMs, autoRenew: true });
  h.onLost((err) => s.reports.push({ via: 'onLost', err }));
  s.cluster.hang(s.nodeId);
  cleanups.push(async () => s.cluster.resume(s.nodeId));
  // The renewal's schedule leaves the table when it is sent.
  await waitFor(() => s.client.bookkeeping().renewals === 0, 5000, 'the renewal sent to the hung node');
  return h;
}

describe('a renewal that fails while the holder releases the lock', () => {
  it.each<Release>(['release', 'putAndRelease'])('answered renewed: false (the lease had run out) reports no loss: %s rejects with LockNotHeldError', async (how) => {
    const s = await setup();
    const key = `renewal-false-mid-${how}`;
    const h = await renewalInFlight(s, key, 600);
    const outcome = release(s, h, how).then(
      () => null,
      (e: unknown) => e,
    );
    // The lease runs out on the node (its clock counts whole milliseconds: 2 ms past the client's
    // bound, which the node's lease never outlasts); then it reads the renewal (renewed: false)
    // and the release (released: false), and answers them in that order.
    await waitFor(() => performance.now() > h.leaseEnd + 2, 5000, 'the lease to run out');
    s.cluster.resume(s.nodeId);
    const err = await outcome;
    expect(err).toBeInstanceOf(LockNotHeldError);
    expect(h.held).toBe(false);
    await expect(h.renew()).rejects.toBeInstanceOf(LockNotHeldError);
    // The holder learnt it from its release; nothing else reported a loss (before, the renewal's
    // answer emitted `error` and called the `onLost` listeners as well).
    expect(s.reports).toEqual([]);
    expect(h.signal.aborted).toBe(true);
    expect(await s.client.cache<string, number>(CACHE).get(key)).toBeUndefined();
  });

  it.each<Release>(['release', 'putAndRelease'])('failing (its deadline passed on the hung node) reports no loss when %s then succeeds', async (how) => {
    // Short deadlines: the renewal (sent with the client's operationTimeout) gives up while the
    // release (with its own, longer one) is still retried.
    const s = await setup({ operationTimeout: 300, requestTimeout: 300 });
    const key = `renewal-timeout-mid-${how}`;
    const h = await renewalInFlight(s, key, 1500);
    const failedBefore = s.client.stats().failedOperations;
    const outcome = release(s, h, how, 10_000).then(
      () => null,
      (e: unknown) => e,
    );
    await waitFor(() => s.client.stats().failedOperations > failedBefore, 5000, 'the renewal to fail');
    // Before, the renewal's failure was reported as a loss right here.
    expect(s.reports).toEqual([]);
    expect(h.held).toBe(true);
    s.cluster.resume(s.nodeId);
    expect(await outcome).toBeNull();
    expect(h.held).toBe(false);
    expect(s.reports).toEqual([]);
    // The signal tells of a release, not of a loss.
    expect(h.signal.reason).toBeInstanceOf(LockNotHeldError);
    expect((h.signal.reason as Error).message).toBe('lock released');
    expect(await s.client.cache<string, number>(CACHE).get(key)).toBe(how === 'putAndRelease' ? 1 : undefined);
  });

  it('failing, then the release failing too, leaves the handle lost and reports the loss as before', async () => {
    const s = await setup({ operationTimeout: 300, requestTimeout: 300 });
    const h = await renewalInFlight(s, 'renewal-timeout-release-fails', 1500);
    const order: string[] = [];
    h.onLost(() => order.push('lost'));
    const outcome = release(s, h, 'release', 600).then(
      () => null,
      (e: unknown) => {
        order.push('release rejected');
        return e;
      },
    );
    expect(await outcome).toBeInstanceOf(GridTimeoutError);
    // The renewal's failure, reported once through each channel, before the release rejected.
    expect(order).toEqual(['lost', 'release rejected']);
    expect(s.reports.map((r) => r.via).sort()).toEqual(['error', 'onLost']);
    const lost = s.reports[0]!.err;
    expect(lost).toBeInstanceOf(GridTimeoutError);
    expect(lost.message).toMatch(/^LOCK_RENEW /);
    expect(s.reports[1]!.err).toBe(lost);
    expect(h.held).toBe(false);
    expect(h.signal.reason).toBe(lost);
    const renewed = h.renew().then(
      () => null,
      (e: unknown) => e,
    );
    const notHeld = await renewed;
    expect(notHeld).toBeInstanceOf(LockNotHeldError);
    expect((notHeld as LockNotHeldError).cause).toBe(lost);
  });
});
