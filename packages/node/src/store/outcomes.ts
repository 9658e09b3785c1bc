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
}

const NOTHING_PRUNED: { readonly examined: number; readonly removed: number } = Object.freeze({ examined: 0, removed: 0 });

/**
 * One partition's (session, seq) outcomes: looked up through per-session maps keyed by the
 * numeric seq (no composite string per outcome), forgotten oldest-first through a FIFO queue.
 * An outcome added again for the same (session, seq) replaces the old one, which stays in the
 * queue as a stale slot until pruning reaches it.
 */
export class OutcomeTable {
  private readonly bySession = new Map<string, Map<number, Outcome>>();
  private queue: Outcome[] = [];
  private head = 0;
  /** Outcomes held. */
  size = 0;

  get(session: string, seq: number): Outcome | undefined {
    return this.bySession.get(session)?.get(seq);
  }

  /** Adds (or replaces) an outcome; true when it was not held before. */
  add(o: Outcome): boolean {
    let m = this.bySession.get(o.session);
    if (m === undefined) {
      m = new Map();
      this.bySession.set(o.session, m);
    }
    const fresh = !m.has(o.seq);
    m.set(o.seq, o);
    this.queue.push(o);
    if (fresh) this.size++;
    return fresh;
  }

  /**
   * Forgets outcomes with `at + windowMs <= now` from the oldest on, stopping at the first one
   * still inside the window or after examining `budget` queue slots.
   */
  prune(now: number, windowMs: number, budget: number): { examined: number; removed: number } {
    // Fast path (every write calls this): the oldest slot is still inside the window.
    if (this.head >= this.queue.length || this.queue[this.head]!.at + windowMs > now) return NOTHING_PRUNED;
    let examined = 0;
    let removed = 0;
    while (this.head < this.queue.length && examined < budget) {
      const o = this.queue[this.head]!;
      examined++;
      const live = this.bySession.get(o.session)?.get(o.seq) === o;
      if (live && o.at + windowMs > now) break;
      this.head++;
      if (live) {
        const m = this.bySession.get(o.session)!;
        m.delete(o.seq);
        if (m.size === 0) this.bySession.delete(o.session);
        this.size--;
        removed++;
      }
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return { examined, removed };
  }

  /** Held outcomes, oldest first. */
  *values(): IterableIterator<Outcome> {
    for (let i = this.head; i < this.queue.length; i++) {
      const o = this.queue[i]!;
      if (this.bySession.get(o.session)?.get(o.seq) === o) yield o;
    }
  }
}
