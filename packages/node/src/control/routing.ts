/**
 * The node's routing decisions as pure functions of the topology record: what role this node
 * plays for a partition, and what to do with a request for it. No sockets, no timers.
 */
import { ErrorCode, MAX_TTL_MS, type CacheConfig } from '@gridlink/protocol';
import type { TopologyRecord } from './topology.js';

export type Role = 'primary' | 'backup' | 'syncing' | 'none';

/** Role of node `id` (under `epoch`) for partition p; 'none' unless it is a member under that epoch. */
export function roleOf(t: TopologyRecord | null, id: string, epoch: string, p: number): Role {
  if (!t || t.members[id]?.epoch !== epoch) return 'none';
  const o = t.owners[p] ?? [];
  if (o[0] === id) return 'primary';
  if (o.includes(id)) return 'backup';
  if ((t.syncing[p] ?? []).some((e) => e.id === id)) return 'syncing';
  return 'none';
}

export type RouteDecision =
  | { kind: 'local' }
  | { kind: 'forward'; to: string }
  | { kind: 'error'; code: ErrorCode; message: string };

/**
 * What node `id` does with a request for partition p: serve it as primary, forward it once to
 * the primary, or refuse it. `leaseValid` says whether the node can vouch for its lease right now
 * (only a primary needs it). Never forwards to itself, never forwards a forwarded request.
 */
export function routeRequest(
  t: TopologyRecord | null,
  id: string,
  epoch: string,
  p: number,
  allowForward: boolean,
  leaseValid: boolean,
  ignoreLoss = false,
): RouteDecision {
  if (!t) return { kind: 'error', code: ErrorCode.NOT_READY, message: 'the node has not joined a cluster yet' };
  if (!Number.isInteger(p) || p < 0 || p >= t.partitions) return { kind: 'error', code: ErrorCode.BAD_REQUEST, message: `partition ${p} out of range` };
  const primary = (t.owners[p] ?? [])[0];
  if (primary === undefined || (!ignoreLoss && t.lost.includes(p))) {
    return { kind: 'error', code: ErrorCode.PARTITION_LOST, message: `partition ${p} is lost: no owner is alive` };
  }
  if (primary === id && t.members[id]?.epoch === epoch) {
    // The partition is this node's, it just cannot serve it yet (its lease is being re-confirmed):
    // "not ready, retry shortly" rather than NOT_PRIMARY, which would send the client elsewhere.
    if (!leaseValid) return { kind: 'error', code: ErrorCode.NOT_READY, message: `node ${id} cannot vouch for its lease yet; not serving as primary` };
    return { kind: 'local' };
  }
  // Listed as primary under an epoch this node no longer has (it is rejoining): nobody to forward to.
  if (!allowForward || primary === id) return { kind: 'error', code: ErrorCode.NOT_PRIMARY, message: `node ${id} is not the primary of partition ${p}` };
  return { kind: 'forward', to: primary };
}

/** True when anything is lost for `cache`: a lost partition, or one lost for the cache alone. */
export function anyLoss(t: TopologyRecord | null, cache: string): boolean {
  if (!t) return false;
  return t.lost.length > 0 || (t.lostCaches?.[cache]?.length ?? 0) > 0;
}

/**
 * The cache's partition-loss policy applied to an operation, before routing: READ_ONLY_SAFE
 * refuses every write to the cache while any partition is lost for it (reads go on to routing);
 * READ_WRITE_SAFE leaves it to routing; IGNORE never refuses (routing serves lost partitions of
 * the cache from their fresh owners). Null: go on.
 */
export function lossRefusal(t: TopologyRecord | null, config: CacheConfig | undefined, cache: string, mutating: boolean): { code: ErrorCode; message: string; partition: number } | null {
  if (!t || !mutating || !anyLoss(t, cache)) return null;
  if ((config?.partitionLossPolicy ?? 'READ_WRITE_SAFE') !== 'READ_ONLY_SAFE') return null;
  const own = t.lostCaches?.[cache] ?? [];
  const n = new Set([...t.lost, ...own]).size;
  return { code: ErrorCode.PARTITION_LOST, message: `cache ${cache} is read-only (READ_ONLY_SAFE) while ${n} of its partition(s) are lost`, partition: t.lost[0] ?? own[0]! };
}

/**
 * Whether partition p is lost for an operation on `cache` (null: no cache, e.g. a lock): lost
 * partitions are lost for every cache but IGNORE ones; a partition lost for the cache alone
 * (its owners all gone, later owners alive) is lost for that cache unless it IGNOREs losses.
 */
export function lostFor(t: TopologyRecord, p: number, cache: string | null, config: CacheConfig | undefined): boolean {
  if (cache !== null && config?.partitionLossPolicy === 'IGNORE') return false;
  if (t.lost.includes(p)) return true;
  return cache !== null && (t.lostCaches?.[cache]?.includes(p) ?? false);
}

/**
 * Why a cache config cannot be honoured by this cluster, or null. Backups above what any
 * ranking can carry (16, the node's own bound) are refused naming the field.
 */
export function unsupportedCacheConfig(config: CacheConfig): { field: string; message: string } | null {
  if (config.backups !== undefined && (!Number.isInteger(config.backups) || config.backups < 0 || config.backups > MAX_CACHE_BACKUPS)) {
    return { field: 'backups', message: `must be an integer from 0 to ${MAX_CACHE_BACKUPS}, got ${String(config.backups)}` };
  }
  // A default TTL whose expiry is past the safe integers fails every write to the cache ("ttlMs
  // is too large"): such a cache was created, then refused everything written to it.
  if (typeof config.ttlMs === 'number' && config.ttlMs > MAX_CACHE_TTL_MS) {
    return { field: 'ttlMs', message: `must be at most ${MAX_CACHE_TTL_MS} (0 = no expiry), got ${config.ttlMs}` };
  }
  return null;
}

/** The longest default TTL of a cache: the protocol's longest `ttlMs` of a write (2^52 ms, whose expiry stays a safe integer). */
export const MAX_CACHE_TTL_MS = MAX_TTL_MS;

/** The most backups a cache may ask for (the node's own `backups` bound). */
export const MAX_CACHE_BACKUPS = 16;

/** Backups of a cache: its own, or the cluster's default when it names none. */
export function cacheBackups(config: CacheConfig | undefined, clusterBackups: number): number {
  return config?.backups ?? clusterBackups;
}

/** A partition lost for `cache` (see lostFor), or undefined: what a cluster-wide size refuses on. */
export function lostPartitionsOf(t: TopologyRecord, cache: string, config: CacheConfig | undefined): number | undefined {
  if (config?.partitionLossPolicy === 'IGNORE') return undefined;
  return t.lost[0] ?? t.lostCaches?.[cache]?.[0];
}
