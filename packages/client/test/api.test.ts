import { describe, expect, it } from 'vitest';
import { GridClient, GridConfigError, GridClosedError, GridAbortError, LockNotHeldError, LockTimeoutError, bytesSerializer } from '@gridlink/client';
import { encodeKey } from '@gridlink/affinity';
import { gridFixture } from './helpers/grid.js';
import { waitFor } from './helpers/wait.js';

const grid = gridFixture({ nodes: 3, backups: 1, partitions: 64 });

describe('cache API against a 3-node cluster', () => {
  it('put/get round-trips MessagePack values and absent keys read as undefined', async () => {
    const c = grid.client.cache<string, { n: number; s: string[] }>('api-basic');
    await c.put('a', { n: 1, s: ['x'] });
    expect(await c.get('a')).toEqual({ n: 1, s: ['x'] });
    expect(await c.get('missing')).toBeUndefined();
    expect(await c.containsKey('a')).toBe(true);
    expect(await c.containsKey('missing')).toBe(false);
  });

  it('many big values sent in one turn (one writev of the frames as they are) all arrive intact', async () => {
    const c = grid.client.cache<string, Uint8Array>('api-big', { serializer: bytesSerializer });
    const value = (i: number): Uint8Array => Uint8Array.from({ length: 1500 + (i % 7) * 300 }, (_, j) => (i * 31 + j) & 0xff);
    // Issued in one synchronous loop: each connection flushes them together at the end of the turn.
    await Promise.all(Array.from({ length: 300 }, (_, i) => c.put(`big-${i}`, value(i))));
    const got = await Promise.all(Array.from({ length: 300 }, (_, i) => c.get(`big-${i}`)));
    got.forEach((v, i) => expect(v).toEqual(value(i)));
  });

  it('conditional ops, get-and-* and remove', async () => {
    const c = grid.client.cache<string, string>('api-cond');
    expect(await c.putIfAbsent('k', 'v1')).toBe(true);
    expect(await c.putIfAbsent('k', 'v2')).toBe(false);
    expect(await c.replace('k', 'v3')).toBe(true);
    expect(await c.replace('nope', 'v')).toBe(false);
    expect(await c.replaceIfEquals('k', 'wrong', 'v4')).toBe(false);
    expect(await c.replaceIfEquals('k', 'v3', 'v4')).toBe(true);
    expect(await c.getAndPut('k', 'v5')).toBe('v4');
    expect(await c.removeIfEquals('k', 'v4')).toBe(false);
    expect(await c.removeIfEquals('k', 'v5')).toBe(true);
    await c.put('k', 'v6');
    expect(await c.getAndRemove('k')).toBe('v6');
    expect(await c.remove('k')).toBe(false);
  });

  it('increments are counters readable through get', async () => {
    const c = grid.client.cache<string, number>('api-incr');
    expect(await c.increment('n')).toBe(1);
    expect(await c.increment('n', 5)).toBe(6);
    expect(await c.increment('m', 1, { initial: 100 })).toBe(101);
    expect(await c.get('n')).toBe(6);
  });

  it('getAll/putAll split by primary and keep the caller order', async () => {
    const c = grid.client.cache<number, string>('api-bulk');
    const keys = Array.from({ length: 50 }, (_, i) => i);
    await c.putAll(keys.map((k) => [k, `v${k}`] as const));
    expect(await c.getAll([...keys, 999])).toEqual([...keys.map((k) => `v${k}`), undefined]);
    expect(await c.size()).toBe(50);
    const seen: string[] = [];
    for await (const k of c.scan({ batchSize: 7 })) seen.push(Buffer.from(k).toString('hex'));
    expect(seen.sort()).toEqual(keys.map((k) => Buffer.from(encodeKey(k)).toString('hex')).sort());
    await c.clear();
    expect(await c.size()).toBe(0);
  });

  it('composite, bigint and byte keys; Uint8Array values; raw bytes serializer', async () => {
    const c = grid.client.cache('api-keys');
    await c.put(['user', 7n, true], new Uint8Array([1, 2, 3]));
    expect(await c.get(['user', 7n, true])).toEqual(new Uint8Array([1, 2, 3]));
    const raw = grid.client.cache<Uint8Array, Uint8Array>('api-raw', { serializer: bytesSerializer });
    await raw.put(new Uint8Array([9]), new Uint8Array([0xc1]));
    expect(await raw.get(new Uint8Array([9]))).toEqual(new Uint8Array([0xc1]));
  });

  it('TTL per put expires the entry', async () => {
    const c = grid.client.cache<string, string>('api-ttl');
    await c.put('short', 'x', { ttlMs: 50 });
    await c.put('long', 'y');
    const deadline = Date.now() + 5000;
    while ((await c.get('short')) !== undefined) {
      if (Date.now() > deadline) throw new Error('entry did not expire');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await c.get('long')).toBe('y');
  });

  it('typed errors for bad input and aborted operations', async () => {
    const c = grid.client.cache<number, string>('api-err');
    await expect(c.put(NaN, 'x')).rejects.toMatchObject({ code: 'GRID_INVALID_KEY' });
    await expect(c.put(1, 'x', { ttlMs: -1 })).rejects.toBeInstanceOf(GridConfigError);
    const ac = new AbortController();
    ac.abort();
    await expect(c.get(1, { signal: ac.signal })).rejects.toBeInstanceOf(GridAbortError);
  });
});

describe('locks', () => {
  it('tryAcquire returns null while held elsewhere; fencing tokens increase', async () => {
    const a = await grid.client.lock('job-1').tryAcquire({ leaseMs: 5000 });
    expect(a).not.toBeNull();
    const other = await GridClient.connect({ endpoints: grid.cluster.endpoints });
    try {
      expect(await other.lock('job-1').tryAcquire()).toBeNull();
      await a!.renew();
      await a!.release();
      const b = await other.lock('job-1').tryAcquire();
      expect(b!.fencingToken).toBeGreaterThan(a!.fencingToken);
      await b!.release();
    } finally {
      await other.close();
    }
  });

  it('acquire waits for release; a stale token is refused', async () => {
    const h1 = await grid.client.lock('job-2').acquire({ leaseMs: 5000, waitMs: 1000 });
    const other = await GridClient.connect({ endpoints: grid.cluster.endpoints });
    try {
      await expect(other.lock('job-2').acquire({ waitMs: 100 })).rejects.toBeInstanceOf(LockTimeoutError);
      const waiting = other.lock('job-2').acquire({ waitMs: 5000 });
      await h1.release();
      const h2 = await waiting;
      expect(h2.fencingToken).toBeGreaterThan(h1.fencingToken);
      await expect(h1.renew()).rejects.toBeInstanceOf(LockNotHeldError);
      await h2.release();
    } finally {
      await other.close();
    }
  });

  it('autoRenew keeps a short lease alive; withLock releases on success and on throw', async () => {
    const h = await grid.client.lock('job-3').acquire({ leaseMs: 150, autoRenew: true });
    // Renewals keep coming (a third of the lease apart), well past the original lease...
    const t0 = performance.now();
    await waitFor(() => h.renewals >= 4 && performance.now() - t0 > 300, 10_000, 'automatic renewals');
    expect(h.held).toBe(true);
    // ...and the lock is still ours: another client cannot take it.
    const other = await GridClient.connect({ endpoints: grid.cluster.endpoints });
    try {
      expect(await other.lock('job-3').tryAcquire()).toBeNull();
    } finally {
      await other.close();
    }
    await h.release();
    expect(h.held).toBe(false);

    const v = await grid.client.withLock('job-4', async (handle) => handle.fencingToken);
    expect(typeof v).toBe('number');
    await expect(grid.client.withLock('job-4', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    // Released both times: it can be taken at once.
    const again = await grid.client.lock('job-4').tryAcquire();
    expect(again).not.toBeNull();
    await again!.release();
  });
});

describe('observability', () => {
  it('topology and stats describe the cluster', async () => {
    const t = grid.client.topology();
    expect(t.partitions).toBe(64);
    expect(t.nodes.map((n) => n.id).sort()).toEqual([...grid.cluster.nodeIds].sort());
    expect(t.nodes.every((n) => n.connected)).toBe(true);
    const s = grid.client.stats();
    expect(s.nodes.length).toBe(3);
    expect(s.operations).toBeGreaterThan(0);
    expect(s.nodes.some((n) => n.requests > 0 && n.latencyP99Ms >= n.latencyP50Ms && n.latencyP50Ms > 0)).toBe(true);
    expect(s.routing.primary).toBeGreaterThan(0);
  });

  it('a closed client refuses work with GridClosedError', async () => {
    const c2 = await GridClient.connect({ endpoints: grid.cluster.endpoints });
    const cache = c2.cache<string, number>('api-closed');
    await cache.put('x', 1);
    await c2.close();
    await expect(cache.get('x')).rejects.toBeInstanceOf(GridClosedError);
    expect(() => c2.cache('y')).toThrow(GridClosedError);
  });
});
