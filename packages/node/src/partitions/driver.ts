/**
 * Feeds the replica state machine and performs the actions it returns: the one place where a
 * replica's transitions meet the store, the lease, state transfer and the fence.
 */
import type { ResolvedNodeOptions } from '../config.js';
import { heldLossDepth, heldRankIn, type TopologyRecord } from '../control/topology.js';
import type { Logger } from '../logger.js';
import type { ClusterView } from '../membership/view.js';
import type { NodeMetrics } from '../metrics.js';
import { joinSnapshots, type NodeStore, type PartitionSnapshot } from '../store/index.js';
import { holds, missesCaches, rankOf, recordForRank } from './depth.js';
import { step, type ReplicaEvent } from './replica.js';
import type { PartitionTable, PartState } from './table.js';

const INSTALLED: ReplicaEvent = Object.freeze({ type: 'snapshot-installed' });
const GAP_DETECTED: ReplicaEvent = Object.freeze({ type: 'gap-detected' });

export interface ReplicaDriverDeps {
  readonly store: NodeStore;
  readonly metrics: NodeMetrics;
  readonly table: PartitionTable;
  readonly view: ClusterView;
  /** Partitions reported synced in the lease, with the topology version they were pulled at. */
  synced(): Record<string, number>;
  /** Partitions reported caught up with their rank in the lease (per-cache backups). */
  caughtUp(): Record<string, number>;
  topologyVersion(): number;
  /** Queue a state transfer of p. */
  enqueuePull(p: number): void;
  startFence(p: number, st: PartState, fenceId: number): void;
  /** The lease content changed: write it soon. */
  scheduleLeaseWrite(): void;
  readonly opts: ResolvedNodeOptions;
  readonly log: Logger;
  /** Push a snapshot of p to these targets before the next acknowledgement (ranked higher now). */
  resync?(p: number, ids: string[]): void;
  /** When member `id` last answered this node's "are you alive?" under `epoch` (Date.now() ms; undefined: unknown). */
  lastHeard?(id: string, epoch: string): number | undefined;
}

/**
 * How long partition p of a promotion had no primary that could serve it, as far as this node
 * can tell (ADR 0072): since its previous primary last answered this node under the epoch it was
 * primary with, when that life left the members (died, hung, cut off, restarted); 0 when it lives
 * on under the same epoch (a hand-off, a rebalance: it served until now), when it was this node,
 * or when nothing is known of it.
 */
export function pausedFor(prev: TopologyRecord, rec: TopologyRecord, p: number, self: string, lastHeard: (id: string, epoch: string) => number | undefined, now: number): number {
  const was = previousPrimary(prev, p, self);
  if (was === null || rec.members[was.id]?.epoch === was.epoch) return 0;
  // Under the epoch it was primary with: restarted under the same id, it answers as a new node.
  const heard = lastHeard(was.id, was.epoch);
  return heard === undefined ? 0 : Math.max(0, now - heard);
}

/** The primary of p in `prev` and the epoch it had there; null when none, or when it was `self`. */
function previousPrimary(prev: TopologyRecord, p: number, self: string): { id: string; epoch: string } | null {
  const id = (prev.owners[p] ?? [])[0];
  if (id === undefined || id === self) return null;
  const epoch = prev.members[id]?.epoch;
  return epoch === undefined ? null : { id, epoch };
}

/**
 * The previous primary of p when `rec` dropped it from p's owners while it stays a member under
 * the same epoch: it is alive and, until its own view reaches `rec`, still serves p as primary
 * (ADR 0068). Null otherwise: it is an owner still (the fence probes it as a holder), it left the
 * members, or it is this node.
 */
export function deposedPrimary(prev: TopologyRecord, rec: TopologyRecord, p: number, self: string): { id: string; epoch: string } | null {
  const was = previousPrimary(prev, p, self);
  if (was === null || (rec.owners[p] ?? []).includes(was.id) || rec.members[was.id]?.epoch !== was.epoch) return null;
  return was;
}

/** What resuming lock leases as primary did (ADR 0072), summed over partitions for one log line. */
interface LockLeasesResumed {
  /** Partitions whose leases were extended or freed. */
  partitions: number;
  /** Leases extended by the time without a serving primary. */
  extended: number;
  /** Kept leases that had run out before that time began: freed. */
  freed: number;
  /** The longest time not counted (ms). */
  pausedMs: number;
}

/**
 * The log line of resumed lock leases; `cause`: 'promoted' (the previous primary's life ended) or
 * 'serving again' (this primary could not serve for a while).
 */
const LEASES_RESUMED = 'lock leases resumed as primary: the time without a serving primary is not counted';

const noneResumed = (): LockLeasesResumed => ({ partitions: 0, extended: 0, freed: 0, pausedMs: 0 });

/** The `cache` label of per-cache metrics for every implicit cache (never configured). */
export const IMPLICIT_CACHES_LABEL = '(implicit)';

export class ReplicaDriver {
  /** State transfers completed since start (partitions pulled or installed). */
  transfers = 0;
  /**
   * Partitions this node is primary of but cannot serve (its lease unconfirmed and no promises
   * to serve on, ADR 0007), with since when (Date.now() ms, as `checkServing` first saw it).
   */
  private readonly unservable = new Map<number, number>();

  constructor(private readonly d: ReplicaDriverDeps) {}

  /**
   * A topology was applied (the view holds `rec` now, `prev` before it): every partition's
   * replica is told its role in it, and does what its state machine says.
   */
  onTopology(prev: TopologyRecord | null, rec: TopologyRecord, wasMember: boolean): void {
    const { view, table, store } = this.d;
    const synced = this.d.synced();
    const caughtUp = this.d.caughtUp();
    const caches = this.cacheBackupsList();
    const resumed = noneResumed();
    const now = Date.now();
    for (let p = 0; p < rec.partitions; p++) {
      const role = view.roleOf(p);
      let st = table.get(p);
      // Lock leases (ADR 0072): a backup keeps those that run out; a new primary resumes them.
      if (role === 'backup' || role === 'syncing') store.keepLockLeases(p);
      else if (role === 'none') store.forgetLockKeeping(p);
      if (role === 'none' && st === undefined) {
        if (store.hasPartition(p)) store.dropPartition(p);
        delete synced[String(p)];
        delete caughtUp[String(p)];
        continue;
      }
      st ??= table.part(p);
      const before = prev?.owners[p] ?? [];
      const promoted = role === 'primary' && !(wasMember && before[0] === view.id) && before.length > 0 && prev !== null;
      st.deposed = promoted ? deposedPrimary(prev, rec, p, view.id) : null;
      if (role !== 'primary' || promoted) this.unservable.delete(p);
      // (A primary that cannot serve keeps its leases until it can: checkServing.)
      if (role === 'primary' && !this.unservable.has(p)) {
        const paused = promoted ? pausedFor(prev, rec, p, view.id, (id, epoch) => this.d.lastHeard?.(id, epoch), now) : 0;
        this.noteResumed(resumed, store.resumeLockLeases(p, paused), paused);
      }
      // Read before the feed, which forgets the mark once the node is an owner.
      const isSynced = synced[String(p)] !== undefined;
      this.feed(p, st, { type: 'topology-applied', role, promoted, synced: isSynced });
      if (role !== 'none' && table.get(p) === st) this.trackDepth(p, st, role, prev, rec, wasMember, caches, wasMember && isSynced);
    }
    if (resumed.partitions > 0) {
      this.d.log.info(LEASES_RESUMED, { cause: 'promoted', version: rec.version, ...resumed });
    }
  }

  private noteResumed(into: LockLeasesResumed, r: { extended: number; freed: number }, paused: number): void {
    if (r.extended + r.freed === 0) return;
    into.partitions++;
    into.extended += r.extended;
    into.freed += r.freed;
    into.pausedMs = Math.max(into.pausedMs, paused);
  }

  /**
   * Every renewal interval (ADR 0072): a partition this node is primary of but cannot serve — its
   * lease unconfirmed and nothing to serve on (no backup's promise), as while the control plane
   * elects a leader — keeps its run-out lock leases like a backup; once it serves again, the time
   * it could not is not counted against them (nobody else could serve it meanwhile: serving again
   * takes the control plane's word that this node is still the member it was).
   */
  checkServing(mayServe: (p: number) => boolean): void {
    const { view, store } = this.d;
    const now = Date.now();
    const resumed = noneResumed();
    for (const p of view.primaryPartitions()) {
      if (mayServe(p)) {
        this.servable(p, now, resumed);
      } else if (!this.unservable.has(p)) {
        this.unservable.set(p, now);
        store.keepLockLeases(p);
      }
    }
    this.logResumed(resumed);
  }

  /**
   * This node serves p as primary now: if it could not before, its lock leases resume first
   * (called before anything of p is served, so no request sees them before; see `checkServing`).
   */
  servable(p: number, now = Date.now(), into?: LockLeasesResumed): void {
    if (this.unservable.size === 0) return;
    const since = this.unservable.get(p);
    if (since === undefined) return;
    this.unservable.delete(p);
    const resumed = into ?? noneResumed();
    this.noteResumed(resumed, this.d.store.resumeLockLeases(p, now - since), now - since);
    if (into === undefined) this.logResumed(resumed);
  }

  private logResumed(resumed: LockLeasesResumed): void {
    if (resumed.partitions > 0) this.d.log.info(LEASES_RESUMED, { cause: 'serving again', ...resumed });
  }

  /** Backups of a cache: its own, or the cluster's default. */
  backupsOf = (cache: string): number => this.d.store.cacheBackups(cache) ?? this.d.opts.backups;

  /**
   * The backups of every cache a copy may hold: the known caches', and those of implicit caches,
   * which this node may not know (it forgets an implicit cache it holds nothing of; ADR 0014).
   */
  private depthsOf(caches: { backups: number }[]): number[] {
    return [...caches.map((c) => c.backups), this.d.opts.cacheDefaults.backups ?? this.d.opts.backups];
  }

  private cacheBackupsList(): { name: string; backups: number; ignore: boolean; label: string }[] {
    return this.d.store.cacheConfigs().map(([name, c]) => ({
      name,
      backups: c.backups ?? this.d.opts.backups,
      ignore: c.partitionLossPolicy === 'IGNORE',
      // Metric label: implicit caches (any name an app makes up, per tenant say) share one, so
      // the series stay bounded; the log line names the cache.
      label: this.d.store.isExplicitCache(name) ? name : IMPLICIT_CACHES_LABEL,
    }));
  }

  /**
   * Per-cache backups (depth.ts) as the topology moves: a copy ranked lower drops the caches it
   * no longer holds; one ranked higher that misses caches answers "gap" until a snapshot lands
   * (its primary pushes one at once); fresh owners of a lost partition start empty; a new
   * primary counts the partitions of IGNORE caches it serves again, empty.
   */
  private trackDepth(
    p: number,
    st: PartState,
    role: string,
    prev: TopologyRecord | null,
    rec: TopologyRecord,
    wasMember: boolean,
    caches: { name: string; backups: number; ignore: boolean; label: string }[],
    pulled: boolean,
  ): void {
    const { view, store } = this.d;
    const before = prev?.owners[p] ?? [];
    const after = rec.owners[p] ?? [];
    // How deep the owners that left took their copies with them (they died; a node that just
    // stops being an owner while alive handed its copy on first). A copy this node pulled whole
    // in this life counts as held (rank 0), whatever `prev` says: a node whose watch skipped the
    // record that made it an owner sees the owners it pulled from gone, not itself (ADR 0069).
    const depth =
      prev === null || before.length === 0 || pulled
        ? 0
        : heldLossDepth(prev, p, (id) => rec.members[id] !== undefined && rec.members[id]?.epoch === prev.members[id]?.epoch && (id !== view.id || wasMember));
    if (depth === Number.POSITIVE_INFINITY) {
      // Every holder is gone: the owners the topology gave it (IGNORE caches exist) start empty.
      store.dropPartition(p);
      st.held = 0;
    }
    if (role === 'primary') {
      if (depth > 0 || st.held > 0) {
        const missing = Math.max(depth, st.held);
        for (const c of caches) {
          if (c.backups >= missing) continue;
          if (c.ignore) {
            this.d.metrics.lossesIgnored.inc({ cache: c.label });
            this.d.log.warn('partition lost for an IGNORE cache: served again, empty', { partition: p, cache: c.name });
          } else if (c.backups >= depth && !(rec.lostCaches?.[c.name]?.includes(p) ?? false) && !rec.lost.includes(p)) {
            this.d.log.warn('new primary holds no copy of a cache it was ranked below', { partition: p, cache: c.name, rank: st.held });
          }
        }
      }
      st.held = 0;
      if (prev !== null && this.d.resync !== undefined) {
        const ids: string[] = [];
        for (const id of after.slice(1)) {
          const r = rankOf(rec, id, p);
          const was = before.includes(id) ? heldRankIn(prev, id, p) : 0;
          if (was > r && rec.members[id]?.epoch === prev.members[id]?.epoch && missesCaches(was, r, this.depthsOf(caches))) ids.push(id);
        }
        if (ids.length > 0) this.d.resync(p, ids);
      }
      return;
    }
    if (role !== 'backup') {
      this.reportCaughtUp(p, st, rec);
      return;
    }
    const r = rankOf(rec, view.id, p);
    if (r > st.held) {
      store.dropCaches(p, (c) => holds(this.backupsOf(c), r));
      st.held = r;
    } else if (r < st.held && missesCaches(st.held, r, this.depthsOf(caches))) {
      this.gapDetected(st);
      return;
    }
    this.reportCaughtUp(p, st, rec);
  }

  /**
   * While the topology lists this copy as behind on p (ranked higher than what it held), tell
   * the coordinator through the lease once it holds what its rank asks for; forget the report
   * once the topology no longer lists it.
   */
  private reportCaughtUp(p: number, st: PartState, rec: TopologyRecord): void {
    const key = String(p);
    const caught = this.d.caughtUp();
    const listed = rec.behind?.[key]?.[this.d.view.id];
    if (listed === undefined || st.replica.awaitingSnapshot) {
      if (listed === undefined && caught[key] !== undefined) delete caught[key];
      return;
    }
    if ((caught[key] ?? -1) >= listed.since) return;
    caught[key] = rec.version;
    this.d.scheduleLeaseWrite();
  }

  /** A whole snapshot landed: this copy holds what its rank asks for, no more. */
  private settleDepth(p: number, st: PartState): void {
    const t = this.d.view.topo;
    const r = t === null || this.d.view.roleOf(p) !== 'backup' ? 0 : rankOf(t, this.d.view.id, p);
    if (r > 0) this.d.store.dropCaches(p, (c) => holds(this.backupsOf(c), r));
    st.held = r;
    st.replica = { ...st.replica, awaitingSnapshot: false };
    if (t !== null) this.reportCaughtUp(p, st, t);
  }

  /**
   * Steps p's replica with `e` and performs the actions, in order. Returns the reply the
   * sender gets ('ok' / 'gap') when the transition names one, else null. `pulledAt` is the
   * topology version a completed pull is recorded with; `part` the snapshot part a
   * snapshot-part event carries.
   */
  feed(p: number, st: PartState, e: ReplicaEvent, pulledAt = this.d.topologyVersion(), part?: PartitionSnapshot): 'ok' | 'gap' | null {
    const { state, actions } = step(st.replica, e);
    st.replica = state;
    let reply: 'ok' | 'gap' | null = null;
    for (const a of actions) {
      switch (a.type) {
        case 'drop':
          if (this.d.store.hasPartition(p) || this.d.table.has(p)) {
            this.d.store.dropPartition(p);
            this.d.table.delete(p);
          }
          break;
        case 'clear-synced':
          delete this.d.synced()[String(p)];
          break;
        case 'pull':
          st.buffer = [];
          this.d.enqueuePull(p);
          break;
        case 'fence':
          this.d.startFence(p, st, a.id);
          break;
        case 'reply':
          reply = a.s;
          break;
        case 'reset-parts':
          st.parts = [];
          st.buffer ??= [];
          break;
        case 'keep-part':
          if (part !== undefined) st.parts.push(part);
          break;
        case 'install-parts': {
          const joined = joinSnapshots(st.parts);
          st.parts = [];
          this.d.store.install(p, joined);
          this.settleDepth(p, st);
          this.feed(p, st, INSTALLED, pulledAt);
          break;
        }
        case 'apply-buffered':
          this.applyBuffered(p, st);
          break;
        case 'pull-complete':
          this.d.synced()[String(p)] = pulledAt;
          this.transfers++;
          this.d.metrics.transfers.inc();
          this.d.scheduleLeaseWrite();
          break;
      }
    }
    return reply;
  }

  /** Applies records received while a snapshot was on its way (those it already covers are ignored). */
  /** A record could not be applied: the copy answers "gap" until a snapshot is installed. */
  gapDetected(st: PartState): void {
    st.replica = step(st.replica, GAP_DETECTED).state;
  }

  /** A whole snapshot of p was installed in the store. */
  installed(p: number, st: PartState, pulledAt?: number): void {
    this.settleDepth(p, st);
    this.feed(p, st, INSTALLED, pulledAt);
  }

  private applyBuffered(p: number, st: PartState): void {
    const buffered = st.buffer ?? [];
    st.buffer = null;
    for (const rec of buffered) {
      if (!this.d.store.applyRecord(p, st.held === 0 ? rec : recordForRank(rec, st.held, this.backupsOf))) {
        st.replica = step(st.replica, GAP_DETECTED).state;
        break;
      }
    }
  }
}
