import type { CacheConfig } from '@gridlink/protocol';
import type { Bytes } from './bytes.js';

/** Source of time in milliseconds. Injected so tests can drive expiry with a fake clock. */
export interface Clock {
  now(): number;
}

export interface StoreOptions {
  /** Default: `Date` (wall clock). */
  clock?: Clock;
  /** Per-node bound on the number of entries (LRU eviction across all partitions). Default unbounded. */
  maxEntries?: number;
  /** Per-node bound on key+value bytes (LRU eviction across all partitions). Default unbounded. */
  maxBytes?: number;
  /**
   * How long (session, seq) outcomes are remembered at most, in ms. Default 120_000. Outcomes of
   * a client that sends `ack` are forgotten as soon as it acknowledges them (see outcomes.ts).
   */
  dedupWindowMs?: number;
  /** Config of caches created implicitly by their first use. Default `{}` (no expiry). */
  cacheDefaults?: CacheConfig;
}

/** One state change, as replicated. Applying the same effects in the same order gives the same state. */
export type Effect =
  /** Set an entry. `expireAt` is absolute ms, 0 = never. */
  | { t: 'put'; cache: string; key: Bytes; value: Bytes; expireAt: number }
  | { t: 'del'; cache: string; key: Bytes }
  /** Remove every entry of the cache in this partition. */
  | { t: 'clear'; cache: string }
  /**
   * Set a lock's lease (acquire, re-entrant refresh, renew). `owner` names the holding
   * acquisition within its session (absent = '').
   */
  | { t: 'lock'; name: Bytes; session: string; owner?: string; token: number; expireAt: number }
  | { t: 'unlock'; name: Bytes };

/** Outcome of a (session, seq) mutation, kept for the dedup window. */
export interface DedupOutcome {
  session: string;
  seq: number;
  op: number;
  result: unknown;
  /**
   * The session's floor sent with the mutation (`ack`): every seq below it is acknowledged, so
   * replicas forget those outcomes too. Absent when the client sent none.
   */
  ack?: number;
}

/**
 * What a primary ships to its backups for one mutation: the effects it applied (not the op), the
 * partition's new update counter, the primary's clock at the write, and the (session, seq)
 * outcome. Plain data, MessagePack-serialisable.
 */
export interface ReplicationRecord {
  v: 1;
  /** The partition's update counter after this record (previous counter + 1). */
  counter: number;
  /** Primary's clock when the mutation was applied (dedup window start). */
  at: number;
  effects: Effect[];
  dedup: DedupOutcome | null;
}

/**
 * A replicated plain put read in place from its binary record (peers/replicate-codec.ts): what
 * NodeStore.applyPut applies without a record, effect or byte-view object per write.
 */
export interface PutInPlace {
  /** Update counter and primary's clock of the record. */
  counter: number;
  at: number;
  cache: string;
  /** Absolute ms, 0 = never. */
  expireAt: number;
  /** The record's bytes: the key is bytes[keyAt, keyAt + keyLen), the value follows it directly. */
  bytes: Uint8Array;
  keyAt: number;
  keyLen: number;
  valueLen: number;
  /** Whether the record carries a (session, seq) outcome (the empty result) with op `op`. */
  dedup: boolean;
  session: string;
  seq: number;
  op: number;
  /** Whether the outcome carries the session's floor `ack`. */
  hasAck: boolean;
  ack: number;
}

export interface SnapshotCache {
  name: string;
  config: CacheConfig;
  /** [key, value, expireAt (0 = never)] of every live entry (those not in `packed`). */
  entries: [Bytes, Bytes, number][];
  /**
   * More entries, packed back to back in blobs (ADR 0080; only to a node that granted
   * Feature.PACKED_SNAPSHOTS): per entry a u32 key length, a u32 value length, an f64 expireAt
   * (little-endian), then the key and the value bytes.
   */
  packed?: Bytes[];
}

/** Everything of one partition, for state transfer. Plain data, MessagePack-serialisable. */
export interface PartitionSnapshot {
  v: 1;
  partition: number;
  counter: number;
  /** Time the snapshot was taken (primary clock). */
  at: number;
  caches: SnapshotCache[];
  /** [name, session, token, expireAt, owner?] of every unexpired lock (owner absent = ''). */
  locks: LockTuple[];
  /**
   * [session, seq, op, result, at, counter] of every outcome still inside the dedup window, oldest
   * first; `counter` is the update counter of the record that carried it.
   */
  dedup: [string, number, number, unknown, number, number][];
  /**
   * [session, floor, lastAt] of every session whose floor this node knows (all partitions: a
   * floor is a property of the client), so a new primary keeps refusing stale duplicates.
   * Absent in snapshots of older nodes.
   */
  floors?: [string, number, number][];
}

export type LockTuple = [Bytes, string, number, number] | [Bytes, string, number, number, string];

export interface StoreStats {
  /** Entries held (all partitions, including expired ones not yet removed). */
  entries: number;
  /** Key + value bytes held. */
  bytes: number;
  /** Entries removed by the LRU bound since start. */
  evictions: number;
  /** Entries removed because their TTL passed (lazily or by sweep) since start. */
  expired: number;
  /** Partitions held. */
  partitions: number;
  /** Unexpired-or-not-yet-swept lock leases held (not those of `locksKept`). */
  locks: number;
  /**
   * Lock leases that ran out on a copy this node does not serve as primary (a backup, or a
   * primary that cannot serve), kept LOCK_KEEP_MS (30 s) past their end in case it serves them
   * (ADR 0072): held by nobody, counted apart.
   */
  locksKept: number;
  /** (session, seq) outcomes remembered. */
  dedupEntries: number;
  /** Sessions remembered (a floor or outcomes), each forgotten a window after its last use. */
  dedupSessions: number;
  /** Items sweep() examined since start (each call examines at most its budget). */
  sweepExamined: number;
  /** Caches known: every one configured explicitly, and the implicit ones held here. */
  caches: number;
  /** Shards held: one per cache and partition holding entries (or once did, for a configured cache). */
  shards: number;
  /**
   * Slabs of 64 KiB holding the small entries (ADR 0078): at least one per size class in use; a
   * slab left under a quarter full is emptied into the others and given back.
   */
  slabs: number;
}

/** Result of a primary-side mutation. `record` is null when there is nothing to replicate. */
export interface MutateResult {
  result: unknown;
  record: ReplicationRecord | null;
  /**
   * Set on a repeat of a remembered (session, seq): the update counter of the record that carried
   * the first outcome. That record may still be on its way to the backups; answer the repeat only
   * once replication has been acknowledged up to this counter.
   */
  replayOf?: number;
}
