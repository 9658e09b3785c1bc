/**
 * Entries of every cache and partition of one node, held for the least memory per entry (see
 * docs/node.md, "Memory per entry", and ADR 0019).
 *
 * - An entry is a numbered slot. What a slot holds lives in parallel arrays, not in an object per
 *   entry: its key and value as ONE latin1 string (one char per byte: `key ++ value`, the cheapest
 *   container of bytes in V8), the key's length, the absolute expiry, the shard it belongs to and
 *   its two LRU links (slot numbers). Freed slots are reused.
 * - A big entry (key + value of `bigEntryBytes` or more, default 512) keeps `key ++ value` in a
 *   byte array of its own instead (ADR 0041): its bytes live outside the JS heap, so the garbage
 *   collector does not copy them from the young generation to the old one and again when
 *   compacting — for 1 KiB values that copying was most of what a replicated put cost beyond a
 *   64 B one. A few dozen bytes more per entry, paid only by big ones.
 * - The byte arrays of big entries up to 64 KiB are recycled (ADR 0045): an array is sized up to
 *   a capacity class (at most 1/8 above the entry, at least 64 B granularity), and when its entry
 *   is overwritten or removed it goes back to a free list of its class, unless a view of it was
 *   handed out (keyBytes / valueBytes: a reply or a snapshot may still read it). Allocating and
 *   freeing an array's memory outside the heap (malloc, calloc, free on the collector's sweeper
 *   thread) was about a tenth of a node's CPU time per replicated 1 KiB put. The free lists hold
 *   at most POOL_MAX_BYTES per arena.
 * - A shard (one cache in one partition) finds its slots through its own open-addressing hash
 *   table of slot numbers (linear probing, backward-shift deletion, no tombstones), hashing the
 *   key bytes directly: no key string per lookup, no JS Map entry per entry.
 * - One LRU list over all slots (most recently used at the head) gives the node-wide eviction
 *   order; the store decides when to evict.
 *
 * Pure bookkeeping: no clock; the store tells it what to keep and when an entry was used.
 */
import type { Bytes } from './bytes.js';

/** "No slot". */
export const NONE = -1;

const EMPTY_TABLE = 8;

/**
 * FNV-1a over bytes `b[from, to)`, finished with a murmur3 mix so that the low bits are usable
 * as an index.
 */
function hashBytes(b: Bytes, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return fmix(h);
}

/** The same hash over the first `n` chars of a latin1 string made of those bytes. */
function hashChars(s: string, n: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return fmix(h);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * One cache's entries within one partition: a hash table of slot numbers (slot + 1; 0 = empty),
 * with the top 8 bits of each key's hash beside it (`tags`): a probe compares a key's bytes only
 * when its tag matches, so a lookup touches the one entry it finds instead of every entry of its
 * probe run (each such touch was a cache miss or two: the entry's array object, then its bytes).
 */
export class Shard {
  table = new Int32Array(EMPTY_TABLE);
  /** `hash >>> 24` of the key in `table[i]`, for occupied positions. */
  tags = new Uint8Array(EMPTY_TABLE);
  /** Entries held. */
  size = 0;
  /** Keys in byte order (latin1 strings), for scans; null when stale (rebuilt on the next scan). */
  sorted: string[] | null = null;
  /** Entries of this shard that carry an expiry (size is exact and O(1) when there are none). */
  ttlCount = 0;
  constructor(
    /** Index in EntryArena's shard list. */
    readonly id: number,
    readonly partition: number,
    readonly cache: string,
  ) {}
}

/** Scratch buffer for building an entry's string (key ++ value) in one copy. */
let scratch = Buffer.allocUnsafeSlow(4096);
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;

const SCRATCH_MAX = 64 * 1024;

/** Whether the entry's `key ++ value` starts with the latin1 string `k`. */
function startsWith(r: Rec, k: string): boolean {
  if (typeof r === 'string') return r.startsWith(k);
  if (r.length < k.length) return false;
  for (let i = 0; i < k.length; i++) if (r[i] !== k.charCodeAt(i)) return false;
  return true;
}

function joined(key: Bytes, value: Bytes): string {
  const n = key.length + value.length;
  // Entries up to 64 KiB reuse one buffer; a bigger one gets a buffer of its own, so one large
  // value does not pin a large scratch buffer for good.
  let buf = scratch;
  if (n > buf.length) {
    buf = Buffer.allocUnsafeSlow(n);
    if (n <= SCRATCH_MAX) scratch = buf;
  }
  buf.set(key, 0);
  buf.set(value, key.length);
  return latin1Slice.call(buf, 0, n);
}

/** `key ++ value` of an entry: a latin1 string, or the bytes of a big entry. */
type Rec = string | Uint8Array;

/** Key + value bytes from which an entry is kept as bytes rather than a string. */
export const BIG_ENTRY_BYTES = 512;

/** Big entries up to this many bytes get a recycled array of a capacity class. */
export const POOL_MAX_ENTRY_BYTES = 64 * 1024;
/** Bytes of freed arrays an arena keeps for reuse, at most. */
export const POOL_MAX_BYTES = 4 * 1024 * 1024;

/**
 * The capacity class of a big entry of `n` bytes: `n` rounded up to a multiple of 1/8 of the
 * largest power of two not above it (so at most 12.5 % more), and to at least 64 B.
 */
export function capacityFor(n: number): number {
  if (n > POOL_MAX_ENTRY_BYTES) return n;
  const g = Math.max(64, (1 << (31 - Math.clz32(n))) >>> 3);
  return Math.ceil(n / g) * g;
}

export class EntryArena {
  constructor(
    /** Entries with key + value of this many bytes or more are kept as bytes (tests lower it). */
    private readonly bigEntryBytes = BIG_ENTRY_BYTES,
  ) {}

  /** key ++ value, as latin1 or as bytes (undefined for a free slot). */
  private rec: (Rec | undefined)[] = [];
  private klen = new Int32Array(1024);
  /** Absolute ms; 0 = never. */
  private expire = new Float64Array(1024);
  /** Shard id, or NONE for a free slot. */
  private shardOf = new Int32Array(1024).fill(NONE);
  /** 1 when a view of the slot's big entry bytes was handed out: its array is then not reused. */
  private lent = new Uint8Array(1024);
  /** Freed arrays of big entries, by capacity / 64. */
  private readonly pool: (ArrayBuffer[] | undefined)[] = [];
  /** Bytes held in `pool`. */
  pooledBytes = 0;
  /** LRU links: `newer` points towards the head (most recently used). Free slots chain via `older`. */
  private newer = new Int32Array(1024);
  private older = new Int32Array(1024);
  private freeHead = NONE;
  private used = 0;
  /** Most / least recently used slot. */
  head = NONE;
  tail = NONE;
  /** Entries held, and their key + value bytes. */
  count = 0;
  bytes = 0;

  private readonly shards: (Shard | undefined)[] = [];
  private readonly freeShardIds: number[] = [];
  /** Shards held (made and not yet dropped). */
  shardCount = 0;

  // -------------------------------------------------------------------------------------------
  // Shards

  newShard(partition: number, cache: string): Shard {
    const id = this.freeShardIds.pop() ?? this.shards.length;
    const shard = new Shard(id, partition, cache);
    this.shards[id] = shard;
    this.shardCount++;
    return shard;
  }

  /**
   * Removes every entry of the shard and retires it (calls `onRemove` for each, before removal).
   * Its id is reused by a later shard: the shard itself must not be used again.
   */
  dropShard(shard: Shard, onRemove: (slot: number) => void): void {
    if (shard.size > 0) this.clearShard(shard, onRemove);
    this.shards[shard.id] = undefined;
    this.freeShardIds.push(shard.id);
    this.shardCount--;
  }

  clearShard(shard: Shard, onRemove: (slot: number) => void): void {
    const t = shard.table;
    for (let i = 0; i < t.length; i++) {
      const v = t[i]!;
      if (v !== 0) {
        onRemove(v - 1);
        this.release(v - 1);
      }
    }
    shard.table = new Int32Array(EMPTY_TABLE);
    shard.tags = new Uint8Array(EMPTY_TABLE);
    shard.size = 0;
    shard.ttlCount = 0;
    shard.sorted = null;
  }

  shard(slot: number): Shard {
    return this.shards[this.shardOf[slot]!]!;
  }

  /** Slots of the shard (table order). */
  *slots(shard: Shard): IterableIterator<number> {
    const t = shard.table;
    for (let i = 0; i < t.length; i++) if (t[i] !== 0) yield t[i]! - 1;
  }

  // -------------------------------------------------------------------------------------------
  // Lookup

  find(shard: Shard | undefined, key: Bytes): number {
    return this.findIn(shard, key, 0, key.length);
  }

  /** Hash of the key the last findIn looked up (setAt inserts a new entry with it). */
  private lookupHash = 0;

  /** Lookup by the key `b[at, at + n)`. */
  findIn(shard: Shard | undefined, b: Bytes, at: number, n: number): number {
    if (shard === undefined) return NONE;
    const h = hashBytes(b, at, at + n);
    this.lookupHash = h;
    if (shard.size === 0) return NONE;
    const t = shard.table;
    const tags = shard.tags;
    const mask = t.length - 1;
    const tag = h >>> 24;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const v = t[i]!;
      if (v === 0) return NONE;
      const slot = v - 1;
      if (tags[i] === tag && this.klen[slot] === n) {
        const r = this.rec[slot]!;
        let j = 0;
        if (typeof r === 'string') while (j < n && r.charCodeAt(j) === b[at + j]) j++;
        else while (j < n && r[j] === b[at + j]) j++;
        if (j === n) return slot;
      }
    }
  }

  /** Lookup by a key given as a latin1 string (scans). */
  findKey(shard: Shard, k: string): number {
    if (shard.size === 0) return NONE;
    const t = shard.table;
    const tags = shard.tags;
    const mask = t.length - 1;
    const n = k.length;
    const h = hashChars(k, n);
    const tag = h >>> 24;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const v = t[i]!;
      if (v === 0) return NONE;
      const slot = v - 1;
      if (tags[i] === tag && this.klen[slot] === n && startsWith(this.rec[slot]!, k)) return slot;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reading a slot

  expireAt(slot: number): number {
    return this.expire[slot]!;
  }

  isLive(slot: number): boolean {
    return slot < this.used && this.shardOf[slot] !== NONE;
  }

  keyLength(slot: number): number {
    return this.klen[slot]!;
  }

  /** Key as a latin1 string. */
  keyString(slot: number): string {
    const r = this.rec[slot]!;
    return typeof r === 'string' ? r.slice(0, this.klen[slot]) : latin1Slice.call(r, 0, this.klen[slot]!);
  }

  /** Value as a latin1 string. */
  valueString(slot: number): string {
    const r = this.rec[slot]!;
    return typeof r === 'string' ? r.slice(this.klen[slot]) : latin1Slice.call(r, this.klen[slot]!, r.length);
  }

  valueLength(slot: number): number {
    return this.rec[slot]!.length - this.klen[slot]!;
  }

  /**
   * Key bytes, not to be written into: a view of a big entry's own bytes (an entry's bytes are
   * replaced, never written into, so the view stays the bytes it was), else bytes that may share
   * a pool slab.
   */
  keyBytes(slot: number): Bytes {
    const r = this.rec[slot]!;
    if (typeof r !== 'string') {
      this.lent[slot] = 1;
      return r.subarray(0, this.klen[slot]);
    }
    const buf = Buffer.from(r.slice(0, this.klen[slot]), 'latin1');
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  /**
   * Value bytes, not to be written into: a view of a big entry's own bytes (no copy per get of a
   * big value; see keyBytes), else bytes that may share a pool slab.
   */
  valueBytes(slot: number): Bytes {
    const r = this.rec[slot]!;
    const k = this.klen[slot]!;
    if (typeof r !== 'string') {
      this.lent[slot] = 1;
      return r.subarray(k);
    }
    const buf = Buffer.from(r, 'latin1');
    return new Uint8Array(buf.buffer, buf.byteOffset + k, r.length - k);
  }

  /** Value bytes in a buffer of their own (for outcomes kept for the dedup window). */
  ownValue(slot: number): Bytes {
    const r = this.rec[slot]!;
    if (typeof r !== 'string') return r.slice(this.klen[slot]);
    const v = this.valueString(slot);
    const buf = Buffer.allocUnsafeSlow(v.length);
    buf.write(v, 0, 'latin1');
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  valueEquals(slot: number, b: Bytes): boolean {
    const r = this.rec[slot]!;
    const k = this.klen[slot]!;
    if (r.length - k !== b.length) return false;
    if (typeof r === 'string') {
      for (let i = 0; i < b.length; i++) if (r.charCodeAt(k + i) !== b[i]) return false;
    } else {
      for (let i = 0; i < b.length; i++) if (r[k + i] !== b[i]) return false;
    }
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Writing

  /** Previous expiry of the entry the last `set` wrote (-1 when it was new). */
  previousExpireAt = -1;

  /**
   * Sets key → value in the shard, moving the entry to the LRU head. Returns the slot; its
   * previous expiry is left in `previousExpireAt` (-1 when the entry is new) for the caller's
   * expiry bookkeeping (no result object per write).
   */
  set(shard: Shard, key: Bytes, value: Bytes, expireAt: number): number {
    const n = key.length + value.length;
    const slot = this.findIn(shard, key, 0, key.length);
    if (n < this.bigEntryBytes) return this.setAt(shard, slot, key.length, joined(key, value), expireAt);
    const same = this.ownArray(slot, n);
    if (same !== null) {
      same.set(value, key.length);
      return this.rewritten(slot, same, expireAt);
    }
    const own = this.bigArray(n);
    own.set(key, 0);
    own.set(value, key.length);
    return this.setAt(shard, slot, key.length, own, expireAt);
  }

  /**
   * `set` for a key and value that lie back to back in `b` (key `b[at, at + keyLen)`, value the
   * `valueLen` bytes after it, as in a binary replication record): the entry's string is made
   * straight from those bytes, with no copy into the scratch buffer first.
   */
  setIn(shard: Shard, b: Bytes, at: number, keyLen: number, valueLen: number, expireAt: number): number {
    const n = keyLen + valueLen;
    const slot = this.findIn(shard, b, at, keyLen);
    if (n < this.bigEntryBytes) return this.setAt(shard, slot, keyLen, latin1Slice.call(b, at, at + n), expireAt);
    const same = this.ownArray(slot, n);
    if (same !== null) {
      same.set(b.subarray(at + keyLen, at + n), keyLen);
      return this.rewritten(slot, same, expireAt);
    }
    const own = this.bigArray(n);
    own.set(b.subarray(at, at + n));
    return this.setAt(shard, slot, keyLen, own, expireAt);
  }

  /**
   * The array the slot's big entry lives in, as an entry of `n` bytes, when a big entry of `n`
   * bytes may be written into it in place: never lent out (no view of it outside the arena, so
   * nobody sees its bytes change) and of `n`'s capacity class. The key is the same (the slot was
   * found by it); the caller writes the value. Saves taking an array from the pool and giving
   * this one back — and, at the same size, the view object (ADR 0076).
   */
  private ownArray(slot: number, n: number): Uint8Array | null {
    if (slot === NONE || this.lent[slot] === 1) return null;
    const r = this.rec[slot]!;
    if (typeof r === 'string') return null;
    if (r.length === n) return r;
    return r.buffer.byteLength === capacityFor(n) ? new Uint8Array(r.buffer, 0, n) : null;
  }

  /** The slot's big entry was rewritten in place as `r`. */
  private rewritten(slot: number, r: Uint8Array, expireAt: number): number {
    this.bytes += r.length - this.rec[slot]!.length;
    this.rec[slot] = r;
    this.previousExpireAt = this.expire[slot]!;
    this.expire[slot] = expireAt;
    this.touch(slot);
    return slot;
  }

  /**
   * Stores `str` (key ++ value, the key `keyLen` bytes) at `slot`, which the last findIn found for
   * that key — NONE: a new entry, inserted with that lookup's hash.
   */
  private setAt(shard: Shard, slot: number, keyLen: number, str: Rec, expireAt: number): number {
    if (slot !== NONE) {
      const old = this.rec[slot]!;
      this.bytes += str.length - old.length;
      if (typeof old !== 'string') this.retire(slot, old);
      this.rec[slot] = str;
      this.previousExpireAt = this.expire[slot]!;
      this.expire[slot] = expireAt;
      this.touch(slot);
      return slot;
    }
    slot = this.allocate();
    this.rec[slot] = str;
    this.klen[slot] = keyLen;
    this.expire[slot] = expireAt;
    this.shardOf[slot] = shard.id;
    this.insert(shard, slot, this.lookupHash);
    shard.sorted = null;
    this.count++;
    this.bytes += str.length;
    this.pushHead(slot);
    this.previousExpireAt = -1;
    return slot;
  }

  /** Removes the slot's entry from its shard and frees the slot. */
  remove(slot: number): void {
    const shard = this.shard(slot);
    const t = shard.table;
    const tags = shard.tags;
    const mask = t.length - 1;
    let i = this.hashOf(slot) & mask;
    while (t[i] !== slot + 1) i = (i + 1) & mask;
    // Backward-shift deletion: move later members of the probe run into the hole.
    let hole = i;
    for (let j = (i + 1) & mask; t[j] !== 0; j = (j + 1) & mask) {
      const s = t[j]! - 1;
      const home = this.hashOf(s) & mask;
      // Move s into the hole when its home is not cyclically in (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        t[hole] = t[j]!;
        tags[hole] = tags[j]!;
        hole = j;
      }
    }
    t[hole] = 0;
    shard.size--;
    shard.sorted = null;
    this.release(slot);
  }

  /** Marks the slot most recently used. */
  touch(slot: number): void {
    if (this.head === slot) return;
    this.unlink(slot);
    this.pushHead(slot);
  }

  // -------------------------------------------------------------------------------------------
  // Internals

  /** Hash of the slot's key (as hashBytes of the key's bytes). */
  private hashOf(slot: number): number {
    const r = this.rec[slot]!;
    return typeof r === 'string' ? hashChars(r, this.klen[slot]!) : hashBytes(r, 0, this.klen[slot]!);
  }

  private release(slot: number): void {
    this.count--;
    const r = this.rec[slot]!;
    this.bytes -= r.length;
    if (typeof r !== 'string') this.retire(slot, r);
    this.unlink(slot);
    this.rec[slot] = undefined;
    this.shardOf[slot] = NONE;
    this.expire[slot] = 0;
    this.older[slot] = this.freeHead;
    this.freeHead = slot;
  }

  /** An array for a big entry of `n` bytes: a freed one of its capacity class, else a new one. */
  private bigArray(n: number): Uint8Array {
    const cap = capacityFor(n);
    if (cap <= POOL_MAX_ENTRY_BYTES) {
      const buf = this.pool[cap >>> 6]?.pop();
      if (buf !== undefined) {
        this.pooledBytes -= cap;
        return new Uint8Array(buf, 0, n);
      }
    }
    return new Uint8Array(new ArrayBuffer(cap), 0, n);
  }

  /** The slot's big entry bytes `r` are no longer its entry: reuse their array unless lent out. */
  private retire(slot: number, r: Uint8Array): void {
    if (this.lent[slot] === 1) {
      this.lent[slot] = 0;
      return;
    }
    const buf = r.buffer as ArrayBuffer;
    const cap = buf.byteLength;
    if (cap > POOL_MAX_ENTRY_BYTES || this.pooledBytes + cap > POOL_MAX_BYTES) return;
    (this.pool[cap >>> 6] ??= []).push(buf);
    this.pooledBytes += cap;
  }

  private insert(shard: Shard, slot: number, hash: number): void {
    if ((shard.size + 1) * 4 > shard.table.length * 3) this.grow(shard);
    const t = shard.table;
    const mask = t.length - 1;
    let i = hash & mask;
    while (t[i] !== 0) i = (i + 1) & mask;
    t[i] = slot + 1;
    shard.tags[i] = hash >>> 24;
    shard.size++;
  }

  private grow(shard: Shard): void {
    const old = shard.table;
    const t = new Int32Array(old.length * 2);
    const tags = new Uint8Array(t.length);
    const mask = t.length - 1;
    for (let i = 0; i < old.length; i++) {
      const v = old[i]!;
      if (v === 0) continue;
      const h = this.hashOf(v - 1);
      let j = h & mask;
      while (t[j] !== 0) j = (j + 1) & mask;
      t[j] = v;
      tags[j] = h >>> 24;
    }
    shard.table = t;
    shard.tags = tags;
  }

  private allocate(): number {
    if (this.freeHead !== NONE) {
      const slot = this.freeHead;
      this.freeHead = this.older[slot]!;
      return slot;
    }
    if (this.used === this.klen.length) this.growSlots();
    return this.used++;
  }

  private growSlots(): void {
    // Grow by half: a doubling would leave up to half of these arrays unused.
    const n = Math.ceil(this.klen.length * 1.5);
    const grow = <T extends Int32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.klen = grow(this.klen, (k) => new Int32Array(k));
    this.expire = grow(this.expire, (k) => new Float64Array(k));
    const shardOf = new Int32Array(n).fill(NONE);
    shardOf.set(this.shardOf);
    this.shardOf = shardOf;
    this.lent = grow(this.lent, (k) => new Uint8Array(k));
    this.newer = grow(this.newer, (k) => new Int32Array(k));
    this.older = grow(this.older, (k) => new Int32Array(k));
  }

  private pushHead(slot: number): void {
    this.newer[slot] = NONE;
    this.older[slot] = this.head;
    if (this.head !== NONE) this.newer[this.head] = slot;
    this.head = slot;
    if (this.tail === NONE) this.tail = slot;
  }

  private unlink(slot: number): void {
    const n = this.newer[slot]!;
    const o = this.older[slot]!;
    if (n !== NONE) this.older[n] = o;
    else if (this.head === slot) this.head = o;
    if (o !== NONE) this.newer[o] = n;
    else if (this.tail === slot) this.tail = n;
    this.newer[slot] = NONE;
    this.older[slot] = NONE;
  }
}
