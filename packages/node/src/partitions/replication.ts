/**
 * Primary side of replication: a write is acknowledged once every replication target of its
 * partition has it; a target that missed a record (gap, timeout, promotion) gets a snapshot
 * (resync) before the next acknowledgement; a new primary runs a fence (probes the other
 * holders' counters) before it acknowledges anything.
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, Op } from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import { GridNodeError } from '../errors.js';
import type { NodeMetrics } from '../metrics.js';
import { GONE, type ClusterView, type Target } from '../membership/view.js';
import type { PeerLinks } from '../peers/links.js';
import { encodeReplicate } from '../peers/replicate-codec.js';
import { delay, type Scheduler } from '../scheduler.js';
import { packedBlobBytes, snapshotPartBudget, splitSnapshot, type NodeStore, type PartitionSnapshot, type ReplicationRecord } from '../store/index.js';
import { RecordBatches, type Completion } from './batches.js';
import type { ReplicateMsg, ReplicateReply } from './messages.js';
import { step } from './replica.js';
import { PromiseWrite, type PartitionTable, type PartState } from './table.js';

export interface ReplicatorDeps {
  readonly id: string;
  readonly opts: ResolvedNodeOptions;
  readonly scheduler: Scheduler;
  readonly store: NodeStore;
  readonly metrics: NodeMetrics;
  readonly view: ClusterView;
  readonly table: PartitionTable;
  readonly peers: PeerLinks;
}

const RESOLVED: Promise<void> = Promise.resolve();

/**
 * How long a promotion fence waits for the previous primary's last records when a holder reports
 * a counter ahead of this node's (ADR 0079): they were sent before the fence's probe was answered
 * and are on another connection. Past it, the holder gets a snapshot as before.
 */
const LATE_RECORDS_WAIT_MS = 50;

/** A Completion that settles a promise. */
class Settle implements Completion {
  constructor(
    private readonly resolve: () => void,
    private readonly reject: (err: Error) => void,
  ) {}
  complete(err: Error | null): void {
    if (err === null) this.resolve();
    else this.reject(err);
  }
}

/**
 * Parts of a multi-part resync push sent ahead of the answers (ADR 0080): enough to keep the
 * link busy, few enough that one turn of the event loop encodes a bounded share of a big partition.
 */
const RESYNC_WINDOW = 4;

export class Replicator {
  /** Snapshots pushed to backups that missed records (gap, timeout, promotion) since start. */
  resyncs = 0;

  /** Replications of the common write, settled per peer batch (ADR 0035). */
  private readonly batches: RecordBatches;

  constructor(private readonly d: ReplicatorDeps) {
    this.batches = new RecordBatches({
      opts: d.opts,
      metrics: d.metrics,
      view: d.view,
      peers: d.peers,
      id: d.id,
      continueRecord: (p, t, record, deadline, first) => this.replicateTo(p, t, record, deadline, first),
      missed: (p, t) => this.missed(p, t),
      acknowledgedWithout: (p) => this.acknowledgedWithout(p),
      ensureClean: (p) => this.ensureClean(p),
    });
  }

  /** Makes a mutation durable on every replication target before it is acknowledged. */
  commit(p: number, record: ReplicationRecord | null): Promise<void> {
    if (record !== null) {
      const st = this.d.table.part(p);
      if (st.failed.size === 0) {
        // The common write: no target waiting for a resync, one target (or none).
        const targets = this.d.view.targets(p);
        if (targets.length === 0) return RESOLVED;
        if (targets.length === 1) return new Promise<void>((resolve, reject) => this.batches.add(p, targets[0]!, record, st, new Settle(resolve, reject)));
      }
    }
    return this.commitSlow(p, record);
  }

  /**
   * commit() telling `c` instead of returning a promise (the request fast path: no promise per
   * write, ADR 0041). `c` may be told before this returns (nothing to replicate to).
   */
  commitTo(p: number, record: ReplicationRecord | null, c: Completion): void {
    if (record !== null) {
      const st = this.d.table.part(p);
      if (st.failed.size === 0) {
        const targets = this.d.view.targets(p);
        if (targets.length === 0) {
          c.complete(null);
          return;
        }
        if (targets.length === 1) {
          this.batches.add(p, targets[0]!, record, st, c);
          return;
        }
      }
    }
    this.commitSlow(p, record).then(
      () => c.complete(null),
      (err: unknown) => c.complete(err instanceof Error ? err : new Error(String(err))),
    );
  }

  private async commitSlow(p: number, record: ReplicationRecord | null): Promise<void> {
    const st = this.d.table.part(p);
    if (record) {
      await this.replicate(p, record);
    } else if (st.inflight.size > 0) {
      // A dedup hit: the original may still be replicating.
      await st.inflight.settled();
    }
    if (st.failed.size > 0) await this.ensureClean(p);
  }

  private async replicate(p: number, record: ReplicationRecord): Promise<void> {
    const targets = this.d.view.targets(p);
    if (targets.length === 0) return;
    const st = this.d.table.part(p);
    const started = Date.now();
    const work = targets.length === 1 ? this.replicateTo(p, targets[0]!, record) : Promise.all(targets.map((t) => this.replicateTo(p, t, record)));
    const w = new PromiseWrite(work);
    st.inflight.add(w);
    try {
      await work;
    } finally {
      st.inflight.delete(w);
      this.d.metrics.replicationSeconds.observe(this.d.metrics.replication, (Date.now() - started) / 1000);
    }
  }

  /**
   * Replicates one record to t until it is acknowledged, t leaves the topology, or the deadline
   * passes. `first`: the answer to a send already made (by a batch), handled before any resend.
   * When it fails, t is marked as having missed the record (see `missed`).
   */
  private async replicateTo(
    p: number,
    t: Target,
    record: ReplicationRecord,
    deadline = Date.now() + this.d.opts.replicationTimeoutMs,
    first?: { reply: ReplicateReply } | { err: unknown },
  ): Promise<void> {
    try {
      await this.replicateToOnce(p, t, record, deadline, first);
    } catch (err) {
      this.missed(p, t);
      throw err;
    }
    // Done because t left the topology rather than because it took the record: acknowledged
    // without it only by the partition's primary (see `acknowledgedWithout`).
    if (!this.d.view.isTarget(p, t)) this.acknowledgedWithout(p);
  }

  /**
   * A record whose target left the topology is acknowledged without it — by a node that is still
   * p's primary, under its epoch, in the topology that dropped the target. A node that is not
   * (it was itself declared gone, or the partition was lost with both copies) fails the write with
   * NOT_PRIMARY instead: its copy is not one anybody will serve (ADR 0044).
   */
  acknowledgedWithout(p: number): void {
    if (this.d.view.roleOf(p) !== 'primary') {
      throw new GridNodeError(ErrorCode.NOT_PRIMARY, `node ${this.d.id} is no longer the primary of partition ${p}`, p);
    }
  }

  /**
   * t, still a target of p, did not take a record this node applied: whatever the reason (no
   * answer in time, it refused the record as coming from a primary it no longer follows, a
   * malformed reply), this node holds a write t lacks. Nothing more of p is acknowledged — not
   * even the replay of that very write to a client's retry (its outcome is in this node's table)
   * — and nothing of p is read, until t got a snapshot (`ensureClean`). A target that refuses as
   * stale refuses the snapshot too, so the retry and the read are refused (NOT_PRIMARY), and the
   * client finds the primary that does hold what it acknowledged.
   */
  private missed(p: number, t: Target): void {
    if (this.d.view.isTarget(p, t)) this.d.table.part(p).failed.add(t.id);
  }

  private async replicateToOnce(
    p: number,
    t: Target,
    record: ReplicationRecord,
    deadline: number,
    first: { reply: ReplicateReply } | { err: unknown } | undefined,
  ): Promise<void> {
    const { view } = this.d;
    const stillThere = (): boolean => view.isTarget(p, t);
    for (;;) {
      let reply: ReplicateReply | typeof GONE;
      const f = first;
      first = undefined;
      if (f === undefined && deadline - Date.now() <= 0) {
        throw new GridNodeError(ErrorCode.REPLICATION_FAILED, `backup ${t.id} did not acknowledge in time`, p);
      }
      try {
        if (f === undefined) {
          // A plain put travels in its compact binary form (ADR 0027), anything else as a map.
          const v = view.topologyVersion();
          const msg: ReplicateMsg | Uint8Array = encodeReplicate(p, v, this.d.id, t.epoch, record) ?? { p, v, from: this.d.id, epoch: t.epoch, rec: record };
          const left = deadline - Date.now();
          reply = await view.raceTopology(this.d.peers.peer(t.id).request(Op.PEER_REPLICATE, msg, left, true) as Promise<ReplicateReply>, stillThere);
        } else if ('err' in f) {
          throw f.err;
        } else {
          reply = f.reply;
        }
      } catch (err) {
        // A backup that is stopping (it handed off) is no target any more: do not wait for the topology.
        if (view.noteStopping(t, err) || !stillThere()) return;
        if (err instanceof GridNodeError && err.wireCode === ErrorCode.TIMEOUT) continue;
        // Unreachable: it is dead or restarting; wait for the topology to drop it, retrying meanwhile.
        if ((await view.raceTopology(delay(this.d.scheduler, 50), stillThere)) === GONE) return;
        continue;
      }
      if (reply === GONE) return;
      switch (reply.s) {
        case 'ok':
          return;
        case 'stale':
          throw new GridNodeError(ErrorCode.NOT_PRIMARY, `node ${this.d.id} is no longer the primary of partition ${p}`, p);
        case 'gone':
          if ((await view.raceTopology(delay(this.d.scheduler, Math.max(1, deadline - Date.now())), stillThere)) === GONE) return;
          continue;
        case 'gap':
          await this.resync(p, t, record.counter);
          return;
        default:
          throw new GridNodeError(ErrorCode.INTERNAL, `backup ${t.id} answered a record with a malformed reply`, p);
      }
    }
  }

  /** Pushes a snapshot of p to t covering at least `minCounter` (single-flight per target). */
  private resync(p: number, t: Target, minCounter: number): Promise<void> {
    const { view, store, opts } = this.d;
    const st = this.d.table.part(p);
    const existing = st.resyncs.get(t.id);
    if (existing && existing.counter >= minCounter) return existing.promise;
    const counter = store.updateCounter(p);
    const parts = this.snapshotParts(p);
    const v = view.topologyVersion();
    const id = randomUUID();
    const from = this.d.id;
    const startedAt = Date.now();
    const send = (index: number): Promise<ReplicateReply> => {
      const snap = parts[index]!;
      const msg: ReplicateMsg =
        parts.length === 1 ? { p, v, from, epoch: t.epoch, snap } : { p, v, from, epoch: t.epoch, part: { id, index, total: parts.length, snap } };
      return this.d.peers.peer(t.id).request(Op.PEER_REPLICATE, msg, opts.replicationTimeoutMs) as Promise<ReplicateReply>;
    };
    const promise = (async () => {
      // Parts leave in order, at most RESYNC_WINDOW unanswered: the first ones in this very turn
      // (before any record of p can be written after the snapshot: writes to p wait for the
      // resync), the rest as answers come, so a big partition is encoded a few parts per turn
      // of the event loop, not all in one, and not all of it sits in the socket at once.
      const waiting: Promise<ReplicateReply>[] = [];
      let next = 0;
      const fill = (): void => {
        while (next < parts.length && waiting.length < RESYNC_WINDOW) waiting.push(send(next++));
      };
      try {
        fill();
        while (waiting.length > 0) {
          let reply: ReplicateReply | typeof GONE;
          try {
            reply = await view.raceTopology(waiting.shift()!, () => view.isTarget(p, t));
          } catch (err) {
            if (view.noteStopping(t, err)) return;
            throw err;
          }
          if (reply === GONE) return;
          if (reply.s === 'stale') throw new GridNodeError(ErrorCode.NOT_PRIMARY, `node ${from} is no longer the primary of partition ${p}`, p);
          if (reply.s === 'gone') {
            // Not that life of the target any more (it restarted under a new epoch): no snapshot
            // can be acknowledged until the topology drops the old one. Wait for that, as a record
            // does, instead of failing at once: a client retrying at once used up its retries
            // while a blind coordinator (watches stalled after a nats-server restart) could not
            // declare the old epoch gone (bench/soak).
            const left = Math.max(1, startedAt + opts.replicationTimeoutMs - Date.now());
            if ((await view.raceTopology(delay(this.d.scheduler, left), () => view.isTarget(p, t))) === GONE) return;
          }
          if (reply.s !== 'ok') throw new GridNodeError(ErrorCode.REPLICATION_FAILED, `backup ${t.id} refused a snapshot`, p);
          fill();
        }
      } finally {
        // Parts still unanswered when this push ended early: their outcome no longer matters.
        for (const w of waiting) w.catch(() => {});
      }
    })();
    const entry = { counter, promise };
    st.resyncs.set(t.id, entry);
    promise.then(
      () => {
        if (st.resyncs.get(t.id) === entry) st.resyncs.delete(t.id);
        st.failed.delete(t.id);
        this.resyncs++;
      },
      () => {
        if (st.resyncs.get(t.id) === entry) st.resyncs.delete(t.id);
        st.failed.add(t.id);
      },
    );
    return promise.catch((err: unknown) => {
      if (err instanceof GridNodeError) throw err;
      throw new GridNodeError(ErrorCode.REPLICATION_FAILED, `resync of ${t.id} failed: ${String((err as Error)?.message ?? err)}`, p);
    });
  }

  /**
   * Targets of p that must hold more caches than they do (ranked higher after an owner left:
   * per-cache backups, ADR 0038) get a snapshot now, not only at the next write.
   */
  resyncNow(p: number, ids: string[]): void {
    const st = this.d.table.part(p);
    for (const id of ids) st.failed.add(id);
    void this.ensureClean(p).catch(() => {});
  }

  /**
   * A snapshot of p in parts of at most `maxBytes` each (default: half a frame, so that each fits
   * in one); with `packed` its entries packed in blobs (ADR 0080). A resync push is always packed:
   * the peer link unpacks it for a node that does not take packed snapshots.
   */
  snapshotParts(p: number, maxBytes = snapshotPartBudget(this.d.opts.maxFrameSize), packed = true): PartitionSnapshot[] {
    return splitSnapshot(this.d.store.snapshot(p, packed ? packedBlobBytes(maxBytes) : undefined), maxBytes);
  }

  async ensureClean(p: number): Promise<void> {
    const st = this.d.table.part(p);
    for (const id of [...st.failed]) {
      const t = this.d.view.targets(p).find((x) => x.id === id);
      if (!t) {
        st.failed.delete(id);
        continue;
      }
      await this.resync(p, t, this.d.store.updateCounter(p));
    }
  }

  /**
   * Waits until `old`, p's previous primary that the step dropped from the owners while it stays a
   * member, has seen this topology (ADR 0068): until then it still serves p as primary — reads
   * of what this node is about to overwrite. A probe at this version makes it catch up first
   * (re-reading the topology, waiting at most a lease for it) and then answer, whatever it
   * answers. Ends early when it leaves the members; an unreachable or silent one ends the wait
   * after `replicationTimeoutMs`, as for a holder (it cannot be told, and a node cut off from
   * its peers fences itself: ADR 0063).
   */
  private async awaitDeposed(p: number, old: Target): Promise<void> {
    const { view, opts } = this.d;
    const msg: ReplicateMsg = { p, v: view.topologyVersion(), from: this.d.id, epoch: old.epoch, probe: true };
    try {
      await view.raceTopology(
        this.d.peers.peer(old.id).request(Op.PEER_REPLICATE, msg, opts.replicationTimeoutMs) as Promise<ReplicateReply>,
        () => view.topo?.members[old.id]?.epoch === old.epoch,
      );
    } catch (err) {
      // Stopping (it handed off and serves nothing), unreachable or silent: nothing more to wait for.
      view.noteStopping(old, err);
    }
  }

  /**
   * The fence `fenceId` of a node that just became primary of p: it asks every other holder, and
   * every node pulling p (ADR 0069), for its update counter; one that is ahead (it got a record
   * the old primary never acknowledged), behind, or unreachable gets a snapshot before this node
   * acknowledges anything on p.
   * Feeds fence-done to the replica state machine when it is over.
   */
  startFence(p: number, st: PartState, fenceId: number): void {
    const { view, store, opts } = this.d;
    const fence = (async () => {
      // Every target, the nodes listed as pulling too (ADR 0069): one may have pulled from the
      // previous primary already and then missed a record that this node took as its backup; a
      // write of that record acknowledged here (a client's retry, replayed) would be gone once
      // the puller leads. One behind, or still pulling, gets a snapshot from this node first.
      // A holder ahead is usually the previous primary with the records it applied before it
      // learned the new topology, on their way here: this node takes them while its fence runs
      // (ADR 0079), so it waits a moment for its own counter to catch up before calling the
      // holder different — a whole-partition snapshot otherwise.
      const holders = view.targets(p);
      const counters = new Map<string, number>();
      const probe = async (t: Target): Promise<void> => {
        const msg: ReplicateMsg = { p, v: view.topologyVersion(), from: this.d.id, epoch: t.epoch, probe: true };
        try {
          const reply = await view.raceTopology(
            this.d.peers.peer(t.id).request(Op.PEER_REPLICATE, msg, opts.replicationTimeoutMs) as Promise<ReplicateReply>,
            () => view.isTarget(p, t),
          );
          if (reply === GONE) return;
          if (reply.s !== 'ok') return;
          if (typeof reply.counter === 'number') counters.set(t.id, reply.counter);
          else st.failed.add(t.id);
        } catch (err) {
          if (!view.noteStopping(t, err) && view.isTarget(p, t)) st.failed.add(t.id);
        }
      };
      const deposed = st.deposed;
      st.deposed = null;
      await Promise.all([...holders.map(probe), deposed === null ? undefined : this.awaitDeposed(p, deposed)]);
      let ahead = 0;
      for (const c of counters.values()) ahead = Math.max(ahead, c);
      const waitUntil = Date.now() + LATE_RECORDS_WAIT_MS;
      while (store.updateCounter(p) < ahead && Date.now() < waitUntil && view.roleOf(p) === 'primary') await delay(this.d.scheduler, 1);
      const mine = store.updateCounter(p);
      for (const [id, c] of counters) if (c !== mine) st.failed.add(id);
      if (st.failed.size > 0) await this.ensureClean(p).catch(() => {});
    })();
    st.fence = fence;
    void fence.finally(() => {
      st.replica = step(st.replica, { type: 'fence-done', id: fenceId }).state;
      if (st.fence === fence) st.fence = null;
    });
  }
}
