import { decode, encode } from '@msgpack/msgpack';
import { ErrorCode, Op, type CacheConfig } from '@gridlink/protocol';
import { copyBytes, isBytes, keyString, ownBytes, toBytes, type Bytes } from './bytes.js';
import { StoreError, badRequest } from './errors.js';
import { MinHeap } from './heap.js';
import { OutcomeTable } from './outcomes.js';
import type {
  Clock,
  DedupOutcome,
  Effect,
  MutateResult,
  PartitionSnapshot,
  ReplicationRecord,
  SnapshotCache,
  StoreOptions,
  StoreStats,
} from './types.js';

const DEFAULT_DEDUP_WINDOW_MS = 120_000;
const MAX_CACHE_NAME = 256;
const MAX_SCAN_COUNT = 100_000;
const CURSOR_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Internal state

/*
 * Keys and values are held as latin1 strings (one char per byte): byte-exact, ordered like the
 * bytes, and far smaller in V8 than a Uint8Array with its own ArrayBuffer per entry.
 */
interface Entry {
  kind: 'entry';
  shard: Shard;
  /** Key bytes as a latin1 string (also the map key). */
  k: string;
  /** Value bytes as a latin1 string. */
  value: string;
  /** Absolute ms; 0 = never. */
  expireAt: number;
  live: boolean;
  /** LRU links: `newer` points towards the head (most recently used). */
  newer: Entry | null;
  older: Entry | null;
}

interface LockState {
  kind: 'lock';
  part: PartitionState;
  /** Lock name bytes as a latin1 string. */
  k: string;
  session: string;
  token: number;
  expireAt: number;
  live: boolean;
}

/** One cache's entries within one partition. */
class Shard {
  readonly entries = new Map<string, Entry>();
  /** Keys in byte order, for scans; null when stale (rebuilt on the next scan). */
  sorted: string[] | null = null;
  /** Entries of this shard that carry an expiry (size() is O(1) when there are none). */
  ttlCount = 0;
  constructor(readonly cache: string) {}
}

class PartitionState {
  counter = 0;
  readonly shards = new Map<string, Shard>();
  readonly locks = new Map<string, LockState>();
  /** (session, seq) outcomes, in insertion (≈ time) order. */
  readonly dedup = new OutcomeTable();
  constructor(readonly id: number) {}
}

interface Plan {
  result: unknown;
  effects: Effect[];
  /** False for an outcome that is neither applied nor remembered (a failed lock acquisition). */
  record: boolean;
}

type Payload = Record<string, unknown>;

// Constant outcomes are shared (and frozen): they are remembered per mutation for the dedup
// window, so not allocating one per write matters.
const EMPTY: Record<string, never> = Object.freeze({});
const APPLIED = Object.freeze({ applied: true });
const NOT_APPLIED = Object.freeze({ applied: false });
const RELEASED = Object.freeze({ released: true });
const NOT_RELEASED = Object.freeze({ released: false });
const RENEWED = Object.freeze({ renewed: true });
const NOT_RENEWED = Object.freeze({ renewed: false });
const applied = (ok: boolean): unknown => (ok ? APPLIED : NOT_APPLIED);

// ---------------------------------------------------------------------------------------------
// Validation helpers (payloads reach the store after the protocol's shape check, records and
// snapshots come from peers; both are still checked so bad input is a typed error).

function obj(v: unknown, what: string): Payload {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || isBytes(v)) {
    throw badRequest(`${what} must be an object`);
  }
  return v as Payload;
}

function cacheName(p: Payload): string {
  const c = p['cache'];
  if (typeof c !== 'string' || c.length === 0 || c.length > MAX_CACHE_NAME) {
    throw badRequest(`cache must be a non-empty string of at most ${MAX_CACHE_NAME} characters`);
  }
  return c;
}

function bytesField(p: Payload, field: string): Bytes {
  const v = p[field];
  if (!isBytes(v)) throw badRequest(`${field} must be bytes`);
  return v;
}

function safeInt(p: Payload, field: string, min = Number.MIN_SAFE_INTEGER): number {
  const v = p[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw badRequest(`${field} must be an integer >= ${min}`);
  }
  return v;
}

function optSafeInt(p: Payload, field: string, min = Number.MIN_SAFE_INTEGER): number | undefined {
  const v = p[field];
  if (v === undefined || v === null) return undefined;
  return safeInt(p, field, min);
}

function isSafeNonNegative(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function validateCacheConfig(config: unknown, what: string): CacheConfig {
  const c = obj(config, what);
  const out: CacheConfig = {};
  if (c['ttlMs'] !== undefined && c['ttlMs'] !== null) {
    if (!isSafeNonNegative(c['ttlMs'])) throw badRequest(`${what}.ttlMs must be a non-negative integer`);
    out.ttlMs = c['ttlMs'];
  }
  if (c['backups'] !== undefined && c['backups'] !== null) {
    if (!isSafeNonNegative(c['backups'])) throw badRequest(`${what}.backups must be a non-negative integer`);
    out.backups = c['backups'];
  }
  return out;
}

function validPartition(partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw badRequest(`partition must be a non-negative integer, got ${String(partition)}`);
  }
}

function badRecord(message: string): StoreError {
  return new StoreError(ErrorCode.BAD_REQUEST, 'bad-record', `replication record: ${message}`);
}

function badSnapshot(message: string): StoreError {
  return new StoreError(ErrorCode.BAD_REQUEST, 'bad-snapshot', `partition snapshot: ${message}`);
}

function valueTypeError(message: string): StoreError {
  return new StoreError(ErrorCode.VALUE_TYPE, 'value-type', message);
}

/** Reads a stored counter: the MessagePack encoding of a safe integer. */
export function decodeCounter(value: Bytes): number {
  let v: unknown;
  try {
    v = decode(value, { useBigInt64: true });
  } catch {
    throw valueTypeError('stored value is not a MessagePack integer');
  }
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw valueTypeError('stored integer is outside the safe integer range');
    }
    return Number(v);
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  throw valueTypeError('stored value is not a MessagePack integer');
}

export function encodeCounter(n: number): Bytes {
  return encode(n);
}

/** Copies the byte fields of a recorded outcome so it does not keep a peer's frame buffer alive. */
function ownResult(result: unknown): unknown {
  if (isBytes(result)) return copyBytes(result);
  if (Array.isArray(result)) return result.map(ownResult);
  if (typeof result === 'object' && result !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(result)) out[k] = ownResult(v);
    return out;
  }
  return result;
}

/** An entry's value for an outcome that is remembered for the dedup window: an own buffer. */
function valueOf(e: Entry | undefined): Bytes | null {
  return e === undefined ? null : ownBytes(e.value);
}


// ---------------------------------------------------------------------------------------------

/**
 * The node's storage engine. See index.ts for the semantics.
 */
export class NodeStore {
  private readonly clock: Clock;
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private readonly dedupWindowMs: number;
  private readonly cacheDefaults: CacheConfig;

  private readonly parts = new Map<number, PartitionState>();
  private readonly caches = new Map<string, CacheConfig>();
  private readonly expiry = new MinHeap<Entry | LockState>();
  /** Live entries with an expiry plus live locks: the heap compacts when it grows far beyond. */
  private expiring = 0;

  private lruHead: Entry | null = null;
  private lruTail: Entry | null = null;

  private entryCount = 0;
  private byteCount = 0;
  private lockCount = 0;
  private dedupCount = 0;
  private evictions = 0;
  private expiredCount = 0;
  private dedupSweepCursor = 0;
  private sweepExamined = 0;

  private readonly freedListeners = new Set<(partition: number, name: Uint8Array) => void>();
  private pendingFreed: [number, string][] = [];

  constructor(opts: StoreOptions = {}) {
    const o = obj(opts, 'StoreOptions');
    const positive = (field: string): number => {
      const v = o[field];
      if (v === undefined) return Infinity;
      if (typeof v !== 'number' || !(v > 0) || (!Number.isSafeInteger(v) && v !== Infinity)) {
        throw new TypeError(`StoreOptions.${field} must be a positive integer, got ${JSON.stringify(v)}`);
      }
      return v;
    };
    this.maxEntries = positive('maxEntries');
    this.maxBytes = positive('maxBytes');
    const w = o['dedupWindowMs'];
    if (w !== undefined && !isSafeNonNegative(w)) {
      throw new TypeError(`StoreOptions.dedupWindowMs must be a non-negative integer, got ${JSON.stringify(w)}`);
    }
    this.dedupWindowMs = w ?? DEFAULT_DEDUP_WINDOW_MS;
    const clock = o['clock'];
    if (clock !== undefined && (typeof clock !== 'object' || clock === null || typeof (clock as Clock).now !== 'function')) {
      throw new TypeError('StoreOptions.clock must have a now() method');
    }
    this.clock = (clock as Clock | undefined) ?? Date;
    try {
      this.cacheDefaults = o['cacheDefaults'] === undefined ? {} : validateCacheConfig(o['cacheDefaults'], 'cacheDefaults');
    } catch (err) {
      throw new TypeError(`StoreOptions.${(err as Error).message}`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Caches

  /** Creates or reconfigures a cache (last call wins; repeating it is a no-op). */
  createCache(name: string, config: CacheConfig): void {
    cacheName({ cache: name });
    this.caches.set(name, validateCacheConfig(config, 'config'));
  }

  cacheConfig(name: string): CacheConfig | undefined {
    const c = this.caches.get(name);
    return c === undefined ? undefined : { ...c };
  }

  /** Every cache this node knows, with its config. */
  cacheConfigs(): [string, CacheConfig][] {
    return [...this.caches].map(([n, c]) => [n, { ...c }]);
  }

  private ensureCache(name: string): CacheConfig {
    let c = this.caches.get(name);
    if (c === undefined) {
      c = { ...this.cacheDefaults };
      this.caches.set(name, c);
    }
    return c;
  }

  private expireAtFor(cache: string, ttlMs: number | undefined, now: number): number {
    const ttl = ttlMs ?? (this.caches.get(cache) ?? this.cacheDefaults).ttlMs ?? 0;
    if (ttl <= 0) return 0;
    const at = now + ttl;
    if (!Number.isSafeInteger(at)) throw badRequest('ttlMs is too large');
    return at;
  }

  // -------------------------------------------------------------------------------------------
  // Partitions

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
    for (const shard of part.shards.values()) this.clearShard(shard);
    for (const lock of part.locks.values()) this.unlinkLock(lock);
    this.dedupCount -= part.dedup.size;
    this.parts.delete(partition);
  }

  private ensurePart(partition: number): PartitionState {
    let part = this.parts.get(partition);
    if (part === undefined) {
      validPartition(partition);
      part = new PartitionState(partition);
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
    const shardOf = (cache: string): Shard | undefined => part?.shards.get(cache);
    switch (op) {
      case Op.CACHE_GET: {
        const cache = cacheName(p);
        const key = bytesField(p, 'key');
        const e = this.liveEntry(shardOf(cache), keyString(key), now);
        if (e === undefined) return { value: null };
        this.touch(e);
        return { value: toBytes(e.value) };
      }
      case Op.CACHE_CONTAINS_KEY: {
        const cache = cacheName(p);
        const key = bytesField(p, 'key');
        return { found: this.liveEntry(shardOf(cache), keyString(key), now) !== undefined };
      }
      case Op.CACHE_GET_ALL: {
        const cache = cacheName(p);
        const keys = p['keys'];
        if (!Array.isArray(keys) || !keys.every(isBytes)) throw badRequest('keys must be an array of bytes');
        const shard = shardOf(cache);
        const values = keys.map((key) => {
          const e = this.liveEntry(shard, keyString(key), now);
          if (e === undefined) return null;
          this.touch(e);
          return toBytes(e.value);
        });
        return { values };
      }
      case Op.CACHE_SIZE: {
        const cache = cacheName(p);
        return { size: this.shardSize(shardOf(cache), now) };
      }
      case Op.CACHE_SCAN:
        return this.scan(shardOf(cacheName(p)), p, now);
      default:
        throw new StoreError(ErrorCode.UNKNOWN_OP, 'unknown-op', `op ${String(op)} is not a read op`);
    }
  }

  /** Number of live entries of `cache` over the given partitions (default: all held). */
  localSize(cache: string, partitions?: Iterable<number>): number {
    const now = this.clock.now();
    let n = 0;
    for (const id of partitions ?? this.parts.keys()) n += this.shardSize(this.parts.get(id)?.shards.get(cache), now);
    return n;
  }

  private shardSize(shard: Shard | undefined, now: number): number {
    if (shard === undefined) return 0;
    if (shard.ttlCount === 0) return shard.entries.size;
    let n = 0;
    for (const e of shard.entries.values()) if (e.expireAt === 0 || e.expireAt > now) n++;
    return n;
  }

  /**
   * Keys in byte order after the cursor's key. The cursor is [version, ...last key returned], so a
   * scan never returns a key twice and returns every key present for the whole scan, whatever
   * is inserted or removed meanwhile — and it stays valid on another replica of the partition.
   */
  private scan(shard: Shard | undefined, p: Payload, now: number): { keys: Bytes[]; cursor: Bytes | null } {
    const count = safeInt(p, 'count', 1);
    const limit = Math.min(count, MAX_SCAN_COUNT);
    const c = p['cursor'];
    let after: string | null = null;
    if (c !== undefined && c !== null) {
      if (!isBytes(c) || c.byteLength < 1 || c[0] !== CURSOR_VERSION) throw badRequest('cursor is not a scan cursor');
      after = keyString(c.subarray(1));
    }
    if (shard === undefined) return { keys: [], cursor: null };
    if (shard.sorted === null) shard.sorted = [...shard.entries.keys()].sort();
    const sorted = shard.sorted;
    let i = 0;
    if (after !== null) {
      // first index with sorted[i] > after
      let lo = 0;
      let hi = sorted.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (sorted[mid]! <= after) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    const keys: Bytes[] = [];
    let last: Entry | undefined;
    for (; i < sorted.length && keys.length < limit; i++) {
      const e = shard.entries.get(sorted[i]!);
      if (e === undefined || (e.expireAt !== 0 && e.expireAt <= now)) continue;
      keys.push(toBytes(e.k));
      last = e;
    }
    if (i >= sorted.length || last === undefined) return { keys, cursor: null };
    const cursor = ownBytes(last.k, 1);
    cursor[0] = CURSOR_VERSION;
    return { keys, cursor };
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
      this.flushFreed();
    }
  }

  private mutateInner(partition: number, op: Op, payload: unknown, session: string): MutateResult {
    const p = obj(payload, 'payload');
    const seq = safeInt(p, 'seq', 0);
    if (typeof session !== 'string') throw badRequest('session must be a string');
    validPartition(partition);
    const now = this.clock.now();
    const existing = this.parts.get(partition);
    if (existing !== undefined) {
      this.pruneDedup(existing, now);
      const hit = existing.dedup.get(session, seq);
      if (hit !== undefined) {
        if (hit.op !== op) {
          throw new StoreError(
            ErrorCode.BAD_REQUEST,
            'seq-reused',
            `seq ${seq} of this session was already used by op ${hit.op}`,
          );
        }
        return { result: hit.result, record: null, replayOf: hit.counter };
      }
    }
    const part = existing ?? new PartitionState(partition);
    const plan = this.plan(part, op, p, session, now);
    if (!plan.record) {
      return { result: plan.result, record: null };
    }
    if (existing === undefined) this.parts.set(partition, part);
    const counter = part.counter + 1;
    for (const eff of plan.effects) this.applyEffect(part, eff);
    part.counter = counter;
    const dedup: DedupOutcome = { session, seq, op, result: plan.result };
    this.remember(part, dedup, now, counter);
    this.enforceBounds();
    return { result: plan.result, record: { v: 1, counter, at: now, effects: plan.effects, dedup } };
  }

  private plan(part: PartitionState, op: Op, p: Payload, session: string, now: number): Plan {
    switch (op) {
      case Op.CACHE_PUT: {
        const cache = cacheName(p);
        const key = bytesField(p, 'key');
        const value = bytesField(p, 'value');
        const expireAt = this.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
        return { result: EMPTY, effects: [this.putEffect(cache, key, value, expireAt)], record: true };
      }
      case Op.CACHE_PUT_ALL: {
        const cache = cacheName(p);
        const entries = p['entries'];
        if (!Array.isArray(entries)) throw badRequest('entries must be an array of [key, value]');
        const expireAt = this.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
        const effects: Effect[] = [];
        for (const pair of entries as unknown[]) {
          if (!Array.isArray(pair) || pair.length !== 2 || !isBytes(pair[0]) || !isBytes(pair[1])) {
            throw badRequest('entries must be an array of [key, value]');
          }
          effects.push(this.putEffect(cache, pair[0], pair[1], expireAt));
        }
        return { result: EMPTY, effects, record: true };
      }
      case Op.CACHE_PUT_IF_ABSENT:
      case Op.CACHE_REPLACE:
      case Op.CACHE_GET_AND_PUT: {
        const cache = cacheName(p);
        const key = bytesField(p, 'key');
        const value = bytesField(p, 'value');
        const expireAt = this.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
        const cur = this.liveEntry(part.shards.get(cache), keyString(key), now);
        const put = [this.putEffect(cache, key, value, expireAt)];
        if (op === Op.CACHE_GET_AND_PUT) return { result: { value: valueOf(cur) }, effects: put, record: true };
        const ok = op === Op.CACHE_PUT_IF_ABSENT ? cur === undefined : cur !== undefined;
        return { result: applied(ok), effects: ok ? put : [], record: true };
      }
      case Op.CACHE_REPLACE_IF_EQUALS: {
        const cache = cacheName(p);
        const key = bytesField(p, 'key');
        const expected = bytesField(p, 'expected');
        const value = bytesField(p, 'value');
        const expireAt = this.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
        const cur = this.liveEntry(part.shards.get(cache), keyString(key), now);
        const ok = cur !== undefined && cur.value === keyString(expected);
        return { result: applied(ok), effects: ok ? [this.putEffect(cache, key, value, expireAt)] : [], record: true };
      }
      case Op.CACHE_REMOVE:
      case Op.CACHE_REMOVE_IF_EQUALS:
      case Op.CACHE_GET_AND_REMOVE: {
        const cache = cacheName(p);
        const key = bytesField(p, 'key');
        const expected = op === Op.CACHE_REMOVE_IF_EQUALS ? bytesField(p, 'expected') : null;
        const cur = this.liveEntry(part.shards.get(cache), keyString(key), now);
        const ok = cur !== undefined && (expected === null || cur.value === keyString(expected));
        const effects: Effect[] = ok ? [{ t: 'del', cache, key }] : [];
        if (op === Op.CACHE_GET_AND_REMOVE) return { result: { value: valueOf(cur) }, effects, record: true };
        return { result: applied(ok), effects, record: true };
      }
      case Op.CACHE_INCREMENT: {
        const cache = cacheName(p);
        const key = bytesField(p, 'key');
        const delta = safeInt(p, 'delta');
        const initial = optSafeInt(p, 'initial');
        const ttlMs = optSafeInt(p, 'ttlMs', 0);
        const cur = this.liveEntry(part.shards.get(cache), keyString(key), now);
        const base = cur === undefined ? (initial ?? 0) : decodeCounter(toBytes(cur.value));
        const next = base + delta;
        if (!Number.isSafeInteger(next)) {
          throw new StoreError(
            ErrorCode.BAD_REQUEST,
            'overflow',
            `increment of ${base} by ${delta} leaves the safe integer range`,
          );
        }
        // An increment keeps an existing entry's expiry unless it sets a new TTL.
        const expireAt =
          cur !== undefined && ttlMs === undefined ? cur.expireAt : this.expireAtFor(cache, ttlMs, now);
        return {
          result: { value: next },
          effects: [{ t: 'put', cache, key, value: encodeCounter(next), expireAt }],
          record: true,
        };
      }
      case Op.CACHE_CLEAR: {
        const cache = cacheName(p);
        return { result: EMPTY, effects: [{ t: 'clear', cache }], record: true };
      }
      case Op.LOCK_TRY_ACQUIRE:
      case Op.LOCK_ACQUIRE: {
        const name = bytesField(p, 'name');
        const leaseMs = safeInt(p, 'leaseMs', 1);
        const expireAt = now + leaseMs;
        if (!Number.isSafeInteger(expireAt)) throw badRequest('leaseMs is too large');
        const held = this.liveLock(part, keyString(name), now);
        if (held !== undefined && held.session !== session) {
          return { result: { acquired: false, heldForMs: held.expireAt - now }, effects: [], record: false };
        }
        // Re-entrant: the holder acquiring again refreshes its lease and keeps its token.
        const token = held?.token ?? part.counter + 1;
        return {
          result: { acquired: true, token },
          effects: [{ t: 'lock', name, session, token, expireAt }],
          record: true,
        };
      }
      case Op.LOCK_RELEASE: {
        const name = bytesField(p, 'name');
        const token = safeInt(p, 'token', 0);
        const held = this.liveLock(part, keyString(name), now);
        const released = held !== undefined && held.token === token;
        return { result: released ? RELEASED : NOT_RELEASED, effects: released ? [{ t: 'unlock', name }] : [], record: true };
      }
      case Op.LOCK_RENEW: {
        const name = bytesField(p, 'name');
        const token = safeInt(p, 'token', 0);
        const leaseMs = safeInt(p, 'leaseMs', 1);
        const expireAt = now + leaseMs;
        if (!Number.isSafeInteger(expireAt)) throw badRequest('leaseMs is too large');
        const held = this.liveLock(part, keyString(name), now);
        const renewed = held !== undefined && held.token === token;
        return {
          result: renewed ? RENEWED : NOT_RENEWED,
          effects: renewed && held !== undefined
            ? [{ t: 'lock', name, session: held.session, token, expireAt }]
            : [],
          record: true,
        };
      }
      default:
        throw new StoreError(ErrorCode.UNKNOWN_OP, 'unknown-op', `op ${String(op)} is not a mutating op`);
    }
  }

  /** Effects reference the request's byte arrays; the store itself keeps its own copies. */
  private putEffect(cache: string, key: Bytes, value: Bytes, expireAt: number): Effect {
    return { t: 'put', cache, key, value, expireAt };
  }

  // -------------------------------------------------------------------------------------------
  // Replication (backup)

  /**
   * Applies a record from the primary. Records at or below the partition's counter are ignored
   * (true); a record that skips a counter value is not applied and returns false (resync).
   */
  applyRecord(partition: number, record: ReplicationRecord): boolean {
    try {
      return this.applyRecordInner(partition, record);
    } finally {
      this.flushFreed();
    }
  }

  private applyRecordInner(partition: number, record: ReplicationRecord): boolean {
    validPartition(partition);
    const rec = normaliseRecord(record);
    const part = this.parts.get(partition);
    const cur = part?.counter ?? 0;
    if (rec.counter <= cur) return true;
    if (rec.counter !== cur + 1) return false;
    const target = part ?? this.ensurePart(partition);
    for (const eff of rec.effects) this.applyEffect(target, eff);
    target.counter = rec.counter;
    if (rec.dedup !== null) this.remember(target, rec.dedup, rec.at, rec.counter);
    this.pruneDedup(target, this.clock.now());
    this.enforceBounds();
    return true;
  }

  private applyEffect(part: PartitionState, eff: Effect): void {
    switch (eff.t) {
      case 'put':
        this.setEntry(part, eff.cache, keyString(eff.key), keyString(eff.value), eff.expireAt);
        return;
      case 'del': {
        const e = part.shards.get(eff.cache)?.entries.get(keyString(eff.key));
        if (e !== undefined) this.removeEntry(e);
        return;
      }
      case 'clear': {
        const shard = part.shards.get(eff.cache);
        if (shard !== undefined) this.clearShard(shard);
        return;
      }
      case 'lock':
        this.setLock(part, keyString(eff.name), eff.session, eff.token, eff.expireAt);
        return;
      case 'unlock': {
        const lock = part.locks.get(keyString(eff.name));
        if (lock !== undefined) {
          this.unlinkLock(lock);
          this.pendingFreed.push([part.id, lock.k]);
        }
        return;
      }
    }
  }

  private remember(part: PartitionState, d: DedupOutcome, at: number, counter: number): void {
    if (part.dedup.add({ session: d.session, seq: d.seq, op: d.op, result: d.result, at, counter })) this.dedupCount++;
  }

  private pruneDedup(part: PartitionState, now: number, budget = Infinity): number {
    const { examined, removed } = part.dedup.prune(now, this.dedupWindowMs, budget);
    this.dedupCount -= removed;
    return examined;
  }

  /**
   * Raw view of a partition for diagnostics and tests, read straight from the internal
   * structures (unlike snapshot(), includes expired items not yet removed, with their expiry).
   */
  inspect(partition: number): {
    counter: number;
    entries: [string, Bytes, Bytes, number][];
    locks: [Bytes, string, number, number][];
    dedup: [string, number, number, unknown, number, number][];
  } {
    const part = this.parts.get(partition);
    const out = { counter: part?.counter ?? 0, entries: [] as [string, Bytes, Bytes, number][], locks: [] as [Bytes, string, number, number][], dedup: [] as [string, number, number, unknown, number, number][] };
    if (part === undefined) return out;
    for (const shard of part.shards.values()) {
      for (const e of shard.entries.values()) out.entries.push([shard.cache, toBytes(e.k), toBytes(e.value), e.expireAt]);
    }
    for (const l of part.locks.values()) out.locks.push([toBytes(l.k), l.session, l.token, l.expireAt]);
    for (const d of part.dedup.values()) out.dedup.push([d.session, d.seq, d.op, d.result, d.at, d.counter]);
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // State transfer

  /** Everything of the partition that is still live now. */
  snapshot(partition: number): PartitionSnapshot {
    const now = this.clock.now();
    const part = this.parts.get(partition);
    const snap: PartitionSnapshot = {
      v: 1,
      partition,
      counter: part?.counter ?? 0,
      at: now,
      caches: [],
      locks: [],
      dedup: [],
    };
    if (part === undefined) return snap;
    for (const shard of part.shards.values()) {
      const c: SnapshotCache = {
        name: shard.cache,
        config: { ...(this.caches.get(shard.cache) ?? this.cacheDefaults) },
        entries: [],
      };
      for (const e of shard.entries.values()) {
        if (e.expireAt === 0 || e.expireAt > now) c.entries.push([toBytes(e.k), toBytes(e.value), e.expireAt]);
      }
      if (c.entries.length > 0) snap.caches.push(c);
    }
    for (const l of part.locks.values()) {
      if (l.expireAt > now) snap.locks.push([toBytes(l.k), l.session, l.token, l.expireAt]);
    }
    for (const d of part.dedup.values()) {
      if (d.at + this.dedupWindowMs > now) snap.dedup.push([d.session, d.seq, d.op, d.result, d.at, d.counter]);
    }
    return snap;
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
      if (!this.caches.has(c.name)) this.caches.set(c.name, c.config);
      for (const [key, value, expireAt] of c.entries) {
        if (expireAt === 0 || expireAt > now) this.setEntry(part, c.name, keyString(key), keyString(value), expireAt);
      }
    }
    for (const [name, session, token, expireAt] of snap.locks) {
      if (expireAt > now) this.setLock(part, keyString(name), session, token, expireAt);
    }
    for (const [session, seq, op, result, at, counter] of snap.dedup) {
      this.remember(part, { session, seq, op, result }, at, counter);
    }
    this.pruneDedup(part, now);
    this.enforceBounds();
  }

  // -------------------------------------------------------------------------------------------
  // Expiry, bounds, stats

  /**
   * Removes expired entries and lock leases (notifying onLockFreed for locks) and forgets
   * (session, seq) outcomes older than the window. Examines at most `budget` items in total;
   * returns how many entries and locks it removed as expired.
   */
  sweep(budget: number): number {
    if (!Number.isSafeInteger(budget) || budget < 0) throw new TypeError('sweep budget must be a non-negative integer');
    const now = this.clock.now();
    let examined = 0;
    let removed = 0;
    try {
      while (examined < budget) {
        const top = this.expiry.peek();
        if (top === undefined || top.at > now) break;
        this.expiry.pop();
        examined++;
        const ref = top.ref;
        if (!ref.live || ref.expireAt !== top.at) continue;
        if (ref.kind === 'entry') {
          this.removeEntry(ref);
          this.expiredCount++;
        } else {
          this.unlinkLock(ref);
          this.pendingFreed.push([ref.part.id, ref.k]);
        }
        removed++;
      }
      if (examined < budget && this.dedupCount > 0) {
        const ids = [...this.parts.keys()];
        const start = this.dedupSweepCursor;
        for (let n = 0; n < ids.length && examined < budget; n++) {
          const idx = (start + n) % ids.length;
          const part = this.parts.get(ids[idx]!)!;
          if (part.dedup.size === 0) continue;
          examined += this.pruneDedup(part, now, budget - examined);
          this.dedupSweepCursor = idx + 1;
        }
      }
    } finally {
      this.sweepExamined += examined;
      this.flushFreed();
    }
    return removed;
  }

  stats(): StoreStats {
    return {
      entries: this.entryCount,
      bytes: this.byteCount,
      evictions: this.evictions,
      expired: this.expiredCount,
      partitions: this.parts.size,
      locks: this.lockCount,
      dedupEntries: this.dedupCount,
      sweepExamined: this.sweepExamined,
    };
  }

  /**
   * Called after a lock was released, or its expired lease was removed (by sweep or when an op
   * found it expired), so callers waiting to acquire it can try again. Listeners run after the
   * store's state is consistent and may call back into the store; they must not throw.
   */
  onLockFreed(listener: (partition: number, name: Uint8Array) => void): () => void {
    this.freedListeners.add(listener);
    return () => {
      this.freedListeners.delete(listener);
    };
  }

  private flushFreed(): void {
    while (this.pendingFreed.length > 0) {
      const batch = this.pendingFreed;
      this.pendingFreed = [];
      for (const [partition, k] of batch) {
        for (const l of [...this.freedListeners]) {
          try {
            l(partition, toBytes(k));
          } catch {
            // A listener's failure must not corrupt the store or skip other listeners.
          }
        }
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Entry / lock bookkeeping

  private liveEntry(shard: Shard | undefined, k: string, now: number): Entry | undefined {
    const e = shard?.entries.get(k);
    if (e === undefined) return undefined;
    if (e.expireAt !== 0 && e.expireAt <= now) {
      this.removeEntry(e);
      this.expiredCount++;
      return undefined;
    }
    return e;
  }

  private liveLock(part: PartitionState, k: string, now: number): LockState | undefined {
    const l = part.locks.get(k);
    if (l === undefined) return undefined;
    if (l.expireAt <= now) {
      this.unlinkLock(l);
      this.pendingFreed.push([part.id, l.k]);
      return undefined;
    }
    return l;
  }

  private setEntry(part: PartitionState, cache: string, k: string, value: string, expireAt: number): void {
    let shard = part.shards.get(cache);
    if (shard === undefined) {
      this.ensureCache(cache);
      shard = new Shard(cache);
      part.shards.set(cache, shard);
    }
    const e = shard.entries.get(k);
    if (e !== undefined) {
      this.byteCount += value.length - e.value.length;
      e.value = value;
      if (e.expireAt !== expireAt) {
        if (e.expireAt !== 0) {
          shard.ttlCount--;
          this.expiring--;
        }
        e.expireAt = expireAt;
        if (expireAt !== 0) {
          shard.ttlCount++;
          this.expiring++;
          this.pushExpiry(e);
        }
      }
      this.touch(e);
      return;
    }
    const entry: Entry = {
      kind: 'entry',
      shard,
      k,
      value,
      expireAt,
      live: true,
      newer: null,
      older: null,
    };
    shard.entries.set(k, entry);
    shard.sorted = null;
    this.entryCount++;
    this.byteCount += k.length + value.length;
    if (expireAt !== 0) {
      shard.ttlCount++;
      this.expiring++;
      this.pushExpiry(entry);
    }
    this.lruPushHead(entry);
  }

  private removeEntry(e: Entry): void {
    if (!e.live) return;
    e.live = false;
    e.shard.entries.delete(e.k);
    e.shard.sorted = null;
    this.entryCount--;
    this.byteCount -= e.k.length + e.value.length;
    if (e.expireAt !== 0) {
      e.shard.ttlCount--;
      this.expiring--;
    }
    this.lruUnlink(e);
  }

  private clearShard(shard: Shard): void {
    for (const e of [...shard.entries.values()]) this.removeEntry(e);
  }

  private setLock(part: PartitionState, k: string, session: string, token: number, expireAt: number): void {
    const cur = part.locks.get(k);
    if (cur !== undefined) {
      cur.session = session;
      cur.token = token;
      if (cur.expireAt !== expireAt) {
        cur.expireAt = expireAt;
        this.pushExpiry(cur);
      }
      return;
    }
    const lock: LockState = { kind: 'lock', part, k, session, token, expireAt, live: true };
    part.locks.set(k, lock);
    this.lockCount++;
    this.expiring++;
    this.pushExpiry(lock);
  }

  private unlinkLock(l: LockState): void {
    if (!l.live) return;
    l.live = false;
    l.part.locks.delete(l.k);
    this.lockCount--;
    this.expiring--;
  }

  private pushExpiry(ref: Entry | LockState): void {
    this.expiry.push(ref.expireAt, ref);
    if (this.expiry.size > 2 * this.expiring + 1024) {
      this.expiry.filter((item) => item.ref.live && item.ref.expireAt === item.at);
    }
  }

  /** Over the bound: first drop what has already expired, then evict least recently used entries. */
  private enforceBounds(): void {
    if (this.entryCount <= this.maxEntries && this.byteCount <= this.maxBytes) return;
    const now = this.clock.now();
    while (this.entryCount > this.maxEntries || this.byteCount > this.maxBytes) {
      const top = this.expiry.peek();
      if (top !== undefined && top.at <= now) {
        this.expiry.pop();
        const ref = top.ref;
        if (!ref.live || ref.expireAt !== top.at) continue;
        if (ref.kind === 'entry') {
          this.removeEntry(ref);
          this.expiredCount++;
        } else {
          this.unlinkLock(ref);
          this.pendingFreed.push([ref.part.id, ref.k]);
        }
        continue;
      }
      const victim = this.lruTail;
      if (victim === null) return;
      this.removeEntry(victim);
      this.evictions++;
    }
  }

  private touch(e: Entry): void {
    if (this.lruHead === e) return;
    this.lruUnlink(e);
    this.lruPushHead(e);
  }

  private lruPushHead(e: Entry): void {
    e.newer = null;
    e.older = this.lruHead;
    if (this.lruHead !== null) this.lruHead.newer = e;
    this.lruHead = e;
    if (this.lruTail === null) this.lruTail = e;
  }

  private lruUnlink(e: Entry): void {
    if (e.newer !== null) e.newer.older = e.older;
    else if (this.lruHead === e) this.lruHead = e.older;
    if (e.older !== null) e.older.newer = e.newer;
    else if (this.lruTail === e) this.lruTail = e.newer;
    e.newer = null;
    e.older = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Record / snapshot validation (they arrive from peers). The store keeps its own copies of all
// bytes it holds; only recorded outcomes are copied here, since they are kept as given.

function normaliseEffect(v: unknown): Effect {
  if (typeof v !== 'object' || v === null) throw badRecord('effect must be an object');
  const e = v as Payload;
  const cache = (): string => {
    const c = e['cache'];
    if (typeof c !== 'string' || c.length === 0 || c.length > MAX_CACHE_NAME) throw badRecord('effect cache must be a name');
    return c;
  };
  const bytes = (f: string): Bytes => {
    const b = e[f];
    if (!isBytes(b)) throw badRecord(`effect ${f} must be bytes`);
    return b;
  };
  const num = (f: string): number => {
    const n = e[f];
    if (!isSafeNonNegative(n)) throw badRecord(`effect ${f} must be a non-negative integer`);
    return n;
  };
  switch (e['t']) {
    case 'put':
      return { t: 'put', cache: cache(), key: bytes('key'), value: bytes('value'), expireAt: num('expireAt') };
    case 'del':
      return { t: 'del', cache: cache(), key: bytes('key') };
    case 'clear':
      return { t: 'clear', cache: cache() };
    case 'lock': {
      const session = e['session'];
      if (typeof session !== 'string') throw badRecord('lock effect session must be a string');
      return { t: 'lock', name: bytes('name'), session, token: num('token'), expireAt: num('expireAt') };
    }
    case 'unlock':
      return { t: 'unlock', name: bytes('name') };
    default:
      throw badRecord(`unknown effect ${String(e['t'])}`);
  }
}

function normaliseDedup(v: unknown, fail: (m: string) => StoreError): DedupOutcome {
  if (typeof v !== 'object' || v === null) throw fail('dedup must be an object');
  const d = v as Payload;
  if (typeof d['session'] !== 'string' || !isSafeNonNegative(d['seq']) || !isSafeNonNegative(d['op'])) {
    throw fail('dedup needs session, seq and op');
  }
  return { session: d['session'], seq: d['seq'], op: d['op'], result: ownResult(d['result']) };
}

function normaliseRecord(v: unknown): ReplicationRecord {
  if (typeof v !== 'object' || v === null) throw badRecord('must be an object');
  const r = v as Payload;
  if (r['v'] !== 1) throw badRecord(`unsupported version ${String(r['v'])}`);
  if (!isSafeNonNegative(r['counter']) || r['counter'] < 1) throw badRecord('counter must be a positive integer');
  if (typeof r['at'] !== 'number' || !Number.isFinite(r['at'])) throw badRecord('at must be a number');
  if (!Array.isArray(r['effects'])) throw badRecord('effects must be an array');
  const dedup = r['dedup'] === null || r['dedup'] === undefined ? null : normaliseDedup(r['dedup'], badRecord);
  return { v: 1, counter: r['counter'], at: r['at'], effects: (r['effects'] as unknown[]).map(normaliseEffect), dedup };
}

function normaliseSnapshot(v: unknown): PartitionSnapshot {
  if (typeof v !== 'object' || v === null) throw badSnapshot('must be an object');
  const s = v as Payload;
  if (s['v'] !== 1) throw badSnapshot(`unsupported version ${String(s['v'])}`);
  if (!isSafeNonNegative(s['counter'])) throw badSnapshot('counter must be a non-negative integer');
  if (!Array.isArray(s['caches']) || !Array.isArray(s['locks']) || !Array.isArray(s['dedup'])) {
    throw badSnapshot('caches, locks and dedup must be arrays');
  }
  const caches: SnapshotCache[] = (s['caches'] as unknown[]).map((cv) => {
    if (typeof cv !== 'object' || cv === null) throw badSnapshot('cache must be an object');
    const c = cv as Payload;
    const name = c['name'];
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_CACHE_NAME) throw badSnapshot('cache name');
    let config: CacheConfig;
    try {
      config = validateCacheConfig(c['config'] ?? {}, 'config');
    } catch (err) {
      throw badSnapshot((err as Error).message);
    }
    if (!Array.isArray(c['entries'])) throw badSnapshot('cache entries must be an array');
    const entries = (c['entries'] as unknown[]).map((ev): [Bytes, Bytes, number] => {
      if (!Array.isArray(ev) || !isBytes(ev[0]) || !isBytes(ev[1]) || !isSafeNonNegative(ev[2])) {
        throw badSnapshot('entry must be [key, value, expireAt]');
      }
      return [ev[0], ev[1], ev[2]];
    });
    return { name, config, entries };
  });
  const locks = (s['locks'] as unknown[]).map((lv): [Bytes, string, number, number] => {
    if (
      !Array.isArray(lv) ||
      !isBytes(lv[0]) ||
      typeof lv[1] !== 'string' ||
      !isSafeNonNegative(lv[2]) ||
      !isSafeNonNegative(lv[3])
    ) {
      throw badSnapshot('lock must be [name, session, token, expireAt]');
    }
    return [lv[0], lv[1], lv[2], lv[3]];
  });
  const counter = s['counter'];
  const dedup = (s['dedup'] as unknown[]).map((dv): [string, number, number, unknown, number, number] => {
    if (!Array.isArray(dv) || typeof dv[4] !== 'number' || !Number.isFinite(dv[4])) {
      throw badSnapshot('dedup must be [session, seq, op, result, at, counter]');
    }
    const c = dv[5] === undefined ? counter : dv[5];
    if (!isSafeNonNegative(c) || c > counter) throw badSnapshot('dedup counter must not exceed the snapshot counter');
    const d = normaliseDedup({ session: dv[0], seq: dv[1], op: dv[2], result: dv[3] }, badSnapshot);
    return [d.session, d.seq, d.op, d.result, dv[4], c];
  });
  return {
    v: 1,
    partition: typeof s['partition'] === 'number' ? s['partition'] : 0,
    counter,
    at: typeof s['at'] === 'number' ? s['at'] : 0,
    caches,
    locks,
    dedup,
  };
}
