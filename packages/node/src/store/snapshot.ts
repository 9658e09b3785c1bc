import { ErrorCode } from '@gridlink/protocol';
import { isBytes } from './bytes.js';
import { StoreError } from './errors.js';
import type { PartitionSnapshot, SnapshotCache } from './types.js';

/** Rough encoded size of a recorded outcome (bytes fields dominate). */
function resultSize(v: unknown): number {
  if (isBytes(v)) return v.byteLength + 5;
  if (Array.isArray(v)) return v.reduce<number>((n, x) => n + resultSize(x), 1);
  if (typeof v === 'object' && v !== null) {
    let n = 1;
    for (const [k, x] of Object.entries(v)) n += k.length + 1 + resultSize(x);
    return n;
  }
  if (typeof v === 'string') return v.length + 5;
  return 9;
}

/**
 * Splits a snapshot into chunks whose estimated MessagePack size stays under `maxBytes` each
 * (an item bigger than that gets a chunk of its own), so a large partition can cross a link with
 * a frame size limit. Every chunk is itself a PartitionSnapshot of the same partition, counter
 * and time; `joinSnapshots` puts them back together. Chunks are taken from one snapshot, so the
 * joined result is exactly the original state.
 */
export function splitSnapshot(snap: PartitionSnapshot, maxBytes: number): PartitionSnapshot[] {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new TypeError('splitSnapshot maxBytes must be a positive integer');
  const header = (): PartitionSnapshot => ({ v: 1, partition: snap.partition, counter: snap.counter, at: snap.at, caches: [], locks: [], dedup: [] });
  const HEADER = 64;
  const chunks: PartitionSnapshot[] = [header()];
  let size = HEADER;
  const room = (n: number): PartitionSnapshot => {
    if (size + n > maxBytes && size > HEADER) {
      chunks.push(header());
      size = HEADER;
    }
    size += n;
    return chunks[chunks.length - 1]!;
  };
  for (const c of snap.caches) {
    let cur: SnapshotCache | null = null;
    let owner: PartitionSnapshot | null = null;
    for (const e of c.entries) {
      const chunk = room(e[0].byteLength + e[1].byteLength + 24);
      if (owner !== chunk || cur === null) {
        cur = { name: c.name, config: c.config, entries: [] };
        chunk.caches.push(cur);
        owner = chunk;
      }
      cur.entries.push(e);
    }
  }
  for (const l of snap.locks) room(l[0].byteLength + l[1].length + 32).locks.push(l);
  for (const d of snap.dedup) room(d[0].length + 40 + resultSize(d[3])).dedup.push(d);
  return chunks;
}

/** Reassembles the chunks of one snapshot made by `splitSnapshot` (in any order). */
export function joinSnapshots(chunks: PartitionSnapshot[]): PartitionSnapshot {
  const first = chunks[0];
  if (first === undefined) throw new StoreError(ErrorCode.BAD_REQUEST, 'bad-snapshot', 'partition snapshot: no chunks');
  const out: PartitionSnapshot = { v: 1, partition: first.partition, counter: first.counter, at: first.at, caches: [], locks: [], dedup: [] };
  const byName = new Map<string, SnapshotCache>();
  for (const ch of chunks) {
    if (ch.partition !== first.partition || ch.counter !== first.counter || ch.at !== first.at) {
      throw new StoreError(ErrorCode.BAD_REQUEST, 'bad-snapshot', 'partition snapshot: chunks of different snapshots');
    }
    for (const c of ch.caches) {
      let cur = byName.get(c.name);
      if (cur === undefined) {
        cur = { name: c.name, config: c.config, entries: [] };
        byName.set(c.name, cur);
        out.caches.push(cur);
      }
      for (const e of c.entries) cur.entries.push(e);
    }
    for (const l of ch.locks) out.locks.push(l);
    for (const d of ch.dedup) out.dedup.push(d);
  }
  out.dedup.sort((a, b) => a[4] - b[4]);
  return out;
}
