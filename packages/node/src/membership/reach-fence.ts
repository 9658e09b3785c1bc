/**
 * A cut between two members that both still reach the rest of the cluster and the control plane
 * (ADR 0065). Neither fences itself by ADR 0063's rule (each reaches a majority), both renew, so
 * nobody is declared gone, and every partition with one of them as primary and the other as a
 * backup stalls for as long as the cut lasts. Each node reports in its lease the members it
 * cannot reach (`LeaseRecord.unreachable`); the coordinator, which sees every lease, picks one
 * node of each such pair and asks it, through the topology (`TopologyRecord.fenced`), to stop
 * renewing: it then runs out as after a crash, and the ordinary rules hand its partitions over.
 * One node at a time, never one whose loss would lose a partition, and a later life of it is
 * admitted again only once it reaches every member. Pure: the property tests drive it directly.
 */
import { fencedMembers, type LeaseRecord, type TopologyRecord } from '../control/topology.js';

/** How many partitions list `id` as an owner and no other owner among `alive` (ADR 0062). */
export function soleHolderOf(topo: TopologyRecord, id: string, alive: ReadonlySet<string>): number {
  let n = 0;
  for (const owners of topo.owners) {
    if (!owners.includes(id)) continue;
    if (!owners.some((o) => o !== id && alive.has(o))) n++;
  }
  return n;
}

/** What the coordinator does about members that cannot reach each other. */
export type ReachDecision =
  /** Ask this life of node `id` to stop renewing (add it to `fenced`). */
  | { readonly kind: 'fence'; readonly id: string; readonly epoch: string; readonly pairs: readonly (readonly [string, string])[] }
  /**
   * Take back the fence of `id`: it now holds the only copy of a partition (another owner died
   * meanwhile), or no member reports it unreachable any more (the cut healed before it was gone).
   */
  | { readonly kind: 'withdraw'; readonly id: string; readonly reason: 'sole holder' | 'reached again' }
  | null;

/**
 * The pairs of members (under their current epochs, among the leases alive) of which at least one
 * reports the other unreachable: each pair once, its ids in order, the pairs sorted.
 */
export function reportedPairs(topo: TopologyRecord, alive: readonly LeaseRecord[]): [string, string][] {
  const members = new Set<string>();
  for (const l of alive) if (topo.members[l.id]?.epoch === l.epoch) members.add(l.id);
  const pairs = new Map<string, [string, string]>();
  for (const l of alive) {
    if (!members.has(l.id)) continue;
    for (const u of l.unreachable ?? []) {
      if (u === l.id || !members.has(u)) continue;
      const pair: [string, string] = l.id < u ? [l.id, u] : [u, l.id];
      pairs.set(pairKey(pair), pair);
    }
  }
  return [...pairs.keys()].sort().map((k) => pairs.get(k)!);
}

export const pairKey = (pair: readonly [string, string]): string => `${pair[0]}\n${pair[1]}`;

/**
 * The decision at a coordinator step, from the topology, the leases judged alive and the pairs
 * reported long enough to act on (from `reportedPairs`; the coordinator waits a lease, so that a
 * report made in the moment a hung node resumes, renewing before it answers, moves nobody).
 * While a fenced node is still a member under the fenced epoch, nothing else is fenced (it is on
 * its way out; two at once could take both owners of a partition), and its fence is withdrawn if
 * it now holds the only copy of a partition. (The coordinator also withdraws it when the members
 * that reported it stop doing so before it is gone: `reachedAgain`.) Among the nodes in the pairs, the one in the most
 * pairs goes first (a node cut off from everyone is one node, not all the others), then the
 * highest id; a node whose going would leave a partition with no owner alive is skipped.
 */
export function reachFence(topo: TopologyRecord, alive: readonly LeaseRecord[], pairs: readonly (readonly [string, string])[]): ReachDecision {
  const members = new Map<string, LeaseRecord>();
  for (const l of alive) if (topo.members[l.id]?.epoch === l.epoch) members.set(l.id, l);
  const aliveIds = new Set(members.keys());
  for (const id of fencedMembers(topo)) return soleHolderOf(topo, id, aliveIds) > 0 ? { kind: 'withdraw', id, reason: 'sole holder' } : null;
  const degree = new Map<string, number>();
  const counted: (readonly [string, string])[] = [];
  for (const pair of pairs) {
    if (!members.has(pair[0]) || !members.has(pair[1])) continue;
    counted.push(pair);
    for (const id of pair) degree.set(id, (degree.get(id) ?? 0) + 1);
  }
  const order = [...degree].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? 1 : a[0] > b[0] ? -1 : 0));
  for (const [id] of order) {
    if (soleHolderOf(topo, id, aliveIds) === 0) {
      counted.sort((a, b) => (pairKey(a) < pairKey(b) ? -1 : pairKey(a) > pairKey(b) ? 1 : 0));
      return { kind: 'fence', id, epoch: members.get(id)!.epoch, pairs: counted };
    }
  }
  return null;
}

/**
 * A later life of a node whose earlier life was fenced (ADR 0065) waits to be admitted as a
 * member: until it has renewed for `holdMs` (its probes had time to find a cut that lasts), and
 * while it reports a member alive (in `aliveIds`) unreachable.
 */
export function admissionHeld(topo: TopologyRecord, lease: LeaseRecord, renewingForMs: number, aliveIds: ReadonlySet<string>, holdMs: number): boolean {
  const fenced = topo.fenced?.[lease.id];
  if (fenced === undefined || fenced === lease.epoch || topo.members[lease.id]?.epoch === lease.epoch) return false;
  if (renewingForMs < holdMs) return true;
  return (lease.unreachable ?? []).some((u) => u !== lease.id && aliveIds.has(u));
}

/**
 * The members whose leases report `id` unreachable (not `id` itself: a fenced node renews no
 * more, so its own last report stays as it was).
 */
export function reportersOf(id: string, alive: readonly LeaseRecord[]): string[] {
  return alive.filter((l) => l.id !== id && (l.unreachable ?? []).includes(id)).map((l) => l.id).sort();
}

/**
 * A fence asked because `by` reported `id` unreachable may be taken back: none of them that is
 * still alive reports it any more (the cut healed before its lease ran out). False when nobody
 * but `id` itself had reported the cut: the others' silence then says nothing.
 */
export function reachedAgain(id: string, by: readonly string[], alive: readonly LeaseRecord[]): boolean {
  if (by.length === 0) return false;
  const still = new Set(reportersOf(id, alive));
  return by.every((r) => !still.has(r)) && alive.some((l) => by.includes(l.id));
}
