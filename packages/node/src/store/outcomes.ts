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
 * Lookups go through a per-session map keyed by the numeric seq (the outcomes of one seq in
 * several partitions — putAll, clear — are chained). Each partition links its own outcomes (for
 * snapshots and dropping the partition), and one min-heap by write time serves the window;
 * outcomes forgotten otherwise leave a dead slot there, compacted away once dead slots outnumber
 * live ones.
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

export type OutcomeInit = Pick<Outcome, 'session' | 'seq' | 'op' | 'result' | 'at' | 'counter' | 'partition'>;

interface SessionState {
  /** Lowest seq the client may still retry; 0 = never told. */
  floor: number;
  /** Last time (primary clock) the floor moved or an outcome was added. */
  lastAt: number;
  readonly bySeq: Map<number, Outcome>;
}

export class OutcomeTable {
  private readonly sessions = new Map<string, SessionState>();
  private readonly partitions = new Map<number, Outcome>();
  /** Min-heap by `at` (outcomes arrive out of time order from snapshots and several primaries). */
  private heap: Outcome[] = [];
  /** Forgotten outcomes still in the heap. */
  private dead = 0;
  private sessionCursor: IterableIterator<[string, SessionState]> | null = null;
  /** Outcomes held. */
  size = 0;

  constructor(private readonly windowMs: number) {}

  get(partition: number, session: string, seq: number): Outcome | undefined {
    for (let o = this.sessions.get(session)?.bySeq.get(seq) ?? null; o !== null; o = o.sameSeq) {
      if (o.partition === partition) return o;
    }
    return undefined;
  }

  /** The session's floor: seqs below it are acknowledged and never retried (0 = unknown). */
  floor(session: string): number {
    return this.sessions.get(session)?.floor ?? 0;
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
    let s = this.sessions.get(session);
    if (s === undefined) {
      if (floor <= 0) return;
      s = { floor: 0, lastAt: at, bySeq: new Map() };
      this.sessions.set(session, s);
    }
    if (at > s.lastAt) s.lastAt = at;
    if (floor <= s.floor) return;
    const from = s.floor;
    s.floor = floor;
    const m = s.bySeq;
    if (m.size === 0) return;
    if (floor - from <= m.size) {
      for (let q = from; q < floor; q++) {
        const o = m.get(q);
        if (o !== undefined) this.dropSeq(m, o);
      }
    } else {
      for (const [q, o] of m) if (q < floor) this.dropSeq(m, o);
    }
    this.compact();
  }

  /**
   * Adds an outcome; true when it is held (not below the session's floor). An outcome for a
   * (partition, session, seq) already held replaces it.
   */
  add(init: OutcomeInit): boolean {
    let s = this.sessions.get(init.session);
    if (s === undefined) {
      s = { floor: 0, lastAt: init.at, bySeq: new Map() };
      this.sessions.set(init.session, s);
    } else if (init.at > s.lastAt) s.lastAt = init.at;
    if (init.seq < s.floor) return false;
    const old = this.get(init.partition, init.session, init.seq);
    if (old !== undefined) this.unlink(s.bySeq, old);
    // One literal with every field, so all outcomes share one compact object shape.
    const o: Outcome = {
      session: init.session,
      seq: init.seq,
      op: init.op,
      result: init.result,
      at: init.at,
      counter: init.counter,
      partition: init.partition,
      live: true,
      sameSeq: s.bySeq.get(init.seq) ?? null,
      prev: null,
      next: null,
    };
    s.bySeq.set(init.seq, o);
    const first = this.partitions.get(init.partition) ?? null;
    o.next = first;
    if (first !== null) first.prev = o;
    this.partitions.set(init.partition, o);
    this.push(o);
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
    return n;
  }

  /**
   * Forgets outcomes whose window has passed (`at + windowMs <= now`), oldest first, stopping at
   * the first one still inside the window or after `budget` heap slots. Returns the number of
   * slots examined.
   */
  prune(now: number, budget: number): number {
    let examined = 0;
    const h = this.heap;
    while (h.length > 0 && examined < budget) {
      const o = h[0]!;
      if (o.live && o.at + this.windowMs > now) break;
      examined++;
      this.popTop();
      if (o.live) this.unlink(this.sessions.get(o.session)!.bySeq, o);
      this.dead--;
    }
    // An emptied heap gives its (possibly large) backing store back.
    if (h.length === 0 && examined > 0) this.heap = [];
    return examined;
  }

  /** Fast check for the write path: is there anything `prune` would remove now? */
  due(now: number): boolean {
    const o = this.heap[0];
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
      if (s.bySeq.size === 0 && s.lastAt + this.windowMs <= now) this.sessions.delete(session);
    }
    return examined;
  }

  private dropSeq(m: Map<number, Outcome>, first: Outcome): void {
    for (let o: Outcome | null = first; o !== null; ) {
      const next: Outcome | null = o.sameSeq;
      this.unlink(m, o);
      o = next;
    }
  }

  /** Removes one outcome from every index (its heap slot turns dead). */
  private unlink(m: Map<number, Outcome>, o: Outcome): void {
    if (!o.live) return;
    o.live = false;
    this.size--;
    this.dead++;
    // same-seq chain
    const first = m.get(o.seq);
    if (first === o) {
      if (o.sameSeq === null) m.delete(o.seq);
      else m.set(o.seq, o.sameSeq);
    } else {
      for (let p = first ?? null; p !== null; p = p.sameSeq) {
        if (p.sameSeq === o) {
          p.sameSeq = o.sameSeq;
          break;
        }
      }
    }
    o.sameSeq = null;
    // partition list
    if (o.prev !== null) o.prev.next = o.next;
    else if (o.next !== null) this.partitions.set(o.partition, o.next);
    else this.partitions.delete(o.partition);
    if (o.next !== null) o.next.prev = o.prev;
    o.prev = null;
    o.next = null;
  }

  /** Drops dead heap slots once they outnumber live ones (amortised O(1) per outcome). */
  private compact(): void {
    const h = this.heap;
    if (this.dead <= 1024 || this.dead * 2 <= h.length) return;
    this.heap = h.filter((o) => o.live);
    this.dead = 0;
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private push(o: Outcome): void {
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

  private popTop(): void {
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
