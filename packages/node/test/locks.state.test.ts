/**
 * Lock + read-your-state through the real client against a real LocalCluster (ADR 0036):
 * `lock.attemptGet(cache)` takes a lock and reads the entry under the lock's key in one round
 * trip; `handle.putAndRelease(cache, value)` stores it and frees the lock in one, fenced by the
 * token. Exactly-once across a kill of the lock's primary mid-operation; a stale holder stores
 * nothing.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { encodeKey, partitionOf, partitionOfBytes } from '@gridlink/affinity';
import { LockNotHeldError, type GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { Op } from '@gridlink/protocol';
import { TestConnection } from './helpers/client.js';
import { connectClient } from './helpers/grid.js';

const P = 16;

describe('lock + read-your-state', () => {
  let cluster: LocalCluster | undefined;
  let clients: GridClient[] = [];
  let raws: TestConnection[] = [];
  afterEach(async () => {
    await Promise.all(clients.map((c) => c.close()));
    clients = [];
    for (const r of raws) r.close();
    raws = [];
    await cluster?.stop();
    cluster = undefined;
  });

  async function client(c: LocalCluster): Promise<GridClient> {
    const cl = await connectClient(c.endpoints);
    clients.push(cl);
    return cl;
  }

  it('acquire-get sees what the last holder stored; put-release stores and frees in one step', async () => {
    const c = await LocalCluster.start({ nodes: 2, backups: 1, partitions: P });
    cluster = c;
    const a = await client(c);
    const b = await client(c);
    const recA = a.cache<string, { n: number }>('state');
    const recB = b.cache<string, { n: number }>('state');

    const first = await a.lock('job:1').attemptGet(recA, { leaseMs: 10_000 });
    expect(first.acquired).toBe(true);
    expect(first.value).toBeUndefined();
    if (!first.acquired) return;
    // Held: another client (or another handle of the same client) is refused but sees the state.
    const refused = await b.lock('job:1').attemptGet(recB, { leaseMs: 10_000 });
    expect(refused).toMatchObject({ acquired: false, value: undefined });
    expect((await a.lock('job:1').attemptGet(recA)).acquired).toBe(false);

    // Bad options are typed errors naming the field, before anything is sent.
    await expect(a.lock('job:1').attemptGet(recA, { leaseMs: 0 })).rejects.toMatchObject({ code: 'GRID_CONFIG', field: 'leaseMs' });
    await expect(first.handle.putAndRelease(recA, { n: 0 }, { ttlMs: -1 })).rejects.toMatchObject({ code: 'GRID_CONFIG', field: 'ttlMs' });
    expect(first.handle.held).toBe(true);
    await first.handle.putAndRelease(recA, { n: 1 }, { ttlMs: 60_000 });
    expect(first.handle.held).toBe(false);
    expect(await recB.get('job:1')).toEqual({ n: 1 });
    const second = await b.lock('job:1').attemptGet(recB);
    expect(second).toMatchObject({ acquired: true, value: { n: 1 } });
    if (!second.acquired) return;
    expect(second.handle.fencingToken).toBeGreaterThan(first.handle.fencingToken);
    // The plain lock API sees the same lock (its name is the key).
    expect(await a.lock('job:1').tryAcquire()).toBeNull();
    await second.handle.release();
    // Released twice: nothing stored.
    await expect(second.handle.putAndRelease(recB, { n: 9 })).rejects.toBeInstanceOf(LockNotHeldError);
    expect(await recA.get('job:1')).toEqual({ n: 1 });
    // The lock and the entry share one partition: the name's bytes are the key's bytes.
    expect(partitionOfBytes(encodeKey('job:1'), P)).toBe(partitionOf('job:1', P));
  });

  it('ifAbsent: a stored entry comes back in one read without taking the lock; an absent one is locked', async () => {
    const c = await LocalCluster.start({ nodes: 2, backups: 1, partitions: P });
    cluster = c;
    const a = await client(c);
    const rec = a.cache<string, { n: number }>('state');
    const first = await a.lock('job:2').attemptGet(rec, { ifAbsent: true });
    expect(first).toMatchObject({ acquired: true, value: undefined });
    if (!first.acquired) return;
    // Held and still absent: refused as without the flag.
    expect(await a.lock('job:2').attemptGet(rec, { ifAbsent: true })).toMatchObject({ acquired: false, value: undefined });
    await first.handle.putAndRelease(rec, { n: 7 });
    const ops = a.stats().operations;
    const read = await a.lock('job:2').attemptGet(rec, { ifAbsent: true });
    expect(read).toMatchObject({ acquired: false, value: { n: 7 } });
    expect(a.stats().operations - ops).toBe(1);
    // The lock was left free: a plain acquisition gets it, with a larger token than the first.
    const h = await a.lock('job:2').tryAcquire();
    expect(h).not.toBeNull();
    expect(h!.fencingToken).toBeGreaterThan(first.handle.fencingToken);
    // Held and present: the value, and how long the holder still has.
    const busy = await a.lock('job:2').attemptGet(rec, { ifAbsent: true });
    expect(busy).toMatchObject({ acquired: false, value: { n: 7 } });
    expect(busy.acquired === false && busy.heldForMs).toBeGreaterThan(0);
    await h!.release();
    await expect(a.lock('job:2').attemptGet(rec, { ifAbsent: 'yes' as never })).rejects.toMatchObject({ code: 'GRID_CONFIG', field: 'ifAbsent' });
  });

  it('ifAbsent reads behind the read barrier: an entry still replicating is not answered before it is committed', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const key = 'job:barrier';
    const p = partitionOf(key, P);
    const [primary, backup] = c.topology().owners[p] as [string, string];
    // The client talks to the primary only, so it never waits on the frozen backup itself.
    // A request timeout longer than the stall: each request is answered by the primary itself.
    const a = await connectClient([c.endpointOf(primary)], { requestTimeout: 10_000 });
    clients.push(a);
    const rec = a.cache<string, string>('state');
    const held = await a.lock(key).attemptGet(rec, { leaseMs: 30_000 });
    if (!held.acquired) throw new Error('not acquired');
    c.hang(backup);
    // The store waits for the frozen backup (until the topology drops it). The read goes out in
    // the same turn on the same connection, so the primary applies the store first: the read
    // then finds the entry applied but not committed, and must wait behind it, not answer it.
    const stored = held.handle.putAndRelease(rec, 'done');
    let backupDroppedWhenRead: boolean | undefined;
    const read = a
      .lock(key)
      .attemptGet(rec, { ifAbsent: true })
      .then((r) => {
        // Answered only once the store is committed, which here takes the backup being dropped.
        backupDroppedWhenRead = c.topology().members[backup] === undefined;
        return r;
      });
    const [, r] = await Promise.all([stored, read]);
    expect(backupDroppedWhenRead).toBe(true);
    expect(r).toMatchObject({ acquired: false, value: 'done' });
    c.resume(backup);
  });

  it('a stale holder (lease ran out, another took the lock) stores nothing', async () => {
    const c = await LocalCluster.start({ nodes: 2, backups: 1, partitions: P });
    cluster = c;
    const a = await client(c);
    const b = await client(c);
    const recA = a.cache<string, string>('state');
    const recB = b.cache<string, string>('state');
    const stale = await a.lock('k').attemptGet(recA, { leaseMs: 150 });
    if (!stale.acquired) throw new Error('not acquired');
    // Wait (polling, with a deadline) until the lease has run out and B holds the lock.
    const deadline = Date.now() + 5000;
    let fresh = await b.lock('k').attemptGet(recB, { leaseMs: 10_000 });
    while (!fresh.acquired) {
      if (Date.now() > deadline) throw new Error('lease never ran out');
      await new Promise((r) => setTimeout(r, 20));
      fresh = await b.lock('k').attemptGet(recB, { leaseMs: 10_000 });
    }
    await expect(stale.handle.putAndRelease(recA, 'stale')).rejects.toBeInstanceOf(LockNotHeldError);
    expect(await recB.get('k')).toBeUndefined();
    expect(await b.lock('k').tryAcquire()).toBeNull(); // B still holds it
    await fresh.handle.putAndRelease(recB, 'fresh');
    expect(await recA.get('k')).toBe('fresh');
    // On the wire, a wrong token is `released: false` and nothing changes.
    const raw = await TestConnection.connect(c.endpoints[0]!);
    raws.push(raw);
    const r = await raw.call<{ released: boolean }>(Op.LOCK_PUT_RELEASE, { cache: 'state', key: encodeKey('k'), seq: 1, token: fresh.handle.fencingToken, value: new Uint8Array([1]) });
    expect(r).toEqual({ released: false });
    expect(await recA.get('k')).toBe('fresh');
  });

  it('exactly once across kills of the lock primary mid-operation', async () => {
    const c = await LocalCluster.start({ nodes: 3, backups: 1, partitions: P, autoAdjust: { enabled: false } });
    cluster = c;
    const a = await client(c);
    const b = await client(c);
    const recA = a.cache<string, number>('state');
    const recB = b.cache<string, number>('state');
    for (let round = 1; round <= 2; round++) {
      const key = `mid-${round}`;
      let lastToken = 0; // tokens grow per lock key
      const primary = (): string => c.primaryOf(partitionOf(key, P))!;
      // Acquire-get in flight while its primary dies: it completes once (a retry on the new
      // primary returns the first outcome, not "held by another" for its own acquisition).
      let victim = primary();
      const acquiring = a.lock(key).attemptGet(recA, { leaseMs: 30_000 });
      await c.kill(victim);
      const got = await acquiring;
      expect(got.acquired).toBe(true);
      if (!got.acquired) return;
      expect(got.handle.fencingToken).toBeGreaterThan(lastToken);
      lastToken = got.handle.fencingToken;
      // The lock survived: B is refused.
      expect((await b.lock(key).attemptGet(recB)).acquired).toBe(false);
      await c.restart(victim);
      await c.waitForStable();

      // Put-release in flight while the (possibly new) primary dies: applied once, answered
      // released (a second application would find the lock free and answer released: false).
      victim = primary();
      const storing = got.handle.putAndRelease(recA, round, { ttlMs: 60_000 });
      await c.kill(victim);
      await storing;
      const next = await b.lock(key).attemptGet(recB);
      expect(next).toMatchObject({ acquired: true, value: round });
      if (next.acquired) {
        expect(next.handle.fencingToken).toBeGreaterThan(lastToken);
        lastToken = next.handle.fencingToken;
        await next.handle.release();
      }
      await c.restart(victim);
      await c.waitForStable();
    }
  });
});
