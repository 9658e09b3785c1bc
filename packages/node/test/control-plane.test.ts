import { describe, expect, it } from 'vitest';
import { CasConflictError, MemoryControlPlane, type KvEvent } from '@gridlink/node';

describe('MemoryControlPlane (the ControlPlane contract a NATS KV adapter must meet)', () => {
  it('revisions strictly increase across keys; create and update are compare-and-set', async () => {
    const kv = new MemoryControlPlane();
    const r1 = await kv.create('a', { n: 1 });
    await expect(kv.create('a', { n: 2 })).rejects.toBeInstanceOf(CasConflictError);
    const r2 = await kv.put('b', { n: 1 });
    expect(r2).toBeGreaterThan(r1);
    const r3 = await kv.update('a', { n: 3 }, r1);
    expect(r3).toBeGreaterThan(r2);
    await expect(kv.update('a', { n: 4 }, r1)).rejects.toBeInstanceOf(CasConflictError);
    await expect(kv.update('missing', { n: 1 }, 0)).rejects.toBeInstanceOf(CasConflictError);
    expect(await kv.get('a')).toEqual({ key: 'a', value: { n: 3 }, revision: r3 });
    expect((await kv.list('')).map((e) => e.key).sort()).toEqual(['a', 'b']);
  });

  it('values are copied: a reader cannot change what another sees', async () => {
    const kv = new MemoryControlPlane();
    const v = { list: [1, 2] };
    await kv.put('k', v);
    v.list.push(3);
    const got = await kv.get<{ list: number[] }>('k');
    got!.value.list.push(4);
    expect((await kv.get<{ list: number[] }>('k'))!.value.list).toEqual([1, 2]);
  });

  it('watch reports puts and deletes under the prefix, asynchronously and in revision order', async () => {
    const kv = new MemoryControlPlane();
    const seen: KvEvent<number>[] = [];
    const unwatch = kv.watch<number>('lease.', (e) => seen.push(e));
    const first = kv.put('lease.a', 1);
    // Never delivered inside the write itself.
    expect(seen).toEqual([]);
    await first;
    await kv.put('other', 9);
    await kv.put('lease.b', 2);
    await kv.delete('lease.a');
    await kv.delete('lease.none');
    await new Promise((r) => setImmediate(r));
    expect(seen.map((e) => [e.type, e.key])).toEqual([
      ['put', 'lease.a'],
      ['put', 'lease.b'],
      ['delete', 'lease.a'],
    ]);
    const revs = seen.map((e) => e.revision);
    expect([...revs].sort((a, b) => a - b)).toEqual(revs);
    unwatch();
    await kv.put('lease.c', 3);
    await new Promise((r) => setImmediate(r));
    expect(seen).toHaveLength(3);
  });
});
