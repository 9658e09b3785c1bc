/**
 * A map from non-negative integer keys (request ids, sequence numbers) to values, for the
 * per-request bookkeeping of clients and nodes: entries are added and removed at the rate of
 * requests while only a few hundred are held at a time (ADR 0075).
 *
 * Why not `Map`: V8's `Map` and `Set` keep removed entries as holes and, when the holes fill
 * the table, rebuild it into a fresh one — every few hundred removals under such churn — and
 * the old table keeps a reference to its successor. Once a full collection has moved a table
 * to the old generation, each later table stays reachable from its dead predecessor there, so
 * every young collection keeps every table (with the requests it held) made since, until the
 * next full collection moves the current table to the old generation again. Measured: after one
 * full collection a `Map` with 256 entries under churn cost 12× the CPU per operation (Node 20,
 * 4× on Node 22) for as long as the process ran; the client spent a third of its CPU in the
 * collector.
 *
 * Here the slots are two arrays that are replaced only when the map grows past half of its
 * capacity or, above SHRINK_ABOVE slots, shrinks below an eighth of it; a removed entry leaves
 * no hole (linear probing, backward-shift deletion). Keys must be integers in [0, 2^53). A key's first slot comes from
 * its low 32 bits by Fibonacci hashing: ids that count up would otherwise sit in one unbroken
 * run of slots, and every removal would walk the rest of it.
 */
export class IntMap<V> {
  private keys!: Float64Array;
  private vals!: (V | undefined)[];
  private mask!: number;
  /** 32 − log2(slots): the first slot of key k is (k × 2^32/φ mod 2^32) >>> shift. */
  private shift!: number;
  private count = 0;

  /** `capacity`: slots to start with (rounded up to a power of two, at least 16). */
  constructor(capacity = 16) {
    this.emptySlots(slotsFor(capacity));
  }

  get size(): number {
    return this.count;
  }

  /** Slots in use now (a power of two; changes only when the map grows or shrinks a lot). */
  get capacity(): number {
    return this.mask + 1;
  }

  get(key: number): V | undefined {
    const i = this.find(key);
    return i < 0 ? undefined : this.vals[i];
  }

  has(key: number): boolean {
    return this.find(key) >= 0;
  }

  set(key: number, value: V): void {
    if (!Number.isSafeInteger(key) || key < 0) throw new RangeError(`IntMap key must be a non-negative safe integer, got ${String(key)}`);
    const keys = this.keys;
    const mask = this.mask;
    for (let i = Math.imul(key, PHI) >>> this.shift; ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) {
        this.vals[i] = value;
        return;
      }
      if (k === EMPTY) {
        keys[i] = key;
        this.vals[i] = value;
        this.count++;
        if (this.count * 2 > mask + 1) this.resize((mask + 1) * 2);
        return;
      }
    }
  }

  /** Removes `key`; returns its value (undefined when absent). */
  delete(key: number): V | undefined {
    let i = this.find(key);
    if (i < 0) return undefined;
    const keys = this.keys;
    const vals = this.vals;
    const mask = this.mask;
    const shift = this.shift;
    const value = vals[i];
    // Backward shift: move later entries of the probe run into the gap when their home slot does
    // not lie cyclically in (gap, their slot], so no lookup ever meets a hole before its key.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const k = keys[j]!;
      if (k === EMPTY) break;
      const home = Math.imul(k, PHI) >>> shift;
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      keys[i] = k;
      vals[i] = vals[j];
      i = j;
    }
    keys[i] = EMPTY;
    vals[i] = undefined;
    this.count--;
    if (mask + 1 > SHRINK_ABOVE && this.count * 8 < mask + 1) this.resize((mask + 1) / 2);
    return value;
  }

  /** Calls `fn` for every entry, in no particular order. `fn` must not change the map. */
  forEach(fn: (value: V, key: number) => void): void {
    const keys = this.keys;
    const vals = this.vals;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY) fn(vals[i] as V, keys[i]!);
  }

  /** The values, in no particular order (a copy). */
  values(): V[] {
    const out: V[] = [];
    this.forEach((v) => out.push(v));
    return out;
  }

  clear(): void {
    this.emptySlots(MIN_SLOTS);
    this.count = 0;
  }

  /** New, empty slot arrays of `slots` (a power of two), and the mask and shift that go with them. */
  private emptySlots(slots: number): void {
    this.keys = new Float64Array(slots).fill(EMPTY);
    this.vals = new Array<V | undefined>(slots).fill(undefined);
    this.mask = slots - 1;
    this.shift = 32 - Math.log2(slots);
  }

  private find(key: number): number {
    // A negative key (or NaN) is never stored; -1 would match an empty slot.
    if (!(key >= 0)) return -1;
    const keys = this.keys;
    const mask = this.mask;
    for (let i = Math.imul(key, PHI) >>> this.shift; ; i = (i + 1) & mask) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === EMPTY) return -1;
    }
  }

  private resize(slots: number): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    this.emptySlots(slots);
    const keys = this.keys;
    const mask = this.mask;
    const shift = this.shift;
    for (let j = 0; j < oldKeys.length; j++) {
      const k = oldKeys[j]!;
      if (k === EMPTY) continue;
      let i = Math.imul(k, PHI) >>> shift;
      while (keys[i] !== EMPTY) i = (i + 1) & mask;
      keys[i] = k;
      this.vals[i] = oldVals[j];
    }
  }
}

const EMPTY = -1;
/** 2^32 / φ, odd: multiplying by it spreads consecutive keys over the slots. */
const PHI = 0x9e3779b1;
const MIN_SLOTS = 16;
/**
 * A map of this many slots or fewer (16 KiB) never shrinks. Requests in flight come and go in
 * bursts — a client's count on one connection swung between a few dozen and a few hundred within
 * milliseconds — and shrinking at an eighth made such a map rebuild its arrays about once every
 * 40 operations (3 % of a client's CPU samples under 1 KiB puts; ADR 0075's amendment). A burst beyond this still gives its
 * memory back.
 */
const SHRINK_ABOVE = 1024;

function slotsFor(capacity: number): number {
  let n = MIN_SLOTS;
  while (n < capacity) n *= 2;
  return n;
}
