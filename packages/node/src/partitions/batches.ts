/**
 * The common write's replication, settled per peer batch (ADR 0035): a record for a partition
 * with one replication target and no target pending a resync joins the batch of that target's
 * node; at the end of the tick each batch leaves as one PEER_REPLICATE frame, with one request
 * promise, one timer and one topology race for all its records. The backup answers an all-OK
 * batch with one compact ack (`{ ok: n }`) when the frame asks for it. Each record keeps its
 * own outcome: one that did not come back OK (gap, gone, timeout, connection lost) continues
 * alone on the per-record path (`Replicator.replicateTo`), exactly where that path would have
 * been after the same answer; a record whose target left the topology is acknowledged without
 * it, as before.
 */
import { ErrorCode, Op, binWriterBytes, isBinWriter, type BinWriter } from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import { GridNodeError } from '../errors.js';
import type { NodeMetrics } from '../metrics.js';
import type { ClusterView, Target } from '../membership/view.js';
import type { PeerLinks } from '../peers/links.js';
import { replicateWriter } from '../peers/replicate-codec.js';
import type { ReplicationRecord } from '../store/index.js';
import type { ReplicateBatchMsg, ReplicateMsg, ReplicateReply } from './messages.js';
import { InFlightWrite, type PartState } from './table.js';

/** What the batch hands back to the per-record path, and what it needs from the replicator. */
export interface BatchDeps {
  readonly opts: ResolvedNodeOptions;
  readonly metrics: NodeMetrics;
  readonly view: ClusterView;
  readonly peers: PeerLinks;
  readonly id: string;
  /** Continues one record after the batch's first answer for it was not OK (`first`). */
  continueRecord(p: number, t: Target, record: ReplicationRecord, deadline: number, first: { reply: ReplicateReply } | { err: unknown }): Promise<void>;
  /** Resyncs targets that missed records before an acknowledgement (Replicator.ensureClean). */
  ensureClean(p: number): Promise<void>;
  /** t did not take a record of p this node applied (Replicator.missed). */
  missed(p: number, t: Target): void;
  /** Throws unless a record of p may be acknowledged without a target that left (Replicator.acknowledgedWithout). */
  acknowledgedWithout(p: number): void;
}

const SETTLED: Promise<void> = Promise.resolve();
const noop = (): void => {};

/** Told once whether a write may be acknowledged: `null`, or why not. Must not throw. */
export interface Completion {
  complete(err: Error | null): void;
}

/** One record in a batch; it is its partition's in-flight write until it settles. */
class Entry extends InFlightWrite {
  /** Off the batch path: continuing alone, or waiting for a resync, or done. */
  taken = false;
  /** Done: `completion` has been told. */
  finished = false;
  private waiting: Promise<void> | null = null;
  private wake: () => void = noop;

  constructor(
    readonly p: number,
    readonly t: Target,
    readonly record: ReplicationRecord,
    readonly st: PartState,
    readonly completion: Completion,
  ) {
    super();
  }

  settled(): Promise<void> {
    if (this.finished) return SETTLED;
    this.waiting ??= new Promise<void>((resolve) => (this.wake = resolve));
    return this.waiting;
  }

  finish(err: Error | null): void {
    this.finished = true;
    this.wake();
    this.completion.complete(err);
  }
}

/** The records for one target node sent in one frame, from filling to their answer. */
class Batch {
  readonly entries: Entry[] = [];
  /** Binary records as writers into the frame (ADR 0077), other records in the map form. */
  readonly msgs: (ReplicateMsg | BinWriter)[] = [];
  /** Records in the map form among `msgs`. */
  maps = 0;
  started = 0;
  deadline = 0;
  /** Waiting for its answer (linked in the outstanding list); false once answered or given up. */
  waiting = false;
  prev: Batch | null = null;
  next: Batch | null = null;
  /** Called with the answer, or the failure, of its frame (made once per batch). */
  readonly resolve: (answer: unknown) => void;
  readonly reject: (err: Error) => void;

  constructor(
    owner: RecordBatches,
    readonly targetId: string,
    /** The topology every entry's target was taken from, null when it changed while filling. */
    public topo: ClusterView['topo'],
  ) {
    this.resolve = (answer) => owner.answered(this, answer);
    this.reject = (err) => owner.failed(this, err);
  }
}

/**
 * The frame's payload. Writers are known to the frame encoder's fast path only, which takes a
 * batch of binary records alone: a batch that also holds a map-form record goes through the
 * general encoder, so its writers become byte arrays first.
 */
function batchPayload(b: Batch): ReplicateBatchMsg | { batch: BinWriter[]; compactAck: true } {
  if (b.maps === 0) return { batch: b.msgs as BinWriter[], compactAck: true };
  return { batch: b.msgs.map((m) => (isBinWriter(m) ? binWriterBytes(m) : m)), compactAck: true };
}

/** Type guard for the compact all-OK ack. */
function isCompactAck(v: unknown): v is { ok: number } {
  return typeof v === 'object' && v !== null && typeof (v as { ok?: unknown }).ok === 'number';
}

export class RecordBatches {
  /** Batches being filled until the flush (one per target node; few, so a list). */
  private open: Batch[] = [];
  private scheduled = false;
  /** Batches sent and waiting for their answer. */
  private head: Batch | null = null;
  private watching = false;

  constructor(private readonly d: BatchDeps) {}

  /**
   * Replicates `record` of p to its only target `t`; tells `completion` when it is safe to
   * acknowledge (or why not). No promise of its own: one entry object per record.
   */
  add(p: number, t: Target, record: ReplicationRecord, st: PartState, completion: Completion): void {
    const e = new Entry(p, t, record, st, completion);
    st.inflight.add(e);
    // A plain put travels in its compact binary form (ADR 0027), anything else as a map.
    const v = this.d.view.topologyVersion();
    const msg: ReplicateMsg | BinWriter = replicateWriter(p, v, this.d.id, t.epoch, record) ?? { p, v, from: this.d.id, epoch: t.epoch, rec: record };
    const topo = this.d.view.topo;
    let b: Batch | undefined;
    for (const o of this.open) {
      if (o.targetId === t.id) {
        b = o;
        break;
      }
    }
    if (b === undefined) {
      b = new Batch(this, t.id, topo);
      this.open.push(b);
    } else if (b.topo !== topo) b.topo = null;
    b.entries.push(e);
    b.msgs.push(msg);
    if (!isBinWriter(msg)) b.maps++;
    if (!this.scheduled) {
      this.scheduled = true;
      // After every I/O callback of this loop turn, so records from several reads share a frame.
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const open = this.open;
    this.open = [];
    for (const b of open) this.send(b);
  };

  private send(b: Batch): void {
    b.started = Date.now();
    const timeoutMs = this.d.opts.replicationTimeoutMs;
    b.deadline = b.started + timeoutMs;
    this.link(b);
    this.watch();
    // Taken from an older topology: records whose target left are acknowledged without it now.
    if (b.topo === null || this.d.view.topo !== b.topo) this.checkTargets(b);
    if (!b.waiting) return;
    try {
      this.d.peers.peer(b.targetId).send(Op.PEER_REPLICATE, batchPayload(b), timeoutMs, b.resolve, b.reject);
    } catch (err) {
      this.failed(b, err instanceof Error ? err : new Error(String(err)));
    }
  }

  private link(b: Batch): void {
    b.waiting = true;
    b.prev = null;
    b.next = this.head;
    if (this.head !== null) this.head.prev = b;
    this.head = b;
  }

  private unlink(b: Batch): void {
    if (!b.waiting) return;
    b.waiting = false;
    if (b.prev !== null) b.prev.next = b.next;
    else this.head = b.next;
    if (b.next !== null) b.next.prev = b.prev;
    b.prev = null;
    b.next = null;
  }

  /**
   * One hook on the view's topology changes for all batches (instead of one race per batch):
   * a race whose "still there" test never fails, so it stays registered and is asked at every
   * change. Armed once, on the first batch sent.
   */
  private watch(): void {
    if (this.watching) return;
    this.watching = true;
    void this.d.view.raceTopology(new Promise<never>(() => {}), () => {
      for (let b = this.head; b !== null; ) {
        const next = b.next;
        if (b.topo === null || this.d.view.topo !== b.topo) this.checkTargets(b);
        b = next;
      }
      return true;
    });
  }

  /** Records of b whose target left the topology are acknowledged without it (as on the per-record path). */
  private checkTargets(b: Batch): void {
    const view = this.d.view;
    let open = 0;
    for (const e of b.entries) {
      if (e.taken) continue;
      if (!view.isTarget(e.p, e.t)) this.withoutTarget(e, b.started);
      else open++;
    }
    // Nothing left to wait for: the answer, when it comes, is ignored.
    if (open === 0) this.unlink(b);
  }

  /** The batch's answer: each record settles by its own reply. */
  answered(b: Batch, answer: unknown): void {
    if (!b.waiting) return;
    this.unlink(b);
    const { entries, started } = b;
    if (isCompactAck(answer) && answer.ok === entries.length) {
      const seconds = (Date.now() - started) / 1000;
      for (const e of entries) if (!e.taken) this.ok(e, started, seconds);
      return;
    }
    const replies = (answer as { batch?: unknown } | null)?.batch;
    if (!Array.isArray(replies) || replies.length !== entries.length) {
      const err = new GridNodeError(ErrorCode.INTERNAL, `peer answered a batch of ${entries.length} records with a malformed reply`);
      for (const e of entries) if (!e.taken) this.fail(e, started, err);
      return;
    }
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.taken) continue;
      const reply = replies[i] as ReplicateReply | null;
      if (reply?.s === 'ok') this.ok(e, started);
      else if (reply?.s === 'gap' || reply?.s === 'gone' || reply?.s === 'stale') this.continueAlone(e, b.deadline, started, { reply });
      else this.fail(e, started, new GridNodeError(ErrorCode.INTERNAL, `peer answered a record with a malformed reply`, e.p));
    }
  }

  /** The batch's frame failed (timeout, connection lost): each record continues alone. */
  failed(b: Batch, err: Error): void {
    if (!b.waiting) return;
    this.unlink(b);
    for (const e of b.entries) if (!e.taken) this.continueAlone(e, b.deadline, b.started, { err });
  }

  /** e's target left the topology: acknowledged without it, by p's primary only. */
  private withoutTarget(e: Entry, started: number): void {
    try {
      this.d.acknowledgedWithout(e.p);
    } catch (err) {
      this.fail(e, started, err as Error);
      return;
    }
    this.ok(e, started);
  }

  /** `seconds`: the replication time when the caller knows it already (one clock read per batch). */
  private ok(e: Entry, started: number, seconds?: number): void {
    if (e.st.failed.size > 0) {
      // Another record of p missed its target: that target gets a snapshot before this acknowledgement.
      e.taken = true;
      this.d.ensureClean(e.p).then(
        () => this.done(e, started, null),
        (err: unknown) => this.done(e, started, err instanceof Error ? err : new Error(String(err))),
      );
      return;
    }
    this.done(e, started, null, seconds);
  }

  private fail(e: Entry, started: number, err: Error): void {
    this.d.missed(e.p, e.t);
    this.done(e, started, err);
  }

  private continueAlone(e: Entry, deadline: number, started: number, first: { reply: ReplicateReply } | { err: unknown }): void {
    e.taken = true;
    this.d.continueRecord(e.p, e.t, e.record, deadline, first).then(
      () => this.done(e, started, null),
      (err: unknown) => this.done(e, started, err instanceof Error ? err : new Error(String(err))),
    );
  }

  private done(e: Entry, started: number, err: Error | null, seconds = (Date.now() - started) / 1000): void {
    e.taken = true;
    e.st.inflight.delete(e);
    const m = this.d.metrics;
    m.replicationSeconds.observe(m.replication, seconds);
    e.finish(err);
  }
}
