/**
 * Planned primary changes wait until the new primary is caught up on everything (ADR 0037).
 *
 * `nextTopology` makes a node that finished pulling a partition an owner, and the first owner
 * when the assignment wants it primary, in the same step. A node rejoining (or joining) pulls
 * dozens of partitions, so it used to take primaryships one batch at a time while it still
 * installed snapshots (its code not yet warm) and the partitions' old primaries still served it
 * snapshots: every batch was a change of primary (a fence on the new primary, the in-flight
 * writes of the old one refused) on busy processes.
 *
 * `deferHandBack` post-processes the step: while the would-be primary of a partition still syncs
 * any partition, the previous primary stays first (and stays an owner, when the step would have
 * dropped it because it is outside the assignment). Once the node has caught up on every
 * partition, one step hands all of them over at once, as a graceful stop's handoff does. It only
 * reorders an owner list or keeps a caught-up holder in it: no copy is dropped earlier, no node
 * that is not caught up is made an owner, and a dead or leaving previous primary is never kept.
 */
import { nextTopology, sameButVersion, type CacheRule, type LeaseRecord, type TopologyRecord } from '../control/topology.js';

/**
 * The coordinator's step: `nextTopology` with planned primary changes deferred. Null when there
 * is nothing to write (including a step whose only change was deferred).
 */
export function coordinatorStep(prev: TopologyRecord, alive: LeaseRecord[], now: number, caches: readonly CacheRule[] = []): TopologyRecord | null {
  const stepped = nextTopology(prev, alive, now, caches);
  if (stepped === null) return null;
  const next = deferHandBack(prev, stepped, new Set(alive.filter((l) => l.leaving === true).map((l) => l.id)));
  return next !== stepped && sameButVersion(prev, next) ? null : next;
}

/** Node ids that are pulling at least one partition in `rec`. */
function syncingNodes(rec: TopologyRecord): Set<string> {
  const out = new Set<string>();
  for (const s of rec.syncing) for (const e of s) out.add(e.id);
  return out;
}

/**
 * `next` with every planned change of primary towards a node that is still syncing something
 * undone (the previous primary kept first). `leaving`: ids whose lease says they are stopping.
 * Returns `next` itself when nothing is deferred.
 */
export function deferHandBack(prev: TopologyRecord, next: TopologyRecord, leaving: ReadonlySet<string>): TopologyRecord {
  const busy = syncingNodes(next);
  if (busy.size === 0) return next;
  const lost = new Set(next.lost);
  let owners: string[][] | null = null;
  for (let p = 0; p < next.partitions; p++) {
    const o = next.owners[p] ?? [];
    const wanted = o[0];
    const was = prev.owners[p]?.[0];
    if (wanted === undefined || was === undefined || wanted === was || !busy.has(wanted) || lost.has(p)) continue;
    // The previous primary must still be there, under the same epoch (it holds a caught-up copy
    // and has been serving), and staying.
    const before = prev.members[was];
    const after = next.members[was];
    if (before === undefined || after === undefined || before.epoch !== after.epoch || leaving.has(was)) continue;
    // A new list for each partition changed; the others are the step's own (lists are never
    // changed once in a record).
    owners ??= next.owners.slice();
    owners[p] = [was, ...o.filter((id) => id !== was)];
  }
  return owners === null ? next : { ...next, owners };
}
