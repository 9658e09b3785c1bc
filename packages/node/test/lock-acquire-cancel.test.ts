/**
 * A LOCK_RELEASE of the same session naming the owner of an acquisition still waiting on the
 * primary (with a later seq) ends that wait without a grant: the client sends one when it gave the
 * acquisition up, so the lock is not granted to a holder that no longer exists (docs/node.md,
 * Locks). Nothing else ends it: another session naming the owner, or a release without one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeKey } from '@gridlink/affinity';
import { LocalCluster } from '@gridlink/node';
import { Op } from '@gridlink/protocol';
import { TestConnection } from './helpers/client.js';

describe('a waiting LOCK_ACQUIRE ended by a release naming its owner', () => {
  let cluster: LocalCluster;
  const conns: TestConnection[] = [];
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8 });
  });
  afterAll(async () => {
    for (const c of conns) c.close();
    await cluster?.stop();
  });
  const connect = async (): Promise<TestConnection> => {
    const c = await TestConnection.connect(cluster.endpoints[0]!);
    conns.push(c);
    return c;
  };

  it('the same session naming the owner ends the wait at once; another session, or no owner, does not', async () => {
    const name = encodeKey('cancel-wait');
    const [holder, waiter, stranger] = [await connect(), await connect(), await connect()];
    const held = await holder.call<{ acquired: boolean; token: number }>(Op.LOCK_ACQUIRE, { name, leaseMs: 30_000, waitMs: 0, owner: 'h', seq: 1 });
    expect(held.acquired).toBe(true);
    const waiting = waiter.call<{ acquired: boolean }>(Op.LOCK_ACQUIRE, { name, leaseMs: 30_000, waitMs: 20_000, owner: 'w', seq: 1 });
    // Not the waiter's session, or no owner: nothing ends (both answered: they are recorded).
    await stranger.call(Op.LOCK_RELEASE, { name, token: 0, owner: 'w', seq: 5 });
    await waiter.call(Op.LOCK_RELEASE, { name, token: 0, seq: 2 });
    // The waiter's session naming its owner: answered `acquired: false` well before its waitMs.
    const started = performance.now();
    await waiter.call(Op.LOCK_RELEASE, { name, token: 0, owner: 'w', seq: 3 });
    expect(await waiting).toEqual({ acquired: false });
    expect(performance.now() - started).toBeLessThan(5000);
    // The holder's lock is untouched.
    const renewed = await holder.call<{ renewed: boolean }>(Op.LOCK_RENEW, { name, token: held.token, leaseMs: 30_000, owner: 'h', seq: 2 });
    expect(renewed.renewed).toBe(true);
  });

  it('a waiter not named by the release is granted when the holder releases', async () => {
    const name = encodeKey('cancel-other');
    const [holder, waiter] = [await connect(), await connect()];
    const held = await holder.call<{ acquired: boolean; token: number }>(Op.LOCK_ACQUIRE, { name, leaseMs: 30_000, waitMs: 0, owner: 'h', seq: 1 });
    const waiting = waiter.call<{ acquired: boolean }>(Op.LOCK_ACQUIRE, { name, leaseMs: 30_000, waitMs: 20_000, owner: 'w', seq: 1 });
    // Another owner of the same session: not this acquisition.
    await waiter.call(Op.LOCK_RELEASE, { name, token: 0, owner: 'x', seq: 2 });
    await holder.call(Op.LOCK_RELEASE, { name, token: held.token, owner: 'h', seq: 2 });
    expect((await waiting).acquired).toBe(true);
  });
});
