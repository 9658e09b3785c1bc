/**
 * The coordinator's step as it was before it was made cheaper at large partition counts (ADR
 * 0003, amendment on step cost): `initialTopology`, `nextTopology` and `coordinatorStep` with
 * what they used, copied verbatim, for `topology-oracle.test.ts` to hold the optimised functions
 * to. Test only, and never changed to follow the source: it defines the results the step must
 * keep giving. Changed only where a result was changed on purpose, each marked with its ADR
 * (0067: a member whose lease says `leaving` carries the flag in the record, and members that
 * stay stand in for a partition whose every alive target owner is leaving).
 */
import { computeAssignment, rankOwners, type NodeSpec } from '@gridlink/affinity';
import { DEFAULT_AUTO_ADJUST, type AutoAdjustPolicy, type CacheRule, type LeaseRecord, type MemberInfo, type SyncEntry, type TopologyRecord } from '../../src/control/topology.js';

/**
 * The counter floor of a partition starting again empty at `now` (ms, the writer's clock): the
 * wall clock times 1024, so above any counter the lost copies could have reached unless the
 * partition averaged over a million updates a second since its last floor; and at least 2^32
 * above the previous floor, should the writer's clock be behind (ADR 0049).
 */
export function nextFloor(previous: number | undefined, now: number): number {
  return Math.max(Math.floor(now) * 1024, (previous ?? 0) + 2 ** 32);
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

/** The ranking depth the assignment must carry for these caches over a cluster default. */
export function rankingDepth(clusterBackups: number, caches: readonly CacheRule[]): number {
  let d = clusterBackups;
  for (const c of caches) if (c.backups > d) d = c.backups;
  return d;
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
    // The one deliberate change of result since the copy (ADR 0067): members carry the flag.
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
  const assignment = baseline.length > 0 ? computeAssignment({ partitions: prev.partitions, backups, baseline, alive: aliveIds }) : null;
  const lostSet = new Set(prev.lost);
  // Per-cache depth matters only when some cache keeps fewer backups than the ranking.
  const perCacheDepth = caches.some((c) => c.backups < backups);
  const behind: Record<string, Record<string, { rank: number; since: number }>> = {};
  let fallback: ReturnType<typeof computeAssignment> | null = null;
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
    let target: readonly string[] = assignment?.owners[p] ?? [];
    let targetAlive = target.filter((id) => members[id] !== undefined);
    // ADR 0067 (a deliberate change of result): when every alive target owner is leaving, the
    // first members that stay (ranked for p, backups + 1 of them) are targets too, while only
    // leaving owners and those stand-ins hold p.
    if (leaving.size > 0 && o.some((id) => leaving.has(id)) && targetAlive.every((id) => leaving.has(id))) {
      const stayingSpecs = Object.entries(members)
        .filter(([id]) => !leaving.has(id))
        .map(([id, m]) => specOf(id, m));
      if (stayingSpecs.length > 0) {
        const extra = rankOwners(p, stayingSpecs).slice(0, Math.min(backups + 1, stayingSpecs.length));
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
        fallback ??= computeAssignment({ partitions: prev.partitions, backups, baseline: Object.entries(members).map(([id, m]) => specOf(id, m)), alive: aliveIds });
        o = (fallback.owners[p] ?? []).slice();
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
    if (firstStaying >= 0 && o.length > 1 && (firstStaying === 0 || !caches.some((c) => c.backups < takeover))) {
      o = [...o.filter((id) => !leaving.has(id)), ...o.filter((id) => leaving.has(id))];
    }
    // ADR 0067 (a deliberate change of result): a step never moves a primaryship onto a leaving
    // owner while the previous primary is still an owner.
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
  return sameTopology(prev, next) ? null : next;
}

/** Floors in partition order (records compare as JSON), or undefined when there are none. */
function sortedFloors(floors: Record<string, number>): Record<string, number> | undefined {
  const keys = Object.keys(floors).sort((a, b) => Number(a) - Number(b));
  if (keys.length === 0) return undefined;
  const out: Record<string, number> = {};
  for (const k of keys) out[k] = floors[k]!;
  return out;
}

function sameTopology(a: TopologyRecord, b: TopologyRecord): boolean {
  const strip = (r: TopologyRecord): string => JSON.stringify({ ...r, version: 0 });
  return strip(a) === strip(b);
}


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
    owners ??= next.owners.map((x) => x.slice());
    owners[p] = [was, ...o.filter((id) => id !== was)];
  }
  return owners === null ? next : { ...next, owners };
}

/** True when `a` and `b` differ in nothing but their version (the step changed nothing). */
export function sameButVersion(a: TopologyRecord, b: TopologyRecord): boolean {
  return JSON.stringify({ ...a, version: 0 }) === JSON.stringify({ ...b, version: 0 });
}
