/** A binary min-heap ordered by a numeric `at`. Items are never updated in place: stale ones are
 *  recognised by the caller when popped (lazy deletion). */
export interface HeapItem<T> {
  at: number;
  ref: T;
}

export class MinHeap<T> {
  private items: HeapItem<T>[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): HeapItem<T> | undefined {
    return this.items[0];
  }

  push(at: number, ref: T): void {
    const items = this.items;
    items.push({ at, ref });
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent]!;
      const c = items[i]!;
      if (p.at <= c.at) break;
      items[parent] = c;
      items[i] = p;
      i = parent;
    }
  }

  pop(): HeapItem<T> | undefined {
    const items = this.items;
    const top = items[0];
    if (top === undefined) return undefined;
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  /** Keeps only the items `keep` accepts (used to compact away stale items). */
  filter(keep: (item: HeapItem<T>) => boolean): void {
    this.items = this.items.filter(keep);
    for (let i = (this.items.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private siftDown(start: number): void {
    const items = this.items;
    const n = items.length;
    let i = start;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && items[l]!.at < items[m]!.at) m = l;
      if (r < n && items[r]!.at < items[m]!.at) m = r;
      if (m === i) return;
      const t = items[i]!;
      items[i] = items[m]!;
      items[m] = t;
      i = m;
    }
  }
}
