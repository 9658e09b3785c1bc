/**
 * A LOCK_ACQUIRE sent to a node that is not the lock's primary is forwarded, and the forward waits
 * for the primary's answer as long as the acquisition may wait there (waitMs) plus the forward
 * timeout. With waitMs near its longest (2^31 − 1 ms) that sum is past the longest Node.js timer,
 * which then fires after 1 ms: the forwarded acquisition failed at once instead of waiting.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { LocalCluster } from '@gridlink/node';
import { MAX_LOCK_DURATION_MS, Op, ResponseFlag } from '@gridlink/protocol';
import { TestConnection } from './helpers/client.js';

describe('a forwarded LOCK_ACQUIRE with the longest waitMs', () => {
  let cluster: LocalCluster | undefined;
  const conns: TestConnection[] = [];
  afterEach(async () => {
    for (const c of conns.splice(0)) c.close();
    await cluster?.stop();
    cluster = undefined;
  });

  it('waits at the primary until the holder releases, then is granted (it failed at once: the forward timer overflowed)', async () => {
    const P = 8;
    const c = await LocalCluster.start({ nodes: 2, backups: 0, partitions: P });
    cluster = c;
    const name = encodeKey('long-wait');
    const primary = c.nodeIds.indexOf(c.primaryOf(partitionOf('long-wait', P))!);
    const other = 1 - primary;
    const holder = await TestConnection.connect(c.endpoints[primary]!);
    const waiter = await TestConnection.connect(c.endpoints[other]!);
    conns.push(holder, waiter);
    const held = await holder.call<{ acquired: boolean; token: number }>(Op.LOCK_ACQUIRE, { name, leaseMs: 60_000, waitMs: 0, owner: 'h', seq: 1 });
    expect(held.acquired).toBe(true);

    let settled = false;
    const waiting = waiter.request(Op.LOCK_ACQUIRE, { name, leaseMs: 60_000, waitMs: MAX_LOCK_DURATION_MS, owner: 'w', seq: 1 }, 0, 60_000);
    waiting.then(
      () => (settled = true),
      () => (settled = true),
    );
    // Forwarded round trips through the same two nodes, after it: the lock is still held, and the
    // waiting acquisition is still waiting (a forward timed out after 1 ms has answered by now).
    for (let seq = 2; seq <= 4; seq++) {
      const probe = await waiter.request(Op.LOCK_TRY_ACQUIRE, { name, leaseMs: 1000, owner: 'probe', seq });
      expect(probe.flags & ResponseFlag.FORWARDED).toBe(ResponseFlag.FORWARDED);
      expect(probe.payload).toMatchObject({ acquired: false });
    }
    expect(settled).toBe(false);

    await holder.call(Op.LOCK_RELEASE, { name, token: held.token, owner: 'h', seq: 2 });
    const granted = await waiting;
    expect(granted.flags & ResponseFlag.ERROR).toBe(0);
    expect(granted.flags & ResponseFlag.FORWARDED).toBe(ResponseFlag.FORWARDED);
    expect(granted.payload).toMatchObject({ acquired: true });
    expect((granted.payload as { token: number }).token).toBeGreaterThan(held.token);
  });
});
