/**
 * Feeds the replica state machine and performs the actions it returns: the one place where a
 * replica's transitions meet the store, the lease, state transfer and the fence.
 */
import type { TopologyRecord } from '../control/topology.js';
import type { ClusterView } from '../membership/view.js';
import type { NodeMetrics } from '../metrics.js';
import { joinSnapshots, type NodeStore, type PartitionSnapshot } from '../store/index.js';
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
  topologyVersion(): number;
  /** Queue a state transfer of p. */
  enqueuePull(p: number): void;
  startFence(p: number, st: PartState, fenceId: number): void;
  /** The lease content changed: write it soon. */
  scheduleLeaseWrite(): void;
}

export class ReplicaDriver {
  /** State transfers completed since start (partitions pulled or installed). */
  transfers = 0;

  constructor(private readonly d: ReplicaDriverDeps) {}

  /**
   * A topology was applied (the view holds `rec` now, `prev` before it): every partition's
   * replica is told its role in it, and does what its state machine says.
   */
  onTopology(prev: TopologyRecord | null, rec: TopologyRecord, wasMember: boolean): void {
    const { view, table, store } = this.d;
    const synced = this.d.synced();
    for (let p = 0; p < rec.partitions; p++) {
      const role = view.roleOf(p);
      let st = table.get(p);
      if (role === 'none' && st === undefined) {
        if (store.hasPartition(p)) store.dropPartition(p);
        delete synced[String(p)];
        continue;
      }
      st ??= table.part(p);
      const before = prev?.owners[p] ?? [];
      const promoted = role === 'primary' && !(wasMember && before[0] === view.id) && before.length > 0 && prev !== null;
      this.feed(p, st, { type: 'topology-applied', role, promoted, synced: synced[String(p)] !== undefined });
    }
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
    this.feed(p, st, INSTALLED, pulledAt);
  }

  private applyBuffered(p: number, st: PartState): void {
    const buffered = st.buffer ?? [];
    st.buffer = null;
    for (const rec of buffered) {
      if (!this.d.store.applyRecord(p, rec)) {
        st.replica = step(st.replica, GAP_DETECTED).state;
        break;
      }
    }
  }
}
