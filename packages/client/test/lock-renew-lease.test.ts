/**
 * `renew({ leaseMs })` makes the given lease the handle's, for later automatic renewals too
 * (docs/client.md, Locks). On an auto-renewed handle the next automatic renewal must then be due
 * a third of the new lease from the renewal, not where the old lease put it: a lease shortened by
 * hand would otherwise run out before the renewal scheduled for the longer one, and the lock be
 * lost (taken by another client) while its holder asked to keep it. Against a real one-node
 * LocalCluster.
 */
import { describe, expect, it } from 'vitest';
import { type GridError } from '@gridlink/client';
import { oneNodeGrid, perTest } from './helpers/grid.js';
import { waitFor } from './helpers/wait.js';

const grid = oneNodeGrid();
const { connect } = perTest(grid);

describe('renew({ leaseMs }) on an auto-renewed handle', () => {
  it('a shorter lease is renewed on its own schedule: the lock stays held past it, and no other client can take it', async () => {
    const a = await connect();
    const b = await connect();
    // Renewed automatically every 2 s; the lease then shortened to 150 ms by hand.
    const h = await a.lock('renew-shorter').acquire({ leaseMs: 6000, autoRenew: true });
    const lost: GridError[] = [];
    h.onLost((e) => lost.push(e));
    await h.renew({ leaseMs: 150 });
    expect(h.renewals).toBe(1);
    // Several of the new, short leases pass: each is renewed before it runs out.
    await waitFor(() => h.renewals >= 6 || lost.length > 0, 5000, 'automatic renewals of the 150 ms lease');
    expect(lost.map(String)).toEqual([]);
    expect(h.held).toBe(true);
    expect(await b.lock('renew-shorter').tryAcquire({ leaseMs: 5000 })).toBeNull();
    await h.release();
    const other = await b.lock('renew-shorter').tryAcquire({ leaseMs: 5000 });
    expect(other).not.toBeNull();
    await other?.release();
  });

  it('a renewal answered after release() was called schedules nothing', async () => {
    const a = await connect();
    const h = await a.lock('renew-then-release').acquire({ leaseMs: 3000, autoRenew: true });
    const renewing = h.renew({ leaseMs: 3000 });
    const releasing = h.release();
    await Promise.all([renewing.catch(() => undefined), releasing]);
    expect(h.held).toBe(false);
    await waitFor(() => a.bookkeeping().renewals === 0, 2000, 'no automatic renewal scheduled');
  });
});
