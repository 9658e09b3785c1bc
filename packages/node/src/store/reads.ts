/**
 * The read-only ops (CACHE_GET, CACHE_CONTAINS_KEY, CACHE_GET_ALL, CACHE_SIZE, CACHE_SCAN) over
 * the entries of one partition. Reads count as use for the LRU bound; an entry met expired is
 * removed by the store (`expire`).
 */
import { ErrorCode, Op } from '@gridlink/protocol';
import { isBytes, keyString, ownBytes, toBytes, type Bytes } from './bytes.js';
import { NONE, type EntryArena, type Shard } from './entries.js';
import { StoreError, badRequest } from './errors.js';
import { bytesField, cacheName, safeInt, type Payload } from './payload.js';

const MAX_SCAN_COUNT = 100_000;
const CURSOR_VERSION = 1;

/** Live entries of a shard (O(1) unless some carry an expiry). */
export function shardSize(entries: EntryArena, shard: Shard | undefined, now: number): number {
  if (shard === undefined) return 0;
  if (shard.ttlCount === 0) return shard.size;
  let n = 0;
  for (const slot of entries.slots(shard)) {
    const at = entries.expireAt(slot);
    if (at === 0 || at > now) n++;
  }
  return n;
}

/**
 * Runs a read op. `shardOf` finds the partition's shard of a cache; `expire(slot)` removes the
 * entry when it has expired and says so.
 */
export function readOp(
  entries: EntryArena,
  shardOf: (cache: string) => Shard | undefined,
  expire: (slot: number) => boolean,
  op: Op,
  p: Payload,
  now: number,
): unknown {
  const live = (shard: Shard | undefined, key: Bytes): number => {
    const slot = entries.find(shard, key);
    return slot === NONE || expire(slot) ? NONE : slot;
  };
  switch (op) {
    case Op.CACHE_GET: {
      const cache = cacheName(p);
      const slot = live(shardOf(cache), bytesField(p, 'key'));
      if (slot === NONE) return { value: null };
      entries.touch(slot);
      return { value: entries.valueBytes(slot) };
    }
    case Op.CACHE_CONTAINS_KEY: {
      const cache = cacheName(p);
      return { found: live(shardOf(cache), bytesField(p, 'key')) !== NONE };
    }
    case Op.CACHE_GET_ALL: {
      const cache = cacheName(p);
      const keys = p['keys'];
      if (!Array.isArray(keys) || !keys.every(isBytes)) throw badRequest('keys must be an array of bytes');
      const shard = shardOf(cache);
      const values = keys.map((key) => {
        const slot = live(shard, key);
        if (slot === NONE) return null;
        entries.touch(slot);
        return entries.valueBytes(slot);
      });
      return { values };
    }
    case Op.CACHE_SIZE:
      return { size: shardSize(entries, shardOf(cacheName(p)), now) };
    case Op.CACHE_SCAN:
      return scan(entries, shardOf(cacheName(p)), p, now);
    default:
      throw new StoreError(ErrorCode.UNKNOWN_OP, 'unknown-op', `op ${String(op)} is not a read op`);
  }
}

/**
 * Keys in byte order after the cursor's key. The cursor is [version, ...last key returned], so a
 * scan never returns a key twice and returns every key present for the whole scan, whatever
 * is inserted or removed meanwhile — and it stays valid on another replica of the partition.
 */
function scan(entries: EntryArena, shard: Shard | undefined, p: Payload, now: number): { keys: Bytes[]; cursor: Bytes | null } {
  const count = safeInt(p, 'count', 1);
  const limit = Math.min(count, MAX_SCAN_COUNT);
  const c = p['cursor'];
  let after: string | null = null;
  if (c !== undefined && c !== null) {
    if (!isBytes(c) || c.byteLength < 1 || c[0] !== CURSOR_VERSION) throw badRequest('cursor is not a scan cursor');
    after = keyString(c.subarray(1));
  }
  if (shard === undefined) return { keys: [], cursor: null };
  if (shard.sorted === null) shard.sorted = Array.from(entries.slots(shard), (slot) => entries.keyString(slot)).sort();
  const sorted = shard.sorted;
  let i = 0;
  if (after !== null) {
    // first index with sorted[i] > after
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    i = lo;
  }
  const keys: Bytes[] = [];
  let last: string | undefined;
  for (; i < sorted.length && keys.length < limit; i++) {
    const k = sorted[i]!;
    const slot = entries.findKey(shard, k);
    if (slot === NONE) continue;
    const at = entries.expireAt(slot);
    if (at !== 0 && at <= now) continue;
    keys.push(toBytes(k));
    last = k;
  }
  if (i >= sorted.length || last === undefined) return { keys, cursor: null };
  const cursor = ownBytes(last, 1);
  cursor[0] = CURSOR_VERSION;
  return { keys, cursor };
}
