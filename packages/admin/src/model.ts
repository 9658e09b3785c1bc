/**
 * Pure views of the topology record for operators: per-node partition counts, safety, and the
 * plan of a baseline change. No I/O, so they are property-tested.
 */
import { computeAssignment, type NodeSpec } from '@gridlink/affinity';
import { clusterSafety, fencedMembers, nodeSafety, type TopologyRecord } from '@gridlink/node';
import { AdminRefusedError } from './errors.js';

/** Copies a partition should have right now: the node's own rule. */
export { wantedCopies } from '@gridlink/node';

export interface PartitionCounts {
  /** Partitions this node serves as effective primary. */
  primary: number;
  /** Partitions this node holds an up-to-date backup copy of. */
  backup: number;
  /** Partitions this node is pulling (state transfer in progress). */
  moving: number;
}

export type PartitionState = 'primary-only' | 'replicated' | 'moving' | 'lost' | 'unowned';

/** Nodes the record counts as alive (lease judged alive by the coordinator). */
export function liveIds(rec: TopologyRecord): string[] {
  return Object.keys(rec.members).sort();
}

export function baselineIds(rec: TopologyRecord): string[] {
  return rec.baseline.map((n) => n.id);
}

export function partitionCounts(rec: TopologyRecord): Map<string, PartitionCounts> {
  const out = new Map<string, PartitionCounts>();
  const of = (id: string): PartitionCounts => {
    let c = out.get(id);
    if (!c) {
      c = { primary: 0, backup: 0, moving: 0 };
      out.set(id, c);
    }
    return c;
  };
  for (const id of [...liveIds(rec), ...baselineIds(rec)]) of(id);
  for (let p = 0; p < rec.partitions; p++) {
    const owners = rec.owners[p] ?? [];
    owners.forEach((id, i) => {
      if (i === 0) of(id).primary++;
      else of(id).backup++;
    });
    for (const s of rec.syncing[p] ?? []) of(s.id).moving++;
  }
  return out;
}

/**
 * Partitions held by fewer up-to-date copies than wanted (lost ones excluded). A fenced member's
 * copy counts for none: every partition it owns is under-replicated while the fence is under way.
 */
export function underReplicated(rec: TopologyRecord): number[] {
  return clusterSafety(rec).underReplicated;
}

/** Partitions some node is pulling (lost ones excluded, as in `safetyOf`). */
export function movingPartitions(rec: TopologyRecord): number[] {
  return clusterSafety(rec).moving;
}

export interface SafetyReport {
  safe: boolean;
  lost: number[];
  moving: number[];
  underReplicated: number[];
  /**
   * Members the topology asks to stop renewing (ADR 0065), sorted: on their way out, so the
   * cluster is not safe to take another node from until they are gone (their own /health/safe
   * answers `fenced`), whatever they hold.
   */
  fenced: string[];
}

/**
 * Cluster safety derived from the topology record alone: no partition lost, none being pulled,
 * none with fewer copies than wanted (a fenced member's copy counting for none), no member being
 * fenced. The partitions' verdicts are the node's own rule (`clusterSafety` of @gridlink/node:
 * what every node's /health/safe judges, seen cluster-wide), so the two cannot drift apart.
 */
export function safetyOf(rec: TopologyRecord): SafetyReport {
  const { safe, lost, moving, underReplicated } = clusterSafety(rec);
  const fenced = [...fencedMembers(rec)].sort();
  return { safe: safe && fenced.length === 0, lost, moving, underReplicated, fenced };
}

/**
 * Safety of one node as its /health/safe answers it, from the record alone: no partition it holds
 * or pulls is moving or under-replicated (a fenced member's copy counting for none), and it is
 * not itself a member the topology asks to stop renewing (ADR 0065; its /health/safe answers
 * `fenced` then, whatever it holds). Lost partitions are left to the caller
 * (`safetyOf(rec).lost`), as `checkSafe` does.
 */
export function nodeSafe(rec: TopologyRecord, id: string): boolean {
  if (fencedMembers(rec).has(id)) return false;
  const s = nodeSafety(rec, id);
  return s.underReplicated.length === 0 && s.moving.length === 0;
}

/** Auto-adjust state: the time left (on the coordinator's clock) before the baseline follows the live set. */
export function autoAdjustCountdown(rec: TopologyRecord, now: number): number | null {
  const a = rec.adjust;
  if (!a || !rec.autoAdjust.enabled) return null;
  const due = Math.min(a.lastAt + rec.autoAdjust.softTimeoutMs, a.firstAt + rec.autoAdjust.hardTimeoutMs);
  return Math.max(0, due - now);
}

/** Baseline specs for ids, with zone and weight as the cluster knows them (as LocalCluster.setBaseline does). */
export function baselineSpecs(rec: TopologyRecord, ids: readonly string[]): NodeSpec[] {
  const seen = new Set<string>();
  return ids.map((id) => {
    if (seen.has(id)) throw new AdminRefusedError('ADMIN_DUPLICATE_NODE', `node ${id} is listed twice`);
    seen.add(id);
    const m = rec.members[id];
    const a = rec.addresses[id];
    const prev = rec.baseline.find((n) => n.id === id);
    if (!m && !a && !prev) throw new AdminRefusedError('ADMIN_UNKNOWN_NODE', `node ${id} is unknown to the cluster (never seen)`);
    const spec: NodeSpec = { id };
    const zone = m?.zone ?? a?.zone ?? prev?.zone;
    if (zone !== undefined) spec.zone = zone;
    const weight = m?.weight ?? prev?.weight;
    if (weight !== undefined) spec.weight = weight;
    return spec;
  });
}

export interface NodePlan {
  primaryBefore: number;
  primaryAfter: number;
  copiesBefore: number;
  copiesAfter: number;
  /** Copies this node will pull (state transfer). */
  gains: number;
  /** Copies this node will drop once the new owners caught up. */
  drops: number;
}

export interface BaselinePlan {
  before: string[];
  after: string[];
  added: string[];
  removed: string[];
  /** Partitions whose set of holders changes. */
  partitionsMoving: number;
  /** Partition copies to transfer to new holders. */
  copiesToTransfer: number;
  /** Alive nodes only (offline baseline nodes hold nothing until they return). */
  perNode: Record<string, NodePlan>;
  movesData: boolean;
}

/**
 * What setting the baseline to `after` will do, once the coordinator has carried it out: the
 * owners computed over the new baseline, offline nodes skipped, compared with the holders now.
 * Lost partitions are left out (they move only after reset-lost).
 */
export function planBaseline(rec: TopologyRecord, after: NodeSpec[]): BaselinePlan {
  const before = baselineIds(rec);
  const afterIds = after.map((n) => n.id);
  const alive = liveIds(rec);
  const perNode: Record<string, NodePlan> = {};
  for (const id of alive) perNode[id] = { primaryBefore: 0, primaryAfter: 0, copiesBefore: 0, copiesAfter: 0, gains: 0, drops: 0 };
  const lost = new Set(rec.lost);
  const assignment = after.length > 0 ? computeAssignment({ partitions: rec.partitions, backups: rec.backups, baseline: after, alive }) : null;
  let partitionsMoving = 0;
  let copiesToTransfer = 0;
  for (let p = 0; p < rec.partitions; p++) {
    if (lost.has(p)) continue;
    const now = rec.owners[p] ?? [];
    const target = (assignment?.owners[p] ?? []).filter((id) => rec.members[id] !== undefined);
    // A partition with no alive target owner stays where it is (the coordinator keeps it).
    const next = target.length > 0 ? target : now;
    let changed = false;
    for (const id of next) {
      const n = perNode[id];
      if (!n) continue;
      n.copiesAfter++;
      if (id === next[0]) n.primaryAfter++;
      if (!now.includes(id)) {
        n.gains++;
        copiesToTransfer++;
        changed = true;
      }
    }
    for (const id of now) {
      const n = perNode[id];
      if (!n) continue;
      n.copiesBefore++;
      if (id === now[0]) n.primaryBefore++;
      if (!next.includes(id)) {
        n.drops++;
        changed = true;
      }
    }
    if (changed) partitionsMoving++;
  }
  return {
    before,
    after: afterIds,
    added: afterIds.filter((id) => !before.includes(id)),
    removed: before.filter((id) => !afterIds.includes(id)),
    partitionsMoving,
    copiesToTransfer,
    perNode,
    movesData: partitionsMoving > 0,
  };
}

/** Longest node id or epoch the admin tools take from a record; a longer value is not one. */
const MAX_ID_CHARS = 128;
/** Most ids read from one report (a cluster has far fewer members). */
const MAX_REPORTED = 1024;

const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_CHARS;

/**
 * The members a lease reports it cannot reach over the grid while they renew (ADR 0065), read
 * defensively as `announced()` reads the release: nodes older than the field write none, and a
 * malformed value is no report. Sorted, without duplicates; [] when none.
 */
export function reportedUnreachable(lease: unknown): string[] {
  const v = typeof lease === 'object' && lease !== null ? (lease as Record<string, unknown>)['unreachable'] : undefined;
  if (!Array.isArray(v)) return [];
  return [...new Set(v.slice(0, MAX_REPORTED).filter(isId))].sort();
}

/**
 * What became of a life the coordinator asked to stop renewing (ADR 0065): `stopping` while it
 * is still a member under that epoch (its lease running out), `held-back` once gone while a later
 * life of the node renews without being admitted, `gone` otherwise.
 */
export type FenceState = 'stopping' | 'gone' | 'held-back';

export interface FencedNode {
  id: string;
  /** The epoch asked to stop renewing. */
  epoch: string;
  state: FenceState;
  /** With `held-back`: the epoch of the later life that renews and is not admitted. */
  nextEpoch: string | null;
}

/**
 * The topology's `fenced` entries (ADR 0065), read defensively (older coordinators write none; a
 * malformed entry is skipped), sorted by id. `renewing(id)` is the epoch of a lease of `id` seen
 * renewing, if any: a life after the fenced one that renews while not a member is held back.
 */
export function fencedNodes(rec: TopologyRecord, renewing: (id: string) => string | null = () => null): FencedNode[] {
  const f = (rec as { fenced?: unknown }).fenced;
  if (typeof f !== 'object' || f === null || Array.isArray(f)) return [];
  const members = (typeof rec.members === 'object' && rec.members !== null ? rec.members : {}) as Record<string, { epoch?: unknown } | undefined>;
  const out: FencedNode[] = [];
  for (const [id, epoch] of Object.entries(f as Record<string, unknown>).slice(0, MAX_REPORTED)) {
    if (!isId(id) || !isId(epoch)) continue;
    const m = Object.hasOwn(members, id) ? members[id] : undefined;
    const next = m === undefined ? renewing(id) : null;
    const state: FenceState = m !== undefined && m?.epoch === epoch ? 'stopping' : next !== null && next !== epoch ? 'held-back' : 'gone';
    out.push({ id, epoch, state, nextEpoch: state === 'held-back' ? next : null });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
