/**
 * What a partition snapshot costs both nodes' event loops (ADR 0080): the sender taking it,
 * splitting it in parts of half a 4 MiB frame and encoding their frames; the receiver decoding
 * them and installing the partition. Plain entries (every entry a MessagePack array) against
 * packed ones (small entries in byte blobs), taking turns on the same store (A B B A …), medians
 * of ROUNDS rounds in wall time (each step is synchronous).
 *
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/node/snapshot.ts   (after pnpm build; ROUNDS=…)
 */
import { DEFAULT_MAX_FRAME_SIZE, FrameKind, Op, decodeFrame, encodeFrame, type Frame } from '@gridlink/protocol';
import { NodeStore, packedBlobBytes, snapshotPartBudget, splitSnapshot, type PartitionSnapshot } from '@gridlink/node/internal';
import { table } from '../shared/measure.js';

const rounds = Number(process.env.ROUNDS ?? 6);
const budget = snapshotPartBudget(DEFAULT_MAX_FRAME_SIZE);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: (string | number)[][] = [];

for (const [count, size] of [
  [100_000, 64],
  [20_000, 1024],
  [100_000, 1024],
] as const) {
  const store = new NodeStore({});
  const entries: [Uint8Array, Uint8Array, number][] = [];
  for (let i = 0; i < count; i++) entries.push([Buffer.from(`key-${i}`), new Uint8Array(size).fill(i & 255), 0]);
  store.install(3, { v: 1, partition: 3, counter: 1, at: Date.now(), caches: [{ name: 'c', config: {}, entries }], locks: [], dedup: [] });
  const times = { plain: { take: [] as number[], install: [] as number[], bytes: 0 }, packed: { take: [] as number[], install: [] as number[], bytes: 0 } };
  for (let r = 0; r < rounds * 2; r++) {
    // ABBA order: the collector's debt of one form's round does not always land on the other's.
    const form = r % 4 === 0 || r % 4 === 3 ? 'plain' : 'packed';
    const t0 = performance.now();
    const parts = splitSnapshot(store.snapshot(3, form === 'packed' ? packedBlobBytes(budget) : undefined), budget);
    const frames = parts.map((snap) => encodeFrame({ kind: FrameKind.REQUEST, op: Op.PEER_REPLICATE, id: 1, flags: 0, payload: { p: 3, snap } }));
    const t1 = performance.now();
    const into = new NodeStore({});
    for (const f of frames) into.install(5, ((decodeFrame(f) as Frame & { payload: { snap: PartitionSnapshot } }).payload).snap);
    const t2 = performance.now();
    times[form].take.push(t1 - t0);
    times[form].install.push(t2 - t1);
    times[form].bytes = frames.reduce((n, f) => n + f.length, 0);
  }
  for (const form of ['plain', 'packed'] as const) {
    const t = times[form];
    rows.push([`${count.toLocaleString('en')} × ${size} B`, form, (t.bytes / 1e6).toFixed(1), median(t.take).toFixed(0), median(t.install).toFixed(0)]);
  }
}
console.log(`One partition, parts of ${budget / 1024} KiB, medians of ${rounds} rounds per form (ms)\n`);
console.log(table([['entries', 'form', 'MB on the wire', 'take + encode', 'decode + install'], ...rows]));
