/**
 * Remembered (session, seq) outcomes of one node, for exactly-once retries (ADR 0018).
 *
 * Two bounds forget them:
 * - the session's floor: the client sends `ack`, the lowest seq it may still retry; every outcome
 *   of that session below it is forgotten at once (on every partition of this node), and a request
 *   below it can only be a stale duplicate, which the store refuses. A live client's outcomes are
 *   thus bounded by its requests in flight, as with the client sessions of the Raft dissertation
 *   (§6.3);
 * - the time window (`windowMs` after the write, primary clock): the bound for clients that
 *   vanish, or that do not send `ack`. A session's floor is forgotten a window after its last use.
 *
 * Built so that the steady state of a client with acks (one outcome added and one forgotten per
 * write) allocates only the outcome itself (ADR 0041):
 * - each session finds its outcomes by seq through its own open-addressing table (SeqIndex:
 *   linear probing, backward-shift deletion, no tombstones), not a Map, whose deletions leave
 *   holes that are paid for by rehashing; the outcomes of one seq in several partitions (putAll,
 *   clear) are chained from the slot;
 * - each partition links its own outcomes (for snapshots and dropping the partition);
 * - the window is served in write-time order by a FIFO of outcomes added in nondecreasing time
 *   (the common case: one primary's clock) and a min-heap for the others (snapshots, several
 *   primaries, a clock step back); outcomes forgotten otherwise leave a dead slot there, dropped
 *   when it reaches the front or compacted away once dead slots outnumber live ones.
 */

/** A remembered (session, seq) outcome. */
export interface Outcome {
  session: string;
  seq: number;
  op: number;
  result: unknown;
  /** Primary's clock at the write. */
  at: number;
  /** Update counter of the record that carried it. */
  counter: number;
  partition: number;
  live: boolean;
  /** Next outcome of the same (session, seq) in another partition. */
  sameSeq: Outcome | null;
  /** Partition list links. */
  prev: Outcome | null;
  next: Outcome | null;
}

/** Smallest table of a session's seq index (a power of two). */
const MIN_INDEX = 8;

/** Slot of a seq in a table of `mask + 1` slots: seqs are mostly consecutive, mixed anyway. */
function home(seq: number, mask: number): number {
  const lo = seq | 0;
  const hi = (seq / 0x1_0000_0000) | 0;
  return (Math.imul(lo ^ Math.imul(hi, 0x27d4eb2f), 0x9e3779b1) >>> 0) & mask;
}

/**
 * One session's outcomes by seq: the first outcome of each seq (its `sameSeq` chain holds the
 * others), in an open-addressing table kept between 1/8 and 3/4 full.
 */
class SeqIndex {
  slots: (Outcome | undefined)[] = new Array<Outcome | undefined>(MIN_INDEX);
  size = 0;

  find(seq: number): Outcome | undefined {
    const t = this.slots;
    const mask = t.length - 1;
    for (let i = home(seq, mask); ; i = (i + 1) & mask) {
      const o = t[i];
      if (o === undefined || o.seq === seq) return o;
    }
  }

  /** Sets the first outcome of `o.seq` (inserting the seq, or replacing its first outcome). */
  put(o: Outcome): void {
    if ((this.size + 1) * 4 > this.slots.length * 3) this.resize(this.slots.length * 2);
    const t = this.slots;
    const mask = t.length - 1;
    for (let i = home(o.seq, mask); ; i = (i + 1) & mask) {
      const cur = t[i];
      if (cur === undefined) {
        t[i] = o;
        this.size++;
        return;
      }
      if (cur.seq === o.seq) {
        t[i] = o;
        return;
      }
    }
  }

  /** Removes the seq (backward-shift deletion: later members of the probe run move into the hole). */
  delete(seq: number): void {
    const t = this.slots;
    const mask = t.length - 1;
    let i = home(seq, mask);
    for (; ; i = (i + 1) & mask) {
      const o = t[i];
      if (o === undefined) return;
      if (o.seq === seq) break;
    }
    let hole = i;
    for (let j = (i + 1) & mask; t[j] !== undefined; j = (j + 1) & mask) {
      const h = home(t[j]!.seq, mask);
      // Move t[j] into the hole when its home is not cyclically in (hole, j].
      if (((j - h) & mask) >= ((j - hole) & mask)) {
        t[hole] = t[j];
        hole = j;
      }
    }
    t[hole] = undefined;
    this.size--;
    if (this.size * 8 < t.length && t.length > MIN_INDEX) this.resize(t.length / 2);
  }

  private resize(n: number): void {
    const old = this.slots;
    const t = new Array<Outcome | undefined>(n);
    const mask = n - 1;
    for (const o of old) {
      if (o === undefined) continue;
      let i = home(o.seq, mask);
      while (t[i] !== undefined) i = (i + 1) & mask;
      t[i] = o;
    }
    this.slots = t;
  }

  /** First outcomes of every seq held (table order). */
  values(): Outcome[] {
    const out: Outcome[] = [];
    for (const o of this.slots) if (o !== undefined) out.push(o);
    return out;
  }
}

interface SessionState {
  /** Lowest seq the client may still retry; 0 = never told. */
  floor: number;
  /** Last time (primary clock) the floor moved or an outcome was added. */
  lastAt: number;
  readonly bySeq: SeqIndex;
}

export class OutcomeTable {
  private readonly sessions = new Map<string, SessionState>();
  /** Newest outcome of each partition (its list runs through `next` to the oldest); null: none now. */
  private readonly partitions = new Map<number, Outcome | null>();
  /** Outcomes in nondecreasing `at` from `queueHead` on (forgotten ones stay as dead slots). */
  private queue: Outcome[] = [];
  private queueHead = 0;
  /** Min-heap by `at` of outcomes that arrived older than the queue's newest. */
  private heap: Outcome[] = [];
  /** Forgotten outcomes still in the queue or the heap. */
  private dead = 0;
  private sessionCursor: IterableIterator<[string, SessionState]> | null = null;
  /** The last session looked up (requests of one client come in runs). */
  private lastName: string | null = null;
  private lastState: SessionState | undefined = undefined;
  /** Outcomes held. */
  size = 0;

  /** Sessions remembered (their floor, their outcomes). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  constructor(
    private readonly windowMs: number,
    /** Dead slots tolerated before compaction is considered (small in tests, to exercise it). */
    private readonly compactMin = 1024,
  ) {}

  private session(name: string): SessionState | undefined {
    if (name === this.lastName) return this.lastState;
    const s = this.sessions.get(name);
    if (s !== undefined) {
      this.lastName = name;
      this.lastState = s;
    }
    return s;
  }

  private ensureSession(name: string, at: number): SessionState {
    let s = this.session(name);
    if (s === undefined) {
      s = { floor: 0, lastAt: at, bySeq: new SeqIndex() };
      this.sessions.set(name, s);
      this.lastName = name;
      this.lastState = s;
    }
    return s;
  }

  get(partition: number, session: string, seq: number): Outcome | undefined {
    const s = this.session(session);
    if (s === undefined || s.bySeq.size === 0) return undefined;
    for (let o = s.bySeq.find(seq) ?? null; o !== null; o = o.sameSeq) {
      if (o.partition === partition) return o;
    }
    return undefined;
  }

  /** The session's floor: seqs below it are acknowledged and never retried (0 = unknown). */
  floor(session: string): number {
    return this.session(session)?.floor ?? 0;
  }

  /** Sessions with a known floor: [session, floor, lastAt]. */
  floors(): [string, number, number][] {
    const out: [string, number, number][] = [];
    for (const [session, s] of this.sessions) if (s.floor > 0) out.push([session, s.floor, s.lastAt]);
    return out;
  }

  /**
   * Raises the session's floor to `floor` (a lower one is ignored) and forgets its outcomes below
   * it. Costs O(min(floor − previous floor, outcomes of the session)).
   */
  advance(session: string, floor: number, at: number): void {
    let s = this.session(session);
    if (s === undefined) {
      if (floor <= 0) return;
      s = this.ensureSession(session, at);
    }
    if (at > s.lastAt) s.lastAt = at;
    if (floor <= s.floor) return;
    const from = s.floor;
    s.floor = floor;
    const m = s.bySeq;
    if (m.size === 0) return;
    if (floor - from <= m.size) {
      for (let q = from; q < floor; q++) {
        const o = m.find(q);
        if (o !== undefined) this.dropSeq(m, o);
      }
    } else {
      for (const o of m.values()) if (o.seq < floor) this.dropSeq(m, o);
    }
    this.compact();
  }

  /**
   * Adds an outcome; true when it is held (not below the session's floor). An outcome for a
   * (partition, session, seq) already held replaces it.
   */
  add(session: string, seq: number, op: number, result: unknown, at: number, counter: number, partition: number): boolean {
    const s = this.ensureSession(session, at);
    if (at > s.lastAt) s.lastAt = at;
    if (seq < s.floor) return false;
    const m = s.bySeq;
    const old = this.get(partition, session, seq);
    if (old !== undefined) this.unlink(m, old);
    const first = this.partitions.get(partition) ?? null;
    // One literal with every field, so all outcomes share one compact object shape.
    const o: Outcome = { session, seq, op, result, at, counter, partition, live: true, sameSeq: m.size === 0 ? null : (m.find(seq) ?? null), prev: null, next: first };
    m.put(o);
    if (first !== null) first.prev = o;
    this.partitions.set(partition, o);
    const q = this.queue;
    if (q.length === this.queueHead || q[q.length - 1]!.at <= at) q.push(o);
    else this.heapPush(o);
    this.size++;
    this.compact();
    return true;
  }

  /** Held outcomes of a partition, oldest first. */
  ofPartition(partition: number): Outcome[] {
    const out: Outcome[] = [];
    for (let o = this.partitions.get(partition) ?? null; o !== null; o = o.next) out.push(o);
    return out.reverse();
  }

  /** Forgets every outcome of the partition; returns how many. */
  dropPartition(partition: number): number {
    let n = 0;
    for (let o = this.partitions.get(partition) ?? null; o !== null; ) {
      const next = o.next;
      this.unlink(this.sessions.get(o.session)!.bySeq, o);
      n++;
      o = next;
    }
    this.partitions.delete(partition);
    this.compact();
    return n;
  }

  /** The outcome written first among those queued or heaped (dead or alive), or undefined. */
  private oldest(): Outcome | undefined {
    const q = this.queue[this.queueHead];
    const h = this.heap[0];
    if (h === undefined) return q;
    return q === undefined || h.at < q.at ? h : q;
  }

  /**
   * Forgets outcomes whose window has passed (`at + windowMs <= now`), oldest first, stopping at
   * the first one still inside the window or after `budget` slots (dead ones included). Returns
   * the number of slots examined.
   */
  prune(now: number, budget: number): number {
    let examined = 0;
    while (examined < budget) {
      const o = this.oldest();
      if (o === undefined || (o.live && o.at + this.windowMs > now)) break;
      examined++;
      if (o === this.queue[this.queueHead]) this.queueShift();
      else this.heapPop();
      if (o.live) this.unlink(this.sessions.get(o.session)!.bySeq, o);
      this.dead--;
    }
    return examined;
  }

  /** Fast check for the write path: is there anything `prune` would remove now? */
  due(now: number): boolean {
    const o = this.oldest();
    return o !== undefined && (!o.live || o.at + this.windowMs <= now);
  }

  /**
   * Forgets idle sessions (no outcome held, floor not moved for a window), examining at most
   * `budget` sessions (round robin over calls). Returns the number examined.
   */
  pruneSessions(now: number, budget: number): number {
    let examined = 0;
    while (examined < budget) {
      this.sessionCursor ??= this.sessions.entries();
      const n = this.sessionCursor.next();
      if (n.done === true) {
        this.sessionCursor = null;
        break;
      }
      examined++;
      const [session, s] = n.value;
      if (s.bySeq.size === 0 && s.lastAt + this.windowMs <= now) {
        this.sessions.delete(session);
        if (this.lastName === session) {
          this.lastName = null;
          this.lastState = undefined;
        }
      }
    }
    return examined;
  }

  private dropSeq(m: SeqIndex, first: Outcome): void {
    for (let o: Outcome | null = first; o !== null; ) {
      const next: Outcome | null = o.sameSeq;
      this.unlink(m, o);
      o = next;
    }
  }

  /** Removes one outcome from every index (its queue or heap slot turns dead). */
  private unlink(m: SeqIndex, o: Outcome): void {
    if (!o.live) return;
    o.live = false;
    this.size--;
    this.dead++;
    // same-seq chain
    const first = m.find(o.seq);
    if (first === o) {
      if (o.sameSeq === null) m.delete(o.seq);
      else m.put(o.sameSeq);
    } else {
      for (let p = first ?? null; p !== null; p = p.sameSeq) {
        if (p.sameSeq === o) {
          p.sameSeq = o.sameSeq;
          break;
        }
      }
    }
    o.sameSeq = null;
    // partition list (an emptied partition keeps its key: no map churn)
    if (o.prev !== null) o.prev.next = o.next;
    else this.partitions.set(o.partition, o.next);
    if (o.next !== null) o.next.prev = o.prev;
    o.prev = null;
    o.next = null;
    // A dead outcome at the front of the queue goes at once (the queue holds no dead prefix).
    while (this.queueHead < this.queue.length && !this.queue[this.queueHead]!.live) {
      this.queueShift();
      this.dead--;
    }
  }

  private queueShift(): void {
    const q = this.queue;
    q[this.queueHead++] = undefined as unknown as Outcome;
    if (this.queueHead === q.length) {
      q.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead >= this.compactMin && this.queueHead * 2 >= q.length) {
      // Amortised O(1): the consumed half is dropped in one copy.
      this.queue = q.slice(this.queueHead);
      this.queueHead = 0;
    }
  }

  /** Drops dead queue and heap slots once they outnumber live ones (amortised O(1) per outcome). */
  private compact(): void {
    if (this.dead <= this.compactMin || this.dead * 2 <= this.queue.length - this.queueHead + this.heap.length) return;
    this.queue = this.queue.slice(this.queueHead).filter((o) => o.live);
    this.queueHead = 0;
    this.heap = this.heap.filter((o) => o.live);
    this.dead = 0;
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private heapPush(o: Outcome): void {
    const h = this.heap;
    let i = h.length;
    h.push(o);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent]!;
      if (p.at <= o.at) break;
      h[i] = p;
      i = parent;
    }
    h[i] = o;
  }

  private heapPop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      this.siftDown(0);
    }
  }

  private siftDown(start: number): void {
    const h = this.heap;
    const n = h.length;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && h[l]!.at < h[m]!.at) m = l;
      if (r < n && h[r]!.at < h[m]!.at) m = r;
      if (m === i) return;
      const t = h[i]!;
      h[i] = h[m]!;
      h[m] = t;
      i = m;
    }
  }
}
