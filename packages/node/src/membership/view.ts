/**
 * What this node knows of the cluster: the topology record it holds (and its control-plane
 * revision), its own epoch, and the questions answered from them (role, replication targets,
 * primary or not). Also the waiters on topology changes: "tell me when version v is here" and
 * "stop waiting when this target is gone".
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, type PartitionMap } from '@gridlink/protocol';
import { roleOf, routeRequest, type Role } from '../control/routing.js';
import { partitionMapOf, type TopologyRecord } from '../control/topology.js';
import { GridNodeError } from '../errors.js';
import type { Scheduler } from '../scheduler.js';

/** Replication target: a node that must acknowledge every write of the partition. */
export interface Target {
  id: string;
  epoch: string;
}

export const GONE = Symbol('gone');

export class ClusterView {
  topo: TopologyRecord | null = null;
  topoRevision = 0;
  /**
   * The newest topology record seen in the control plane could not be read (records.ts): `topo`
   * is the last good one, and the coordinator writes it again over the bad one.
   */
  topoMalformed = false;
  /** Changes on restart and whenever this node learns it was declared gone. */
  epoch = randomUUID();
  private mapCache: PartitionMap | null = null;
  private targetsCache: (readonly Target[] | undefined)[] = [];
  private topoWaiters: { version: number; resolve: () => void }[] = [];
  /** `id:epoch` of replicas that refused a peer op because they are stopping (see noteStopping). */
  private readonly departed = new Set<string>();
  private readonly goneWaiters = new Set<() => boolean>();
  /** Re-reads the topology from the control plane (wired by the node). */
  refresh: () => Promise<void> = () => Promise.resolve();

  constructor(
    readonly id: string,
    private readonly defaultPartitions: number,
    private readonly scheduler: Scheduler,
    /** This node may serve p as primary right now (lease valid, or vouched for: ADR 0007). */
    private readonly mayServe: (p: number) => boolean,
  ) {}

  topologyVersion(): number {
    return this.topo?.version ?? 0;
  }

  partitionCount(): number {
    return this.topo?.partitions ?? this.defaultPartitions;
  }

  isMember(): boolean {
    return this.topo?.members[this.id]?.epoch === this.epoch;
  }

  roleOf(p: number): Role {
    return roleOf(this.topo, this.id, this.epoch, p);
  }

  partitionMap(): PartitionMap {
    if (!this.topo) throw new GridNodeError(ErrorCode.NOT_READY, 'the node has not joined a cluster yet');
    this.mapCache ??= partitionMapOf(this.topo);
    return this.mapCache;
  }

  /** Holds `rec` from now on (the caller checked it is newer); returns the previous record. */
  set(rec: TopologyRecord): TopologyRecord | null {
    const prev = this.topo;
    this.topo = rec;
    this.mapCache = null;
    this.targetsCache = [];
    this.targetsVersion++;
    for (const key of this.departed) {
      const i = key.lastIndexOf(':');
      if (rec.members[key.slice(0, i)]?.epoch !== key.slice(i + 1)) this.departed.delete(key);
    }
    return prev;
  }

  /**
   * `target` answered a peer op with NODE_STOPPING: that process has handed off, refuses every
   * request from now on and never serves again under this epoch (a restart is a new epoch). It
   * stops being a replication target (and an owner whose promise is needed) at once, instead of
   * when the topology drops it: over a networked control plane that takes its lease deletion, a
   * coordinator step and a watch round trip, during which every write to a partition it backs
   * would wait. Returns whether `err` was that refusal.
   */
  noteStopping(target: Target, err: unknown): boolean {
    if (!(err instanceof GridNodeError) || err.wireCode !== ErrorCode.NODE_STOPPING) return false;
    const key = `${target.id}:${target.epoch}`;
    if (this.topo?.members[target.id]?.epoch !== target.epoch || this.departed.has(key)) return true;
    this.departed.add(key);
    this.targetsCache = [];
    this.targetsVersion++;
    this.wakeGone();
    return true;
  }

  /**
   * Moves on whenever `targets()` may answer differently (a new topology, an owner found stopping);
   * with `topo` and `epoch` it tells when something computed from the targets must be made again.
   */
  targetsVersion = 0;

  primaryPartitions(): number[] {
    const out: number[] = [];
    const n = this.topo?.partitions ?? 0;
    for (let p = 0; p < n; p++) if (this.roleOf(p) === 'primary') out.push(p);
    return out;
  }

  otherMembers(): string[] {
    return Object.keys(this.topo?.members ?? {}).filter((id) => id !== this.id);
  }

  /** Throws NOT_PRIMARY (or the routing error) unless this node serves p as primary right now. */
  assertPrimary(p: number): void {
    // Loss policies are applied before routing (dispatch): here only "am I the primary" counts.
    const d = routeRequest(this.topo, this.id, this.epoch, p, false, this.mayServe(p), true);
    if (d.kind !== 'local') throw new GridNodeError(d.kind === 'error' ? d.code : ErrorCode.NOT_PRIMARY, d.kind === 'error' ? d.message : 'not primary', p);
  }

  /** Replication targets of p (read-only; cached until the topology changes). */
  targets(p: number): readonly Target[] {
    const cached = this.targetsCache[p];
    if (cached !== undefined) return cached;
    const out = this.computeTargets(p);
    this.targetsCache[p] = out;
    return out;
  }

  private computeTargets(p: number): Target[] {
    const t = this.topo;
    if (!t) return [];
    const out: Target[] = [];
    const ids = [...(t.owners[p] ?? []), ...(t.syncing[p] ?? []).map((e) => e.id)];
    for (const id of ids) {
      const m = t.members[id];
      if (id !== this.id && m && !this.departed.has(`${id}:${m.epoch}`)) out.push({ id, epoch: m.epoch });
    }
    return out;
  }

  isTarget(p: number, target: Target): boolean {
    return this.targets(p).some((x) => x.id === target.id && x.epoch === target.epoch);
  }

  /** Resolves with GONE as soon as `stillThere()` turns false at a topology change. */
  raceTopology<T>(promise: Promise<T>, stillThere: () => boolean): Promise<T | typeof GONE> {
    if (!stillThere()) return Promise.resolve(GONE);
    return new Promise<T | typeof GONE>((resolve, reject) => {
      const check = (): boolean => {
        if (stillThere()) return false;
        resolve(GONE);
        return true;
      };
      this.goneWaiters.add(check);
      promise.then(
        (v) => {
          this.goneWaiters.delete(check);
          resolve(v);
        },
        (e: unknown) => {
          this.goneWaiters.delete(check);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  /** Resolves once this node holds topology `version` or later (or after timeoutMs). */
  async awaitTopology(version: number, timeoutMs: number): Promise<void> {
    if (this.topologyVersion() >= version) return;
    try {
      await this.refresh();
    } catch {
      // The control plane is unavailable: the watch delivers the version when it comes.
    }
    if (this.topologyVersion() >= version) return;
    await new Promise<void>((resolve) => {
      const w = { version, resolve };
      this.topoWaiters.push(w);
      this.scheduler.setTimeout(resolve, timeoutMs);
    });
  }

  /** Waiters on a topology version, and races against a target leaving (see raceTopology). */
  get waiters(): { version: number; gone: number } {
    return { version: this.topoWaiters.length, gone: this.goneWaiters.size };
  }

  /** After a topology change: ends the races whose target left. */
  wakeGone(): void {
    for (const w of [...this.goneWaiters]) if (w()) this.goneWaiters.delete(w);
  }

  /** After a topology change: wakes those waiting for this version. */
  wakeVersion(version: number): void {
    const waiters = this.topoWaiters;
    this.topoWaiters = [];
    for (const w of waiters) {
      if (version >= w.version) w.resolve();
      else this.topoWaiters.push(w);
    }
  }

  /** At shutdown: nobody waits for a topology any more. */
  releaseAll(): void {
    for (const w of this.topoWaiters) w.resolve();
    this.topoWaiters = [];
  }
}
