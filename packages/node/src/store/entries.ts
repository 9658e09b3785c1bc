/**
 * Entries of every cache and partition of one node, held for the least memory per entry (see
 * docs/node.md, "Memory per entry", and ADR 0019).
 *
 * - An entry is a numbered slot. What a slot holds lives in parallel arrays, not in an object per
 *   entry: where its `key ++ value` bytes are (an array and an offset in it) and how many, the
 *   key's length, the absolute expiry, the shard it belongs to and its two LRU links (slot
 *   numbers). Freed slots are reused.
 * - A small entry (key + value under `bigEntryBytes`, default 512) lives in a slab (ADR 0078): a
 *   64 KiB byte array cut into equal cells of one size class (16 B steps), outside the JS heap and
 *   made once. Overwriting an entry with a value of the same class writes its bytes in place: a
 *   put makes no garbage (an entry used to be a latin1 string, new for each write, which lived
 *   until the key's next write — long enough to be promoted and die in the old generation, the
 *   largest share of a node's collector time under small puts). Small entries are never lent out:
 *   readers get copies, so a cell can be rewritten or reused at once. A slab that empties below a
 *   quarter is evacuated into the class's other slabs and given back (no cell is pinned by a few
 *   survivors); every class keeps one slab.
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

const latin1Slice = (Buffer.prototype as unknown as { latin1Slice: (this: Uint8Array, start: number, end: number) => string }).latin1Slice;

/** Bytes of a slab; cells are addressed in 16 B units, `slab << 12 | unit`. */
export const SLAB_BYTES = 64 * 1024;
const UNIT_SHIFT = 4;
const SLAB_UNITS = SLAB_BYTES >>> UNIT_SHIFT;
/** Entries of this many bytes or more never go to a slab, whatever `bigEntryBytes` says. */
const SLAB_MAX_ENTRY = 4096;

/** The size class of a small entry of `n` bytes: its cell size in 16 B units (at least one). */
export function cellUnits(n: number): number {
  return n <= 16 ? 1 : (n + 15) >>> UNIT_SHIFT;
}

/** Key + value bytes from which an entry is kept in an array of its own rather than a slab. */
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
  /** Key + value bytes from which an entry gets an array of its own (below: a slab cell). */
  private readonly smallMax: number;

  constructor(
    /** Entries with key + value of this many bytes or more get an array of their own (tests lower it). */
    bigEntryBytes = BIG_ENTRY_BYTES,
  ) {
    this.smallMax = Math.min(bigEntryBytes, SLAB_MAX_ENTRY);
  }

  /**
   * The array holding the slot's `key ++ value`: its slab, or a big entry's own array (exactly
   * its bytes); undefined for a free slot.
   */
  private rec: (Uint8Array | undefined)[] = [];
  /**
   * A small entry's cell, `slab << 12 | unit`: its bytes are at `(cell & 4095) << 4` in its slab
   * (`cellOffset`); 0 for a big entry, whose bytes start its array.
   */
  private cell = new Int32Array(1024);
  /** Key + value bytes of the slot's entry. */
  private len = new Int32Array(1024);
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

  // Slabs (ADR 0078), by slab id: its bytes, its class (cell size in units), per cell the slot it
  // holds or, when free, the next free cell (`-2 - index`; -1: none), its first free cell and how
  // many are free.
  private readonly slabs: (Uint8Array | undefined)[] = [];
  private readonly slabUnits: number[] = [];
  private readonly slabOwner: (Int32Array | undefined)[] = [];
  private readonly slabFreeHead: number[] = [];
  private readonly slabFreeCount: number[] = [];
  /** Position of a slab in its class's `partial` list, or NONE when it has no free cell. */
  private readonly slabPartialAt: number[] = [];
  private readonly freeSlabIds: number[] = [];
  // Per class (cell units): slabs with a free cell, every slab, free cells over all of them.
  private readonly partial: number[][] = [];
  private readonly classSlabs: number[] = [];
  private readonly classFree: number[] = [];
  /** Slabs held (made and not yet given back), SLAB_BYTES each. */
  slabCount = 0;

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
        const o = cellOffset(this.cell[slot]!) - at;
        let j = at;
        const end = at + n;
        while (j < end && r[o + j] === b[j]) j++;
        if (j === end) return slot;
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
      if (tags[i] === tag && this.klen[slot] === n) {
        const r = this.rec[slot]!;
        const o = cellOffset(this.cell[slot]!);
        let j = 0;
        while (j < n && r[o + j] === k.charCodeAt(j)) j++;
        if (j === n) return slot;
      }
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
    const o = cellOffset(this.cell[slot]!);
    return latin1Slice.call(this.rec[slot]!, o, o + this.klen[slot]!);
  }

  /** Value as a latin1 string. */
  valueString(slot: number): string {
    const o = cellOffset(this.cell[slot]!);
    return latin1Slice.call(this.rec[slot]!, o + this.klen[slot]!, o + this.len[slot]!);
  }

  valueLength(slot: number): number {
    return this.len[slot]! - this.klen[slot]!;
  }

  /** Whether the slot's entry lives in a slab (small) rather than an array of its own (big). */
  private inSlab(slot: number): boolean {
    return this.len[slot]! < this.smallMax;
  }

  /**
   * Key bytes, not to be written into: a view of a big entry's own bytes (an entry's own array is
   * replaced, never written into, once lent: the view stays the bytes it was), else a copy (a
   * slab's cells are rewritten in place).
   */
  keyBytes(slot: number): Bytes {
    const r = this.rec[slot]!;
    const o = cellOffset(this.cell[slot]!);
    if (!this.inSlab(slot)) {
      this.lent[slot] = 1;
      return r.subarray(0, this.klen[slot]);
    }
    return copyOut(r, o, o + this.klen[slot]!);
  }

  /**
   * Value bytes, not to be written into: a view of a big entry's own bytes (no copy per get of a
   * big value; see keyBytes), else a copy (bytes that may share Node's buffer pool).
   */
  valueBytes(slot: number): Bytes {
    const r = this.rec[slot]!;
    const k = this.klen[slot]!;
    if (!this.inSlab(slot)) {
      this.lent[slot] = 1;
      return r.subarray(k);
    }
    const o = cellOffset(this.cell[slot]!);
    return copyOut(r, o + k, o + this.len[slot]!);
  }

  /** Whether keyBytes / valueBytes of the slot are views of its own array (a big entry), not copies. */
  lendsBytes(slot: number): boolean {
    return !this.inSlab(slot);
  }

  /** Writes the slot's key and value, back to back, into `dst` at `at` (a packed snapshot, ADR 0080). */
  copyEntryTo(slot: number, dst: Uint8Array, at: number): void {
    const r = this.rec[slot]!;
    const o = cellOffset(this.cell[slot]!);
    dst.set(r.subarray(o, o + this.len[slot]!), at);
  }

  /** Value bytes in a buffer of their own (for outcomes kept for the dedup window). */
  ownValue(slot: number): Bytes {
    const o = cellOffset(this.cell[slot]!);
    return this.rec[slot]!.slice(o + this.klen[slot]!, o + this.len[slot]!);
  }

  valueEquals(slot: number, b: Bytes): boolean {
    const k = this.klen[slot]!;
    if (this.len[slot]! - k !== b.length) return false;
    const r = this.rec[slot]!;
    const o = cellOffset(this.cell[slot]!) + k;
    for (let i = 0; i < b.length; i++) if (r[o + i] !== b[i]) return false;
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
    const into = this.place(slot, n);
    const r = this.rec[into]!;
    const o = cellOffset(this.cell[into]!);
    if (into !== slot) r.set(key, o);
    r.set(value, o + key.length);
    return this.placed(shard, slot, into, key.length, n, expireAt);
  }

  /**
   * `set` for a key and value that lie back to back in `b` (key `b[at, at + keyLen)`, value the
   * `valueLen` bytes after it, as in a binary replication record): copied straight from there.
   */
  setIn(shard: Shard, b: Bytes, at: number, keyLen: number, valueLen: number, expireAt: number): number {
    const n = keyLen + valueLen;
    const slot = this.findIn(shard, b, at, keyLen);
    const into = this.place(slot, n);
    const r = this.rec[into]!;
    const o = cellOffset(this.cell[into]!);
    if (into === slot) r.set(b.subarray(at + keyLen, at + n), o + keyLen);
    else r.set(b.subarray(at, at + n), o);
    return this.placed(shard, slot, into, keyLen, n, expireAt);
  }

  /**
   * Where an entry of `n` bytes for `slot` (what the last findIn found; NONE: a new key) is
   * written: `slot` itself when its bytes can be rewritten in place (the key is the same, the
   * caller writes only the value) — a small entry of the same class, or a never-lent big entry
   * of the same capacity class (ADR 0076) — else a fresh slot with room for the bytes (a slab
   * cell or an array of its own), whose key and value the caller writes; `placed` then finishes.
   */
  private place(slot: number, n: number): number {
    if (slot !== NONE) {
      const was = this.len[slot]!;
      if (n < this.smallMax) {
        if (was < this.smallMax && cellUnits(was) === cellUnits(n)) return slot;
      } else if (was >= this.smallMax && this.lent[slot] === 0) {
        const r = this.rec[slot]!;
        if (r.length === n) return slot;
        if (r.buffer.byteLength === capacityFor(n)) {
          this.rec[slot] = new Uint8Array(r.buffer, 0, n);
          return slot;
        }
      }
    }
    const fresh = this.allocate();
    this.len[fresh] = n;
    if (n < this.smallMax) {
      const c = this.takeCell(cellUnits(n), fresh);
      this.cell[fresh] = c;
      this.rec[fresh] = this.slabs[c >>> 12];
    } else {
      this.rec[fresh] = this.bigArray(n);
      this.cell[fresh] = 0;
      this.lent[fresh] = 0;
    }
    return fresh;
  }

  /**
   * Completes a write `place` prepared: `into` holds key ++ value (`keyLen` + the rest of `n`).
   * Rewritten in place (`into === slot`), a new entry (`slot` NONE), or a replacement: the old
   * slot keeps its place in the shard's table and the LRU list, takes the new bytes over and
   * gives its old ones back; the fresh slot returns to the free list.
   */
  private placed(shard: Shard, slot: number, into: number, keyLen: number, n: number, expireAt: number): number {
    if (slot === NONE) {
      this.klen[into] = keyLen;
      this.expire[into] = expireAt;
      this.shardOf[into] = shard.id;
      this.insert(shard, into, this.lookupHash);
      shard.sorted = null;
      this.count++;
      this.bytes += n;
      this.pushHead(into);
      this.previousExpireAt = -1;
      return into;
    }
    this.bytes += n - this.len[slot]!;
    if (into !== slot) {
      this.freeBytes(slot);
      this.rec[slot] = this.rec[into];
      const c = this.cell[into]!;
      this.cell[slot] = c;
      this.lent[slot] = 0;
      if (n < this.smallMax) this.slabOwner[c >>> 12]![this.cellIndex(c)] = slot;
      this.rec[into] = undefined;
      this.older[into] = this.freeHead;
      this.freeHead = into;
    }
    this.len[slot] = n;
    this.previousExpireAt = this.expire[slot]!;
    this.expire[slot] = expireAt;
    this.touch(slot);
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
    const o = cellOffset(this.cell[slot]!);
    return hashBytes(this.rec[slot]!, o, o + this.klen[slot]!);
  }

  private release(slot: number): void {
    this.count--;
    this.bytes -= this.len[slot]!;
    this.freeBytes(slot);
    this.unlink(slot);
    this.rec[slot] = undefined;
    this.shardOf[slot] = NONE;
    this.expire[slot] = 0;
    this.older[slot] = this.freeHead;
    this.freeHead = slot;
  }

  /** The slot's bytes are no longer its entry's: its cell back to its slab, or its array retired. */
  private freeBytes(slot: number): void {
    if (this.inSlab(slot)) this.giveCell(this.cell[slot]!);
    else this.retire(slot, this.rec[slot]!);
  }

  /** Index of a cell within its slab. */
  private cellIndex(c: number): number {
    return ((c & (SLAB_UNITS - 1)) / this.slabUnits[c >>> 12]!) | 0;
  }

  /** A free cell of `units` for `owner`: from a slab of the class with room, else a new slab. */
  private takeCell(units: number, owner: number): number {
    const partial = (this.partial[units] ??= []);
    const id = partial.length > 0 ? partial[partial.length - 1]! : this.newSlab(units);
    const owners = this.slabOwner[id]!;
    const index = this.slabFreeHead[id]!;
    this.slabFreeHead[id] = -2 - owners[index]!;
    owners[index] = owner;
    if (--this.slabFreeCount[id]! === 0) this.leavePartial(id);
    this.classFree[units]!--;
    return (id << 12) | (index * units);
  }

  /**
   * Gives a cell back. A slab left under a quarter full whose entries fit in the class's other
   * slabs is evacuated into them and dropped: a few entries never pin a slab. Every class keeps
   * at least one slab (a key alternating between two sizes must not make and drop one per write).
   */
  private giveCell(c: number): void {
    const id = c >>> 12;
    const units = this.slabUnits[id]!;
    const index = this.cellIndex(c);
    const owners = this.slabOwner[id]!;
    owners[index] = -2 - this.slabFreeHead[id]!;
    this.slabFreeHead[id] = index;
    if (this.slabFreeCount[id]!++ === 0) this.joinPartial(id, units);
    this.classFree[units]!++;
    const free = this.slabFreeCount[id]!;
    const live = owners.length - free;
    if (live * 4 < owners.length && this.classSlabs[units]! > 1 && this.classFree[units]! - free >= live) this.evacuate(id, units);
  }

  /** Moves the slab's entries into other slabs of its class (they have room) and drops it. */
  private evacuate(id: number, units: number): void {
    this.leavePartial(id);
    // Its free cells are no longer the class's to hand out.
    this.classFree[units]! -= this.slabFreeCount[id]!;
    const owners = this.slabOwner[id]!;
    const from = this.slabs[id]!;
    for (let i = 0; i < owners.length; i++) {
      const slot = owners[i]!;
      if (slot < 0) continue;
      const c = this.takeCell(units, slot);
      const to = this.slabs[c >>> 12]!;
      const o = cellOffset(c);
      const a = i * units << UNIT_SHIFT;
      to.set(from.subarray(a, a + this.len[slot]!), o);
      this.rec[slot] = to;
      this.cell[slot] = c;
    }
    this.slabs[id] = undefined;
    this.slabOwner[id] = undefined;
    this.freeSlabIds.push(id);
    this.classSlabs[units]!--;
    this.slabCount--;
  }

  private newSlab(units: number): number {
    const id = this.freeSlabIds.pop() ?? this.slabs.length;
    // A cell's address is `slab << 12 | unit` in an int32: 2^19 slabs (32 GiB of small entries).
    if (id >= 1 << 19) throw new RangeError('the node holds 32 GiB of small entries: no room for another slab');
    const capacity = (SLAB_UNITS / units) | 0;
    this.slabs[id] = new Uint8Array(SLAB_BYTES);
    this.slabUnits[id] = units;
    // Every cell free, each pointing to the next.
    const owners = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) owners[i] = i + 1 < capacity ? -2 - (i + 1) : -1;
    this.slabOwner[id] = owners;
    this.slabFreeHead[id] = 0;
    this.slabFreeCount[id] = capacity;
    this.slabPartialAt[id] = NONE;
    this.joinPartial(id, units);
    this.classSlabs[units] = (this.classSlabs[units] ?? 0) + 1;
    this.classFree[units] = (this.classFree[units] ?? 0) + capacity;
    this.slabCount++;
    return id;
  }

  private joinPartial(id: number, units: number): void {
    const partial = (this.partial[units] ??= []);
    this.slabPartialAt[id] = partial.length;
    partial.push(id);
  }

  private leavePartial(id: number): void {
    const at = this.slabPartialAt[id]!;
    if (at === NONE) return;
    const partial = this.partial[this.slabUnits[id]!]!;
    const last = partial.pop()!;
    if (last !== id) {
      partial[at] = last;
      this.slabPartialAt[last] = at;
    }
    this.slabPartialAt[id] = NONE;
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
    this.cell = grow(this.cell, (k) => new Int32Array(k));
    this.len = grow(this.len, (k) => new Int32Array(k));
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

/** Offset in its slab of a small entry's cell (0 for a big entry's `cell`, 0). */
function cellOffset(cell: number): number {
  return (cell & (SLAB_UNITS - 1)) << UNIT_SHIFT;
}

/** Bytes `r[from, to)` copied into a buffer of their own (small ones share Node's buffer pool). */
function copyOut(r: Uint8Array, from: number, to: number): Bytes {
  const buf = Buffer.allocUnsafe(to - from);
  buf.set(r.subarray(from, to));
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}
