/**
 * Overlapping releases of one lock handle: a `release()` called while a `release()` or
 * `putAndRelease()` of the same handle is under way sends nothing and settles as that call does
 * (the same promise for two releases); a `putAndRelease()` called while a release is under way
 * stores nothing and rejects with LockNotHeldError at once. A second LOCK_RELEASE of the same
 * token used to go out and, finding the lock already free, made the second call reject with
 * LockNotHeldError although the first had released it. Against a real one-node LocalCluster;
 * what was sent is read from the client's own counters (`stats()`).
 */
import { describe, expect, it } from 'vitest';
import { LockNotHeldError, type GridClient } from '@gridlink/client';
import { oneNodeGrid, perTest } from './helpers/grid.js';
import { settle } from './helpers/wait.js';

const grid = oneNodeGrid();
const { connect } = perTest(grid);

/** Operations the client began (its heartbeats and map refreshes are not counted). */
function operations(client: GridClient): number {
  return client.stats().operations;
}

const CACHE = 'lock-release-overlap';

describe('release() while a release of the same handle is under way', () => {
  it('two release() calls at once: one LOCK_RELEASE, both resolve, the lock is free', async () => {
    const a = await connect();
    const b = await connect();
    const h = await a.lock('ro-twice').acquire({ leaseMs: 30_000, autoRenew: true });
    const before = operations(a);
    const first = h.release();
    const second = h.release();
    const outcomes = await Promise.all([settle(first, 5000), settle(second, 5000)]);
    expect(outcomes).toEqual([
      { ok: true, value: undefined },
      { ok: true, value: undefined },
    ]);
    expect(operations(a) - before).toBe(1);
    expect(second).toBe(first);
    expect(h.held).toBe(false);
    // Released for good: another client takes it at once; a later release() sends nothing.
    const taker = await b.lock('ro-twice').tryAcquire({ leaseMs: 30_000 });
    expect(taker).not.toBeNull();
    const after = operations(a);
    await h.release();
    expect(operations(a)).toBe(after);
    expect(taker?.held).toBe(true);
    await taker?.release();
  });

  it('release() while putAndRelease() is in flight: nothing more is sent, the value is stored, both resolve', async () => {
    const a = await connect();
    const cache = a.cache<string, number>(CACHE);
    const h = await a.lock('ro-put').acquire({ leaseMs: 30_000 });
    const before = operations(a);
    const put = h.putAndRelease(cache, 7);
    const rel = h.release();
    const outcomes = await Promise.all([settle(put, 5000), settle(rel, 5000)]);
    expect(outcomes).toEqual([
      { ok: true, value: undefined },
      { ok: true, value: undefined },
    ]);
    expect(operations(a) - before).toBe(1);
    expect(await cache.get('ro-put')).toBe(7);
    expect(await a.lock('ro-put').tryAcquire({ leaseMs: 30_000 }).then((t) => t?.release().then(() => true))).toBe(true);
  });

  it('putAndRelease() while release() is in flight: rejects at once with LockNotHeldError, nothing stored, nothing more sent', async () => {
    const a = await connect();
    const cache = a.cache<string, number>(CACHE);
    const h = await a.lock('ro-rel-put').acquire({ leaseMs: 30_000 });
    const before = operations(a);
    const rel = h.release();
    const err = await h.putAndRelease(cache, 7).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockNotHeldError);
    expect(await settle(rel, 5000)).toEqual({ ok: true, value: undefined });
    expect(operations(a) - before).toBe(1);
    expect(await cache.get('ro-rel-put')).toBeUndefined();
  });

  it('the calls share a failure too, and a release() after the failed one asks the node again', async () => {
    const a = await connect();
    const h = await a.lock('ro-fail').acquire({ leaseMs: 30_000 });
    grid.cluster.hang(grid.cluster.nodeIds[0]!);
    let first: Promise<void>;
    let second: Promise<void>;
    try {
      first = h.release({ timeoutMs: 300 });
      second = h.release();
      const outcomes = await Promise.all([settle(first, 5000), settle(second, 5000)]);
      expect(outcomes.map((o) => (o === 'pending' ? 'pending' : o.ok ? 'resolved' : (o.error as Error).name))).toEqual(['GridTimeoutError', 'GridTimeoutError']);
      expect(second).toBe(first);
    } finally {
      grid.cluster.resume(grid.cluster.nodeIds[0]!);
    }
    // The holder does not know whether it took effect (the node reads it once resumed): a new
    // release() is sent, and either releases or finds the lock already free.
    const before = operations(a);
    const again = await settle(h.release(), 5000);
    expect(again === 'pending' ? 'pending' : again.ok || again.error instanceof LockNotHeldError).toBe(true);
    expect(operations(a) - before).toBe(1);
    expect(h.held).toBe(false);
  });

  it('a release() after a putAndRelease() that failed (no answer) is sent: the holder frees the key itself', async () => {
    const a = await connect();
    const h = await a.lock('ro-put-fail').acquire({ leaseMs: 30_000 });
    grid.cluster.hang(grid.cluster.nodeIds[0]!);
    try {
      const put = await settle(h.putAndRelease(a.cache<string, number>(CACHE), 1, { timeoutMs: 300 }), 5000);
      expect(put === 'pending' ? 'pending' : put.ok ? 'resolved' : (put.error as Error).name).toBe('GridTimeoutError');
    } finally {
      grid.cluster.resume(grid.cluster.nodeIds[0]!);
    }
    const before = operations(a);
    const again = await settle(h.release(), 5000);
    expect(again === 'pending' ? 'pending' : again.ok || again.error instanceof LockNotHeldError).toBe(true);
    expect(operations(a) - before).toBe(1);
    expect(h.held).toBe(false);
  });
});
