/**
 * Per-partition bookkeeping of one node: the replica state (pure, see replica.ts) and the I/O
 * side that goes with it (replications in flight, resyncs, the fence promise, buffered records).
 */
import type { PartitionSnapshot, ReplicationRecord } from '../store/index.js';
import { INITIAL_REPLICA, type ReplicaState } from './replica.js';

export interface PartState {
  /** Replica state machine of this partition (roles, pulling, awaiting snapshot, fencing). */
  replica: ReplicaState;
  /** Replications in flight (reads and dedup hits wait for them). */
  inflight: Set<Promise<unknown>>;
  /** Targets whose copy may have missed a record: a snapshot is pushed before the next acknowledgement. */
  failed: Set<string>;
  /** Resyncs (snapshot pushes) in flight per target, with the counter their snapshot covers. */
  resyncs: Map<string, { counter: number; promise: Promise<void> }>;
  /** The pending promotion fence (replica.fencing !== 0), awaited by requests. */
  fence: Promise<void> | null;
  /** Records received while a snapshot is on its way (replica.buffering). */
  buffer: ReplicationRecord[] | null;
  /** Parts of the multi-part snapshot being received (replica.receiving). */
  parts: PartitionSnapshot[];
  /**
   * Rank whose caches this copy holds (see depth.ts): every cache with at least `held` backups.
   * 0 for a primary and for a copy that took a whole snapshot before it was ranked.
   */
  held: number;
}

export class PartitionTable {
  private readonly parts = new Map<number, PartState>();

  get(p: number): PartState | undefined {
    return this.parts.get(p);
  }

  has(p: number): boolean {
    return this.parts.has(p);
  }

  /** The state of p, created on first use. */
  part(p: number): PartState {
    let st = this.parts.get(p);
    if (!st) {
      st = { replica: INITIAL_REPLICA, inflight: new Set(), failed: new Set(), resyncs: new Map(), fence: null, buffer: null, parts: [], held: 0 };
      this.parts.set(p, st);
    }
    return st;
  }

  delete(p: number): void {
    this.parts.delete(p);
  }

  clear(): void {
    this.parts.clear();
  }

  replicationInFlight(): number {
    let n = 0;
    for (const st of this.parts.values()) n += st.inflight.size;
    return n;
  }
}
