/**
 * Observation of the other nodes' leases and the coordinator loop: the alive node with the
 * lowest id judges liveness from lease revisions (a lease is alive while a new revision was seen
 * within leaseMs on this node's clock, not counting time in which this node could not see its own
 * renewals: see `LivenessClock`) and moves the topology record on, through the pure
 * `nextTopology`, with compare-and-set on its revision. A lease under an epoch the topology has
 * dropped never counts again (ADR 0039).
 */
import type { CacheConfig } from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import { LEASE_PREFIX, TOPOLOGY_KEY } from '../control/keys.js';
import { leaseProblem } from '../control/records.js';
import type { ControlPlane, KvEvent } from '../control/kv.js';
import { adjustDue, cacheRules, fencedMembers, inertCacheRules, initialTopology, rankingDepth, type CacheRule, type LeaseRecord, type TopologyRecord } from '../control/topology.js';
import { CasConflictError } from '../errors.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import { coordinatorStep } from './handback.js';
import { LateNodes, LeaseReads, LivenessClock } from './liveness.js';
import { admissionHeld, pairKey, reachFence, reachedAgain, reportedPairs, reportersOf, soleHolderOf, type ReachDecision } from './reach-fence.js';
import { StepBasis } from './step-basis.js';
import type { ClusterView } from './view.js';

export interface CoordinatorDeps {
  readonly id: string;
  readonly opts: ResolvedNodeOptions;
  readonly kv: ControlPlane;
  readonly log: Logger;
  readonly life: Lifecycle;
  readonly view: ClusterView;
  /**
   * This node's last acknowledged renewal has not run out. The other nodes then see its lease
   * alive and, as the lowest id, defer to it: it must coordinate even while, after a lapse, it
   * does not trust its lease to serve until it re-read the topology (ADR 0066).
   */
  renewed(): boolean;
  applyTopology(rec: TopologyRecord): void;
  refreshTopology(): Promise<void>;
  /**
   * The cache registry (backups and loss policy per cache); none when absent. The same array
   * while the rules are the same: the coordinator serialises them again only when it changes.
   */
  caches?(): readonly CacheRule[];
  /**
   * The control plane acknowledged this node's own renewals all through [from, to] (ADR 0066).
   * Without it, leases are never read directly: a blind coordinator judges nobody.
   */
  acceptedThroughout?(from: number, to: number): boolean;
}

const NO_CACHES: readonly CacheRule[] = Object.freeze([]);

/** What the coordinator's cache rules are made of: the caches this node knows (NodeStore). */
export interface CacheRegistry {
  /** Moves on whenever a cache is configured with a config it did not have. */
  readonly explicitVersion: number;
  /** Moves on whenever an implicit cache is created or forgotten. */
  readonly implicitVersion: number;
  explicitCacheConfigs(): Iterable<[string, CacheConfig]>;
  /** Every cache known: the configured ones and the implicit ones held. */
  cacheConfigs(): Iterable<[string, CacheConfig]>;
  /** The distinct configs of the implicit caches held. */
  implicitCacheKinds(): Iterable<CacheConfig>;
}

/**
 * The coordinator's cache rules, rebuilt only when a cache's config changed, and the same array
 * while none did. The configured caches always count. The implicit ones (created by first use,
 * forgotten when empty: ADR 0014) count only when their config matters to the topology (it asks
 * for another depth than the ranking's, or IGNOREs losses; `inertCacheRules`); with the default
 * `cacheDefaults` they do not, so implicit caches coming and going cost the coordinator nothing.
 */
export class CacheRuleBook {
  private explicit: readonly CacheRule[] = NO_CACHES;
  private explicitAt = -1;
  private kinds: CacheRule[] = [];
  private kindsAt = -1;
  private all: readonly CacheRule[] = NO_CACHES;
  private allAt = '';

  constructor(
    private readonly registry: CacheRegistry,
    private readonly clusterBackups: number,
  ) {}

  /** The rules for a step from a record ranked `depth` deep (its `backups`; the cluster's before any). */
  rules(depth: number): readonly CacheRule[] {
    const r = this.registry;
    if (this.explicitAt !== r.explicitVersion) {
      this.explicit = cacheRules(r.explicitCacheConfigs(), this.clusterBackups);
      this.explicitAt = r.explicitVersion;
    }
    if (this.kindsAt !== r.implicitVersion) {
      this.kinds = cacheRules([...r.implicitCacheKinds()].map((c): [string, CacheConfig] => ['', c]), this.clusterBackups);
      this.kindsAt = r.implicitVersion;
    }
    if (inertCacheRules(this.kinds, depth, this.explicit)) return this.explicit;
    const at = `${r.explicitVersion}|${r.implicitVersion}`;
    if (this.allAt !== at) {
      this.all = cacheRules(r.cacheConfigs(), this.clusterBackups);
      this.allAt = at;
    }
    return this.all;
  }
}

export class Coordinator {
  private readonly observed = new Map<string, { lease: LeaseRecord; revision: number; seenAt: number }>();
  /** Per lease key, the newest revision seen (put or delete): an older one is no news. */
  private readonly newest = new Map<string, number>();
  private lastTick = 0;
  private busy = false;
  /** What the last step was computed from (null: none, or it failed: step at the next tick). */
  private basis: StepBasis | null = null;
  /** Steps computed (each walks every partition): diagnostics and tests. */
  steps = 0;
  /** The cache rules last seen and their serialised form (made again only when they change). */
  private lastCaches: readonly CacheRule[] | null = null;
  private lastCachesJson = '';
  /** Judges nobody while this node's own renewals are not seen (control plane down, watch gap). */
  private readonly liveness: LivenessClock;
  /** Nodes late with their renewals that answer over the grid, kept a while (ADR 0062). */
  readonly late: LateNodes;
  /** Per node, the epoch of the newest lease seen and when a lease of it was first seen. */
  private readonly lives = new Map<string, { epoch: string; since: number }>();
  /** Leases read directly while the watch cannot be trusted (ADR 0066). */
  private readonly reads: LeaseReads;
  /** Lease reads in flight, and when each node's lease was last read. */
  private readonly reading = new Set<string>();
  private readonly readAt = new Map<string, number>();
  /** The fences this coordinator asked, with the members whose reports they rested on (ADR 0065). */
  private readonly fencedOn = new Map<string, { epoch: string; by: string[] }>();
  /** Since when each pair of members cannot reach each other, as reported, by `pairKey` (ADR 0065). */
  private readonly pairsSince = new Map<string, { pair: readonly [string, string]; since: number }>();
  /** Later lives of fenced nodes held back for what they report (logged once per spell, ADR 0065). */
  private readonly held = new Set<string>();

  constructor(private readonly d: CoordinatorDeps) {
    const { leaseMs, renewIntervalMs } = d.opts;
    this.liveness = new LivenessClock(leaseMs, leaseMs / 2, Date.now(), renewIntervalMs * 1.5);
    // An answer to a probe counts for half a lease; kept up to two leases past the lease (a
    // reconnect to another nats-server takes well under that, ADR 0061).
    this.late = new LateNodes(leaseMs, leaseMs / 2, 2 * leaseMs);
    this.reads = new LeaseReads();
  }

  /** Seeds the observations with the leases listed at start. */
  async load(): Promise<void> {
    const now = Date.now();
    for (const e of await this.d.kv.list<LeaseRecord>(LEASE_PREFIX)) {
      const id = e.key.slice(LEASE_PREFIX.length);
      if (!this.isNews(id, e.revision)) continue;
      if (this.malformedLease(id, e.value)) continue;
      this.observed.set(id, { lease: e.value, revision: e.revision, seenAt: now });
      this.lives.set(id, { epoch: e.value.epoch, since: now });
    }
  }

  /**
   * Records `revision` as the newest of `id`'s lease key; false when it is not newer than one
   * already seen (the listing at start overlaps the watch, a watch may deliver a revision again):
   * such a value must neither count as a renewal nor replace a newer one.
   */
  private isNews(id: string, revision: number): boolean {
    if (revision <= (this.newest.get(id) ?? 0)) return false;
    this.newest.set(id, revision);
    return true;
  }

  /** Ids whose last lease record could not be read, each logged once. */
  private readonly malformed = new Set<string>();

  private malformedLease(id: string, value: unknown): boolean {
    const problem = leaseProblem(value, id);
    if (problem === null) {
      this.malformed.delete(id);
      return false;
    }
    if (!this.malformed.has(id)) this.d.log.error('ignoring a malformed lease record in the control plane', { id, problem });
    this.malformed.add(id);
    return true;
  }

  /** Starts the clock of the loop (the first tick judges nobody stalled). */
  started(): void {
    this.lastTick = Date.now();
    this.liveness.reset(this.lastTick);
  }

  onLeaseEvent(e: KvEvent<LeaseRecord>): void {
    const id = e.key.slice(LEASE_PREFIX.length);
    if (!this.isNews(id, e.revision)) return;
    // A lease record that cannot be read is no renewal: the last good one stands and ages as usual
    // (a live node's next renewal replaces it; a dead node's lease runs out).
    if (e.type === 'put' && this.malformedLease(id, e.value)) return;
    // A renewal of an epoch the topology already dropped replaces nothing (ADR 0039): a request
    // of a life that is over can reach the control plane late (a hung NATS server applies what it
    // had buffered when it resumes, ADR 0061), after the node's new life renewed. Taken as the
    // newest, it evicted the new life at the next step, and with it gone from `departed` the old
    // epoch counted as alive again and became a member.
    if (e.type === 'put' && this.d.view.topo?.departed?.[id] === e.value.epoch) return;
    this.reads.watched(id, e.revision);
    if (e.type === 'delete') this.observed.delete(id);
    else {
      const now = Date.now();
      this.renewals.set(id, now);
      const wasLeaving = this.observed.get(id)?.lease.leaving === true;
      this.observed.set(id, { lease: e.value, revision: e.revision, seenAt: now });
      if (this.lives.get(id)?.epoch !== e.value.epoch) this.lives.set(id, { epoch: e.value.epoch, since: now });
      if (id === this.d.id) this.liveness.ownRenewalSeen(now);
      // A node started its graceful stop: move its primaryships now, not at the next tick.
      if (e.value.leaving === true && !wasLeaving) void this.tick();
    }
  }

  /**
   * ADR 0062: counts as alive the members past their lease that answered this node's probes
   * (`PeerReach`, fed to `late`) recently from the same epoch with the current topology, within
   * the grace.
   */
  private keepAnswering(late: readonly { lease: LeaseRecord; age: number }[], alive: LeaseRecord[], now: number): void {
    const { view, opts, log } = this.d;
    const topo = view.topo;
    if (topo === null) return;
    const kept = new Set<string>();
    const aliveIds = new Set(alive.map((l) => l.id));
    for (const { lease, age } of late) {
      const id = lease.id;
      if (topo.members[id]?.epoch !== lease.epoch) continue;
      // A node asked to stop renewing (ADR 0065) answers its peers on purpose: no grace for it.
      const fenced = topo.fenced?.[id] === lease.epoch;
      if (!fenced && this.late.vouched(id, lease.epoch, age, topo.version, now)) {
        kept.add(id);
        if (!this.keptOnAnswers.has(id)) {
          log.info('lease renewals late, but the node answers over the grid: kept a member for now', { node: id, epoch: lease.epoch, lateMs: Math.round(age), upToMs: opts.leaseMs + this.late.graceMs });
        }
        alive.push(lease);
      } else if (this.late.answering(id, lease.epoch, now)) {
        // Past the grace, or the topology moved on without it: dropped, unless it holds the only
        // copy of a partition among the nodes alive (another owner died meanwhile). Dropping it
        // would lose that partition; kept, the partition waits for it to reach the control plane.
        const only = soleHolderOf(topo, id, aliveIds);
        if (only === 0) continue;
        kept.add(id);
        if (!this.keptOnAnswers.has(id) || now - this.soleLoggedAt >= 10_000) {
          this.soleLoggedAt = now;
          log.warn('node cannot renew its lease but answers over the grid and holds the only copy of partitions: kept a member', { node: id, epoch: lease.epoch, lateMs: Math.round(age), partitions: only });
        }
        alive.push(lease);
      }
    }
    for (const id of this.keptOnAnswers) {
      if (!kept.has(id)) log.info('no longer kept on answers', { node: id, renewing: alive.some((l) => l.id === id) });
    }
    this.keptOnAnswers = kept;
    this.late.retain((id) => this.observed.has(id));
  }

  /** When a renewal of each id was last seen arriving (not reset by a stall, unlike `seenAt`). */
  private readonly renewals = new Map<string, number>();

  /** When this node last saw `id`'s lease renewed through its watch (ADR 0063). */
  renewalSeenAt(id: string): number | undefined {
    return this.renewals.get(id);
  }

  /** When the last renewal of `id` was seen arriving, if it was a renewal under `epoch`. */
  renewalSeenUnder(id: string, epoch: string): number | undefined {
    return this.observed.get(id)?.lease.epoch === epoch ? this.renewals.get(id) : undefined;
  }

  /** Nodes currently kept a member on their answers (logged once per spell). */
  private keptOnAnswers = new Set<string>();
  private soleLoggedAt = 0;

  /**
   * ADR 0065: takes out of `alive` the later lives of fenced nodes not to be admitted yet (see
   * `admissionHeld`): a new life of a node cut off from a member would be fenced again at once.
   */
  private holdBack(alive: LeaseRecord[], now: number): void {
    const topo = this.d.view.topo;
    if (topo?.fenced === undefined) {
      this.held.clear();
      return;
    }
    const memberIds = new Set(alive.filter((l) => topo.members[l.id]?.epoch === l.epoch).map((l) => l.id));
    const holdMs = 2 * this.d.opts.leaseMs;
    const held = new Set<string>();
    for (let i = alive.length - 1; i >= 0; i--) {
      const l = alive[i]!;
      const life = this.lives.get(l.id);
      const forMs = life !== undefined && life.epoch === l.epoch ? now - life.since : 0;
      if (!admissionHeld(topo, l, forMs, memberIds, holdMs)) continue;
      held.add(l.id);
      alive.splice(i, 1);
      if (forMs >= holdMs && !this.held.has(l.id)) {
        this.held.add(l.id);
        this.d.log.warn('node cannot reach members that renew; not admitted until it can', { node: l.id, epoch: l.epoch, unreachable: l.unreachable ?? [] });
      }
    }
    for (const id of [...this.held]) {
      if (held.has(id)) continue;
      this.held.delete(id);
      this.d.log.info('node reaches every member again: admitted', { node: id });
    }
  }

  /**
   * ADR 0066: reads every other node's lease key (one read in flight per node, at most one per
   * renewal interval); `reads` learns from the answers which leases stopped changing.
   */
  private readLeases(now: number): void {
    for (const id of this.observed.keys()) {
      if (id === this.d.id || this.reading.has(id) || now - (this.readAt.get(id) ?? 0) < this.d.opts.renewIntervalMs) continue;
      this.reading.add(id);
      this.readAt.set(id, now);
      const startedAt = Date.now();
      void Promise.resolve()
        .then(() => this.d.kv.get<LeaseRecord>(LEASE_PREFIX + id))
        .then(
          (e) => {
            this.reading.delete(id);
            if (e !== null) this.reads.answered(id, e.revision, startedAt, Date.now());
          },
          () => this.reading.delete(id),
        );
    }
    for (const id of this.readAt.keys()) if (!this.observed.has(id)) this.readAt.delete(id);
  }

  async tick(): Promise<void> {
    const { opts, view, kv, log } = this.d;
    const now = Date.now();
    if (now - this.lastTick > opts.leaseMs / 2) {
      // This process stalled: what we observed is stale, so judge nobody dead on it.
      for (const o of this.observed.values()) o.seenAt = now;
    }
    this.lastTick = now;
    // Our own renewals do not come back: we cannot see anybody's through the watch, so judge
    // nobody on it (ADR 0007); and for two leases after every lease's count restarted, a node
    // that died meanwhile is not judged by it yet. Then leases are read directly (ADR 0066).
    const blind = !this.liveness.canJudge(now);
    const accepted = this.d.acceptedThroughout?.bind(this.d);
    const restarted = this.liveness.restartedAt;
    if (accepted !== undefined && (blind || (restarted > 0 && now - restarted < 2 * opts.leaseMs))) this.readLeases(now);
    this.reads.retain((id) => this.observed.has(id));
    const readOut = (id: string): number => (accepted === undefined || id === this.d.id ? 0 : this.reads.silentFor(id, accepted));
    // A lease under an epoch the topology already dropped is no node at all (ADR 0039): a dead
    // node's lease stays in the control plane, and a stall or a blind spell counts it afresh.
    const departed = view.topo?.departed ?? {};
    if (blind && ![...this.observed.values()].some((o) => departed[o.lease.id] !== o.lease.epoch && readOut(o.lease.id) >= opts.leaseMs)) return;
    if (this.busy || (this.d.life.state !== 'running' && this.d.life.state !== 'stopping') || !this.d.renewed()) return;
    const alive: LeaseRecord[] = [];
    const late: { lease: LeaseRecord; age: number }[] = [];
    for (const o of this.observed.values()) {
      if (departed[o.lease.id] === o.lease.epoch) continue;
      // Blind, only the reads say anything: every lease counts as alive unless they show it ran out.
      const silent = readOut(o.lease.id);
      const age = Math.max(blind ? 0 : this.liveness.age(o.seenAt, now), silent >= opts.leaseMs ? silent : 0);
      if (age <= opts.leaseMs) alive.push(o.lease);
      else if (o.lease.id !== this.d.id) late.push({ lease: o.lease, age });
    }
    // The coordinator is the lowest id among the leases alive: a node kept on its answers alone
    // may be cut off from the control plane, where it could write nothing.
    const ids = alive.map((l) => l.id).sort();
    if (ids[0] !== this.d.id) return;
    if (late.length > 0) this.keepAnswering(late, alive, now);
    this.holdBack(alive, now);
    this.busy = true;
    try {
      if (view.topo === null) {
        const existing = await kv.get<TopologyRecord>(TOPOLOGY_KEY);
        if (existing) {
          view.topoRevision = existing.revision;
          this.d.applyTopology(existing.value);
          return;
        }
        if (alive.length < opts.bootstrapNodes) return;
        const rec = initialTopology({
          clusterId: opts.clusterId,
          partitions: opts.partitions,
          // Caches registered before the cluster formed may ask for more backups than the cluster.
          backups: rankingDepth(opts.backups, this.d.caches?.() ?? NO_CACHES),
          leases: alive,
          autoAdjust: opts.autoAdjust,
        });
        await kv.create(TOPOLOGY_KEY, rec);
        log.info('cluster created', { nodes: alive.map((l) => l.id).sort(), partitions: rec.partitions });
        return;
      }
      if (view.topoMalformed) {
        // The newest record could not be read (every node ignored it): write the last good one
        // again over it, one version on, so that the record is readable and moves on from there.
        await kv.update(TOPOLOGY_KEY, { ...view.topo, version: view.topo.version + 1 }, view.topoRevision);
        log.warn('rewrote the topology record over a malformed one', { version: view.topo.version + 1 });
        return;
      }
      // Members that cannot reach each other while both renew (ADR 0065): ask one to stop renewing.
      const reported = reportedPairs(view.topo, alive);
      const keys = new Set(reported.map(pairKey));
      for (const k of this.pairsSince.keys()) if (!keys.has(k)) this.pairsSince.delete(k);
      for (const pair of reported) if (!this.pairsSince.has(pairKey(pair))) this.pairsSince.set(pairKey(pair), { pair, since: now });
      const settled = reported.filter((p) => now - this.pairsSince.get(pairKey(p))!.since >= opts.leaseMs);
      for (const [id, f] of this.fencedOn) if (view.topo.members[id]?.epoch !== f.epoch || view.topo.fenced?.[id] !== f.epoch) this.fencedOn.delete(id);
      let reach: ReachDecision = reachFence(view.topo, alive, settled);
      if (reach === null) {
        // A fence under way whose reporters no longer report it: the cut healed before its lease ran out.
        for (const id of fencedMembers(view.topo)) {
          const asked = this.fencedOn.get(id);
          if (asked !== undefined && reachedAgain(id, asked.by, alive)) reach = { kind: 'withdraw', id, reason: 'reached again' };
        }
      }
      if (reach !== null) {
        const fenced = { ...view.topo.fenced };
        if (reach.kind === 'fence') fenced[reach.id] = reach.epoch;
        else delete fenced[reach.id];
        const next: TopologyRecord = { ...view.topo, version: view.topo.version + 1 };
        if (Object.keys(fenced).length > 0) next.fenced = fenced;
        else delete next.fenced;
        await kv.update(TOPOLOGY_KEY, next, view.topoRevision);
        if (reach.kind === 'fence') {
          this.fencedOn.set(reach.id, { epoch: reach.epoch, by: reportersOf(reach.id, alive) });
          log.warn('members cannot reach each other over the grid while both renew their leases: asked one to stop renewing', { node: reach.id, epoch: reach.epoch, pairs: reach.pairs.map((p) => p.join('<->')) });
        } else {
          this.fencedOn.delete(reach.id);
          // Its own last report is as old as its last renewal: its pairs count again only once
          // reported for a whole lease from now (else the stale report fenced it again at once).
          for (const [k, { pair }] of this.pairsSince) if (pair.includes(reach.id)) this.pairsSince.delete(k);
          if (reach.reason === 'sole holder') log.warn('withdrew the request to stop renewing: the node now holds the only copy of partitions', { node: reach.id });
          else log.info('withdrew the request to stop renewing: the members that reported the node unreachable reach it again', { node: reach.id });
        }
        return;
      }
      // Skip the step when nothing it depends on changed (renewals alone change nothing). While
      // an auto-adjust is pending the step depends on the time too: it is skipped then only if
      // the last one, on exactly these inputs, found nothing to write, and until the adjust is
      // due (before that, the same inputs give the same nothing).
      const caches = this.d.caches?.() ?? NO_CACHES;
      if (caches !== this.lastCaches) {
        this.lastCaches = caches;
        this.lastCachesJson = JSON.stringify(caches);
      }
      const basis = this.basis;
      const same = basis === null ? 'changed' : basis.compare(view.topo.version, this.lastCachesJson, alive);
      if (same !== 'changed' && (view.topo.adjust === null || (same === 'same' && basis!.empty && !adjustDue(view.topo.adjust, view.topo.autoAdjust, now)))) return;
      const stepping = new StepBasis(view.topo.version, this.lastCachesJson, alive);
      this.basis = stepping;
      this.steps++;
      // A planned change of primary waits until the new primary is caught up on everything,
      // then happens for all its partitions in one step (ADR 0037).
      const next = coordinatorStep(view.topo, alive, now, caches);
      stepping.empty = next === null;
      if (next === null) return;
      await kv.update(TOPOLOGY_KEY, next, view.topoRevision);
    } catch (err) {
      this.basis = null;
      if (err instanceof CasConflictError) {
        // Someone moved the topology on: re-read it (a failed read is retried by the next tick).
        await this.d.refreshTopology().catch((e: unknown) => log.warn('coordinator could not re-read the topology', { err: String(e) }));
      } else log.warn('coordinator write failed', { err: String(err) });
    } finally {
      this.busy = false;
    }
  }
}
