/**
 * The grid node's storage engine: a pure, synchronous state machine. No sockets, no timers; time
 * comes from an injected clock and the cluster layer calls `sweep()` from its own timer. The
 * cluster layer decides WHO may call what (primary vs backup); this module decides WHAT happens.
 *
 * ## Data
 * State is held per partition: for each cache, its entries (key bytes → value bytes, optional
 * absolute expiry); lock leases; and the partition's update counter. (session, seq) outcomes are
 * held per session for the whole node, each tagged with its partition. Keys and values are
 * opaque bytes, held as the store's own copies (entries.ts: slots in parallel arrays). Byte arrays in read
 * results are fresh copies and may be slices of Node's shared buffer pool (copy them to keep them
 * long); byte arrays in a ReplicationRecord may be the request payload's own arrays.
 *
 * ## Caches
 * `createCache(name, config)` sets a cache's config (last call wins) and makes the cache
 * explicit: it is kept for good, empty or not. A cache written before it was created is implicit,
 * created with `StoreOptions.cacheDefaults` (installed from a snapshot: with the config the
 * snapshot carries). An implicit cache is forgotten as it empties (ADR 0014): a partition's shard
 * of it (its entries there) once a remove, a clear, an expiry or an eviction took the last entry,
 * by the next `sweep()` that still finds it empty; its config once no partition holds any of it
 * (also when its partitions were dropped). Writing it again creates it again, as on first use;
 * a shard is never forgotten while it holds an entry. `cacheConfig(name)` of a cache not known
 * is `cacheDefaults`. `stats()` counts the caches known and the shards held.
 *
 * A put-like op without `ttlMs` takes the cache's `ttlMs` (0/absent = no expiry); `ttlMs: 0` on
 * the op means "never expires". An expiry is reset by every write of the entry, except
 * CACHE_INCREMENT without `ttlMs`, which keeps the existing entry's expiry (a new counter gets the
 * cache default).
 *
 * ## Ops
 * `read()` serves CACHE_GET, CACHE_GET_ALL (the given keys are assumed to belong to the
 * partition), CACHE_CONTAINS_KEY, CACHE_SIZE (this partition only; `localSize()` sums several)
 * and CACHE_SCAN. `mutate()` serves every op in MUTATING_OPS, with the payloads of
 * protocol/messages.ts and the response payloads as results. Notes:
 * - CACHE_INCREMENT: the stored value must be the MessagePack encoding of a safe integer (any
 *   MessagePack number that is one is accepted); otherwise StoreError VALUE_TYPE. A missing (or
 *   expired) key counts as `initial` (default 0), so the new value is `initial + delta`. A result
 *   outside ±(2^53−1) is refused with StoreError BAD_REQUEST (reason "overflow"). The new value
 *   is stored as the shortest MessagePack integer.
 * - CACHE_CLEAR clears the cache in ONE partition; the cluster layer runs it on every partition.
 * - CACHE_PUT_ALL applies all given entries to the given partition (the caller splits by partition).
 * - CACHE_SCAN walks one partition's keys in byte order. The cursor is opaque bytes
 *   ([1, ...last key returned]); `cursor: null` in the result means the scan is complete. A key
 *   is never returned twice in one scan, every key present for the whole scan is returned, and a
 *   cursor stays valid across inserts, removes and on another replica of the partition.
 *   `count` is capped at 100 000.
 *
 * ## Update counter and replication records
 * Every applied mutation increments the partition's update counter by exactly one — also one
 * that changed nothing (a failed putIfAbsent, a release with a wrong token), because its outcome
 * must still be replicated for exactly-once. `mutate()` returns a ReplicationRecord carrying the
 * EFFECTS (entries set/removed with their absolute expiry, lock leases set/removed, cache
 * cleared), the new counter, the primary's clock and the (session, seq) outcome — never the op,
 * so backups converge without re-evaluating anything (see ADR 0005). `applyRecord()` on a
 * backup ignores records at or below its counter and refuses (returns false) a record that skips
 * one, so the caller can resync with `snapshot()` / `install()`. A snapshot too big for one frame
 * can be sent as `splitSnapshot(snap, maxBytes)` chunks and reassembled with `joinSnapshots`.
 * LRU evictions and lazy expiry are local to a node and never replicated.
 *
 * ## Exactly-once
 * A mutation's (session, seq) outcome is stored with the write, in the same record, per
 * partition, for `dedupWindowMs` (default 120 s, measured from the primary's clock at the write).
 * A repeat within the window returns the first outcome with `record: null` and changes nothing,
 * on the primary or on any replica that got the record or a snapshot (a promoted backup). The
 * repeat also returns `replayOf`, the update counter of the record that carried the first
 * outcome: that record may still be in flight to the backups, so the caller must not answer the
 * repeat before replication is acknowledged up to that counter (else a crash could lose a write
 * whose repeat was already acknowledged). A repeat with the same (session, seq) but a different
 * op is refused (BAD_REQUEST, "seq-reused"). Outcomes are kept per partition, so one seq may be
 * used by a multi-partition op (putAll, clear) in each partition it touches.
 * A mutation may carry `ack` (≤ seq; else BAD_REQUEST): the lowest seq its session may still
 * retry. It raises the session's floor (node-wide, never lowered): that session's outcomes below
 * it are forgotten at once on every partition, and a later request with a seq below the floor is
 * refused (BAD_REQUEST, "seq-acknowledged") without effect — it can only be a stale duplicate.
 * The record carries the ack (`dedup.ack`) so backups do the same; snapshots carry the floors the
 * node knows. A session's floor is forgotten a window after its last use (ADR 0018).
 * Not remembered: an op refused with a StoreError (it changed nothing), and a FAILED lock
 * acquisition (LOCK_TRY_ACQUIRE/LOCK_ACQUIRE returning acquired:false; it changed nothing, and
 * the caller of a waiting acquire retries the same seq until it succeeds or gives up). Such
 * calls return `record: null`: there is nothing to replicate.
 *
 * ## Locks
 * A lock is named by bytes (hashed like a key), held by one acquisition — (session, owner), the
 * payload's optional `owner` naming the acquiring handle ('' when absent) — with a lease (ADR
 * 0020). LOCK_ACQUIRE is
 * one attempt, exactly like LOCK_TRY_ACQUIRE (`waitMs` is the caller's business: it retries on
 * `onLockFreed` or a timer). Acquiring a free (or expired) lock sets its fencing token to the
 * partition's new update counter, so tokens strictly increase per lock name, across failover and
 * state transfer (the counter travels in records and snapshots). Acquiring a lock the same
 * holder already holds refreshes the lease and returns the SAME token (re-entrant). Held by
 * another holder (another session, or another owner of the same session): `{acquired:false,
 * heldForMs}`. Release and renew need the current token and, when they carry an owner, the
 * holder's (the session is not checked): otherwise `{released:false}` / `{renewed:false}`. An expired
 * lease is free: checked lazily at access and removed by `sweep()`; `onLockFreed` listeners are
 * told of releases and of expired leases removed. A partition this node does not serve as
 * primary (a backup, or a primary that cannot serve: `keepLockLeases`) keeps its run-out leases
 * `LOCK_KEEP_MS` (30 s) before the sweep removes them, counted in `stats().locksKept`; served,
 * `resumeLockLeases(p, pausedForMs)` adds the time the partition had no serving primary to every
 * lease live when it was last served, and frees the others (ADR 0072).
 *
 * ## TTL, sweep, memory bound
 * Expired entries are invisible to every read and op (and removed when met); `sweep(budget)`
 * removes expired entries and leases in expiry order, forgets implicit caches' empty shards,
 * outcomes older than the dedup window and idle sessions, examining at most `budget` items. `maxEntries` / `maxBytes` (key + value bytes) bound
 * the whole node — all partitions, primary and backup: after each write that leaves the node over
 * the bound, entries that have already expired are removed first (counted as expired), then the
 * least recently used entries (reads and writes count as use) are evicted until the bound holds,
 * counted in `stats().evictions`. An evicted entry is simply gone on this node.
 *
 * ## Time
 * Expiries, leases and outcome times are absolute milliseconds of the primary's clock, applied
 * as such on backups: node clocks are assumed to agree closely (a skew of d ms makes a promoted
 * backup see leases and TTLs end d ms early or late).
 *
 * ## Stats and diagnostics
 * `stats()` gives entries and key+value bytes held (all partitions, expired-but-not-removed
 * included), evictions, entries expired, partitions, lock leases, remembered outcomes and the
 * items sweep examined. `inspect(p)` is a raw view of one partition for diagnostics and tests.
 *
 * ## Errors
 * `StoreError` carries the protocol `wireCode` (BAD_REQUEST, UNKNOWN_OP, VALUE_TYPE) and a finer
 * `reason`; it is always thrown before any state changed.
 */
export { NodeStore } from './store.js';
export { decodeCounter, encodeCounter } from './cache-ops.js';
export { packedBlobBytes, splitSnapshot, joinSnapshots, snapshotDataBytes, snapshotPartBudget, snapshotSize } from './snapshot.js';
export { StoreError, type StoreErrorReason } from './errors.js';
export { keyString } from './bytes.js';
export type {
  Clock,
  StoreOptions,
  Effect,
  DedupOutcome,
  ReplicationRecord,
  PartitionSnapshot,
  SnapshotCache,
  LockTuple,
  StoreStats,
  MutateResult,
  PutInPlace,
} from './types.js';
