/**
 * Memory per entry of the node's storage engine, measured in this process (run with
 * --expose-gc): 1M entries of 100-byte values under 12-byte keys in 1024 partitions, written
 * through NodeStore.mutate exactly as a primary does. Prints one JSON line.
 */
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { NodeStore } from '@gridlink/node';

const N = Number(process.env.MEM_ENTRIES ?? 1_000_000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
let now = 1_000_000;
const clock = { now: () => now };
const store = new NodeStore({ clock, dedupWindowMs: 120_000 });
const used = (): number => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};
const before = used();
const value = new Uint8Array(100).fill(1);
let raw = 0;
for (let i = 0; i < N; i++) {
  const key = encodeKey(`k-${i.toString().padStart(9, '0')}`);
  raw += key.length + value.length;
  store.mutate(partitionOfBytes(key, 1024), Op.CACHE_PUT, { cache: 'mem', key, value, seq: i + 1 }, 'bench-session');
}
const withDedup = used() - before;
// Let the (session, seq) outcomes age out of the dedup window and be swept.
now += 120_001;
for (let i = 0; i < 10_000 && store.stats().dedupEntries > 0; i++) store.sweep(100_000);
const settled = used() - before;
process.stdout.write(
  JSON.stringify({ entries: store.stats().entries, rawBytes: raw, withDedup, settled, dedupLeft: store.stats().dedupEntries }) + '\n',
);
