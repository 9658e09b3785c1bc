/**
 * Snapshots for state transfer: checking one from a peer, and splitting / joining one that is too
 * big for a frame. (Taking and installing one is the store's: it reads its internal state.)
 */
import { ErrorCode, type CacheConfig } from '@gridlink/protocol';
import { isBytes, type Bytes } from './bytes.js';
import { StoreError } from './errors.js';
import { MAX_CACHE_NAME, isSafeNonNegative, validateCacheConfig, type Payload } from './payload.js';
import { isOwner, normaliseDedup } from './records.js';
import type { LockTuple, PartitionSnapshot, SnapshotCache } from './types.js';

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
 * The most a snapshot part may be estimated at (`snapshotSize`) so that it travels in one frame
 * of `maxFrameSize`: half of it, for the message around the part, and never under 16 KiB.
 */
export function snapshotPartBudget(maxFrameSize: number): number {
  return Math.max(16 * 1024, Math.floor(maxFrameSize / 2));
}

/** Bytes before each packed entry's key: u32 key length, u32 value length, f64 expireAt (ADR 0080). */
export const PACKED_HEADER = 16;

/** Largest blob a packed snapshot's entries are written into (an entry bigger than that gets one of its own). */
export const PACKED_BLOB_BYTES = 64 * 1024;

/** Blob size for a snapshot split in parts of `partBytes`: several blobs to a part. */
export function packedBlobBytes(partBytes: number): number {
  return Math.min(PACKED_BLOB_BYTES, Math.max(1024, partBytes >>> 1));
}

/**
 * Calls `fn` for each entry of a packed blob (ADR 0080) with where its key starts in `blob` (its
 * value follows), the lengths and expireAt. The blob must have been checked (`checkPacked`).
 */
export function forEachPacked(blob: Bytes, fn: (at: number, keyLen: number, valueLen: number, expireAt: number) => void): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  for (let i = 0; i < blob.byteLength; ) {
    const keyLen = dv.getUint32(i, true);
    const valueLen = dv.getUint32(i + 4, true);
    const expireAt = dv.getFloat64(i + 8, true);
    fn(i + PACKED_HEADER, keyLen, valueLen, expireAt);
    i += PACKED_HEADER + keyLen + valueLen;
  }
}

/** Checks a packed blob from a peer: every entry whole, every expireAt a non-negative integer. */
function checkPacked(blob: Bytes): void {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const n = blob.byteLength;
  for (let i = 0; i < n; ) {
    if (n - i < PACKED_HEADER) throw badSnapshot('packed entries: a header is cut short');
    const size = PACKED_HEADER + dv.getUint32(i, true) + dv.getUint32(i + 4, true);
    if (!isSafeNonNegative(dv.getFloat64(i + 8, true))) throw badSnapshot('packed entries: expireAt must be a non-negative integer');
    if (size > n - i) throw badSnapshot('packed entries: an entry runs past the end of its blob');
    i += size;
  }
}

/**
 * Bytes of the keys and values of a snapshot's entries: what installing it copies and stores
 * (ADR 0074); for packed entries the blobs' size (16 B per entry more).
 */
export function snapshotDataBytes(snap: PartitionSnapshot): number {
  let n = 0;
  for (const c of snap.caches) {
    for (const e of c.entries) n += e[0].byteLength + e[1].byteLength;
    if (c.packed !== undefined) for (const b of c.packed) n += b.byteLength;
  }
  return n;
}

/**
 * Estimated MessagePack size of a whole snapshot, by the same per-item estimates `splitSnapshot`
 * uses (a state-transfer batch adds snapshots up to a frame's budget with it).
 */
export function snapshotSize(snap: PartitionSnapshot): number {
  let n = 64;
  for (const c of snap.caches) {
    n += c.name.length + 32;
    for (const e of c.entries) n += e[0].byteLength + e[1].byteLength + 24;
    if (c.packed !== undefined) for (const b of c.packed) n += b.byteLength + 8;
  }
  for (const l of snap.locks) n += l[0].byteLength + l[1].length + (l[4]?.length ?? 0) + 32;
  for (const d of snap.dedup) n += d[0].length + 40 + resultSize(d[3]);
  for (const f of snap.floors ?? []) n += f[0].length + 24;
  return n;
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
    /** The cache's part in the chunk with room for `n` more bytes (made when that chunk has none yet). */
    const cacheWithRoom = (n: number): SnapshotCache => {
      const chunk = room(n);
      if (owner !== chunk || cur === null) {
        cur = { name: c.name, config: c.config, entries: [] };
        chunk.caches.push(cur);
        owner = chunk;
      }
      return cur;
    };
    for (const e of c.entries) cacheWithRoom(e[0].byteLength + e[1].byteLength + 24).entries.push(e);
    for (const b of c.packed ?? []) (cacheWithRoom(b.byteLength + 8).packed ??= []).push(b);
  }
  for (const l of snap.locks) room(l[0].byteLength + l[1].length + (l[4]?.length ?? 0) + 32).locks.push(l);
  for (const d of snap.dedup) room(d[0].length + 40 + resultSize(d[3])).dedup.push(d);
  // Floors are few (one per session): they travel with the first chunk.
  if (snap.floors !== undefined) chunks[0]!.floors = snap.floors;
  return chunks;
}

/**
 * The snapshot with its packed entries as plain ones (views of the blobs), for a node that does not
 * install packed snapshots (ADR 0080); the snapshot itself when nothing is packed.
 */
export function unpackSnapshot(snap: PartitionSnapshot): PartitionSnapshot {
  if (!snap.caches.some((c) => c.packed !== undefined)) return snap;
  const caches = snap.caches.map((c): SnapshotCache => {
    if (c.packed === undefined) return c;
    const entries = [...c.entries];
    for (const b of c.packed) forEachPacked(b, (at, keyLen, valueLen, expireAt) => entries.push([b.subarray(at, at + keyLen), b.subarray(at + keyLen, at + keyLen + valueLen), expireAt]));
    return { name: c.name, config: c.config, entries };
  });
  return { ...snap, caches };
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
      if (c.packed !== undefined) for (const b of c.packed) (cur.packed ??= []).push(b);
    }
    for (const l of ch.locks) out.locks.push(l);
    for (const d of ch.dedup) out.dedup.push(d);
    if (ch.floors !== undefined) (out.floors ??= []).push(...ch.floors);
  }
  out.dedup.sort((a, b) => a[4] - b[4]);
  return out;
}

function badSnapshot(message: string): StoreError {
  return new StoreError(ErrorCode.BAD_REQUEST, 'bad-snapshot', `partition snapshot: ${message}`);
}

/** Checks a snapshot from a peer; refuses it with StoreError 'bad-snapshot' before anything is installed. */
export function normaliseSnapshot(v: unknown): PartitionSnapshot {
  if (typeof v !== 'object' || v === null) throw badSnapshot('must be an object');
  const s = v as Payload;
  if (s['v'] !== 1) throw badSnapshot(`unsupported version ${String(s['v'])}`);
  if (!isSafeNonNegative(s['counter'])) throw badSnapshot('counter must be a non-negative integer');
  if (!Array.isArray(s['caches']) || !Array.isArray(s['locks']) || !Array.isArray(s['dedup'])) {
    throw badSnapshot('caches, locks and dedup must be arrays');
  }
  const caches: SnapshotCache[] = (s['caches'] as unknown[]).map((cv) => {
    if (typeof cv !== 'object' || cv === null) throw badSnapshot('cache must be an object');
    const c = cv as Payload;
    const name = c['name'];
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_CACHE_NAME) throw badSnapshot('cache name');
    let config: CacheConfig;
    try {
      config = validateCacheConfig(c['config'] ?? {}, 'config');
    } catch (err) {
      throw badSnapshot((err as Error).message);
    }
    if (!Array.isArray(c['entries'])) throw badSnapshot('cache entries must be an array');
    const entries = (c['entries'] as unknown[]).map((ev): [Bytes, Bytes, number] => {
      if (!Array.isArray(ev) || !isBytes(ev[0]) || !isBytes(ev[1]) || !isSafeNonNegative(ev[2])) {
        throw badSnapshot('entry must be [key, value, expireAt]');
      }
      return [ev[0], ev[1], ev[2]];
    });
    const packed = c['packed'];
    if (packed === undefined || packed === null) return { name, config, entries };
    if (!Array.isArray(packed) || !packed.every(isBytes)) throw badSnapshot('cache packed entries must be an array of byte strings');
    for (const b of packed) checkPacked(b);
    return { name, config, entries, packed };
  });
  const locks = (s['locks'] as unknown[]).map((lv): LockTuple => {
    if (
      !Array.isArray(lv) ||
      !isBytes(lv[0]) ||
      typeof lv[1] !== 'string' ||
      !isSafeNonNegative(lv[2]) ||
      !isSafeNonNegative(lv[3]) ||
      (lv[4] !== undefined && lv[4] !== null && !isOwner(lv[4]))
    ) {
      throw badSnapshot('lock must be [name, session, token, expireAt, owner?]');
    }
    return isOwner(lv[4]) ? [lv[0], lv[1], lv[2], lv[3], lv[4]] : [lv[0], lv[1], lv[2], lv[3]];
  });
  const counter = s['counter'];
  const dedup = (s['dedup'] as unknown[]).map((dv): [string, number, number, unknown, number, number] => {
    if (!Array.isArray(dv) || typeof dv[4] !== 'number' || !Number.isFinite(dv[4])) {
      throw badSnapshot('dedup must be [session, seq, op, result, at, counter]');
    }
    const c = dv[5] === undefined ? counter : dv[5];
    if (!isSafeNonNegative(c) || c > counter) throw badSnapshot('dedup counter must not exceed the snapshot counter');
    const d = normaliseDedup({ session: dv[0], seq: dv[1], op: dv[2], result: dv[3] }, badSnapshot);
    return [d.session, d.seq, d.op, d.result, dv[4], c];
  });
  const out: PartitionSnapshot = {
    v: 1,
    partition: typeof s['partition'] === 'number' ? s['partition'] : 0,
    counter,
    at: typeof s['at'] === 'number' ? s['at'] : 0,
    caches,
    locks,
    dedup,
  };
  const floors = s['floors'];
  if (floors !== undefined && floors !== null) {
    if (!Array.isArray(floors)) throw badSnapshot('floors must be an array');
    out.floors = (floors as unknown[]).map((fv): [string, number, number] => {
      if (!Array.isArray(fv) || typeof fv[0] !== 'string' || !isSafeNonNegative(fv[1]) || typeof fv[2] !== 'number' || !Number.isFinite(fv[2])) {
        throw badSnapshot('floor must be [session, floor, lastAt]');
      }
      return [fv[0], fv[1], fv[2]];
    });
  }
  return out;
}
