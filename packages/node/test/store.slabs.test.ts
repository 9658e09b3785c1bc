/**
 * Small entries live in slabs (ADR 0078): what a node holds in them follows what it stores. The
 * partitions a node gives away (a rebalance, a failback) take their slabs' memory with them, and a
 * put over an entry of the same size class makes no new slab.
 */
import { describe, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { b, makeStore } from './store-helpers.js';

describe('slabs in the store', () => {
  it('gives back the slabs of partitions it drops, and keeps every entry of the others', () => {
    const { store } = makeStore();
    let seq = 0;
    const value = (i: number): Uint8Array => b(`${i}:`.padEnd(200, 'v'));
    const n = 6000;
    for (let i = 0; i < n; i++) store.mutate(i % 64, Op.CACHE_PUT, { cache: 'c', key: b(`key-${i}`), value: value(i), seq: ++seq }, 's');
    const full = store.stats().slabs;
    expect(full).toBeGreaterThan(10); // ~230 B cells, 284 to a slab
    // Rewriting every entry with a value of the same class makes no slab.
    for (let i = 0; i < n; i++) store.mutate(i % 64, Op.CACHE_PUT, { cache: 'c', key: b(`key-${i}`), value: value(i + 1), seq: ++seq }, 's');
    expect(store.stats().slabs).toBe(full);
    // The node keeps partitions 0-3 only: their entries are spread over every slab.
    for (let p = 4; p < 64; p++) store.dropPartition(p);
    const kept = Math.ceil(full * (4 / 64) * (4 / 3)) + 2;
    expect(store.stats().slabs).toBeLessThanOrEqual(kept);
    for (let i = 0; i < n; i++) {
      const got = store.read(i % 64, Op.CACHE_GET, { cache: 'c', key: b(`key-${i}`) }) as { value?: Uint8Array } | null;
      if (i % 64 < 4) expect(Buffer.from(got!.value!).toString('latin1')).toBe(Buffer.from(value(i + 1)).toString('latin1'));
      else expect(got?.value ?? null).toBeNull();
    }
  });
});
