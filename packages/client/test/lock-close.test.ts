/**
 * close() and the locks a client holds: every held lock is released before the connections
 * close (best effort, within a short deadline), so other clients need not wait out the lease;
 * a handle's own release afterwards is harmless, and an acquisition that lands while the client
 * closes is released too. Against a real one-node LocalCluster (a scripted node only for a
 * release that is never answered).
 */
import { describe, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { GridClient, GridClosedError, type LockHandle } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { oneNodeGrid, perTest } from './helpers/grid.js';
import { waitFor } from './helpers/wait.js';

const grid = oneNodeGrid();

/** The lease of the locks closed over: far longer than any wait in these tests. */
const LONG_LEASE = 30_000;
/** How soon another client must get a lock the closing client held (a tenth of the lease). */
const PROMPTLY = 3000;

const { cleanups, connect } = perTest(grid);

/** `client` takes the lock on `key` by polling tryAcquire, within PROMPTLY (far below LONG_LEASE). */
async function takenPromptly(client: GridClient, key: string): Promise<LockHandle> {
  let handle: LockHandle | null = null;
  await waitFor(async () => (handle = await client.lock(key).tryAcquire({ leaseMs: 5000 })) !== null, PROMPTLY, `another client to get ${key}`);
  return handle as unknown as LockHandle;
}

/** Locks held on the grid's node. */
function nodeLocks(): number {
  return grid.cluster.nodeIds.reduce((n, id) => n + grid.cluster.node(id).bookkeeping().locks, 0);
}

describe('close() releases the locks the client holds', () => {
  it('close() while withLock runs: another client gets the lock at once; the callback finishing later releases nothing and withLock rejects with GridClosedError', async () => {
    const a = await connect();
    const b = await connect();
    let entered!: (h: LockHandle) => void;
    const inside = new Promise<LockHandle>((r) => (entered = r));
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    const run = a.withLock(
      'wl',
      async (h) => {
        entered(h);
        await gate;
        return 'done';
      },
      { leaseMs: LONG_LEASE },
    );
    const outcome = run.then(
      (v) => ({ ok: true as const, v }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    const h = await inside;
    await a.close();
    expect(h.held).toBe(false);
    expect(h.signal.aborted).toBe(true);
    expect(h.signal.reason).toBeInstanceOf(GridClosedError);

    const hb = await takenPromptly(b, 'wl');
    const before = nodeLocks();
    finish();
    const r = await outcome;
    expect(r.ok).toBe(false);
    expect(r.ok ? undefined : r.e).toBeInstanceOf(GridClosedError);
    // The callback's release (withLock's) sent nothing: b still holds its lock.
    await expect(h.release()).resolves.toBeUndefined();
    expect(hb.held).toBe(true);
    expect(nodeLocks()).toBe(before);
    await hb.release();
  });

  it('every held handle is released: acquire, attempt, attemptGet, auto-renewed, and one dropped without a reference', async () => {
    const a = await connect();
    const b = await connect();
    const kept: LockHandle[] = [];
    kept.push(await a.lock('k-acquire').acquire({ leaseMs: LONG_LEASE }));
    const at = await a.lock('k-attempt').attempt({ leaseMs: LONG_LEASE });
    if (!at.acquired) throw new Error('k-attempt not acquired');
    kept.push(at.handle);
    const ag = await a.lock('k-attempt-get').attemptGet(a.cache('lock-close'), { leaseMs: LONG_LEASE });
    if (!ag.acquired) throw new Error('k-attempt-get not acquired');
    kept.push(ag.handle);
    kept.push(await a.lock('k-renewed').acquire({ leaseMs: LONG_LEASE, autoRenew: true }));
    // Taken and dropped: only the client still knows of it.
    expect(await a.lock('k-dropped').tryAcquire({ leaseMs: LONG_LEASE, autoRenew: true })).not.toBeNull();
    expect(nodeLocks()).toBe(5);

    await a.close();
    expect(kept.map((h) => h.held)).toEqual([false, false, false, false]);
    expect(a.bookkeeping().renewals).toBe(0);
    for (const key of ['k-acquire', 'k-attempt', 'k-attempt-get', 'k-renewed', 'k-dropped']) await (await takenPromptly(b, key)).release();
    expect(nodeLocks()).toBe(0);
  });

  it('an acquisition that lands while the client closes is released, and rejects with GridClosedError', async () => {
    const a = await connect();
    const b = await connect();
    const held = await b.lock('k-late').acquire({ leaseMs: LONG_LEASE });
    // a waits for the lock b holds; close() waits for that operation to settle.
    const acquiring = a.lock('k-late').acquire({ leaseMs: LONG_LEASE, waitMs: 20_000 });
    const outcome = acquiring.then(
      (h) => ({ ok: true as const, h }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    const closing = a.close();
    await held.release();
    await closing;
    const r = await outcome;
    expect(r.ok ? r.h : r.e).toBeInstanceOf(GridClosedError);
    await (await takenPromptly(b, 'k-late')).release();
  });

  it('after close a handle is not held: release resolves without sending, renew and putAndRelease reject with GridClosedError', async () => {
    const a = await connect();
    const h = await a.lock('k-after').acquire({ leaseMs: LONG_LEASE, autoRenew: true });
    const cache = a.cache<string, number>('lock-close');
    await a.close();
    expect(h.held).toBe(false);
    await expect(h.release()).resolves.toBeUndefined();
    await expect(h.renew()).rejects.toBeInstanceOf(GridClosedError);
    await expect(h.putAndRelease(cache, 1)).rejects.toBeInstanceOf(GridClosedError);
    expect(nodeLocks()).toBe(0);
  });

  it('a release the node never answers holds close() only for the short release deadline, not the operation timeout', async () => {
    const node = await new ScriptedNode('mute-release', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      if (req.op === Op.LOCK_TRY_ACQUIRE) return { payload: { acquired: true, token: 1 } };
      return undefined; // LOCK_RELEASE: never answered
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint], operationTimeout: 60_000, requestTimeout: 60_000 });
    cleanups.push(() => client.close());
    expect(await client.lock('mute').tryAcquire({ leaseMs: LONG_LEASE })).not.toBeNull();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<'pending'>((r) => (timer = setTimeout(() => r('pending'), 10_000)));
    const closed = await Promise.race([client.close().then(() => 'closed' as const), bound]);
    clearTimeout(timer);
    expect(closed).toBe('closed');
    expect(node.count(Op.LOCK_RELEASE)).toBe(1);
  });
});

describe('the table of held locks', () => {
  it('forgets handles dropped without release once their lease has passed', async () => {
    const a = await connect();
    const base = a.bookkeeping().heldLocks;
    for (let i = 0; i < 100; i++) expect(await a.lock(`dropped-${i}`).tryAcquire({ leaseMs: 50 })).not.toBeNull();
    const kept = await a.lock('kept').acquire({ leaseMs: LONG_LEASE });
    await waitFor(() => a.bookkeeping().heldLocks === base + 1, 5000, `only the kept lock in the table (${a.bookkeeping().heldLocks})`);
    await kept.release();
    expect(a.bookkeeping().heldLocks).toBe(base);
  });
});
