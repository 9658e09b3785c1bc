/**
 * The node's routing decisions as pure functions of the topology record: what role this node
 * plays for a partition, and what to do with a request for it. No sockets, no timers.
 */
import { ErrorCode } from '@gridlink/protocol';
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
