import { describe, expect, it } from 'vitest';
import { encode } from '@msgpack/msgpack';
import { ErrorCode, Op } from '@gridlink/protocol';
import { NodeStore, StoreError, decodeCounter, type ReplicationRecord } from '../src/store/index.js';
import { FakeClock, b, makeStore, s } from './store-helpers.js';

const C = 'c';
const P = 7;

function seqGen(): () => number {
  let n = 0;
  return () => ++n;
}

describe('NodeStore cache ops', () => {
  it('put / get / containsKey / remove', () => {
    const { store } = makeStore();
    const seq = seqGen();
    expect(store.read(P, Op.CACHE_GET, { cache: C, key: b('k') })).toEqual({ value: null });
    const r = store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('k'), value: b('v'), seq: seq() }, 's1');
    expect(r.result).toEqual({});
    expect(r.record?.counter).toBe(1);
    expect(s((store.read(P, Op.CACHE_GET, { cache: C, key: b('k') }) as { value: Uint8Array }).value)).toBe('v');
    expect(store.read(P, Op.CACHE_CONTAINS_KEY, { cache: C, key: b('k') })).toEqual({ found: true });
    // other partition / other cache do not see it
    expect(store.read(P + 1, Op.CACHE_GET, { cache: C, key: b('k') })).toEqual({ value: null });
    expect(store.read(P, Op.CACHE_GET, { cache: 'other', key: b('k') })).toEqual({ value: null });
    expect(store.mutate(P, Op.CACHE_REMOVE, { cache: C, key: b('k'), seq: seq() }, 's1').result).toEqual({ applied: true });
    expect(store.mutate(P, Op.CACHE_REMOVE, { cache: C, key: b('k'), seq: seq() }, 's1').result).toEqual({ applied: false });
    expect(store.read(P, Op.CACHE_CONTAINS_KEY, { cache: C, key: b('k') })).toEqual({ found: false });
    expect(store.updateCounter(P)).toBe(3);
  });

  it('stores copies, not views of the request buffer', () => {
    const { store } = makeStore();
    const frame = b('xxkeyvalue');
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: frame.subarray(2, 5), value: frame.subarray(5), seq: 1 }, 's');
    frame.fill(0);
    const got = store.read(P, Op.CACHE_GET, { cache: C, key: b('key') }) as { value: Uint8Array };
    expect(s(got.value)).toBe('value');
    // an outcome remembered for the dedup window holds an own buffer, not a slice of a shared one
    const r = store.mutate(P, Op.CACHE_GET_AND_REMOVE, { cache: C, key: b('key'), seq: 2 }, 's').result as { value: Uint8Array };
    expect(s(r.value)).toBe('value');
    expect(r.value.buffer.byteLength).toBe(5);
  });

  it('putIfAbsent / replace / replaceIfEquals / removeIfEquals / getAndPut / getAndRemove', () => {
    const { store } = makeStore();
    const seq = seqGen();
    const m = (op: Op, p: Record<string, unknown>): unknown =>
      store.mutate(P, op, { cache: C, key: b('k'), seq: seq(), ...p }, 's').result;
    expect(m(Op.CACHE_REPLACE, { value: b('a') })).toEqual({ applied: false });
    expect(m(Op.CACHE_PUT_IF_ABSENT, { value: b('a') })).toEqual({ applied: true });
    expect(m(Op.CACHE_PUT_IF_ABSENT, { value: b('b') })).toEqual({ applied: false });
    expect(m(Op.CACHE_REPLACE_IF_EQUALS, { expected: b('x'), value: b('c') })).toEqual({ applied: false });
    expect(m(Op.CACHE_REPLACE_IF_EQUALS, { expected: b('a'), value: b('c') })).toEqual({ applied: true });
    expect(m(Op.CACHE_REPLACE, { value: b('d') })).toEqual({ applied: true });
    const gp = m(Op.CACHE_GET_AND_PUT, { value: b('e') }) as { value: Uint8Array };
    expect(s(gp.value)).toBe('d');
    expect(m(Op.CACHE_REMOVE_IF_EQUALS, { expected: b('d') })).toEqual({ applied: false });
    expect(m(Op.CACHE_REMOVE_IF_EQUALS, { expected: b('e') })).toEqual({ applied: true });
    expect(m(Op.CACHE_GET_AND_REMOVE, {})).toEqual({ value: null });
    expect(m(Op.CACHE_GET_AND_PUT, { value: b('f') })).toEqual({ value: null });
    expect(s((m(Op.CACHE_GET_AND_REMOVE, {}) as { value: Uint8Array }).value)).toBe('f');
    expect(store.read(P, Op.CACHE_SIZE, { cache: C })).toEqual({ size: 0 });
  });

  it('putAll / getAll / size / clear', () => {
    const { store } = makeStore();
    store.mutate(P, Op.CACHE_PUT_ALL, { cache: C, entries: [[b('a'), b('1')], [b('b'), b('2')]], seq: 1 }, 's');
    store.mutate(P + 1, Op.CACHE_PUT, { cache: C, key: b('z'), value: b('9'), seq: 2 }, 's');
    const all = store.read(P, Op.CACHE_GET_ALL, { cache: C, keys: [b('a'), b('x'), b('b')] }) as { values: (Uint8Array | null)[] };
    expect(all.values.map(s)).toEqual(['1', null, '2']);
    expect(store.read(P, Op.CACHE_SIZE, { cache: C })).toEqual({ size: 2 });
    expect(store.localSize(C)).toBe(3);
    expect(store.localSize(C, [P + 1])).toBe(1);
    store.mutate(P, Op.CACHE_CLEAR, { cache: C, seq: 3 }, 's');
    expect(store.read(P, Op.CACHE_SIZE, { cache: C })).toEqual({ size: 0 });
    expect(store.localSize(C)).toBe(1);
    expect(store.stats().entries).toBe(1);
  });

  it('increment: initial, delta, msgpack encoding, type errors and overflow', () => {
    const { store } = makeStore();
    const seq = seqGen();
    const inc = (delta: number, initial?: number): unknown =>
      store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('n'), delta, initial, seq: seq() }, 's').result;
    expect(inc(5)).toEqual({ value: 5 });
    expect(inc(-7)).toEqual({ value: -2 });
    const stored = store.read(P, Op.CACHE_GET, { cache: C, key: b('n') }) as { value: Uint8Array };
    expect(stored.value).toEqual(encode(-2));
    expect(decodeCounter(stored.value)).toBe(-2);
    store.mutate(P, Op.CACHE_REMOVE, { cache: C, key: b('n'), seq: seq() }, 's');
    expect(inc(1, 100)).toEqual({ value: 101 });

    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('n'), value: encode('text'), seq: seq() }, 's');
    const before = store.updateCounter(P);
    try {
      inc(1);
      expect.fail('should throw');
    } catch (err) {
      expect(err).toBeInstanceOf(StoreError);
      expect((err as StoreError).wireCode).toBe(ErrorCode.VALUE_TYPE);
      expect((err as StoreError).code).toBe('GRID_VALUE_TYPE');
    }
    expect(store.updateCounter(P)).toBe(before);
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('n'), value: b('\xff\xff'), seq: seq() }, 's');
    expect(() => inc(1)).toThrow(/MessagePack integer/);
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('n'), value: encode(2n ** 60n, { useBigInt64: true }), seq: seq() }, 's');
    expect(() => inc(1)).toThrow(/safe integer range/);

    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('n'), value: encode(Number.MAX_SAFE_INTEGER - 1), seq: seq() }, 's');
    expect(inc(1)).toEqual({ value: Number.MAX_SAFE_INTEGER });
    try {
      inc(1);
      expect.fail('should throw');
    } catch (err) {
      expect((err as StoreError).reason).toBe('overflow');
      expect((err as StoreError).wireCode).toBe(ErrorCode.BAD_REQUEST);
    }
    expect(() => inc(0.5)).toThrow(StoreError);
  });

  it('rejects malformed payloads with typed errors and no state change', () => {
    const { store } = makeStore();
    const bad: [Op, unknown][] = [
      [Op.CACHE_PUT, null],
      [Op.CACHE_PUT, { cache: C, key: 'k', value: b('v'), seq: 1 }],
      [Op.CACHE_PUT, { cache: '', key: b('k'), value: b('v'), seq: 1 }],
      [Op.CACHE_PUT, { cache: C, key: b('k'), value: b('v') }],
      [Op.CACHE_PUT, { cache: C, key: b('k'), value: b('v'), seq: -1 }],
      [Op.CACHE_PUT, { cache: C, key: b('k'), value: b('v'), seq: 1, ttlMs: -5 }],
      [Op.CACHE_PUT_ALL, { cache: C, entries: [[b('k')]], seq: 1 }],
      [Op.LOCK_TRY_ACQUIRE, { name: b('l'), leaseMs: 0, seq: 1 }],
      [Op.CACHE_GET, { cache: C, key: b('k'), seq: 1 }],
      [Op.PEER_FORWARD, { seq: 1 }],
    ];
    for (const [op, payload] of bad) {
      expect(() => store.mutate(P, op, payload, 's')).toThrow(StoreError);
    }
    expect(() => store.read(P, Op.CACHE_PUT, { cache: C })).toThrow(StoreError);
    expect(() => store.read(P, Op.CACHE_SCAN, { cache: C, partition: P, cursor: b('zz'), count: 1 })).toThrow(StoreError);
    expect(store.updateCounter(P)).toBe(0);
    expect(store.hasPartition(P)).toBe(false);
  });

  it('validates options naming the field', () => {
    expect(() => new NodeStore({ maxEntries: 0 })).toThrow(/maxEntries/);
    expect(() => new NodeStore({ maxBytes: 1.5 })).toThrow(/maxBytes/);
    expect(() => new NodeStore({ dedupWindowMs: -1 })).toThrow(/dedupWindowMs/);
    expect(() => new NodeStore({ cacheDefaults: { ttlMs: -1 } })).toThrow(/ttlMs/);
  });
});

describe('NodeStore TTL', () => {
  it('per-op ttl, cache default ttl, ttlMs 0 overrides default', () => {
    const { store, clock } = makeStore();
    store.createCache('t', { ttlMs: 1000 });
    expect(store.cacheConfig('t')).toEqual({ ttlMs: 1000 });
    store.mutate(P, Op.CACHE_PUT, { cache: 't', key: b('d'), value: b('v'), seq: 1 }, 's');
    store.mutate(P, Op.CACHE_PUT, { cache: 't', key: b('o'), value: b('v'), ttlMs: 5000, seq: 2 }, 's');
    store.mutate(P, Op.CACHE_PUT, { cache: 't', key: b('n'), value: b('v'), ttlMs: 0, seq: 3 }, 's');
    clock.advance(999);
    expect(store.read(P, Op.CACHE_SIZE, { cache: 't' })).toEqual({ size: 3 });
    clock.advance(1);
    expect(store.read(P, Op.CACHE_GET, { cache: 't', key: b('d') })).toEqual({ value: null });
    expect(store.read(P, Op.CACHE_SIZE, { cache: 't' })).toEqual({ size: 2 });
    clock.advance(4000);
    expect(store.read(P, Op.CACHE_CONTAINS_KEY, { cache: 't', key: b('o') })).toEqual({ found: false });
    expect(store.read(P, Op.CACHE_CONTAINS_KEY, { cache: 't', key: b('n') })).toEqual({ found: true });
    expect(store.stats().expired).toBe(2);
  });

  it('expired entries behave as absent for conditional ops and increment', () => {
    const { store, clock } = makeStore();
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('k'), value: encode(10), ttlMs: 10, seq: 1 }, 's');
    clock.advance(10);
    expect(store.mutate(P, Op.CACHE_REPLACE, { cache: C, key: b('k'), value: b('x'), seq: 2 }, 's').result).toEqual({ applied: false });
    expect(store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('k'), delta: 1, seq: 3 }, 's').result).toEqual({ value: 1 });
  });

  it('increment keeps the existing expiry unless ttlMs is given', () => {
    const { store, clock } = makeStore();
    store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('k'), delta: 1, ttlMs: 100, seq: 1 }, 's');
    clock.advance(60);
    store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('k'), delta: 1, seq: 2 }, 's');
    clock.advance(40);
    expect(store.read(P, Op.CACHE_GET, { cache: C, key: b('k') })).toEqual({ value: null });
    store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('k'), delta: 1, ttlMs: 100, seq: 3 }, 's');
    clock.advance(60);
    store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('k'), delta: 1, ttlMs: 100, seq: 4 }, 's');
    clock.advance(60);
    expect(store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('k'), delta: 1, seq: 5 }, 's').result).toEqual({ value: 3 });
  });

  it('sweep removes expired entries in expiry order within the budget', () => {
    const { store, clock } = makeStore();
    for (let i = 0; i < 10; i++) {
      store.mutate(i % 3, Op.CACHE_PUT, { cache: C, key: b(`k${i}`), value: b('v'), ttlMs: 100 + i, seq: i + 1 }, 's');
    }
    store.mutate(0, Op.CACHE_PUT, { cache: C, key: b('forever'), value: b('v'), seq: 100 }, 's');
    expect(store.sweep(100)).toBe(0);
    clock.advance(105); // k0..k5 expired
    expect(store.sweep(4)).toBe(4);
    expect(store.stats().entries).toBe(7);
    expect(store.sweep(100)).toBe(2);
    expect(store.stats().entries).toBe(5);
    expect(store.stats().expired).toBe(6);
    clock.advance(1000);
    expect(store.sweep(1000)).toBe(4);
    expect(store.stats().entries).toBe(1);
  });
});

describe('NodeStore scan', () => {
  it('pages through keys in byte order and ends with a null cursor', () => {
    const { store } = makeStore();
    const keys = ['d', 'a', 'c', 'b', 'e'];
    keys.forEach((k, i) => store.mutate(P, Op.CACHE_PUT, { cache: C, key: b(k), value: b('v'), seq: i + 1 }, 's'));
    const seen: string[] = [];
    let cursor: Uint8Array | null = null;
    let pages = 0;
    do {
      const r = store.read(P, Op.CACHE_SCAN, { cache: C, partition: P, cursor, count: 2 }) as { keys: Uint8Array[]; cursor: Uint8Array | null };
      seen.push(...r.keys.map((k) => s(k)!));
      cursor = r.cursor;
      pages++;
    } while (cursor !== null);
    expect(seen).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(pages).toBe(3);
    expect(store.read(P + 1, Op.CACHE_SCAN, { cache: C, partition: P + 1, cursor: null, count: 10 })).toEqual({ keys: [], cursor: null });
  });
});

describe('NodeStore locks', () => {
  it('tryAcquire, contention, re-entrant refresh, release, renew, expiry', () => {
    const { store, clock } = makeStore();
    const freed: string[] = [];
    store.onLockFreed((_p, name) => freed.push(s(name)!));
    const acq = (session: string, seq: number, leaseMs = 1000): { acquired: boolean; token?: number; heldForMs?: number } =>
      store.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs, seq }, session).result as never;
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('x'), value: b('v'), seq: 1 }, 'w');
    const a = acq('A', 1);
    expect(a).toEqual({ acquired: true, token: 2 });
    clock.advance(400);
    const denied = store.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs: 1000, seq: 1 }, 'B');
    expect(denied.result).toEqual({ acquired: false, heldForMs: 600 });
    expect(denied.record).toBeNull();
    // re-entrant: same token, lease refreshed
    expect(acq('A', 2)).toEqual({ acquired: true, token: 2 });
    clock.advance(900);
    expect(acq('B', 3).acquired).toBe(false);
    // renew with a wrong token fails, with the right one extends
    expect(store.mutate(P, Op.LOCK_RENEW, { name: b('L'), token: 99, leaseMs: 1000, seq: 3 }, 'A').result).toEqual({ renewed: false });
    expect(store.mutate(P, Op.LOCK_RENEW, { name: b('L'), token: 2, leaseMs: 1000, seq: 4 }, 'A').result).toEqual({ renewed: true });
    clock.advance(900);
    expect(acq('B', 5).acquired).toBe(false);
    expect(store.mutate(P, Op.LOCK_RELEASE, { name: b('L'), token: 1, seq: 5 }, 'A').result).toEqual({ released: false });
    expect(store.mutate(P, Op.LOCK_RELEASE, { name: b('L'), token: 2, seq: 6 }, 'A').result).toEqual({ released: true });
    expect(freed).toEqual(['L']);
    const bTok = store.mutate(P, Op.LOCK_ACQUIRE, { name: b('L'), leaseMs: 100, waitMs: 5000, seq: 7 }, 'B').result as { token: number };
    expect(bTok.token).toBeGreaterThan(2);
    clock.advance(100);
    // expired lease: renew fails, another session acquires with a higher token
    expect(store.mutate(P, Op.LOCK_RENEW, { name: b('L'), token: bTok.token, leaseMs: 1000, seq: 8 }, 'B').result).toEqual({ renewed: false });
    expect(freed).toEqual(['L', 'L']);
    const c = acq('C', 1);
    expect(c.acquired).toBe(true);
    expect(c.token).toBeGreaterThan(bTok.token);
  });

  it('sweep frees expired leases and notifies', () => {
    const { store, clock } = makeStore();
    const freed: [number, string][] = [];
    store.onLockFreed((p, name) => freed.push([p, s(name)!]));
    store.mutate(3, Op.LOCK_TRY_ACQUIRE, { name: b('a'), leaseMs: 50, seq: 1 }, 'A');
    store.mutate(4, Op.LOCK_TRY_ACQUIRE, { name: b('b'), leaseMs: 500, seq: 2 }, 'A');
    expect(store.stats().locks).toBe(2);
    clock.advance(50);
    expect(store.sweep(10)).toBe(1);
    expect(freed).toEqual([[3, 'a']]);
    expect(store.stats().locks).toBe(1);
  });

  it('a waiting acquirer can retry from the listener', () => {
    const { store } = makeStore();
    store.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs: 1000, seq: 1 }, 'A');
    const r1 = store.mutate(P, Op.LOCK_ACQUIRE, { name: b('L'), leaseMs: 1000, waitMs: 100, seq: 9 }, 'B');
    expect(r1.result).toMatchObject({ acquired: false });
    let retried: unknown = null;
    const off = store.onLockFreed(() => {
      retried = store.mutate(P, Op.LOCK_ACQUIRE, { name: b('L'), leaseMs: 1000, waitMs: 100, seq: 9 }, 'B').result;
    });
    store.mutate(P, Op.LOCK_RELEASE, { name: b('L'), token: 1, seq: 2 }, 'A');
    off();
    expect(retried).toEqual({ acquired: true, token: 3 });
  });
});

describe('NodeStore replication and exactly-once (examples)', () => {
  it('a backup applying records converges; gaps are refused; duplicates ignored', () => {
    const { store: primary } = makeStore();
    const backup = new NodeStore({ clock: new FakeClock() });
    const recs: ReplicationRecord[] = [];
    const push = (r: { record: ReplicationRecord | null }): void => {
      if (r.record) recs.push(r.record);
    };
    push(primary.mutate(P, Op.CACHE_PUT, { cache: C, key: b('a'), value: b('1'), seq: 1 }, 's'));
    push(primary.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('n'), delta: 3, seq: 2 }, 's'));
    push(primary.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs: 1000, seq: 3 }, 's'));
    expect(backup.applyRecord(P, recs[1]!)).toBe(false);
    expect(backup.applyRecord(P, recs[0]!)).toBe(true);
    expect(backup.applyRecord(P, recs[0]!)).toBe(true);
    expect(backup.applyRecord(P, recs[1]!)).toBe(true);
    expect(backup.applyRecord(P, recs[2]!)).toBe(true);
    expect(backup.updateCounter(P)).toBe(3);
    expect(s((backup.read(P, Op.CACHE_GET, { cache: C, key: b('a') }) as { value: Uint8Array }).value)).toBe('1');
    // promoted backup: the retried increment returns the first outcome and applies nothing
    const again = backup.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('n'), delta: 3, seq: 2 }, 's');
    expect(again).toEqual({ result: { value: 3 }, record: null, replayOf: 2 });
    expect(backup.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs: 1000, seq: 4 }, 'other').result).toMatchObject({ acquired: false });
    // a seq reused for another op is refused
    expect(() => backup.mutate(P, Op.CACHE_REMOVE, { cache: C, key: b('a'), seq: 1 }, 's')).toThrow(/already used/);
  });

  it('dedup outcomes are forgotten after the window', () => {
    const { store, clock } = makeStore({ dedupWindowMs: 1000 });
    store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('n'), delta: 1, seq: 1 }, 's');
    clock.advance(999);
    expect(store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('n'), delta: 1, seq: 1 }, 's').result).toEqual({ value: 1 });
    expect(store.stats().dedupEntries).toBe(1);
    clock.advance(1);
    expect(store.sweep(10)).toBe(0);
    expect(store.stats().dedupEntries).toBe(0);
    expect(store.mutate(P, Op.CACHE_INCREMENT, { cache: C, key: b('n'), delta: 1, seq: 1 }, 's').result).toEqual({ value: 2 });
  });

  it('snapshot / install carries entries, locks, dedup, counter and cache config', () => {
    const { store: a, clock } = makeStore();
    a.createCache('t', { ttlMs: 5000 });
    a.mutate(P, Op.CACHE_PUT, { cache: 't', key: b('k'), value: b('v'), seq: 1 }, 's');
    a.mutate(P, Op.CACHE_PUT, { cache: 't', key: b('gone'), value: b('v'), ttlMs: 10, seq: 2 }, 's');
    a.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs: 1000, seq: 3 }, 's');
    clock.advance(10);
    const snap = a.snapshot(P);
    expect(snap.counter).toBe(3);
    const bStore = new NodeStore({ clock });
    bStore.install(P, structuredClone(snap));
    expect(bStore.cacheConfig('t')).toEqual({ ttlMs: 5000 });
    expect(bStore.updateCounter(P)).toBe(3);
    expect(bStore.stats().entries).toBe(1);
    expect(bStore.mutate(P, Op.CACHE_PUT, { cache: 't', key: b('k'), value: b('v'), seq: 1 }, 's').record).toBeNull();
    const t = bStore.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs: 1000, seq: 9 }, 'x');
    expect(t.result).toMatchObject({ acquired: false });
    expect(bStore.heldPartitions()).toEqual([P]);
    bStore.dropPartition(P);
    expect(bStore.stats()).toMatchObject({ entries: 0, bytes: 0, locks: 0, dedupEntries: 0, partitions: 0 });
  });
});

describe('NodeStore LRU bound', () => {
  it('evicts least recently used entries beyond maxEntries and counts them', () => {
    const { store } = makeStore({ maxEntries: 3 });
    let seq = 0;
    const put = (p: number, k: string): void => {
      store.mutate(p, Op.CACHE_PUT, { cache: C, key: b(k), value: b('v'), seq: ++seq }, 's');
    };
    put(1, 'a');
    put(2, 'b');
    put(3, 'c');
    store.read(1, Op.CACHE_GET, { cache: C, key: b('a') }); // a is now most recent
    put(4, 'd'); // evicts b
    expect(store.stats()).toMatchObject({ entries: 3, evictions: 1 });
    expect(store.read(2, Op.CACHE_CONTAINS_KEY, { cache: C, key: b('b') })).toEqual({ found: false });
    expect(store.read(1, Op.CACHE_CONTAINS_KEY, { cache: C, key: b('a') })).toEqual({ found: true });
  });

  it('removes expired entries before evicting live ones', () => {
    const { store, clock } = makeStore({ maxEntries: 2 });
    store.mutate(1, Op.CACHE_PUT, { cache: C, key: b('old'), value: b('v'), seq: 1 }, 's');
    store.mutate(1, Op.CACHE_PUT, { cache: C, key: b('ttl'), value: b('v'), ttlMs: 5, seq: 2 }, 's');
    clock.advance(5);
    store.mutate(1, Op.CACHE_PUT, { cache: C, key: b('new'), value: b('v'), seq: 3 }, 's');
    expect(store.stats()).toMatchObject({ entries: 2, evictions: 0, expired: 1 });
    expect(store.read(1, Op.CACHE_CONTAINS_KEY, { cache: C, key: b('old') })).toEqual({ found: true });
  });

  it('bounds key+value bytes', () => {
    const { store } = makeStore({ maxBytes: 10 });
    store.mutate(1, Op.CACHE_PUT, { cache: C, key: b('a'), value: b('1234'), seq: 1 }, 's'); // 5
    store.mutate(1, Op.CACHE_PUT, { cache: C, key: b('b'), value: b('1234'), seq: 2 }, 's'); // 10
    expect(store.stats()).toMatchObject({ bytes: 10, evictions: 0 });
    store.mutate(1, Op.CACHE_PUT, { cache: C, key: b('a'), value: b('12345'), seq: 3 }, 's'); // 11 → evict b
    expect(store.stats()).toMatchObject({ bytes: 6, evictions: 1, entries: 1 });
    store.mutate(1, Op.CACHE_PUT, { cache: C, key: b('big'), value: b('123456789'), seq: 4 }, 's');
    expect(store.stats().bytes).toBeLessThanOrEqual(10);
  });
});

describe('NodeStore more cases', () => {
  it('a scan cursor from the primary continues on a replica', () => {
    const { store: primary, clock } = makeStore();
    const backup = new NodeStore({ clock });
    for (let i = 0; i < 6; i++) {
      const { record } = primary.mutate(P, Op.CACHE_PUT, { cache: C, key: b(`k${i}`), value: b('v'), seq: i + 1 }, 's');
      backup.applyRecord(P, record!);
    }
    const first = primary.read(P, Op.CACHE_SCAN, { cache: C, partition: P, cursor: null, count: 2 }) as { keys: Uint8Array[]; cursor: Uint8Array };
    const rest = backup.read(P, Op.CACHE_SCAN, { cache: C, partition: P, cursor: first.cursor, count: 10 }) as { keys: Uint8Array[]; cursor: Uint8Array | null };
    expect([...first.keys, ...rest.keys].map(s)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
    expect(rest.cursor).toBeNull();
  });

  it('scan skips expired keys and caps count', () => {
    const { store, clock } = makeStore();
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('a'), value: b('v'), ttlMs: 5, seq: 1 }, 's');
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('b'), value: b('v'), seq: 2 }, 's');
    clock.advance(5);
    const r = store.read(P, Op.CACHE_SCAN, { cache: C, partition: P, cursor: null, count: 10 }) as { keys: Uint8Array[]; cursor: null };
    expect(r.keys.map(s)).toEqual(['b']);
    expect(r.cursor).toBeNull();
    expect(() => store.read(P, Op.CACHE_SCAN, { cache: C, partition: P, cursor: null, count: 0 })).toThrow(StoreError);
  });

  it('createCache: last call wins; invalid configs are refused; unknown caches use the store defaults', () => {
    const { store, clock } = makeStore({ cacheDefaults: { ttlMs: 100 } });
    store.mutate(P, Op.CACHE_PUT, { cache: 'auto', key: b('k'), value: b('v'), seq: 1 }, 's');
    expect(store.cacheConfig('auto')).toEqual({ ttlMs: 100 });
    store.createCache('auto', { ttlMs: 0 });
    store.mutate(P, Op.CACHE_PUT, { cache: 'auto', key: b('k2'), value: b('v'), seq: 2 }, 's');
    clock.advance(100);
    expect(store.read(P, Op.CACHE_CONTAINS_KEY, { cache: 'auto', key: b('k') })).toEqual({ found: false });
    expect(store.read(P, Op.CACHE_CONTAINS_KEY, { cache: 'auto', key: b('k2') })).toEqual({ found: true });
    expect(() => store.createCache('x', { ttlMs: -1 })).toThrow(StoreError);
    expect(() => store.createCache('', {})).toThrow(StoreError);
    expect(store.cacheConfigs().map(([n]) => n).sort()).toEqual(['auto']);
  });

  it('putAll with ttl, and a clear repeated with its seq applies once', () => {
    const { store, clock } = makeStore();
    store.mutate(P, Op.CACHE_PUT_ALL, { cache: C, entries: [[b('a'), b('1')], [b('b'), b('2')]], ttlMs: 10, seq: 1 }, 's');
    const clear = store.mutate(P, Op.CACHE_CLEAR, { cache: C, seq: 2 }, 's');
    expect(clear.record?.effects).toEqual([{ t: 'clear', cache: C }]);
    store.mutate(P, Op.CACHE_PUT, { cache: C, key: b('c'), value: b('3'), seq: 3 }, 's');
    const again = store.mutate(P, Op.CACHE_CLEAR, { cache: C, seq: 2 }, 's');
    expect(again.record).toBeNull();
    expect(store.read(P, Op.CACHE_SIZE, { cache: C })).toEqual({ size: 1 });
    store.mutate(P, Op.CACHE_PUT_ALL, { cache: C, entries: [[b('a'), b('1')]], ttlMs: 10, seq: 4 }, 's');
    clock.advance(10);
    expect(store.read(P, Op.CACHE_GET_ALL, { cache: C, keys: [b('a'), b('c')] })).toMatchObject({ values: [null, expect.any(Uint8Array)] });
  });

  it('reads of a partition that is not held answer empty and create nothing', () => {
    const { store } = makeStore();
    expect(store.read(99, Op.CACHE_GET, { cache: C, key: b('k') })).toEqual({ value: null });
    expect(store.read(99, Op.CACHE_SIZE, { cache: C })).toEqual({ size: 0 });
    expect(store.snapshot(99)).toMatchObject({ counter: 0, caches: [], locks: [], dedup: [] });
    expect(store.hasPartition(99)).toBe(false);
    expect(() => store.read(99, Op.CACHE_CLEAR, { cache: C })).toThrow(/not a read op/);
  });

  it('a failed lock acquisition is not remembered: the same seq can succeed later', () => {
    const { store } = makeStore();
    store.mutate(P, Op.LOCK_TRY_ACQUIRE, { name: b('L'), leaseMs: 1000, seq: 1 }, 'A');
    const fail = store.mutate(P, Op.LOCK_ACQUIRE, { name: b('L'), leaseMs: 1000, waitMs: 10, seq: 1 }, 'B');
    expect(fail).toMatchObject({ result: { acquired: false }, record: null });
    expect(fail.replayOf).toBeUndefined();
    const counter = store.updateCounter(P);
    store.mutate(P, Op.LOCK_RELEASE, { name: b('L'), token: 1, seq: 2 }, 'A');
    const ok = store.mutate(P, Op.LOCK_ACQUIRE, { name: b('L'), leaseMs: 1000, waitMs: 10, seq: 1 }, 'B');
    expect(ok.result).toEqual({ acquired: true, token: counter + 2 });
    // now it is remembered
    expect(store.mutate(P, Op.LOCK_ACQUIRE, { name: b('L'), leaseMs: 1000, waitMs: 10, seq: 1 }, 'B')).toMatchObject({
      record: null,
      replayOf: counter + 2,
    });
  });
});

describe('NodeStore entry storage', () => {
  it('keys and values of any size round-trip, overwrite and count their bytes exactly', () => {
    const { store } = makeStore();
    const sizes = [0, 1, 100, 4095, 4097, 65_536, 200_000];
    let seq = 0;
    let bytes = 0;
    const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
    for (const ks of [1, 300]) {
      for (const [j, vs] of sizes.entries()) {
        const key = new Uint8Array(ks).map((_, i) => (i * 7 + j) & 0xff);
        const value = new Uint8Array(vs).map((_, i) => (i * 13 + ks) & 0xff);
        store.mutate(P, Op.CACHE_PUT, { cache: C, key, value, seq: ++seq }, 's');
        bytes += ks + vs;
        expect(same((store.read(P, Op.CACHE_GET, { cache: C, key }) as { value: Uint8Array }).value, value)).toBe(true);
        // overwriting with a shorter value keeps one entry and adjusts the byte count
        store.mutate(P, Op.CACHE_PUT, { cache: C, key, value: value.subarray(0, vs >> 1), seq: ++seq }, 's');
        bytes -= vs - (vs >> 1);
        expect(same((store.read(P, Op.CACHE_GET, { cache: C, key }) as { value: Uint8Array }).value, value.subarray(0, vs >> 1))).toBe(true);
      }
    }
    expect(store.stats()).toMatchObject({ entries: 2 * sizes.length, bytes });
  });
});
