/**
 * Properties of replication records, snapshots, exactly-once outcomes and lock fencing.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decode, encode } from '@msgpack/msgpack';
import { Op } from '@gridlink/protocol';
import { NodeStore, StoreError, joinSnapshots, snapshotDataBytes, splitSnapshot, type PartitionSnapshot, type ReplicationRecord } from '../src/store/index.js';
import { forEachPacked, unpackSnapshot } from '../src/store/snapshot.js';
import { CACHE_MUTATIONS, FakeClock, b } from './store-helpers.js';

const PARTS = [0, 1, 2];
const CACHES = ['plain', 'ttl'];
const KEYS = ['a', 'b', 'c', 'd'];
const SESSIONS = ['A', 'B', 'C'];
const LOCKS = ['L0', 'L1', 'L2', 'L3']; // lock i lives in partition i % PARTS.length
const VALUES: Uint8Array[] = [b('x'), b('y'), encode(1), encode(40)];
const lockPart = (i: number): number => i % PARTS.length;

const LOCK_OPS = [Op.LOCK_TRY_ACQUIRE, Op.LOCK_ACQUIRE, Op.LOCK_RELEASE, Op.LOCK_RENEW] as const;

type Cmd =
  | { k: 'cache'; op: Op; p: number; cache: string; key: string; value: number; ttl: number | undefined; delta: number; session: string }
  | { k: 'lock'; op: Op; lock: number; session: string; lease: number; tokenPick: number }
  | { k: 'advance'; ms: number }
  | { k: 'sweep'; budget: number }
  | { k: 'repeat'; pick: number }
  | { k: 'failover'; how: 'records' | 'snapshot' };

const cacheCmd = fc.record({
  k: fc.constant('cache' as const),
  op: fc.constantFrom(...CACHE_MUTATIONS),
  p: fc.constantFrom(...PARTS),
  cache: fc.constantFrom(...CACHES),
  key: fc.constantFrom(...KEYS),
  value: fc.nat(VALUES.length - 1),
  ttl: fc.option(fc.constantFrom(0, 10, 30, 80), { nil: undefined }),
  delta: fc.integer({ min: -3, max: 3 }),
  session: fc.constantFrom(...SESSIONS),
});
const lockCmd = fc.record({
  k: fc.constant('lock' as const),
  op: fc.constantFrom(...LOCK_OPS),
  lock: fc.nat(LOCKS.length - 1),
  session: fc.constantFrom(...SESSIONS),
  lease: fc.constantFrom(10, 25, 60),
  tokenPick: fc.nat(),
});
const advance = fc.record({ k: fc.constant('advance' as const), ms: fc.constantFrom(0, 1, 5, 10, 30) });
const sweep = fc.record({ k: fc.constant('sweep' as const), budget: fc.integer({ min: 0, max: 5 }) });
const repeat = fc.record({ k: fc.constant('repeat' as const), pick: fc.nat() });
const failover = fc.record({ k: fc.constant('failover' as const), how: fc.constantFrom('records' as const, 'snapshot' as const) });

const mixedArb = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: cacheCmd },
    { weight: 3, arbitrary: lockCmd },
    { weight: 2, arbitrary: advance },
    { weight: 1, arbitrary: sweep },
    { weight: 2, arbitrary: repeat },
  ),
  { minLength: 5, maxLength: 100, size: 'max' },
);

/** What a peer receives: the value after a MessagePack round trip (bytes become views of the frame). */
function wire<T>(v: T): T {
  return decode(encode(v)) as T;
}

const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');
function norm(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v ?? null, (_k, x: unknown) => (x instanceof Uint8Array ? hex(x) : x))) as unknown;
}

/**
 * The visible state of the store's partitions (entries, locks, counters, dedup outcomes), read
 * from the raw structures (not through snapshot(), which is under test too), minus what has
 * expired by now: lazy expiry and sweeps are local to each node.
 */
function dump(store: NodeStore, now: number, windowMs = 1e9): unknown {
  return PARTS.map((p) => {
    const raw = store.inspect(p);
    return {
      p,
      counter: raw.counter,
      entries: raw.entries
        .filter(([, , , e]) => e === 0 || e > now)
        .map(([c, k, v, e]) => `${c}/${hex(k)}=${hex(v)}@${e}`)
        .sort(),
      locks: raw.locks
        .filter(([, , , e]) => e > now)
        .map(([n, s, t, e]) => `${hex(n)}:${s}:${t}@${e}`)
        .sort(),
      dedup: raw.dedup
        .filter(([, , , , at]) => at + windowMs > now)
        .map(([s, q, o, r, at]) => JSON.stringify([s, q, o, norm(r), at]))
        .sort(),
    };
  });
}

interface Issued {
  p: number;
  op: Op;
  payload: Record<string, unknown>;
  session: string;
  result: unknown;
  /** Update counter of the record that carried the outcome. */
  counter: number;
}

/** Drives a primary with commands; keeps the records it emitted and what it answered. */
class Driver {
  readonly records = new Map<number, ReplicationRecord[]>(PARTS.map((p) => [p, []]));
  readonly issued: Issued[] = [];
  readonly tokens: number[] = [];
  private readonly seqs = new Map<string, number>();

  constructor(
    public store: NodeStore,
    readonly clock: FakeClock,
  ) {}

  private nextSeq(session: string): number {
    const n = (this.seqs.get(session) ?? 0) + 1;
    this.seqs.set(session, n);
    return n;
  }

  payloadFor(c: Extract<Cmd, { k: 'cache' | 'lock' }>): { p: number; payload: Record<string, unknown> } {
    const seq = this.nextSeq(c.session);
    if (c.k === 'cache') {
      const value = VALUES[c.value]!;
      return {
        p: c.p,
        payload: {
          cache: c.cache,
          key: b(c.key),
          value,
          expected: VALUES[(c.value + 1) % VALUES.length],
          ttlMs: c.ttl,
          delta: c.delta,
          entries: KEYS.slice(0, 1 + (c.value % KEYS.length)).map((k) => [b(k), value]),
          seq,
        },
      };
    }
    const token = this.tokens.length === 0 ? 1 : this.tokens[c.tokenPick % this.tokens.length]!;
    return {
      p: lockPart(c.lock),
      payload: { name: b(LOCKS[c.lock]!), leaseMs: c.lease, waitMs: 100, token, seq },
    };
  }

  /** Issues a fresh mutation; returns what mutate returned, or null when it threw. */
  issue(c: Extract<Cmd, { k: 'cache' | 'lock' }>): { result: unknown; record: ReplicationRecord | null } | null {
    const { p, payload } = this.payloadFor(c);
    let r: { result: unknown; record: ReplicationRecord | null };
    try {
      r = this.store.mutate(p, c.op, payload, c.session);
    } catch {
      return null; // refused with a StoreError: nothing changed, nothing to remember
    }
    if (r.record !== null) {
      this.records.get(p)!.push(r.record);
      this.issued.push({ p, op: c.op, payload, session: c.session, result: r.result, counter: r.record.counter });
    }
    const t = (r.result as { token?: number }).token;
    if (typeof t === 'number') this.tokens.push(t);
    return r;
  }
}

function replicaFromRecords(d: Driver, clock: FakeClock, upTo?: Map<number, number>): NodeStore {
  const r = new NodeStore({ clock, dedupWindowMs: 1e9 });
  r.createCache('ttl', { ttlMs: 30 });
  for (const p of PARTS) {
    const recs = d.records.get(p)!;
    for (const rec of recs.slice(0, upTo?.get(p) ?? recs.length)) expect(r.applyRecord(p, wire(rec))).toBe(true);
  }
  return r;
}

function newPrimary(clock: FakeClock, dedupWindowMs = 1e9): NodeStore {
  const s = new NodeStore({ clock, dedupWindowMs });
  s.createCache('ttl', { ttlMs: 30 });
  return s;
}

describe('NodeStore replication records and snapshots', () => {
  it('a fresh store applying the primary records in order reaches the same state; so does snapshot + later records', () => {
    fc.assert(
      fc.property(mixedArb, fc.nat(), fc.constantFrom(15, 1e9), (cmds, snapAtSeed, win) => {
        const clock = new FakeClock();
        const d = new Driver(newPrimary(clock, win), clock);
        const live = newPrimary(clock, win); // applies each record as soon as it is emitted
        const snapAt = snapAtSeed % (cmds.length + 1);
        let snaps: { p: number; snap: ReturnType<NodeStore['snapshot']> }[] = [];
        const liveSnapInstalled = newPrimary(clock, win);
        cmds.forEach((c, i) => {
          if (i === snapAt) {
            snaps = PARTS.map((p) => ({ p, snap: wire(d.store.snapshot(p)) }));
            for (const { p, snap } of snaps) liveSnapInstalled.install(p, wire(snap));
          }
          if (c.k === 'advance') clock.advance(c.ms);
          else if (c.k === 'sweep') {
            d.store.sweep(c.budget);
            live.sweep(c.budget);
          } else if (c.k === 'cache' || c.k === 'lock') {
            const r = d.issue(c);
            if (r?.record) {
              const p = c.k === 'cache' ? c.p : lockPart(c.lock);
              expect(r.record.counter).toBe(d.store.updateCounter(p));
              expect(live.applyRecord(p, wire(r.record))).toBe(true);
              if (snaps.length > 0) expect(liveSnapInstalled.applyRecord(p, wire(r.record))).toBe(true);
            }
          }
        });
        if (snaps.length === 0) {
          snaps = PARTS.map((p) => ({ p, snap: wire(d.store.snapshot(p)) }));
          for (const { p, snap } of snaps) liveSnapInstalled.install(p, wire(snap));
        }
        const want = dump(d.store, clock.now(), win);
        expect(dump(live, clock.now(), win)).toEqual(want);
        expect(dump(replicaFromRecords(d, clock), clock.now(), win)).toEqual(want);
        expect(dump(liveSnapInstalled, clock.now(), win)).toEqual(want);
        // install a snapshot late, then replay ALL records: older ones are ignored, newer applied
        const late = newPrimary(clock, win);
        for (const { p, snap } of snaps) {
          late.install(p, wire(snap));
          for (const rec of d.records.get(p)!) expect(late.applyRecord(p, wire(rec))).toBe(true);
        }
        expect(dump(late, clock.now(), win)).toEqual(want);
        // outcomes older than the window are gone from every store's raw state once swept
        if (win < 1e9) {
          for (const st of [d.store, live, late]) {
            st.sweep(1_000_000);
            for (const p of PARTS) for (const [, , , , at] of st.inspect(p).dedup) expect(at + win).toBeGreaterThan(clock.now());
          }
        }
        for (const p of PARTS) expect(late.updateCounter(p)).toBe(d.store.updateCounter(p));
      }),
      { numRuns: 200 },
    );
  });

  it('a record that skips a counter value is refused and changes nothing', () => {
    fc.assert(
      fc.property(mixedArb, fc.nat(), (cmds, skipSeed) => {
        const clock = new FakeClock();
        const d = new Driver(newPrimary(clock), clock);
        for (const c of cmds) {
          if (c.k === 'advance') clock.advance(c.ms);
          else if (c.k === 'cache' || c.k === 'lock') d.issue(c);
        }
        const p = PARTS[skipSeed % PARTS.length]!;
        const recs = d.records.get(p)!;
        if (recs.length < 2) return;
        const backup = newPrimary(clock);
        const gapAt = 1 + (skipSeed % (recs.length - 1));
        for (const rec of recs.slice(0, gapAt - 1)) backup.applyRecord(p, rec);
        const before = dump(backup, clock.now());
        expect(backup.applyRecord(p, recs[gapAt]!)).toBe(false);
        expect(dump(backup, clock.now())).toEqual(before);
      }),
      { numRuns: 100 },
    );
  });
});

describe('NodeStore exactly-once', () => {
  it('repeating a mutation with the same (session, seq) returns the first outcome and changes nothing, also on replicas', () => {
    fc.assert(
      fc.property(mixedArb, fc.nat(), (cmds, snapSeed) => {
        const clock = new FakeClock();
        const d = new Driver(newPrimary(clock), clock);
        const repeatOk = (store: NodeStore, m: Issued): void => {
          const again = store.mutate(m.p, m.op, m.payload, m.session);
          expect(again.record).toBeNull();
          expect(again.replayOf).toBe(m.counter);
          expect(norm(again.result)).toEqual(norm(m.result));
        };
        const check = (store: NodeStore, m: Issued): void => {
          const before = dump(store, clock.now());
          repeatOk(store, m);
          expect(dump(store, clock.now())).toEqual(before);
        };
        /** Repeats every remembered mutation on a replica; its state must not move at all. */
        const checkAll = (store: NodeStore): void => {
          const before = dump(store, clock.now());
          for (const m of d.issued) repeatOk(store, m);
          expect(dump(store, clock.now())).toEqual(before);
        };
        for (const c of cmds) {
          if (c.k === 'advance') clock.advance(c.ms);
          else if (c.k === 'sweep') d.store.sweep(c.budget);
          else if (c.k === 'repeat') {
            if (d.issued.length > 0) check(d.store, d.issued[c.pick % d.issued.length]!);
          } else if (c.k === 'cache' || c.k === 'lock') d.issue(c);
        }
        // a promoted backup that got there by records
        checkAll(replicaFromRecords(d, clock));
        // one that got a snapshot part-way and the later records
        const bySnapshot = newPrimary(clock);
        for (const p of PARTS) {
          const recs = d.records.get(p)!;
          const cut = recs.length === 0 ? 0 : snapSeed % (recs.length + 1);
          const src = replicaFromRecords(d, clock, new Map([[p, cut]]));
          bySnapshot.install(p, wire(src.snapshot(p)));
          for (const rec of recs.slice(cut)) expect(bySnapshot.applyRecord(p, wire(rec))).toBe(true);
        }
        checkAll(bySnapshot);
      }),
      { numRuns: 200 },
    );
  });
});

describe('NodeStore lock fencing', () => {
  const lockArb = fc.array(
    fc.oneof(
      { weight: 6, arbitrary: lockCmd },
      { weight: 3, arbitrary: advance },
      { weight: 1, arbitrary: sweep },
      { weight: 1, arbitrary: failover },
      { weight: 1, arbitrary: cacheCmd },
    ),
    { minLength: 5, maxLength: 150, size: 'max' },
  );

  it('tokens strictly increase per lock name and there are never two holders, across failovers', () => {
    fc.assert(
      fc.property(lockArb, (cmds) => {
        const clock = new FakeClock();
        const d = new Driver(newPrimary(clock), clock);
        let backup = newPrimary(clock); // follows the primary by records
        const holder = new Map<number, { session: string; token: number; expireAt: number } | null>();
        const lastToken = new Map<number, number>();
        const held = (i: number): { session: string; token: number; expireAt: number } | null => {
          const h = holder.get(i) ?? null;
          return h !== null && h.expireAt > clock.now() ? h : null;
        };
        for (const c of cmds) {
          if (c.k === 'advance') clock.advance(c.ms);
          else if (c.k === 'sweep') {
            d.store.sweep(c.budget);
            backup.sweep(c.budget);
          } else if (c.k === 'failover') {
            // the backup is promoted; a new backup is built from the specified source
            const promoted = backup;
            const fresh = newPrimary(clock);
            if (c.how === 'snapshot') {
              for (const p of PARTS) fresh.install(p, wire(promoted.snapshot(p)));
            } else {
              for (const p of PARTS) for (const rec of d.records.get(p)!) fresh.applyRecord(p, wire(rec));
            }
            d.store = promoted;
            backup = fresh;
          } else if (c.k === 'cache') {
            const r = d.issue(c);
            if (r?.record) backup.applyRecord(c.p, wire(r.record));
          } else if (c.k === 'lock') {
            const before = held(c.lock);
            const { p, payload } = d.payloadFor(c);
            const r = d.store.mutate(p, c.op, payload, c.session);
            if (r.record) {
              d.records.get(p)!.push(r.record);
              expect(backup.applyRecord(p, wire(r.record))).toBe(true);
            }
            const res = r.result as { acquired?: boolean; token?: number; released?: boolean; renewed?: boolean };
            if (c.op === Op.LOCK_TRY_ACQUIRE || c.op === Op.LOCK_ACQUIRE) {
              if (before !== null && before.session !== c.session) {
                expect(res.acquired).toBe(false); // never two holders
              } else {
                expect(res.acquired).toBe(true);
                if (before !== null) {
                  expect(res.token).toBe(before.token); // re-entrant refresh keeps the token
                } else {
                  expect(res.token).toBeGreaterThan(lastToken.get(c.lock) ?? 0);
                  lastToken.set(c.lock, res.token!);
                }
                d.tokens.push(res.token!);
                holder.set(c.lock, { session: c.session, token: res.token!, expireAt: clock.now() + c.lease });
              }
            } else if (c.op === Op.LOCK_RELEASE) {
              const ok = before !== null && before.token === payload['token'];
              expect(res.released).toBe(ok);
              if (ok) holder.set(c.lock, null);
            } else {
              const ok = before !== null && before.token === payload['token'];
              expect(res.renewed).toBe(ok);
              if (ok) holder.set(c.lock, { ...before, expireAt: clock.now() + c.lease });
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('NodeStore input from peers', () => {
  const bytesArb = fc.uint8Array({ maxLength: 6 });
  const effectArb = fc.oneof(
    fc.record({ t: fc.constantFrom('put', 'del', 'clear', 'lock', 'unlock', 'zap'), cache: fc.oneof(fc.constant('c'), fc.constant(''), fc.integer()), key: fc.oneof(bytesArb, fc.string()), value: bytesArb, expireAt: fc.oneof(fc.nat(), fc.constant(-1), fc.double()), name: bytesArb, session: fc.oneof(fc.string(), fc.integer()), token: fc.oneof(fc.nat(), fc.constant(-2)) }, { requiredKeys: [] }),
    fc.anything(),
  );
  const recordArb = fc.oneof(
    fc.record({ v: fc.constantFrom(1, 2), counter: fc.oneof(fc.integer({ min: -1, max: 3 }), fc.double()), at: fc.oneof(fc.nat(), fc.string()), effects: fc.oneof(fc.array(effectArb, { maxLength: 3 }), fc.anything()), dedup: fc.oneof(fc.constant(null), fc.record({ session: fc.string(), seq: fc.integer({ min: -1, max: 5 }), op: fc.nat(50), result: fc.anything() }), fc.anything()) }, { requiredKeys: [] }),
    fc.anything(),
  );
  const snapArb = fc.oneof(
    fc.record({ v: fc.constantFrom(1, 0), counter: fc.oneof(fc.nat(5), fc.constant(-1)), caches: fc.oneof(fc.array(fc.record({ name: fc.oneof(fc.constant('c'), fc.constant('')), config: fc.anything(), entries: fc.array(fc.tuple(bytesArb, bytesArb, fc.oneof(fc.nat(), fc.constant(-1)))) }, { requiredKeys: [] })), fc.anything()), locks: fc.oneof(fc.array(fc.tuple(bytesArb, fc.string(), fc.nat(), fc.nat())), fc.anything()), dedup: fc.oneof(fc.array(fc.tuple(fc.string(), fc.nat(), fc.nat(), fc.anything(), fc.nat())), fc.anything()) }, { requiredKeys: [] }),
    fc.anything(),
  );

  it('malformed records and snapshots give a StoreError or are handled, and a refused one changes nothing', () => {
    fc.assert(
      fc.property(recordArb, snapArb, (rec, snap) => {
        const clock = new FakeClock();
        const store = newPrimary(clock);
        store.mutate(1, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq: 1 }, 's');
        const before = dump(store, clock.now());
        try {
          const r = store.applyRecord(1, rec as ReplicationRecord);
          expect(typeof r).toBe('boolean');
        } catch (err) {
          expect(err).toBeInstanceOf(StoreError);
          expect(dump(store, clock.now())).toEqual(before);
        }
        try {
          store.install(2, snap as PartitionSnapshot);
        } catch (err) {
          expect(err).toBeInstanceOf(StoreError);
          expect(store.hasPartition(2)).toBe(false);
        }
        const st = store.stats();
        expect(st.entries).toBeGreaterThanOrEqual(0);
        expect(st.bytes).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 500 },
    );
  });
});

describe('snapshot chunks', () => {
  it('splitSnapshot chunks stay under the size bound and joinSnapshots restores the same state', () => {
    fc.assert(
      fc.property(mixedArb, fc.integer({ min: 1, max: 400 }), fc.boolean(), (cmds, maxBytes, shuffle) => {
        const clock = new FakeClock();
        const d = new Driver(newPrimary(clock), clock);
        for (const c of cmds) {
          if (c.k === 'advance') clock.advance(c.ms);
          else if (c.k === 'cache' || c.k === 'lock') d.issue(c);
        }
        const copy = newPrimary(clock);
        for (const p of PARTS) {
          const chunks = splitSnapshot(d.store.snapshot(p), maxBytes).map(wire);
          for (const ch of chunks) {
            const items = ch.caches.reduce((n, c) => n + c.entries.length, 0) + ch.locks.length + ch.dedup.length;
            // a chunk over the bound holds a single item that is itself over it
            if (encode(ch).byteLength > maxBytes + 64) expect(items).toBe(1);
          }
          if (shuffle) chunks.reverse();
          copy.install(p, joinSnapshots(chunks));
        }
        expect(dump(copy, clock.now())).toEqual(dump(d.store, clock.now()));
      }),
      { numRuns: 100 },
    );
  });

  it('packed snapshots (ADR 0080): split, joined, unpacked or not, install the same state as plain ones', () => {
    fc.assert(
      fc.property(mixedArb, fc.integer({ min: 1, max: 120 }), fc.integer({ min: 1, max: 400 }), fc.boolean(), fc.boolean(), fc.nat(3), (cmds, packBytes, maxBytes, shuffle, unpack, bigCount) => {
        const clock = new FakeClock();
        const d = new Driver(newPrimary(clock), clock);
        for (const c of cmds) {
          if (c.k === 'advance') clock.advance(c.ms);
          else if (c.k === 'cache' || c.k === 'lock') d.issue(c);
        }
        // Big entries (arrays of their own) travel as plain entries beside the packed ones.
        let seq = 0;
        for (const p of PARTS) for (let i = 0; i < bigCount; i++) d.store.mutate(p, Op.CACHE_PUT, { cache: 'plain', key: b(`big-${p}-${i}`), value: new Uint8Array(600 + i).fill(p + i), seq: ++seq }, 'Z');
        const copy = newPrimary(clock);
        for (const p of PARTS) {
          const snap = d.store.snapshot(p, packBytes);
          for (const c of snap.caches) {
            for (const [k, v] of c.entries) expect(k.byteLength + v.byteLength).toBeGreaterThanOrEqual(512);
            // every blob within its bound, unless it holds one entry bigger than the bound
            for (const blob of c.packed ?? []) {
              let n = 0;
              forEachPacked(blob, () => n++);
              if (blob.byteLength > packBytes) expect(n).toBe(1);
            }
          }
          const plain = d.store.snapshot(p);
          expect(snapshotDataBytes(snap)).toBeGreaterThanOrEqual(snapshotDataBytes(plain));
          // unpacked, a packed snapshot holds the plain one's entries (big ones first)
          const sorted = (x: PartitionSnapshot): unknown => norm({ ...x, caches: x.caches.map((c) => ({ ...c, entries: c.entries.map((e) => norm(e) as string[]).sort((p, q) => (JSON.stringify(p) < JSON.stringify(q) ? -1 : 1)) })) });
          expect(sorted(unpackSnapshot(snap))).toEqual(sorted(plain));
          const chunks = splitSnapshot(snap, maxBytes).map((ch) => wire(unpack ? unpackSnapshot(ch) : ch));
          if (shuffle) chunks.reverse();
          copy.install(p, joinSnapshots(chunks));
        }
        expect(dump(copy, clock.now())).toEqual(dump(d.store, clock.now()));
      }),
      { numRuns: 100 },
    );
  });

  it('a malformed packed blob is refused before anything of the snapshot is installed', () => {
    const clock = new FakeClock();
    const src = newPrimary(clock);
    for (let i = 0; i < 20; i++) src.mutate(0, Op.CACHE_PUT, { cache: 'c', key: b(`k${i}`), value: b('v'.repeat(i)), seq: i + 1 }, 's');
    const good = wire(src.snapshot(0, 64));
    const blob = good.caches[0]!.packed![0]!;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: blob.byteLength - 1 }), fc.integer({ min: 0, max: 255 }), fc.constantFrom('cut', 'byte', 'extra'), (at, byte, how) => {
        const bad = Uint8Array.from(blob);
        let changed: Uint8Array;
        if (how === 'cut') changed = bad.subarray(0, at);
        else if (how === 'extra') changed = Uint8Array.from([...bad, ...bad.subarray(0, Math.min(at, 15) + 1)]);
        else {
          bad[at] = byte;
          changed = bad;
        }
        const dst = newPrimary(clock);
        dst.mutate(0, Op.CACHE_PUT, { cache: 'c', key: b('mine'), value: b('kept'), seq: 1 }, 's');
        const before = dump(dst, clock.now());
        const snap: PartitionSnapshot = { ...good, caches: [{ ...good.caches[0]!, packed: [changed, ...good.caches[0]!.packed!.slice(1)] }] };
        let threw: unknown = null;
        try {
          dst.install(0, snap);
        } catch (e) {
          threw = e;
        }
        // either refused as a whole (a typed error, the partition as it was) or a well-formed blob
        // whose entries were installed (a changed byte inside a key or value, a cut between entries)
        if (threw !== null) {
          expect(threw).toBeInstanceOf(StoreError);
          expect((threw as StoreError).reason).toBe('bad-snapshot');
          expect(dump(dst, clock.now())).toEqual(before);
        } else {
          let n = 0;
          forEachPacked(changed, () => n++);
          expect(dst.inspect(0).entries.length).toBeGreaterThanOrEqual(n);
        }
      }),
      { numRuns: 300 },
    );
    for (const packed of [[b('x')], ['text'], 'nope', [new Uint8Array(16).fill(255)]]) {
      expect(() => newPrimary(clock).install(0, { ...good, caches: [{ ...good.caches[0]!, packed: packed as never }] })).toThrow(/packed/);
    }
  });

  it('joinSnapshots refuses chunks of different snapshots', () => {
    const clock = new FakeClock();
    const s1 = newPrimary(clock);
    s1.mutate(0, Op.CACHE_PUT, { cache: 'c', key: b('k'), value: b('v'), seq: 1 }, 's');
    const a = s1.snapshot(0);
    s1.mutate(0, Op.CACHE_PUT, { cache: 'c', key: b('k2'), value: b('v'), seq: 2 }, 's');
    expect(() => joinSnapshots([a, s1.snapshot(0)])).toThrow(StoreError);
    expect(() => joinSnapshots([])).toThrow(StoreError);
  });
});
