/**
 * The session's sequence numbers still open: assigned to an operation that has not settled yet
 * (it may still be sent again). `floor` is the lowest open one — or, with none open, the next to
 * be assigned — so every seq below it is settled and will never be retried. Requests carry it as
 * `ack`, and nodes forget the outcomes below it (ADR 0018).
 *
 * Pure bookkeeping, O(1) amortised per seq: seqs are assigned in increasing order, and a seq
 * that settles out of order waits in a set until everything below it has settled.
 */
import { IntMap } from '@gridlink/protocol';

export class SeqWindow {
  private last = 0;
  private low = 1;
  /** Not a Set: per-request churn in a V8 Set slows the collector down for good (ADR 0075). */
  private readonly settledAbove = new IntMap<true>();

  /** Assigns the next seq (open until `settle`). */
  next(): number {
    this.last += 1;
    return this.last;
  }

  /** The operation using `seq` settled: it will not be sent again. Idempotent. */
  settle(seq: number): void {
    if (seq < this.low || seq > this.last) return;
    if (seq !== this.low) {
      this.settledAbove.set(seq, true);
      return;
    }
    this.low++;
    while (this.settledAbove.delete(this.low) !== undefined) this.low++;
  }

  /** Lowest seq that may still be (re)sent; every seq below it has settled. */
  get floor(): number {
    return this.low;
  }

  /** Seqs assigned and not settled. */
  get open(): number {
    return this.last - this.low + 1 - this.settledAbove.size;
  }
}
