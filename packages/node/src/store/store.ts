/**
 * NodeStore: composes the store's parts — entries (entries.ts), expiry (expiry.ts), lock leases
 * (locks.ts), exactly-once outcomes (outcomes.ts), the caches known (caches.ts), the plans of the
 * ops (cache-ops.ts, locks.ts), reads (reads.ts) and record / snapshot checks (records.ts,
 * snapshot.ts) — and keeps their bookkeeping in step. Semantics: index.ts.
 *
 * This file is well over 400 lines: it is the one place where a change of state touches
 * several parts (an entry write moves the byte count, the TTL count, the expiry heap and the LRU
 * bound together; a shard emptied or dropped moves the caches known; a snapshot reads all of
 * them), and splitting that bookkeeping across files would hide those invariants.
 */
import { ErrorCode, Op, type CacheConfig } from '@gridlink/protocol';
import { keyString, type Bytes } from './bytes.js';
import { EMPTY, planCacheOp, type CacheOpContext } from './cache-ops.js';
import { CacheBook } from './caches.js';
import { EntryArena, NONE, type Shard } from './entries.js';
import { StoreError, badRequest } from './errors.js';
import { ExpiryQueue } from './expiry.js';
import { LockLeases, lockTuple, planLock, planLockState, type LockState } from './locks.js';
import { OutcomeTable } from './outcomes.js';
import { cacheName, obj, optSafeInt, resolveStoreOptions, safeInt, validPartition, validateCacheConfig } from './payload.js';
import { readOp, shardSize } from './reads.js';
import { normaliseRecord } from './records.js';
import { PACKED_HEADER, forEachPacked, normaliseSnapshot } from './snapshot.js';
import type {
  Clock,
  DedupOutcome,
  Effect,
  LockTuple,
  MutateResult,
  PartitionSnapshot,
  PutInPlace,
  ReplicationRecord,
  SnapshotCache,
  StoreOptions,
  StoreStats,
} from './types.js';

/**
 * How long a copy that keeps run-out lock leases (a backup, or a primary that cannot serve: ADR
 * 0072) keeps one past its end: serving within that time, it counts the time the partition had no
 * serving primary as not spent.
 */
export const LOCK_KEEP_MS = 30_000;

class PartitionState {
  readonly shards = new Map<string, Shard>();
  readonly locks = new Map<string, LockState>();
  /** `counter`: where a new copy starts (its floor, ADR 0049: 0 unless the partition was lost). */
  constructor(
    readonly id: number,
    public counter: number,
  ) {}
}

/**
 * The node's storage engine. See index.ts for the semantics.
 */
export class NodeStore {
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly dedupWindowMs: number;

  private readonly parts = new Map<number, PartitionState>();
  private readonly caches: CacheBook;
  /**
   * Shards of implicit caches that became empty: sweep() forgets those still empty then. Not at
   * once: a shard emptied and filled again (a queue, a lock-like key) is not remade each time,
   * and the write path does no more than note it.
   */
  private readonly emptied = new Set<Shard>();
  private readonly entries = new EntryArena();
  private readonly expiry = new ExpiryQueue(this.entries);
  private readonly outcomes: OutcomeTable;

  private readonly locks = new LockLeases(this.expiry);
  /** Partitions whose run-out lock leases are kept `LOCK_KEEP_MS` (this node does not serve them as primary). */
  private readonly keepingLocks = new Set<number>();
  private evictions = 0;
  private expiredCount = 0;
  private sweepExamined = 0;

  /** Where the update counter of a partition this store does not hold starts. */
  private counterFloor: (partition: number) => number = () => 0;

  /**
   * Partitions served again empty after a loss start their update counter at a floor above
   * every counter of the lost copies, so fencing tokens (counters) never go back (ADR 0049).
   * `floor` answers for the partition as the current topology says.
   */
  useCounterFloors(floor: (partition: number) => number): void {
    this.counterFloor = floor;
  }

  constructor(opts: StoreOptions = {}) {
    const o = resolveStoreOptions(opts);
    this.clock = o.clock;
    this.maxEntries = o.maxEntries;
    this.maxBytes = o.maxBytes;
    this.dedupWindowMs = o.dedupWindowMs;
    this.caches = new CacheBook(o.cacheDefaults);
    this.outcomes = new OutcomeTable(this.dedupWindowMs);
  }

  // -------------------------------------------------------------------------------------------
  // Caches and partitions

  /**
   * Creates or reconfigures a cache (last call wins; repeating it is a no-op). The cache is
   * explicit from now on: never forgotten, also when it holds nothing.
   */
  createCache(name: string, config: CacheConfig): void {
    cacheName({ cache: name });
    this.caches.configure(name, validateCacheConfig(config, 'config'));
  }

  /**
   * The config of a cache: its own when it was configured or is held here, else the config an
   * implicit cache gets on first use (`cacheDefaults`).
   */
  cacheConfig(name: string): CacheConfig {
    return { ...this.caches.config(name) };
  }

  /** Every cache this node knows (configured, or implicit and held here), with its config. */
  cacheConfigs(): [string, CacheConfig][] {
    return this.caches.configs();
  }

  /** Configured explicitly (kept for good), rather than made by its first use. */
  isExplicitCache(name: string): boolean {
    return this.caches.isExplicit(name);
  }

  /** The caches configured explicitly, with their configs. */
  explicitCacheConfigs(): [string, CacheConfig][] {
    return this.caches.explicitConfigs();
  }

  /**
   * The distinct configs (as far as backups and loss policy go) of the implicit caches held
   * here: usually one, `cacheDefaults` (a snapshot may bring another primary's defaults).
   */
  implicitCacheKinds(): CacheConfig[] {
    return this.caches.implicitKinds();
  }

  /** Moves on whenever a cache is configured with a config it did not have. */
  get explicitVersion(): number {
    return this.caches.explicitVersion;
  }

  /** Moves on whenever an implicit cache is made or forgotten. */
  get implicitVersion(): number {
    return this.caches.implicitVersion;
  }

  private expireAtFor(cache: string, ttlMs: number | undefined, now: number): number {
    const ttl = ttlMs ?? this.caches.config(cache).ttlMs ?? 0;
    if (ttl <= 0) return 0;
    const at = now + ttl;
    if (!Number.isSafeInteger(at)) throw badRequest('ttlMs is too large');
    return at;
  }

  updateCounter(partition: number): number {
    return this.parts.get(partition)?.counter ?? 0;
  }

  hasPartition(partition: number): boolean {
    return this.parts.has(partition);
  }

  heldPartitions(): number[] {
    return [...this.parts.keys()].sort((a, b) => a - b);
  }

  dropPartition(partition: number): void {
    const part = this.parts.get(partition);
    if (part === undefined) return;
    for (const shard of part.shards.values()) this.dropShard(part, shard);
    for (const lock of part.locks.values()) this.locks.unlink(part.locks, lock);
    this.outcomes.dropPartition(partition);
    this.parts.delete(partition);
  }

  /**
   * Drops this node's copy of the caches of `partition` that `keep` refuses (a copy ranked below
   * those caches' backups holds none of their data). Returns how many caches were dropped.
   */
  dropCaches(partition: number, keep: (cache: string) => boolean): number {
    const part = this.parts.get(partition);
    if (part === undefined) return 0;
    let n = 0;
    for (const [cache, shard] of [...part.shards]) {
      if (keep(cache)) continue;
      this.dropShard(part, shard);
      n++;
    }
    return n;
  }

  /**
   * The backups a cache asked for (a cache this node does not know: those of `cacheDefaults`),
   * or undefined when it names none (the cluster's).
   */
  cacheBackups(name: string): number | undefined {
    return this.caches.config(name).backups;
  }

  private ensurePart(partition: number): PartitionState {
    let part = this.parts.get(partition);
    if (part === undefined) {
      validPartition(partition);
      part = new PartitionState(partition, this.counterFloor(partition));
      this.parts.set(partition, part);
    }
    return part;
  }

  // -------------------------------------------------------------------------------------------
  // Reads

  /** Read-only ops: CACHE_GET, CACHE_CONTAINS_KEY, CACHE_GET_ALL, CACHE_SCAN, CACHE_SIZE (local). */
  read(partition: number, op: Op, payload: unknown): unknown {
    const p = obj(payload, 'payload');
    const now = this.clock.now();
    const part = this.parts.get(partition);
    return readOp(this.entries, (cache) => part?.shards.get(cache), (slot) => this.expire(slot, now), op, p, now);
  }

  /** Number of live entries of `cache` over the given partitions (default: all held). */
  localSize(cache: string, partitions?: Iterable<number>): number {
    const now = this.clock.now();
    let n = 0;
    for (const id of partitions ?? this.parts.keys()) n += shardSize(this.entries, this.parts.get(id)?.shards.get(cache), now);
    return n;
  }

  /** An entry met expired: removes it (lazy expiry). */
  private expire(slot: number, now: number): boolean {
    const at = this.entries.expireAt(slot);
    if (at === 0 || at > now) return false;
    this.removeEntry(slot);
    this.expiredCount++;
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Mutations (primary)

  /**
   * Applies a mutating op as the partition's primary. A repeat of a remembered (session, seq)
   * returns the first outcome with `record: null`. Otherwise the op's effects are applied, the
   * update counter moves on by one and the record to replicate is returned. Throws StoreError
   * (before changing anything) on bad input or a stored value of the wrong type.
   */
  mutate(partition: number, op: Op, payload: unknown, session: string): MutateResult {
    try {
      return this.mutateInner(partition, op, payload, session);
    } finally {
      this.locks.flush();
    }
  }

  private mutateInner(partition: number, op: Op, payload: unknown, session: string): MutateResult {
    const p = obj(payload, 'payload');
    const seq = safeInt(p, 'seq', 0);
    const ack = optSafeInt(p, 'ack', 0);
    if (ack !== undefined && ack > seq) throw badRequest('ack must not exceed seq');
    if (typeof session !== 'string') throw badRequest('session must be a string');
    validPartition(partition);
    const now = this.clock.now();
    if (this.outcomes.due(now)) this.outcomes.prune(now, Infinity);
    const hit = this.outcomes.get(partition, session, seq);
    if (hit !== undefined) {
      if (hit.op !== op) {
        throw new StoreError(ErrorCode.BAD_REQUEST, 'seq-reused', `seq ${seq} of this session was already used by op ${hit.op}`);
      }
      return { result: hit.result, record: null, replayOf: hit.counter };
    }
    if (seq < this.outcomes.floor(session)) {
      throw new StoreError(
        ErrorCode.BAD_REQUEST,
        'seq-acknowledged',
        `seq ${seq} is below the session's acknowledged floor: a stale duplicate of a settled request`,
      );
    }
    const existing = this.parts.get(partition);
    const part = existing ?? new PartitionState(partition, this.counterFloor(partition));
    let result: unknown;
    let effects: Effect[];
    if (op === Op.LOCK_TRY_ACQUIRE_GET || op === Op.LOCK_PUT_RELEASE) {
      // Lock + read-your-state (ADR 0036): the lock is named by the entry's key.
      const key = p['key'];
      const held = key instanceof Uint8Array ? this.locks.live(part.locks, keyString(key), now) : undefined;
      const ctx = this.cacheContext(part);
      const view = {
        value: (cache: string, k: Bytes, t: number): Bytes | null => {
          const slot = ctx.live(cache, k, t);
          return slot === NONE ? null : this.entries.valueBytes(slot);
        },
        expireAtFor: (cache: string, ttlMs: number | undefined, t: number): number => this.expireAtFor(cache, ttlMs, t),
      };
      const plan = planLockState(op, p, session, held, now, part.counter + 1, view);
      if (!plan.record) return { result: plan.result, record: null };
      ({ result, effects } = plan);
    } else if (op >= Op.LOCK_TRY_ACQUIRE && op <= Op.LOCK_RENEW) {
      const name = p['name'];
      const held = name instanceof Uint8Array ? this.locks.live(part.locks, keyString(name), now) : undefined;
      const plan = planLock(op, p, session, held, now, part.counter + 1);
      if (!plan.record) return { result: plan.result, record: null };
      ({ result, effects } = plan);
    } else {
      ({ result, effects } = planCacheOp(this.cacheContext(part), op, p, now));
    }
    if (existing === undefined) this.parts.set(partition, part);
    const counter = part.counter + 1;
    for (const eff of effects) this.applyEffect(part, eff);
    part.counter = counter;
    // Built whole (no property added later: one object shape, no transition per write).
    let dedup: DedupOutcome;
    if (ack !== undefined) {
      dedup = { session, seq, op, result, ack };
      this.outcomes.advance(session, ack, now);
    } else dedup = { session, seq, op, result };
    this.outcomes.add(session, seq, op, result, now, counter, partition);
    this.enforceBounds();
    return { result, record: { v: 1, counter, at: now, effects, dedup } };
  }

  /** The partition the shared planning context reads (set before each use). */
  private ctxPart: PartitionState | null = null;
  /** One planning context for every op (not one object and two closures per write). */
  private readonly ctx: CacheOpContext = {
    entries: this.entries,
    expireAtFor: (cache, ttlMs, now) => this.expireAtFor(cache, ttlMs, now),
    live: (cache, key, now) => {
      const slot = this.entries.find(this.ctxPart!.shards.get(cache), key);
      return slot === NONE || this.expire(slot, now) ? NONE : slot;
    },
  };

  private cacheContext(part: PartitionState): CacheOpContext {
    this.ctxPart = part;
    return this.ctx;
  }

  // -------------------------------------------------------------------------------------------
  // Replication (backup)

  /**
   * Applies a record from the primary. Records at or below the partition's counter are ignored
   * (true); a record that skips a counter value is not applied and returns false (resync).
   * `normalised`: the caller has checked that the record already has the store's typed form
   * (a well-formed binary put, see wellFormedPut), so no checked copy is built.
   */
  applyRecord(partition: number, record: ReplicationRecord, normalised = false): boolean {
    try {
      validPartition(partition);
      const rec = normalised ? record : normaliseRecord(record);
      const part = this.parts.get(partition);
      const cur = part?.counter ?? this.counterFloor(partition);
      if (rec.counter <= cur) return true;
      if (rec.counter !== cur + 1) return false;
      const target = part ?? this.ensurePart(partition);
      for (const eff of rec.effects) this.applyEffect(target, eff);
      target.counter = rec.counter;
      const d = rec.dedup;
      if (d !== null) {
        if (d.ack !== undefined) this.outcomes.advance(d.session, d.ack, rec.at);
        this.outcomes.add(d.session, d.seq, d.op, d.result, rec.at, rec.counter, partition);
      }
      const now = this.clock.now();
      if (this.outcomes.due(now)) this.outcomes.prune(now, Infinity);
      this.enforceBounds();
      return true;
    } finally {
      this.locks.flush();
    }
  }

  /**
   * applyRecord for a replicated plain put read in place from its binary record (the caller
   * checked it with wellFormedView): the entry's bytes are taken straight from the record and the
   * outcome (the empty result) is remembered, with no record, effect or byte-view object. `keep`
   * false: this copy does not hold the cache (per-cache backups), so only the counter and the
   * outcome move. Same answers as applyRecord: true when applied or already held, false on a gap.
   */
  applyPut(partition: number, put: PutInPlace, keep: boolean): boolean {
    try {
      validPartition(partition);
      const part = this.parts.get(partition);
      const cur = part?.counter ?? this.counterFloor(partition);
      if (put.counter <= cur) return true;
      if (put.counter !== cur + 1) return false;
      const target = part ?? this.ensurePart(partition);
      if (keep) {
        const shard = this.shardFor(target, put.cache);
        this.entrySet(shard, this.entries.setIn(shard, put.bytes, put.keyAt, put.keyLen, put.valueLen, put.expireAt), put.expireAt);
      }
      target.counter = put.counter;
      if (put.dedup) {
        if (put.hasAck) this.outcomes.advance(put.session, put.ack, put.at);
        this.outcomes.add(put.session, put.seq, put.op, EMPTY, put.at, put.counter, partition);
      }
      const now = this.clock.now();
      if (this.outcomes.due(now)) this.outcomes.prune(now, Infinity);
      this.enforceBounds();
      return true;
    } finally {
      this.locks.flush();
    }
  }

  private applyEffect(part: PartitionState, eff: Effect): void {
    switch (eff.t) {
      case 'put':
        this.setEntry(part, eff.cache, eff.key, eff.value, eff.expireAt);
        return;
      case 'del': {
        const slot = this.entries.find(part.shards.get(eff.cache), eff.key);
        if (slot !== NONE) this.removeEntry(slot);
        return;
      }
      case 'clear': {
        const shard = part.shards.get(eff.cache);
        if (shard === undefined) return;
        this.entries.clearShard(shard, (slot) => this.forgetExpiry(slot));
        this.shardEmptied(shard);
        return;
      }
      case 'lock':
        this.locks.set(part.locks, part.id, keyString(eff.name), eff.session, eff.owner ?? '', eff.token, eff.expireAt);
        return;
      case 'unlock': {
        const lock = part.locks.get(keyString(eff.name));
        if (lock !== undefined) this.locks.free(part.locks, lock);
        return;
      }
    }
  }

  /**
   * Raw view of a partition for diagnostics and tests, read straight from the internal
   * structures (unlike snapshot(), includes expired items not yet removed, with their expiry).
   */
  inspect(partition: number): {
    counter: number;
    entries: [string, Bytes, Bytes, number][];
    locks: LockTuple[];
    dedup: [string, number, number, unknown, number, number][];
  } {
    const part = this.parts.get(partition);
    const out = { counter: part?.counter ?? 0, entries: [] as [string, Bytes, Bytes, number][], locks: [] as LockTuple[], dedup: [] as [string, number, number, unknown, number, number][] };
    if (part === undefined) return out;
    const e = this.entries;
    for (const shard of part.shards.values()) {
      for (const slot of e.slots(shard)) out.entries.push([shard.cache, e.keyBytes(slot), e.valueBytes(slot), e.expireAt(slot)]);
    }
    for (const l of part.locks.values()) out.locks.push(lockTuple(l));
    for (const d of this.outcomes.ofPartition(partition)) out.dedup.push([d.session, d.seq, d.op, d.result, d.at, d.counter]);
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Lock leases across a change of primary (ADR 0072)

  /**
   * This node is a backup of `partition`, or its primary but unable to serve it: a lock lease
   * that runs out is kept `LOCK_KEEP_MS` past its end (no lock op is served meanwhile, so nothing
   * sees it), so that once this copy serves, `resumeLockLeases` can tell which leases were live
   * while the partition was last served.
   */
  keepLockLeases(partition: number): void {
    validPartition(partition);
    this.keepingLocks.add(partition);
  }

  /**
   * This node serves `partition` as primary now. Its lock leases ran on no serving primary for
   * `pausedForMs` (since the old primary was last heard alive, or since this node could not
   * serve it; 0 when the old primary lives on, or nothing is known): that time is not counted — each lease live then ends `pausedForMs` later
   * than it said (its holder could neither renew nor release it meanwhile, and nobody could take
   * it), and a lease that had run out by then is freed. Returns how many were extended and freed.
   */
  resumeLockLeases(partition: number, pausedForMs: number): { extended: number; freed: number } {
    const kept = this.keepingLocks.delete(partition);
    const part = this.parts.get(partition);
    const out = { extended: 0, freed: 0 };
    if (part === undefined || (!kept && pausedForMs <= 0)) return out;
    const now = this.clock.now();
    const paused = Math.max(0, Math.min(pausedForMs, LOCK_KEEP_MS));
    const since = now - paused;
    try {
      for (const l of [...part.locks.values()]) {
        if (l.expireAt <= since) {
          this.locks.free(part.locks, l);
          out.freed++;
        } else if (paused > 0) {
          this.locks.reschedule(l, l.expireAt + paused, l.expireAt + paused);
          out.extended++;
        } else if (l.sweepAt !== l.expireAt) {
          this.locks.reschedule(l, l.expireAt, l.expireAt);
        }
      }
    } finally {
      this.locks.flush();
    }
    return out;
  }

  /** This node holds no copy of `partition` any more (or it was never a backup of it). */
  forgetLockKeeping(partition: number): void {
    this.keepingLocks.delete(partition);
  }

  // -------------------------------------------------------------------------------------------
  // State transfer

  /**
   * Everything of the partition that is still live now, for state transfer. With `packBytes`, its
   * small entries come packed in blobs of at most that many bytes each (shardEntries): only for a
   * node that installs packed snapshots (Feature.PACKED_SNAPSHOTS, ADR 0080).
   */
  snapshot(partition: number, packBytes?: number): PartitionSnapshot {
    const now = this.clock.now();
    const part = this.parts.get(partition);
    const snap: PartitionSnapshot = { v: 1, partition, counter: part?.counter ?? 0, at: now, caches: [], locks: [], dedup: [] };
    const floors = this.outcomes.floors();
    if (floors.length > 0) snap.floors = floors;
    if (part === undefined) return snap;
    for (const shard of part.shards.values()) {
      const c: SnapshotCache = { name: shard.cache, config: { ...this.caches.config(shard.cache) }, entries: [] };
      const packed = this.shardEntries(shard, now, packBytes, c.entries);
      if (packed.length > 0) c.packed = packed;
      if (packed.length > 0 || c.entries.length > 0) snap.caches.push(c);
    }
    for (const l of part.locks.values()) if (l.expireAt > now) snap.locks.push(lockTuple(l));
    for (const d of this.outcomes.ofPartition(partition)) {
      if (d.at + this.dedupWindowMs > now) snap.dedup.push([d.session, d.seq, d.op, d.result, d.at, d.counter]);
    }
    return snap;
  }

  /**
   * The shard's live entries: plain ones pushed to `plain`, and, with `blobBytes`, the small ones
   * packed instead, in the blobs returned, of at most `blobBytes` each (an entry bigger than that:
   * a blob of its own). Big entries (arrays of their own) stay plain: lent as they are, they are
   * copied once, into the frame, where packing would copy them twice.
   */
  private shardEntries(shard: Shard, now: number, blobBytes: number | undefined, plain: [Bytes, Bytes, number][]): Uint8Array[] {
    const e = this.entries;
    const blobs: Uint8Array[] = [];
    let blob: Uint8Array | null = null;
    let dv: DataView | null = null;
    let used = 0;
    const close = (): void => {
      if (blob !== null && used > 0) blobs.push(blob.subarray(0, used));
      blob = null;
      dv = null;
      used = 0;
    };
    for (const slot of e.slots(shard)) {
      const at = e.expireAt(slot);
      if (at !== 0 && at <= now) continue;
      if (blobBytes === undefined || e.lendsBytes(slot)) {
        plain.push([e.keyBytes(slot), e.valueBytes(slot), at]);
        continue;
      }
      const keyLen = e.keyLength(slot);
      const valueLen = e.valueLength(slot);
      const size = PACKED_HEADER + keyLen + valueLen;
      if (blob === null || used + size > blob.length) {
        close();
        blob = new Uint8Array(Math.max(blobBytes, size));
        dv = new DataView(blob.buffer);
      }
      dv!.setUint32(used, keyLen, true);
      dv!.setUint32(used + 4, valueLen, true);
      dv!.setFloat64(used + 8, at, true);
      e.copyEntryTo(slot, blob, used + PACKED_HEADER);
      used += size;
    }
    close();
    return blobs;
  }

  /** Replaces whatever this node holds of the partition with the snapshot. */
  install(partition: number, snapshot: PartitionSnapshot): void {
    validPartition(partition);
    const snap = normaliseSnapshot(snapshot);
    this.dropPartition(partition);
    const part = this.ensurePart(partition);
    part.counter = snap.counter;
    const now = this.clock.now();
    for (const c of snap.caches) {
      // A cache this node does not know takes the config the snapshot carries (the primary's).
      let shard: Shard | undefined;
      for (const [key, value, expireAt] of c.entries) {
        if (expireAt !== 0 && expireAt <= now) continue;
        shard ??= part.shards.get(c.name) ?? this.newShard(part, c.name, c.config);
        this.entrySet(shard, this.entries.set(shard, key, value, expireAt), expireAt);
      }
      for (const blob of c.packed ?? []) {
        forEachPacked(blob, (at, keyLen, valueLen, expireAt) => {
          if (expireAt !== 0 && expireAt <= now) return;
          shard ??= part.shards.get(c.name) ?? this.newShard(part, c.name, c.config);
          this.entrySet(shard, this.entries.setIn(shard, blob, at, keyLen, valueLen, expireAt), expireAt);
        });
      }
    }
    for (const [name, session, token, expireAt, owner] of snap.locks) {
      if (expireAt > now) this.locks.set(part.locks, partition, keyString(name), session, owner ?? '', token, expireAt);
    }
    for (const [session, floor, lastAt] of snap.floors ?? []) this.outcomes.advance(session, floor, lastAt);
    for (const [session, seq, op, result, at, counter] of snap.dedup) this.outcomes.add(session, seq, op, result, at, counter, partition);
    this.outcomes.prune(now, Infinity);
    this.enforceBounds();
  }

  // -------------------------------------------------------------------------------------------
  // Expiry, bounds, stats

  /**
   * Removes expired entries and lock leases (notifying onLockFreed for locks), forgets the
   * shards of implicit caches that are empty (and such a cache once no partition holds any of
   * it), forgets (session, seq) outcomes older than the window and idle sessions. Examines at
   * most `budget` items in total; returns how many entries and locks it removed as expired.
   */
  sweep(budget: number): number {
    if (!Number.isSafeInteger(budget) || budget < 0) throw new TypeError('sweep budget must be a non-negative integer');
    const now = this.clock.now();
    let examined = 0;
    let removed = 0;
    try {
      while (examined < budget) {
        const item = this.expiry.popDue(now);
        if (item === undefined) break;
        examined++;
        if (!this.expiry.isCurrent(item)) continue;
        if (this.removeExpired(item.ref, now)) removed++;
      }
      if (examined < budget && this.emptied.size > 0) examined += this.forgetEmptied(budget - examined);
      if (examined < budget) examined += this.outcomes.prune(now, budget - examined);
      if (examined < budget) examined += this.outcomes.pruneSessions(now, budget - examined);
    } finally {
      this.sweepExamined += examined;
      this.locks.flush();
    }
    return removed;
  }

  stats(): StoreStats {
    return {
      entries: this.entries.count,
      bytes: this.entries.bytes,
      evictions: this.evictions,
      expired: this.expiredCount,
      partitions: this.parts.size,
      locks: this.locks.count - this.locks.kept,
      locksKept: this.locks.kept,
      dedupEntries: this.outcomes.size,
      dedupSessions: this.outcomes.sessionCount,
      sweepExamined: this.sweepExamined,
      caches: this.caches.size,
      shards: this.entries.shardCount,
      slabs: this.entries.slabCount,
    };
  }

  /**
   * Called after a lock was released, or its expired lease was removed (by sweep or when an op
   * found it expired), so callers waiting to acquire it can try again. Listeners run after the
   * store's state is consistent and may call back into the store; they must not throw.
   */
  onLockFreed(listener: (partition: number, name: Uint8Array) => void): () => void {
    return this.locks.onFreed(listener);
  }

  // -------------------------------------------------------------------------------------------
  // Entry / lock bookkeeping

  private shardFor(part: PartitionState, cache: string): Shard {
    return part.shards.get(cache) ?? this.newShard(part, cache);
  }

  /**
   * A shard for `cache` in `part`, which has none. A cache this node does not know is an
   * implicit one: it takes `adopt` (a snapshot's config) or `cacheDefaults`.
   */
  private newShard(part: PartitionState, cache: string, adopt?: CacheConfig): Shard {
    this.caches.shardMade(cache, adopt);
    const shard = this.entries.newShard(part.id, cache);
    part.shards.set(cache, shard);
    return shard;
  }

  /**
   * Drops a shard of `part` with whatever it holds; an implicit cache with no shard left is
   * forgotten. (The caller may be iterating `part.shards`: deleting the current key is safe.)
   */
  private dropShard(part: PartitionState, shard: Shard): void {
    this.entries.dropShard(shard, (slot) => this.forgetExpiry(slot));
    part.shards.delete(shard.cache);
    this.emptied.delete(shard);
    this.caches.shardDropped(shard.cache);
  }

  /** The shard's last entry left: an implicit cache's shard is forgotten by the next sweep. */
  private shardEmptied(shard: Shard): void {
    if (!this.caches.isExplicit(shard.cache)) this.emptied.add(shard);
  }

  /**
   * Forgets the emptied shards still empty, examining at most `budget` of them; returns how many
   * it examined. A shard filled again meanwhile, or whose cache was configured since, is kept
   * (a write never lands in a forgotten shard: the store is synchronous, and a later write makes
   * a new one). Locks are the partition's, not a cache's: a shard holds no lock.
   */
  private forgetEmptied(budget: number): number {
    let n = 0;
    for (const shard of this.emptied) {
      if (n >= budget) break;
      n++;
      this.emptied.delete(shard);
      const part = this.parts.get(shard.partition);
      if (part === undefined || part.shards.get(shard.cache) !== shard || shard.size > 0) continue;
      if (this.caches.isExplicit(shard.cache)) continue;
      this.dropShard(part, shard);
    }
    return n;
  }

  private setEntry(part: PartitionState, cache: string, key: Bytes, value: Bytes, expireAt: number): void {
    const shard = this.shardFor(part, cache);
    this.entrySet(shard, this.entries.set(shard, key, value, expireAt), expireAt);
  }

  /** Expiry bookkeeping after the arena wrote `slot` of `shard` (its previous expiry in previousExpireAt). */
  private entrySet(shard: Shard, slot: number, expireAt: number): void {
    const prev = this.entries.previousExpireAt;
    if (prev === expireAt) return;
    if (prev > 0) {
      shard.ttlCount--;
      this.expiry.expiring--;
    }
    if (expireAt !== 0) {
      shard.ttlCount++;
      this.expiry.expiring++;
      this.expiry.push(expireAt, slot);
    }
  }

  private removeEntry(slot: number): void {
    const shard = this.entries.shard(slot);
    if (this.entries.expireAt(slot) !== 0) shard.ttlCount--;
    this.forgetExpiry(slot);
    this.entries.remove(slot);
    if (shard.size === 0) this.shardEmptied(shard);
  }

  /** An entry leaves: its expiry no longer counts (its heap item turns stale). */
  private forgetExpiry(slot: number): void {
    if (this.entries.expireAt(slot) !== 0) this.expiry.expiring--;
  }

  /**
   * Removes an entry or lease whose expiry came (counted as expired / reported freed); a lease a
   * backup keeps (ADR 0072) is looked at again `LOCK_KEEP_MS` after its end instead. Whether it
   * removed anything.
   */
  private removeExpired(ref: number | LockState, now: number): boolean {
    if (typeof ref === 'number') {
      this.removeEntry(ref);
      this.expiredCount++;
      return true;
    }
    if (this.keepingLocks.has(ref.partition) && ref.expireAt + LOCK_KEEP_MS > now) {
      this.locks.reschedule(ref, ref.expireAt, ref.expireAt + LOCK_KEEP_MS);
      return false;
    }
    this.locks.free(this.parts.get(ref.partition)!.locks, ref);
    return true;
  }

  /** Over the bound: first drop what has already expired, then evict least recently used entries. */
  private enforceBounds(): void {
    const e = this.entries;
    if (e.count <= this.maxEntries && e.bytes <= this.maxBytes) return;
    const now = this.clock.now();
    while (e.count > this.maxEntries || e.bytes > this.maxBytes) {
      const item = this.expiry.popDue(now);
      if (item !== undefined) {
        if (this.expiry.isCurrent(item)) this.removeExpired(item.ref, now);
        continue;
      }
      if (e.tail === NONE) return;
      this.removeEntry(e.tail);
      this.evictions++;
    }
  }
}
