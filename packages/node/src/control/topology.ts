/**
 * The topology record and the pure function the coordinator uses to move it on. No sockets, no
 * timers: given the previous record, the leases judged alive and the current time, it returns the
 * next record (version + 1) or null when nothing changed.
 */
import { computeAssignment, rankOwners, type NodeSpec } from '@gridlink/affinity';
import type { CacheConfig, NodeInfo, PartitionLossPolicy, PartitionMap } from '@gridlink/protocol';
import { sameJson } from './same-json.js';

export interface MemberInfo {
  /** Changes whenever the node restarts or its lease lapsed: a new epoch holds no data yet. */
  epoch: string;
  host: string;
  port: number;
  zone?: string;
  weight?: number;
  /**
   * Its lease says it is stopping gracefully (`LeaseRecord.leaving`, ADR 0029), copied here by the
   * coordinator (ADR 0067) so that every node knows which owners will not take a primaryship over:
   * a stopping node does not wait for a hand-off to one.
   */
  leaving?: true;
}

export interface AutoAdjustPolicy {
  enabled: boolean;
  /** Restarted by each change of the live set. */
  softTimeoutMs: number;
  /** Cap measured from the first change since the live set last matched the baseline. */
  hardTimeoutMs: number;
}

export interface SyncEntry {
  id: string;
  /** Topology version at which the node was asked to pull the partition. */
  since: number;
}

export interface TopologyRecord {
  clusterId: string;
  version: number;
  partitions: number;
  /**
   * Backups the ownership ranking carries: the largest of the cluster's backups and every
   * registered cache's (a cache with b backups is copied to the first b backups of owners[p]).
   */
  backups: number;
  /** Target set of data nodes; ownership is computed over it. */
  baseline: NodeSpec[];
  /** Nodes whose lease is alive, with the epoch they joined under. */
  members: Record<string, MemberInfo>;
  /**
   * Per node id, the epoch under which it last left `members` (declared gone: its lease expired
   * or was given up, or it came back under another epoch). That epoch is never a member again,
   * whatever lease carrying it is seen later: the node comes back only under a new epoch (a
   * restart, or a new life once it learns it was dropped). Absent when empty (ADR 0039).
   */
  departed?: Record<string, string>;
  /**
   * Per node id, the epoch the coordinator asked to stop renewing its lease because it cannot
   * reach another member that renews while that member still renews too: a cut between two
   * nodes that both reach the rest (ADR 0065). That life then runs out as if it had died. A later
   * life of the node is not admitted as a member until it has renewed for two leases without
   * reporting an alive member unreachable; the entry goes when it is admitted. Absent when empty.
   */
  fenced?: Record<string, string>;
  /** Last known address of every node ever seen (for offline baseline nodes in the map). */
  addresses: Record<string, { host: string; port: number; zone?: string }>;
  /** owners[p]: nodes holding an up-to-date copy, effective primary first. */
  owners: string[][];
  /** syncing[p]: nodes pulling the partition (they receive writes but do not serve). */
  syncing: SyncEntry[][];
  /**
   * Partitions whose every holder died: operations fail with PARTITION_LOST until reset, except
   * on caches with the IGNORE policy (while any exists, a lost partition gets fresh, empty owners
   * at once, which serve only those caches).
   */
  lost: number[];
  /**
   * Per cache (READ_WRITE_SAFE / READ_ONLY_SAFE only): partitions lost for that cache alone, its
   * owners (the primary and its first `backups` backups) all gone while later owners survived.
   * Absent when empty. Cleared with `lost` by a reset.
   */
  lostCaches?: Record<string, number[]>;
  /**
   * Update counter floors, by partition: a partition served again empty after every holder of it
   * died (a reset of the loss, or fresh owners for IGNORE caches) starts its counter here, above
   * every counter — so every fencing token — of the copies that were lost (ADR 0049). Kept for
   * good (one number per partition at most). Absent when empty.
   */
  floors?: Record<string, number>;
  /**
   * behind[p][id]: an owner ranked higher than the caches it holds (an owner before it died), set
   * at topology version `since`; it holds the caches of `rank` until its lease reports it caught
   * up (`caughtUp[p] >= since`). Loss is judged on what owners hold. Absent when empty.
   */
  behind?: Record<string, Record<string, { rank: number; since: number }>>;
  autoAdjust: AutoAdjustPolicy;
  /** Pending auto-adjust: set while the live set differs from the baseline. */
  adjust: { firstAt: number; lastAt: number; liveKey: string } | null;
}

/**
 * The counter floor of a partition starting again empty at `now` (ms, the writer's clock): the
 * wall clock times 1024, so above any counter the lost copies could have reached unless the
 * partition averaged over a million updates a second since its last floor; and at least 2^32
 * above the previous floor, should the writer's clock be behind (ADR 0049).
 */
export function nextFloor(previous: number | undefined, now: number): number {
  return Math.max(Math.floor(now) * 1024, (previous ?? 0) + 2 ** 32);
}

/** What a node writes into its lease key, renewed every renewal interval. */
export interface LeaseRecord {
  id: string;
  epoch: string;
  host: string;
  port: number;
  zone?: string;
  weight?: number;
  /** Partitions pulled (caught up) in this epoch: partition → topology version the pull started at. */
  synced: Record<string, number>;
  /**
   * Set by a node that is stopping gracefully: the coordinator moves primaryship of its
   * partitions to another caught-up owner (it stays an owner, last, until its lease is gone).
   */
  leaving?: boolean;
  /**
   * Partitions on which this node holds every cache its rank asks for, with the topology version
   * it did so at; reported only while the topology lists it as behind there.
   */
  caughtUp?: Record<string, number>;
  /**
   * Members this node cannot reach over the grid while they renew their leases (ADR 0065: three
   * requests in a row failed over at least a lease, as ADR 0063 counts a cut), sorted. Absent
   * when none; nodes of releases before ADR 0065 never report any.
   */
  unreachable?: string[];
  /**
   * The gridlink release the node runs and the node-to-node wire versions it speaks (ADR 0060):
   * for operators (`gridlink status`, the dashboard); no node decides anything on them. Absent in
   * the leases of nodes older than these fields.
   */
  release?: string;
  wire?: { min: number; max: number };
}

export const DEFAULT_AUTO_ADJUST: AutoAdjustPolicy = { enabled: true, softTimeoutMs: 10_000, hardTimeoutMs: 60_000 };

/** What the coordinator needs to know of a registered cache (from the cache registry). */
export interface CacheRule {
  name: string;
  /** Synchronous backups of the cache (its own, or the cluster's when it names none). */
  backups: number;
  policy: PartitionLossPolicy;
}

/**
 * The owners of partition p for a cache with b backups: the first b + 1 entries of the
 * partition's owner ranking (primary first). The primary is never one of its backups.
 */
export function cacheOwners(owners: readonly string[], b: number): string[] {
  return owners.slice(0, b + 1);
}

/**
 * How deep a change of owners cut into the ranking: the index, in `before`, of the first owner
 * still holding its copy in `after` (`kept` says which did). Every cache with fewer backups
 * than that index lost its copies of the partition. Infinity when none survived.
 */
export function lossDepth(before: readonly string[], kept: (id: string) => boolean): number {
  for (let i = 0; i < before.length; i++) if (kept(before[i]!)) return i;
  return Number.POSITIVE_INFINITY;
}

/**
 * The rank of `id` for p in `rec`: its index among the owners; 0 (it holds everything) while a
 * move is in progress (more owners than the ranking's depth) and for a node that is not an owner.
 */
export function rankIn(rec: TopologyRecord, id: string, p: number): number {
  const o = rec.owners[p] ?? [];
  if (o.length > rec.backups + 1) return 0;
  const i = o.indexOf(id);
  return i < 0 ? 0 : i;
}

/** The rank whose caches `id` actually holds for p: its rank, or a worse one while behind. */
export function heldRankIn(rec: TopologyRecord, id: string, p: number): number {
  return rec.behind?.[String(p)]?.[id]?.rank ?? rankIn(rec, id, p);
}

/**
 * How deep a change of owners cut into what p's owners in `prev` held: the best rank held by an
 * owner that `kept` its copy. Every cache with fewer backups lost its copies. Infinity when none.
 */
export function heldLossDepth(prev: TopologyRecord, p: number, kept: (id: string) => boolean): number {
  let d = Number.POSITIVE_INFINITY;
  for (const id of prev.owners[p] ?? []) if (kept(id)) d = Math.min(d, heldRankIn(prev, id, p));
  return d;
}

/** The coordinator's view of the cache registry: every cache with its backups and policy. */
export function cacheRules(configs: Iterable<[string, CacheConfig]>, clusterBackups: number): CacheRule[] {
  const out: CacheRule[] = [];
  for (const [name, c] of configs) out.push({ name, backups: c.backups ?? clusterBackups, policy: c.partitionLossPolicy ?? 'READ_WRITE_SAFE' });
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The ranking depth the assignment must carry for these caches over a cluster default. */
export function rankingDepth(clusterBackups: number, caches: readonly CacheRule[]): number {
  let d = clusterBackups;
  for (const c of caches) if (c.backups > d) d = c.backups;
  return d;
}

/**
 * Whether caches of these kinds (rules whose names do not matter: the implicit caches' configs)
 * change nothing `nextTopology` decides on a record ranked `depth` deep (its `backups`) next to
 * the `others`: none IGNOREs losses and each keeps exactly `depth` backups, which no other rule
 * raises. Such a cache lives on every owner of the ranking, so it raises no depth, no death
 * loses it alone, and no hand-off, order or owner behind depends on it. The coordinator then
 * leaves them out: however many implicit caches come and go, its rules stay the same.
 */
export function inertCacheRules(kinds: readonly { backups: number; policy: PartitionLossPolicy }[], depth: number, others: readonly CacheRule[]): boolean {
  if (rankingDepth(depth, others) !== depth) return false;
  return kinds.every((k) => k.policy !== 'IGNORE' && k.backups === depth);
}

function specOf(id: string, m: { zone?: string; weight?: number }): NodeSpec {
  const spec: NodeSpec = { id };
  if (m.zone !== undefined) spec.zone = m.zone;
  if (m.weight !== undefined) spec.weight = m.weight;
  return spec;
}

function membersFrom(leases: LeaseRecord[]): Record<string, MemberInfo> {
  const members: Record<string, MemberInfo> = {};
  for (const l of [...leases].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const m: MemberInfo = { epoch: l.epoch, host: l.host, port: l.port };
    if (l.zone !== undefined) m.zone = l.zone;
    if (l.weight !== undefined) m.weight = l.weight;
    if (l.leaving === true) m.leaving = true;
    members[l.id] = m;
  }
  return members;
}

/** The first record of a cluster: every partition fresh (no data anywhere), owned as computed. */
export function initialTopology(opts: {
  clusterId: string;
  partitions: number;
  backups: number;
  leases: LeaseRecord[];
  baseline?: NodeSpec[];
  autoAdjust?: AutoAdjustPolicy;
}): TopologyRecord {
  const members = membersFrom(opts.leases);
  const baseline = opts.baseline ?? Object.entries(members).map(([id, m]) => specOf(id, m));
  const rec: TopologyRecord = {
    clusterId: opts.clusterId,
    version: 0,
    partitions: opts.partitions,
    backups: opts.backups,
    baseline,
    members: {},
    addresses: {},
    owners: Array.from({ length: opts.partitions }, () => []),
    syncing: Array.from({ length: opts.partitions }, () => []),
    lost: [],
    autoAdjust: opts.autoAdjust ?? DEFAULT_AUTO_ADJUST,
    adjust: null,
  };
  const next = nextTopology(rec, opts.leases, 0);
  return next ?? { ...rec, version: 1 };
}

const liveKeyOf = (ids: Iterable<string>): string => [...ids].sort().join(',');

/** How many rankings `rankedOwners` remembers: the baseline's, and the live members' for a lost partition. */
const RANKINGS_KEPT = 2;
const rankings = new Map<string, readonly (readonly string[])[]>();

/**
 * `computeAssignment(...).owners`: each partition's owners over `baseline`, which depend on the
 * partition count, the depth and the baseline's ids, zones and weights alone (`alive` only picks
 * the effective primaries, not used here). The coordinator asks for the same ranking step after
 * step, and at 65,536 partitions ranking them all took a good part of a step, so the last
 * rankings are kept, frozen (a step reads them, never changes them or puts them in a record).
 */
function rankedOwners(partitions: number, backups: number, baseline: readonly NodeSpec[], alive: readonly string[]): readonly (readonly string[])[] {
  const key = rankingKey(partitions, backups, baseline);
  const kept = key === null ? undefined : rankings.get(key);
  if (key === null || kept === undefined) {
    const owners = computeAssignment({ partitions, backups, baseline, alive }).owners;
    if (key === null) return owners;
    for (const o of owners) Object.freeze(o);
    rankings.set(key, Object.freeze(owners));
    if (rankings.size > RANKINGS_KEPT) rankings.delete(rankings.keys().next().value!);
    return owners;
  }
  // The most recently used last, so the other one goes first.
  rankings.delete(key);
  rankings.set(key, kept);
  return kept;
}

/**
 * What the ranking depends on, as a string that differs whenever it does; null for a baseline
 * that is not well-formed (not remembered: computeAssignment judges it, every time).
 */
function rankingKey(partitions: number, backups: number, baseline: readonly NodeSpec[]): string | null {
  if (typeof partitions !== 'number' || typeof backups !== 'number' || !Array.isArray(baseline)) return null;
  let key = `${partitions}/${backups}`;
  for (const n of baseline as readonly unknown[]) {
    if (typeof n !== 'object' || n === null) return null;
    const { id, zone, weight } = n as { id?: unknown; zone?: unknown; weight?: unknown };
    if (typeof id !== 'string' || (zone !== undefined && typeof zone !== 'string') || (weight !== undefined && typeof weight !== 'number')) return null;
    key += `|${JSON.stringify(id)}:${zone === undefined ? '-' : JSON.stringify(zone)}:${weight === undefined ? '-' : String(weight)}`;
  }
  return key;
}

/**
 * Whether a pending auto-adjust is due at `now`: quiet for the soft timeout since the live set
 * last changed, or pending for the hard timeout. `nextTopology` then makes the live set the
 * baseline; the coordinator skips steps on unchanged inputs only while this is false.
 */
export function adjustDue(adjust: TopologyRecord['adjust'], policy: AutoAdjustPolicy, now: number): boolean {
  return adjust !== null && policy.enabled && (now - adjust.lastAt >= policy.softTimeoutMs || now - adjust.firstAt >= policy.hardTimeoutMs);
}

/**
 * Moves the record on from the leases currently judged alive. Returns null when nothing changed.
 *
 * Per partition: holders that died (or came back under a new epoch, hence empty) leave the owner
 * list; syncing nodes that report the pull done become owners; target owners (over the baseline)
 * that are alive but hold nothing are asked to pull; holders outside the target stay until every
 * alive target owner has caught up, then leave. A partition whose holders all died is lost.
 * A lease under an epoch that already left the members (`departed`) is ignored (ADR 0039).
 */
export function nextTopology(prev: TopologyRecord, alive: LeaseRecord[], now: number, caches: readonly CacheRule[] = []): TopologyRecord | null {
  const backups = rankingDepth(prev.backups, caches);
  const ignoring = caches.some((c) => c.policy === 'IGNORE');
  const perCache = caches.filter((c) => c.policy !== 'IGNORE' && c.backups < backups);
  const lostCaches: Record<string, number[]> = {};
  for (const [name, ps] of Object.entries(prev.lostCaches ?? {})) lostCaches[name] = [...ps];
  const floors: Record<string, number> = { ...prev.floors };
  // An epoch once dropped from the members stays out (a stale lease, a coordinator that judged
  // on an old view or counted a dead lease afresh after a stall must not bring it back).
  const gone = prev.departed ?? {};
  const live = alive.filter((l) => gone[l.id] !== l.epoch);
  const members = membersFrom(live);
  const departed: Record<string, string> = { ...gone };
  for (const [id, m] of Object.entries(prev.members)) if (members[id]?.epoch !== m.epoch) departed[id] = m.epoch;
  const leaseOf = new Map(live.map((l) => [l.id, l]));
  const leaving = new Set(live.filter((l) => l.leaving === true).map((l) => l.id));
  const stillMember = (id: string): boolean => {
    const before = prev.members[id];
    const after = members[id];
    return before !== undefined && after !== undefined && before.epoch === after.epoch;
  };
  // stillMember and `members[id] !== undefined` as sets, for the partition loop; an id no record
  // holds (never met in a well-formed record) asks them.
  const staying = new Set(Object.keys(prev.members).filter(stillMember));
  const memberIds = new Set(Object.keys(members));
  const stays = (id: string): boolean => staying.has(id) || (!Object.hasOwn(prev.members, id) && stillMember(id));
  const isMember = (id: string): boolean => memberIds.has(id) || members[id] !== undefined;
  const version = prev.version + 1;

  const addresses = { ...prev.addresses };
  for (const [id, m] of Object.entries(members)) {
    const a: { host: string; port: number; zone?: string } = { host: m.host, port: m.port };
    if (m.zone !== undefined) a.zone = m.zone;
    addresses[id] = a;
  }

  // Baseline auto-adjust.
  let baseline = prev.baseline;
  let adjust = prev.adjust;
  const liveKey = liveKeyOf(Object.keys(members));
  const baselineKey = liveKeyOf(baseline.map((n) => n.id));
  if (liveKey === baselineKey || !prev.autoAdjust.enabled || liveKey === '') {
    adjust = liveKey === baselineKey ? null : adjust;
  } else if (adjust === null) {
    adjust = { firstAt: now, lastAt: now, liveKey };
  } else if (adjust.liveKey !== liveKey) {
    adjust = { firstAt: adjust.firstAt, lastAt: now, liveKey };
  }
  if (liveKey !== '' && adjustDue(adjust, prev.autoAdjust, now)) {
    baseline = Object.entries(members).map(([id, m]) => specOf(id, m));
    adjust = null;
  }

  const aliveIds = Object.keys(members);
  const targets = baseline.length > 0 ? rankedOwners(prev.partitions, backups, baseline, aliveIds) : null;
  const lostSet = new Set(prev.lost);
  // Per-cache depth matters only when some cache keeps fewer backups than the ranking.
  const perCacheDepth = caches.some((c) => c.backups < backups);
  const behind: Record<string, Record<string, { rank: number; since: number }>> = {};
  let fallback: readonly (readonly string[])[] | null = null;
  /** Members not leaving, as ranking specs (ADR 0067); computed when some partition needs them. */
  let standIns: NodeSpec[] | null = null;
  const owners: string[][] = [];
  const syncing: SyncEntry[][] = [];
  for (let p = 0; p < prev.partitions; p++) {
    const wasLost = lostSet.has(p);
    if (wasLost && !ignoring) {
      owners.push([]);
      syncing.push([]);
      continue;
    }
    const prevOwners = prev.owners[p] ?? [];
    const settled = wasLost ? null : settledOwners(prev, p, prevOwners, stays, perCacheDepth, leaving, targets?.[p] ?? [], isMember);
    if (settled !== null) {
      owners.push(settled);
      syncing.push(prev.syncing[p]!);
      continue;
    }
    let o = prevOwners.filter(stillMember);
    // Caches whose owners (a prefix of the ranking) all went, while later owners survived.
    if (!wasLost && o.length > 0 && perCache.length > 0) {
      const depth = heldLossDepth(prev, p, stillMember);
      for (const c of perCache) {
        if (c.backups >= depth) continue;
        const list = (lostCaches[c.name] ??= []);
        if (!list.includes(p)) list.push(p);
      }
    }
    let s = (prev.syncing[p] ?? []).filter((e) => stillMember(e.id));
    s = s.filter((e) => {
      const since = leaseOf.get(e.id)?.synced[String(p)];
      if (since !== undefined && since >= e.since) {
        if (!o.includes(e.id)) o.push(e.id);
        return false;
      }
      return true;
    });
    let target: readonly string[] = targets?.[p] ?? [];
    let targetAlive = target.filter((id) => members[id] !== undefined);
    // Some owner and every alive target owner (none may be alive) are stopping gracefully (ADR
    // 0067): members that stay stand in, so a staying node pulls a copy while the leaving owners
    // still serve and wait for it, instead of the partition going with the last of them. Kept as
    // targets while the partition is held only by leaving owners and stand-ins, so a stand-in
    // that caught up stays an owner until the leaving ones are gone.
    if (leaving.size > 0 && o.some((id) => leaving.has(id)) && targetAlive.every((id) => leaving.has(id))) {
      standIns ??= Object.entries(members)
        .filter(([id]) => !leaving.has(id))
        .map(([id, m]) => specOf(id, m));
      if (standIns.length > 0) {
        const extra = rankOwners(p, standIns).slice(0, Math.min(backups + 1, standIns.length));
        if (o.every((id) => leaving.has(id) || extra.includes(id))) {
          target = [...target, ...extra.filter((id) => !target.includes(id))];
          targetAlive = target.filter((id) => members[id] !== undefined);
        }
      }
    }
    if (o.length === 0) {
      if (prevOwners.length > 0 && !wasLost) {
        lostSet.add(p);
        if (!ignoring) {
          owners.push([]);
          syncing.push([]);
          continue;
        }
      }
      // Never held by anyone, or lost while IGNORE caches exist: nothing to transfer, the alive
      // target owners take it as is (empty). A lost partition with no target owner alive is
      // taken by its owners over the live members, so IGNORE caches are served at once.
      o = targetAlive.slice();
      if (o.length === 0 && lostSet.has(p) && aliveIds.length > 0) {
        fallback ??= rankedOwners(prev.partitions, backups, Object.entries(members).map(([id, m]) => specOf(id, m)), aliveIds);
        o = (fallback[p] ?? []).slice();
      }
      // A lost partition starting again empty: its counter (fencing tokens) must not go back.
      if (lostSet.has(p) && o.length > 0) floors[String(p)] = nextFloor(prev.floors?.[String(p)], now);
      s = [];
    }
    for (const id of targetAlive) {
      if (!o.includes(id) && !s.some((e) => e.id === id)) s.push({ id, since: version });
    }
    s = s.filter((e) => targetAlive.includes(e.id));
    o = [...target.filter((id) => o.includes(id)), ...o.filter((id) => !target.includes(id))];
    if (s.length === 0) {
      const inTarget = o.filter((id) => target.includes(id));
      if (inTarget.length > 0) o = inTarget;
    }
    // A leaving node hands primaryship to the first caught-up owner that is staying; it stays
    // an owner (last) so nothing it holds is lost until its lease is gone.
    // Not when a cache has fewer backups than the rank of the owner that would take over: that
    // owner holds none of its data, so the cache is lost there explicitly when the leaving node
    // goes (as with a kill), not served empty by a new primary.
    const key = String(p);
    // The rank whose caches an owner of the new list holds now: a fresh pull took everything; an
    // owner behind (and not yet caught up) holds what it held; any other its rank in `prev`.
    const heldBefore = (id: string): number => {
      if (!prevOwners.includes(id) || !stillMember(id)) return 0;
      const e = prev.behind?.[key]?.[id];
      const caught = e !== undefined && (leaseOf.get(id)?.caughtUp?.[key] ?? -1) >= e.since;
      return e !== undefined && !caught ? e.rank : rankIn(prev, id, p);
    };
    const firstStaying = leaving.size > 0 ? o.findIndex((id) => !leaving.has(id)) : -1;
    const takeover = firstStaying > 0 ? heldBefore(o[firstStaying]!) : 0;
    if (firstStaying >= 0 && o.length > 1 && (firstStaying === 0 || !handOffLoses(caches, takeover))) {
      o = [...o.filter((id) => !leaving.has(id)), ...o.filter((id) => leaving.has(id))];
    }
    // A step never moves a primaryship onto a leaving owner while the previous primary is still
    // an owner (ADR 0067): with no staying owner to take it, the order would otherwise go back to
    // the target's, handing it to a leaving node that may have handed off already and left the
    // replication targets, so its copy lacks writes the previous primary acknowledged since.
    const was = prevOwners[0];
    if (leaving.size > 0 && o.length > 1 && was !== undefined && o[0] !== was && leaving.has(o[0]!) && o.includes(was)) {
      o = [was, ...o.filter((id) => id !== was)];
    }
    // The primary must hold what the best holder holds: an order that puts ahead an owner which
    // dropped caches it was ranked below (a hand-off undone, a return to the target order) gives
    // primaryship to the owner holding the most instead. Deaths never need it (survivors keep
    // their order); lost caches are judged above, on what the owners that died held.
    if (perCacheDepth && o.length > 1) {
      const held = o.map(heldBefore);
      const best = Math.min(...held);
      if (held[0]! > best && caches.some((c) => c.backups >= best && c.backups < held[0]!)) {
        const i = held.indexOf(best);
        o = [o[i]!, ...o.slice(0, i), ...o.slice(i + 1)];
      }
    }
    // Owners ranked higher than what they hold (an owner before them died): behind until their
    // lease says they caught up. Not the primary: what it lacked is lost (or IGNOREd) now.
    if (perCacheDepth) {
      const ranked = { owners: [o], backups } as unknown as TopologyRecord;
      const nb: Record<string, { rank: number; since: number }> = {};
      for (const id of o.slice(1)) {
        const now = rankIn(ranked, id, 0);
        const held = heldBefore(id);
        if (now >= held || !caches.some((c) => c.backups >= now && c.backups < held)) continue;
        const old = prev.behind?.[key]?.[id];
        nb[id] = old !== undefined && old.rank === held ? old : { rank: held, since: version };
      }
      if (Object.keys(nb).length > 0) behind[key] = nb;
    }
    owners.push(o);
    syncing.push(s);
  }
  const lost = [...lostSet].sort((a, b) => a - b);

  const next: TopologyRecord = {
    clusterId: prev.clusterId,
    version,
    partitions: prev.partitions,
    backups,
    baseline,
    members,
    addresses,
    owners,
    syncing,
    lost,
    autoAdjust: prev.autoAdjust,
    adjust,
  };
  if (Object.keys(behind).length > 0) next.behind = behind;
  // A fence asked of one life stays until a later life of that node is a member (ADR 0065).
  for (const id of Object.keys(prev.fenced ?? {}).sort()) {
    const epoch = prev.fenced![id]!;
    const m = members[id];
    if (m === undefined || m.epoch === epoch) (next.fenced ??= {})[id] = epoch;
  }
  const departedIds = Object.keys(departed).sort();
  if (departedIds.length > 0) {
    next.departed = {};
    for (const id of departedIds) next.departed[id] = departed[id]!;
  }
  const lostNames = Object.keys(lostCaches).sort();
  if (lostNames.length > 0) {
    next.lostCaches = {};
    for (const n of lostNames) next.lostCaches[n] = lostCaches[n]!.sort((a, b) => a - b);
  }
  const floored = sortedFloors(floors);
  if (floored !== undefined) next.floors = floored;
  return sameButVersion(prev, next) ? null : next;
}

/**
 * The owners of partition p after the step when nothing but deaths moves it, or null when the
 * full rule must decide. That is when p is not lost, nobody pulls it, no owner is behind, and
 * the owners still members are its alive target owners in their order (or none of its target
 * owners is alive), none leaving; with per-cache depths (`perCacheDepth`), all of them still
 * members too. The full rule then keeps exactly those owners, in that order, asks nobody to pull,
 * marks nothing lost or behind, and so this returns them without it: the previous record's own
 * list when every owner stays (lists are never changed once in a record), else the survivors.
 */
function settledOwners(
  prev: TopologyRecord,
  p: number,
  prevOwners: string[],
  stillMember: (id: string) => boolean,
  perCacheDepth: boolean,
  leaving: ReadonlySet<string>,
  target: readonly string[],
  isMember: (id: string) => boolean,
): string[] | null {
  const prevSyncing = prev.syncing[p];
  if (prevSyncing === undefined || prevSyncing.length > 0 || prevOwners.length === 0) return null;
  if (prev.behind !== undefined && prev.behind[String(p)] !== undefined) return null;
  let kept: string[] = prevOwners;
  for (let i = 0; i < prevOwners.length; i++) {
    if (stillMember(prevOwners[i]!)) continue;
    // An owner died: with per-cache depths who is behind depends on it, so the full rule decides.
    if (perCacheDepth) return null;
    kept = prevOwners.filter(stillMember);
    break;
  }
  if (kept.length === 0) return null;
  if (leaving.size > 0) for (const id of kept) if (leaving.has(id)) return null;
  // The target owners that are alive, in order, against the owners kept.
  let k = 0;
  for (const id of target) {
    if (!isMember(id)) continue;
    if (kept[k] !== id) return null;
    k++;
  }
  return k === 0 || k === kept.length ? kept : null;
}

/** Floors in partition order (records compare as JSON), or undefined when there are none. */
function sortedFloors(floors: Record<string, number>): Record<string, number> | undefined {
  const keys = Object.keys(floors).sort((a, b) => Number(a) - Number(b));
  if (keys.length === 0) return undefined;
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = floors[k]!;
  return out;
}

/** True when `a` and `b` differ in nothing but their version: the same JSON with version 0. */
export function sameButVersion(a: TopologyRecord, b: TopologyRecord): boolean {
  return sameJson({ ...a, version: 0 }, { ...b, version: 0 });
}

/** The partition map handed to clients. */
export function partitionMapOf(rec: TopologyRecord): PartitionMap {
  const nodes: NodeInfo[] = [];
  const index = new Map<string, number>();
  const add = (id: string, alive: boolean): void => {
    if (index.has(id)) return;
    const m = rec.members[id];
    const a = m ?? rec.addresses[id];
    if (!a) return;
    const info: NodeInfo = { id, host: a.host, port: a.port, alive };
    if (a.zone !== undefined) info.zone = a.zone;
    index.set(id, nodes.length);
    nodes.push(info);
  };
  for (const id of Object.keys(rec.members)) add(id, true);
  for (const n of rec.baseline) add(n.id, false);
  const primaries = rec.owners.map((o) => {
    const first = o[0];
    return first === undefined ? -1 : (index.get(first) ?? -1);
  });
  return { version: rec.version, partitions: rec.partitions, backups: rec.backups, nodes, primaries };
}

/** True when no partition is being pulled. */
export function isSettled(rec: TopologyRecord): boolean {
  return rec.syncing.every((s) => s.length === 0);
}

/**
 * True when nothing is moving and every partition is held exactly by its alive target owners
 * over the baseline (lost partitions aside): the coordinator has nothing left to do.
 */
export function isBalanced(rec: TopologyRecord): boolean {
  if (!isSettled(rec)) return false;
  if (rec.baseline.length === 0) return true;
  const alive = Object.keys(rec.members);
  const a = computeAssignment({ partitions: rec.partitions, backups: rec.backups, baseline: rec.baseline, alive });
  const lost = new Set(rec.lost);
  for (let p = 0; p < rec.partitions; p++) {
    if (lost.has(p)) continue;
    const want = (a.owners[p] ?? []).filter((id) => rec.members[id] !== undefined);
    const have = rec.owners[p] ?? [];
    // No target owner alive: whoever still holds the partition keeps serving it.
    if (want.length === 0) continue;
    if (want.length !== have.length || want.some((id, i) => have[i] !== id)) return false;
  }
  return true;
}

/** Why a node is or is not safe to take down now (what its `/health/safe` answers). */
export interface NodeSafety {
  safe: boolean;
  /** Partitions it holds (or pulls) with fewer caught-up copies than the cluster wants. */
  underReplicated: number[];
  /** Partitions it holds (or pulls) that some node is pulling. */
  moving: number[];
  /**
   * Lost partitions of the cluster, and partitions lost for one cache alone: any makes every node
   * unsafe (data is already missing).
   */
  lost: number[];
}

/**
 * The members the topology asks to stop renewing (ADR 0065) under the epoch they are members
 * with: on their way out. An entry for an earlier life, or for a node that is no member, is none.
 */
export function fencedMembers(rec: TopologyRecord): ReadonlySet<string> {
  const out = new Set<string>();
  for (const [id, epoch] of Object.entries(rec.fenced ?? {})) if (rec.members[id]?.epoch === epoch) out.add(id);
  return out;
}

/** Copies a partition should have now: backups + 1, bounded by the alive baseline nodes. */
export function wantedCopies(rec: TopologyRecord): number {
  const aliveBaseline = rec.baseline.filter((n) => rec.members[n.id] !== undefined).length;
  return Math.min(rec.backups + 1, aliveBaseline);
}

/**
 * Safety of the partitions `holder` holds or pulls (every partition when omitted), from the
 * topology record alone: a partition is under-replicated when it has fewer caught-up owners than
 * `wantedCopies`, counting none for a member the topology asks to stop renewing (ADR 0065: on its
 * way out) and none short for an owner still behind its rank (per-cache backups); moving while
 * any node pulls it. Lost partitions (of the cluster, or of one cache alone) are in `lost` and in
 * neither list; any makes the verdict unsafe, since data is already missing.
 */
function scanSafety(rec: TopologyRecord, holder: string | undefined): NodeSafety {
  const want = wantedCopies(rec);
  const lostSet = new Set(rec.lost);
  const underReplicated: number[] = [];
  const moving: number[] = [];
  const fenced = fencedMembers(rec);
  for (let p = 0; p < rec.partitions; p++) {
    if (lostSet.has(p)) continue;
    const owners = rec.owners[p] ?? [];
    const syncing = rec.syncing[p] ?? [];
    if (holder !== undefined && !owners.includes(holder) && !syncing.some((e) => e.id === holder)) continue;
    const copies = fenced.size === 0 ? owners.length : owners.filter((o) => !fenced.has(o)).length;
    if (copies < want || rec.behind?.[String(p)] !== undefined) underReplicated.push(p);
    if (syncing.length > 0) moving.push(p);
  }
  const lost = lostAnywhere(rec);
  return { safe: underReplicated.length === 0 && moving.length === 0 && lost.length === 0, underReplicated, moving, lost };
}

/** Safety of the partitions `id` holds or pulls (what its `/health/safe` judges; `scanSafety`). */
export function nodeSafety(rec: TopologyRecord, id: string): NodeSafety {
  return scanSafety(rec, id);
}

/** Safety of every partition, seen cluster-wide: the union of every node's `nodeSafety`. */
export function clusterSafety(rec: TopologyRecord): NodeSafety {
  return scanSafety(rec, undefined);
}

/**
 * True when the coordinator will not hand p's primaryship over from `id` while it stops
 * gracefully: every other owner is stopping too (the record's members say `leaving`, ADR 0067:
 * nobody staying could take it), or the first owner that stays holds, at best, the caches of its
 * rank, and some cache keeps fewer backups than that, so it holds none of that cache's data here
 * (ADR 0038). The node stays primary until its lease is gone; a graceful stop need not wait for
 * a hand-off that will not come. (The coordinator judges on what the owner holds, never better
 * than its rank, and on leases that say `leaving` at least as soon as the record does: this
 * answers true only when it certainly refuses.) False when `id` is p's only owner: there is
 * nobody to refuse.
 */
export function handOffRefused(rec: TopologyRecord, p: number, id: string, caches: readonly CacheRule[]): boolean {
  const others = (rec.owners[p] ?? []).filter((x) => x !== id);
  if (others.length === 0) return false;
  const next = others.find((x) => rec.members[x]?.leaving !== true);
  return next === undefined || handOffLoses(caches, rankIn(rec, next, p));
}

/**
 * The graceful hand-off rule (ADR 0038): handing primaryship to an owner that holds the caches of
 * rank `held` would lose every cache keeping fewer backups than that, so it is not done.
 */
function handOffLoses(caches: readonly CacheRule[], held: number): boolean {
  return caches.some((c) => c.backups < held);
}

/**
 * A member `id` stopping gracefully may go on this record: no partition it leads has another
 * owner it would be handed to (`handOffRefused` answers which are not), and no copy of its own is
 * still needed (`soleCopiesMoving`). What `GridNode` waits for, and what the models test.
 */
export function handOffDone(rec: TopologyRecord, id: string, caches: readonly CacheRule[]): boolean {
  for (let p = 0; p < rec.partitions; p++) {
    const o = rec.owners[p] ?? [];
    if (o[0] === id && o.length > 1 && !handOffRefused(rec, p, id, caches)) return false;
  }
  return soleCopiesMoving(rec, id).length === 0;
}

/**
 * Partitions of which `id` holds the only caught-up copy while the record wants that copy
 * elsewhere (a node is pulling it, or `id` is no longer one of its alive target owners over the
 * baseline), or holds a copy while every other owner is stopping too (`leaving`) and a node pulls
 * it (ADR 0067): stopping `id` now would lose them. A graceful stop waits for this to be empty.
 */
export function soleCopiesMoving(rec: TopologyRecord, id: string): number[] {
  const alive = Object.keys(rec.members);
  const a = rec.baseline.length > 0 ? computeAssignment({ partitions: rec.partitions, backups: rec.backups, baseline: rec.baseline, alive }) : null;
  const out: number[] = [];
  for (let p = 0; p < rec.partitions; p++) {
    const owners = rec.owners[p] ?? [];
    if (!owners.includes(id)) continue;
    const pulled = (rec.syncing[p]?.length ?? 0) > 0;
    if (owners.length > 1) {
      // Every other owner is stopping too while a staying node pulls the partition (ADR 0067):
      // the copies that are there all go, so wait for the pull.
      if (pulled && owners.every((x) => x === id || rec.members[x]?.leaving === true)) out.push(p);
      continue;
    }
    const targetAlive = (a?.owners[p] ?? []).filter((x) => rec.members[x] !== undefined);
    if (pulled || (targetAlive.length > 0 && !targetAlive.includes(id))) out.push(p);
  }
  return out;
}

/** Every partition lost for some cache: lost partitions and those lost for one cache alone. */
export function lostAnywhere(rec: TopologyRecord): number[] {
  const all = new Set(rec.lost);
  for (const ps of Object.values(rec.lostCaches ?? {})) for (const p of ps) all.add(p);
  return [...all].sort((a, b) => a - b);
}

/**
 * The record with the loss of these partitions (all when omitted) accepted: they leave `lost`
 * and every cache's `lostCaches`, and are served again by their owners (empty for what was lost).
 */
export function withLossAccepted(rec: TopologyRecord, partitions?: readonly number[], now = Date.now()): TopologyRecord {
  const gone = (p: number): boolean => partitions === undefined || partitions.includes(p);
  const next: TopologyRecord = { ...rec, lost: rec.lost.filter((p) => !gone(p)) };
  // Served again empty: the new copies' counters start above the lost ones' (ADR 0049). Not a
  // partition that already has owners (fresh ones for IGNORE caches, floored then): a floor must
  // never be above a counter a copy holds.
  const floors: Record<string, number> = { ...rec.floors };
  for (const p of rec.lost) if (gone(p) && (rec.owners[p]?.length ?? 0) === 0) floors[String(p)] = nextFloor(rec.floors?.[String(p)], now);
  const floored = sortedFloors(floors);
  if (floored !== undefined) next.floors = floored;
  delete next.lostCaches;
  for (const [name, ps] of Object.entries(rec.lostCaches ?? {})) {
    const left = ps.filter((p) => !gone(p));
    if (left.length > 0) (next.lostCaches ??= {})[name] = left;
  }
  return next;
}
