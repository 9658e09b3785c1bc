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
import { ErrorCode, Op } from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import { GridNodeError } from '../errors.js';
import type { NodeMetrics } from '../metrics.js';
import { GONE, type ClusterView, type Target } from '../membership/view.js';
import type { PeerLinks } from '../peers/links.js';
import { encodeReplicate } from '../peers/replicate-codec.js';
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

interface Open {
  entries: Entry[];
  msgs: (ReplicateMsg | Uint8Array)[];
  /** The topology every entry's target was taken from, null when it changed within the tick. */
  topo: ClusterView['topo'];
}


/** Type guard for the compact all-OK ack. */
function isCompactAck(v: unknown): v is { ok: number } {
  return typeof v === 'object' && v !== null && typeof (v as { ok?: unknown }).ok === 'number';
}

export class RecordBatches {
  /** Batches being filled in this tick, by target node id. */
  private open = new Map<string, Open>();
  private scheduled = false;

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
    const msg = encodeReplicate(p, v, this.d.id, t.epoch, record) ?? { p, v, from: this.d.id, epoch: t.epoch, rec: record };
    const topo = this.d.view.topo;
    let b = this.open.get(t.id);
    if (b === undefined) {
      b = { entries: [], msgs: [], topo };
      this.open.set(t.id, b);
    } else if (b.topo !== topo) b.topo = null;
    b.entries.push(e);
    b.msgs.push(msg);
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const open = this.open;
    this.open = new Map();
    for (const [id, b] of open) this.send(id, b);
  };

  private send(id: string, b: Open): void {
    const started = Date.now();
    const timeoutMs = this.d.opts.replicationTimeoutMs;
    const deadline = started + timeoutMs;
    let req: Promise<unknown>;
    try {
      req = this.d.peers.peer(id).request(Op.PEER_REPLICATE, { batch: b.msgs, compactAck: true } satisfies ReplicateBatchMsg, timeoutMs);
    } catch (err) {
      req = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    // Observed even when every record settles before the answer (targets that left the topology).
    req.catch(() => {});
    void this.await(b.entries, b.topo, req, deadline, started);
  }

  /** Waits for the batch's answer (or for targets to leave the topology) and settles each record. */
  private async await(entries: Entry[], topo: ClusterView['topo'], req: Promise<unknown>, deadline: number, started: number): Promise<void> {
    const view = this.d.view;
    let pending = entries;
    const stillThere = (): boolean => {
      // Same topology as when the targets were taken: every target is still one.
      if (topo !== null && view.topo === topo) return true;
      for (const e of pending) if (!e.taken && !view.isTarget(e.p, e.t)) return false;
      return true;
    };
    let answer: unknown;
    for (;;) {
      let r: unknown;
      try {
        r = await view.raceTopology(req, stillThere);
      } catch (err) {
        for (const e of pending) if (!e.taken) this.continueAlone(e, deadline, started, { err });
        return;
      }
      if (r !== GONE) {
        answer = r;
        break;
      }
      // Some record's target left: acknowledged without it (as on the per-record path).
      for (const e of pending) if (!e.taken && !view.isTarget(e.p, e.t)) this.ok(e, started);
      pending = pending.filter((e) => !e.taken);
      if (pending.length === 0) return;
    }
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
      else if (reply?.s === 'gap' || reply?.s === 'gone' || reply?.s === 'stale') this.continueAlone(e, deadline, started, { reply });
      else this.fail(e, started, new GridNodeError(ErrorCode.INTERNAL, `peer answered a record with a malformed reply`, e.p));
    }
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
