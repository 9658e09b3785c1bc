/**
 * Per-partition bookkeeping of one node: the replica state (pure, see replica.ts) and the I/O
 * side that goes with it (replications in flight, resyncs, the fence promise, buffered records).
 */
import type { PartitionSnapshot, ReplicationRecord } from '../store/index.js';
import { INITIAL_REPLICA, type ReplicaState } from './replica.js';

const noop = (): void => {};

/**
 * A replication in flight, linked into its partition's list (ADR 0041): adding and removing one
 * allocates nothing, and it makes a promise only for a read or a dedup hit that has to wait.
 */
export abstract class InFlightWrite {
  prevInFlight: InFlightWrite | null = null;
  nextInFlight: InFlightWrite | null = null;
  listed = false;
  /** Settles (never rejects) once the write is acknowledged or has failed. */
  abstract settled(): Promise<void>;
}

/** An in-flight write that is a promise already (the general replication path). */
export class PromiseWrite extends InFlightWrite {
  constructor(private readonly work: Promise<unknown>) {
    super();
  }
  settled(): Promise<void> {
    return this.work.then(noop, noop);
  }
}

/** The replications of one partition in flight. */
export class InFlightWrites {
  size = 0;
  private head: InFlightWrite | null = null;

  add(w: InFlightWrite): void {
    if (w.listed) return;
    w.listed = true;
    w.prevInFlight = null;
    w.nextInFlight = this.head;
    if (this.head !== null) this.head.prevInFlight = w;
    this.head = w;
    this.size++;
  }

  delete(w: InFlightWrite): void {
    if (!w.listed) return;
    w.listed = false;
    if (w.prevInFlight !== null) w.prevInFlight.nextInFlight = w.nextInFlight;
    else this.head = w.nextInFlight;
    if (w.nextInFlight !== null) w.nextInFlight.prevInFlight = w.prevInFlight;
    w.prevInFlight = null;
    w.nextInFlight = null;
    this.size--;
  }

  /** Settles once every write in flight now has settled, whatever its outcome (later ones are not waited for). */
  settled(): Promise<void> {
    const all: Promise<void>[] = [];
    for (let w = this.head; w !== null; w = w.nextInFlight) all.push(w.settled());
    return Promise.all(all).then(noop);
  }
}

export interface PartState {
  /** Replica state machine of this partition (roles, pulling, awaiting snapshot, fencing). */
  replica: ReplicaState;
  /** Replications in flight (reads and dedup hits wait for them). */
  inflight: InFlightWrites;
  /** Targets whose copy may have missed a record: a snapshot is pushed before the next acknowledgement. */
  failed: Set<string>;
  /** Resyncs (snapshot pushes) in flight per target, with the counter their snapshot covers. */
  resyncs: Map<string, { counter: number; promise: Promise<void> }>;
  /** The pending promotion fence (replica.fencing !== 0), awaited by requests. */
  fence: Promise<void> | null;
  /**
   * The previous primary, alive, that the step which made this node primary also dropped from
   * the owners: the fence waits until it has seen that step (ADR 0068). Set for one fence.
   */
  deposed: { id: string; epoch: string } | null;
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
      st = { replica: INITIAL_REPLICA, inflight: new InFlightWrites(), failed: new Set(), resyncs: new Map(), fence: null, deposed: null, buffer: null, parts: [], held: 0 };
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
