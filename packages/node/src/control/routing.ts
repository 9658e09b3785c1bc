/**
 * The node's routing decisions as pure functions of the topology record: what role this node
 * plays for a partition, and what to do with a request for it. No sockets, no timers.
 */
import { ErrorCode, type CacheConfig } from '@gridlink/protocol';
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
): RouteDecision {
  if (!t) return { kind: 'error', code: ErrorCode.NOT_READY, message: 'the node has not joined a cluster yet' };
  if (!Number.isInteger(p) || p < 0 || p >= t.partitions) return { kind: 'error', code: ErrorCode.BAD_REQUEST, message: `partition ${p} out of range` };
  const primary = (t.owners[p] ?? [])[0];
  if (t.lost.includes(p) || primary === undefined) {
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

/**
 * The cache's partition-loss policy applied to an operation, before routing: READ_ONLY_SAFE
 * refuses every write to the cache while any partition is lost (reads go on to routing, which
 * refuses those of lost partitions); READ_WRITE_SAFE leaves it to routing. Null: go on.
 */
export function lossRefusal(t: TopologyRecord | null, config: CacheConfig | undefined, cache: string, mutating: boolean): { code: ErrorCode; message: string; partition: number } | null {
  if (!t || t.lost.length === 0 || !mutating) return null;
  if ((config?.partitionLossPolicy ?? 'READ_WRITE_SAFE') !== 'READ_ONLY_SAFE') return null;
  return { code: ErrorCode.PARTITION_LOST, message: `cache ${cache} is read-only (READ_ONLY_SAFE) while ${t.lost.length} partition(s) are lost`, partition: t.lost[0]! };
}

/**
 * Why a cache config cannot be honoured by this cluster, or null. Ownership is computed per
 * cluster (one partition map for every cache), so a per-cache `backups` other than the
 * cluster's is refused rather than accepted and ignored; IGNORE is not implemented yet.
 */
export function unsupportedCacheConfig(config: CacheConfig, clusterBackups: number): { field: string; message: string } | null {
  if (config.backups !== undefined && config.backups !== clusterBackups) {
    return { field: 'backups', message: `per-cache backups (${config.backups}) must equal the cluster's (${clusterBackups}): ownership is per cluster` };
  }
  if (config.partitionLossPolicy === 'IGNORE') {
    return { field: 'partitionLossPolicy', message: 'IGNORE is not supported yet: use READ_WRITE_SAFE or READ_ONLY_SAFE' };
  }
  return null;
}
