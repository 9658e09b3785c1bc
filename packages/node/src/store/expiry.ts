/**
 * Expiry order of entries (by slot) and lock leases: one min-heap by absolute expiry, with lazy
 * deletion — an item is current only while its target is live with that same expiry; stale items
 * are skipped when met and compacted away when they outnumber current ones.
 */
import type { EntryArena } from './entries.js';
import { MinHeap, type HeapItem } from './heap.js';
import type { LockState } from './locks.js';

export type Expiring = number | LockState;

export class ExpiryQueue {
  private readonly heap = new MinHeap<Expiring>();
  /** Live entries with an expiry plus live locks. */
  expiring = 0;

  constructor(private readonly entries: EntryArena) {}

  push(at: number, ref: Expiring): void {
    this.heap.push(at, ref);
    if (this.heap.size > 2 * this.expiring + 1024) this.heap.filter((item) => this.isCurrent(item));
  }

  isCurrent(item: HeapItem<Expiring>): boolean {
    const ref = item.ref;
    if (typeof ref === 'number') return this.entries.isLive(ref) && this.entries.expireAt(ref) === item.at;
    return ref.live && ref.sweepAt === item.at;
  }

  /** Removes and returns the earliest item if it expires at or before `now` (current or not). */
  popDue(now: number): HeapItem<Expiring> | undefined {
    const top = this.heap.peek();
    if (top === undefined || top.at > now) return undefined;
    this.heap.pop();
    return top;
  }
}
