/**
 * State transfer: a node syncing a partition pulls a snapshot from its primary (in parts when
 * it does not fit in a frame), a bounded number of requests at a time, retrying with backoff;
 * the primary serves pulls once the requester is one of its replication targets.
 *
 * Partitions with the same primary are pulled in batches (ADR 0056): one request names up to
 * `PULL_BATCH` of them and is answered with every snapshot that fits a frame's budget, each taken
 * under the checks of a single pull. A node rejoining a cluster of 65,536 partitions pulls
 * ~43,000 of them, mostly empty: one round trip (and one lease report, one coordinator step)
 * per partition made the re-sync cost what the cluster has rather than what it holds. A partition
 * too big for one part, or one the primary refuses in the batch, is pulled alone as before.
 *
 * Transfers are paced (ADR 0074): a batch answer carries at most a unit (`transferUnitBytes`) of
 * entries and a single pull comes in parts of that size, and once an answer shows that the
 * partitions hold data the puller keeps one pull in flight. Taking in a unit (copying the frame,
 * decoding it, storing every entry) blocks the puller's event loop, and the puller is already a
 * replication target of what it pulls: with 2 MiB answers, eight at a time, writes to every
 * partition it was to own stalled 130–280 ms while it pulled 20 MB.
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, Op } from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import { GridNodeError } from '../errors.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import type { ClusterView } from '../membership/view.js';
import type { PeerLinks } from '../peers/links.js';
import { delay, type Scheduler } from '../scheduler.js';
import { joinSnapshots, snapshotDataBytes, snapshotPartBudget, snapshotSize, type NodeStore, type PartitionSnapshot } from '../store/index.js';
import type { ReplicaDriver } from './driver.js';
import type { PullBatchReply, PullMsg, PullReply } from './messages.js';
import type { PartitionTable } from './table.js';

/** Partitions named in one batch pull at most. */
export const PULL_BATCH = 4096;

/**
 * A pull waiting this long for an answer no longer holds the others back while the pace is one at
 * a time (ADR 0074): a source that hangs must not stall the pulls from the healthy ones until the
 * request times out (`replicationTimeoutMs`). A pull in many parts that keeps being answered is
 * not slow.
 */
export const SLOW_PULL_MS = 500;

/** One pull's wait for an answer, counted in `StateTransfer.slow` once it passes SLOW_PULL_MS. */
interface PullWait {
  slow: boolean;
  timer: { cancel(): void };
}

/**
 * The transfer unit: most entry bytes (keys and values) in one batch answer, and the estimated
 * size of one part of a single pull — `transferUnitBytes` (128 KiB by default), less when half the
 * frame limit is smaller: what a puller takes in between two turns of its event loop.
 */
export function transferUnit(opts: Pick<ResolvedNodeOptions, 'transferUnitBytes' | 'maxFrameSize'>): number {
  return Math.min(opts.transferUnitBytes, snapshotPartBudget(opts.maxFrameSize));
}

export interface StateTransferDeps {
  readonly id: string;
  readonly opts: ResolvedNodeOptions;
  readonly scheduler: Scheduler;
  readonly log: Logger;
  readonly life: Lifecycle;
  readonly store: NodeStore;
  readonly view: ClusterView;
  readonly table: PartitionTable;
  readonly peers: PeerLinks;
  /** A pull installed: key+value bytes it added to the store and its duration (metrics). */
  onTransferred?(bytes: number, seconds: number): void;
  driver(): ReplicaDriver;
  /** A snapshot of p in parts of at most `maxBytes` (estimated) each. */
  /** With `packed`, entries packed in blobs (ADR 0080): for a puller that said it takes them. */
  snapshotParts(p: number, maxBytes: number, packed: boolean): PartitionSnapshot[];
}

export class StateTransfer {
  private readonly queue: number[] = [];
  /** Queued partitions to pull one by one (a batch could not take them). */
  private readonly alone = new Set<number>();
  private active = 0;
  /** Multi-part snapshots being pulled from this node, by transfer id. */
  private readonly outgoing = new Map<string, { parts: PartitionSnapshot[]; timer: { cancel(): void } }>();
  /** PEER_STATE_PULL requests this node sent (batches, single pulls and their parts, retries). */
  requests = 0;
  /**
   * The most pulls (batches or single) this node had running at once, not counting those that
   * waited past SLOW_PULL_MS for an answer: the pace's own concurrency.
   */
  mostInFlight = 0;
  /** The largest answer this node received, in entry bytes (`snapshotDataBytes`). */
  largestAnswer = 0;
  /**
   * How many pulls may run (ADR 0074). A round of pulls (from an empty queue to an empty queue
   * again) starts with one pull in flight (`probe`); an answer with next to no entries widens it to
   * `pullConcurrency` (`wide`: a rejoin at 65,536 mostly empty partitions, ADR 0056); an answer
   * that carried data keeps one in flight until the round ends (`narrow`). Data: partitions left
   * for later, a snapshot in several parts, or entries enough that `pullConcurrency` answers like
   * it would make a quarter of a unit (`dataAnswer`). A pull unanswered for SLOW_PULL_MS lets
   * another start beside it.
   */
  private pace: 'probe' | 'wide' | 'narrow' = 'probe';
  /** Pulls running longer than SLOW_PULL_MS: they do not count against the pace's limit. */
  private slow = 0;

  /** An answer with `entryBytes` of entries carried data (see `pace`). */
  private dataAnswer(entryBytes: number): boolean {
    return entryBytes * this.d.opts.pullConcurrency >= transferUnit(this.d.opts) / 4;
  }

  /** Starts timing a pull's wait for its next answer. */
  private waitAnswer(wait: PullWait): void {
    wait.timer = this.d.scheduler.setTimeout(() => {
      wait.slow = true;
      this.slow++;
      this.drain();
    }, SLOW_PULL_MS);
  }

  /** A pull got an answer (or ended): it is not slow any more; the next request is timed anew. */
  private answeredNow(wait: PullWait, again = false): void {
    wait.timer.cancel();
    if (wait.slow) {
      wait.slow = false;
      this.slow--;
    }
    if (again) this.waitAnswer(wait);
  }

  /** What an answer showed about the partitions pulled: data, only small snapshots, or nothing (all refused). */
  private answered(carried: 'data' | 'small' | 'nothing'): void {
    if (carried === 'data') this.pace = 'narrow';
    else if (carried === 'small' && this.pace === 'probe') this.pace = 'wide';
  }

  constructor(private readonly d: StateTransferDeps) {}

  /** Pulls queued or running, and multi-part snapshots kept for pullers. */
  get pending(): { pulls: number; outgoing: number } {
    return { pulls: this.queue.length + this.active, outgoing: this.outgoing.size };
  }

  enqueue(p: number): void {
    this.queue.push(p);
    this.drain();
  }

  /** Forgets queued pulls (a new life: nothing of the old one is pulled). */
  clearQueue(): void {
    this.queue.length = 0;
    this.alone.clear();
    this.pace = 'probe';
  }

  private drain(): void {
    if (this.queue.length === 0 && this.active === 0) this.pace = 'probe';
    const limit = Math.min(this.d.opts.pullConcurrency, (this.pace === 'wide' ? this.d.opts.pullConcurrency : 1) + this.slow);
    while (this.active < limit && this.queue.length > 0) {
      const batch = this.takeBatch();
      this.active++;
      if (this.active - this.slow > this.mostInFlight) this.mostInFlight = this.active - this.slow;
      const wait: PullWait = { slow: false, timer: { cancel: () => undefined } };
      this.waitAnswer(wait);
      void (batch.length === 1 ? this.pull(batch[0]!, wait) : this.pullBatch(batch, wait)).finally(() => {
        this.answeredNow(wait);
        this.active--;
        this.drain();
      });
    }
  }

  /**
   * The next request's partitions: the first queued one, and (unless it is to be pulled alone)
   * every other queued one with the same primary, up to PULL_BATCH, in queue order.
   */
  private takeBatch(): number[] {
    const first = this.queue.shift()!;
    if (this.alone.delete(first)) return [first];
    const src = this.sourceOf(first);
    if (src === undefined || this.queue.length === 0) return [first];
    const batch = [first];
    let kept = 0;
    for (let i = 0; i < this.queue.length; i++) {
      const p = this.queue[i]!;
      if (batch.length < PULL_BATCH && !this.alone.has(p) && this.sourceOf(p) === src) batch.push(p);
      else this.queue[kept++] = p;
    }
    this.queue.length = kept;
    return batch;
  }

  /** Where p is pulled from now: its primary in the topology held. */
  private sourceOf(p: number): string | undefined {
    return this.d.view.topo?.owners[p]?.[0];
  }

  /** p is still to be pulled in this life, as syncing. */
  private stillPulling(p: number, epoch: string): boolean {
    const { table, view, life } = this.d;
    return table.get(p)?.replica.pulling === true && view.epoch === epoch && life.state === 'running' && view.roleOf(p) === 'syncing';
  }

  /** Queues p again, to be pulled alone (the single pull's checks, retries and parts apply). */
  private requeueAlone(p: number): void {
    this.alone.add(p);
    this.queue.push(p);
  }

  /**
   * Pulls `ps` (same primary when taken) in one request; installs every snapshot that came back
   * exactly as a single pull installs its one; queues the others again (in a later batch, or
   * alone). A failed request is retried with the single pull's backoff, twice, then each
   * partition is pulled alone.
   */
  private async pullBatch(ps: number[], wait: PullWait): Promise<void> {
    const { view, table, opts } = this.d;
    const epoch = view.epoch;
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      const src = this.sourceOf(ps[0]!);
      const live: number[] = [];
      for (const p of ps) {
        if (!this.stillPulling(p, epoch)) {
          // The single pull's own first check decides: it returns, or abandons the pull.
          if (table.get(p)?.replica.pulling === true && view.epoch === epoch) this.requeueAlone(p);
        } else if (src === undefined || this.sourceOf(p) !== src) this.requeueAlone(p);
        else live.push(p);
      }
      if (live.length === 0 || src === undefined) return;
      ps = live;
      const states = ps.map((p) => table.get(p)!);
      const v = view.topologyVersion();
      let reply: PullBatchReply | PullReply;
      try {
        this.requests++;
        reply = (await this.d.peers.peer(src).request(Op.PEER_STATE_PULL, { p: ps[0]!, v, from: this.d.id, ps, pk: true } satisfies PullMsg, opts.replicationTimeoutMs)) as PullBatchReply | PullReply;
        this.answeredNow(wait, true);
      } catch (err) {
        this.d.log.debug('batch state pull failed; retrying', { partitions: ps.length, src, err: String(err) });
        if (attempt >= 2) {
          for (const p of ps) this.requeueAlone(p);
          return;
        }
        await delay(this.d.scheduler, Math.min(500, 20 * 2 ** attempt));
        continue;
      }
      if (!('snaps' in reply)) {
        // A node that does not know batches answered for the first partition alone.
        for (const p of ps) this.requeueAlone(p);
        return;
      }
      const data = reply.snaps.reduce((n, snap) => n + snapshotDataBytes(snap), 0);
      if (data > this.largestAnswer) this.largestAnswer = data;
      this.answered(reply.later.length > 0 || this.dataAnswer(data) ? 'data' : reply.snaps.length > 0 ? 'small' : 'nothing');
      const asked = new Map(ps.map((p, i) => [p, states[i]!]));
      const seconds = (performance.now() - started) / 1000;
      for (const snap of reply.snaps) {
        const p = snap.partition;
        const st = asked.get(p);
        if (st === undefined) continue;
        asked.delete(p);
        if (table.get(p) !== st || !st.replica.pulling || view.epoch !== epoch) continue;
        // Only a snapshot of p's primary as this node knows it now (ADR 0069): one taken by a
        // primary deposed meanwhile may lack what its successor acknowledged.
        if (view.roleOf(p) !== 'syncing' || this.sourceOf(p) !== src) {
          this.requeueAlone(p);
          continue;
        }
        const before = this.d.store.stats().bytes;
        this.d.store.install(p, snap);
        this.d.onTransferred?.(Math.max(0, this.d.store.stats().bytes - before), seconds);
        this.d.driver().installed(p, st, v);
      }
      const later = new Set(reply.later);
      for (const p of asked.keys()) {
        if (later.has(p)) this.queue.push(p);
        else this.requeueAlone(p);
      }
      return;
    }
  }

  private async pull(p: number, wait: PullWait): Promise<void> {
    const { view, table, life, opts } = this.d;
    const epoch = view.epoch;
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      const st = table.get(p);
      if (!st?.replica.pulling || view.epoch !== epoch || life.state !== 'running') return;
      if (view.roleOf(p) !== 'syncing') {
        this.abandon(p);
        return;
      }
      const src = view.topo!.owners[p]?.[0];
      const v = view.topologyVersion();
      if (src === undefined) {
        this.abandon(p);
        return;
      }
      try {
        this.requests++;
        const first = (await this.d.peers.peer(src).request(Op.PEER_STATE_PULL, { p, v, from: this.d.id, pk: true } satisfies PullMsg, opts.replicationTimeoutMs)) as PullReply;
        this.answeredNow(wait, true);
        const firstData = snapshotDataBytes(first.snap);
        this.answered(first.total > 1 || this.dataAnswer(firstData) ? 'data' : 'small');
        if (firstData > this.largestAnswer) this.largestAnswer = firstData;
        const parts = [first.snap];
        for (let index = 1; index < first.total; index++) {
          const msg: PullMsg = { p, v, from: this.d.id, id: first.id!, index };
          this.requests++;
          const part = ((await this.d.peers.peer(src).request(Op.PEER_STATE_PULL, msg, opts.replicationTimeoutMs)) as PullReply).snap;
          this.answeredNow(wait, true);
          this.largestAnswer = Math.max(this.largestAnswer, snapshotDataBytes(part));
          parts.push(part);
        }
        if (table.get(p) !== st || !st.replica.pulling || view.epoch !== epoch || view.roleOf(p) !== 'syncing') return;
        // The snapshot of a primary deposed meanwhile is not installed (ADR 0069): pull again.
        if (this.sourceOf(p) !== src) continue;
        const before = this.d.store.stats().bytes;
        this.d.store.install(p, parts.length === 1 ? first.snap : joinSnapshots(parts));
        this.d.onTransferred?.(Math.max(0, this.d.store.stats().bytes - before), (performance.now() - started) / 1000);
        this.d.driver().installed(p, st, v);
        return;
      } catch (err) {
        this.d.log.debug('state pull failed; retrying', { p, src, err: String(err) });
        await delay(this.d.scheduler, Math.min(500, 20 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  private abandon(p: number): void {
    const st = this.d.table.get(p)!;
    this.d.driver().feed(p, st, { type: 'pull-abandoned' });
    st.buffer = null;
  }

  /** Primary side of state transfer: a snapshot taken once the requester is a replication target. */
  async onStatePull(m: PullMsg): Promise<PullReply | PullBatchReply> {
    const { view, table } = this.d;
    if (m.ps !== undefined && m.id === undefined) return this.onBatchPull(m, m.ps);
    if (m.id !== undefined && m.index !== undefined) {
      const out = this.outgoing.get(m.id);
      const snap = out?.parts[m.index];
      if (!out || !snap) throw new GridNodeError(ErrorCode.PARTITION_MOVING, `transfer ${m.id} of partition ${m.p} expired`, m.p);
      if (m.index === out.parts.length - 1) {
        out.timer.cancel();
        this.outgoing.delete(m.id);
      }
      return { snap, total: out.parts.length, id: m.id };
    }
    if (m.v > view.topologyVersion()) await view.awaitTopology(m.v, this.d.opts.leaseMs);
    view.assertPrimary(m.p);
    const st = table.part(m.p);
    if (st.fence) await st.fence;
    this.assertServes(m.p, m.from);
    const parts = this.d.snapshotParts(m.p, transferUnit(this.d.opts), m.pk === true);
    if (parts.length === 1) return { snap: parts[0]!, total: 1 };
    const id = randomUUID();
    const timer = this.d.scheduler.setTimeout(() => this.outgoing.delete(id), 30_000);
    this.outgoing.set(id, { parts, timer });
    return { snap: parts[0]!, total: parts.length, id };
  }

  /**
   * The checks a snapshot of p for `from` is taken after, single or in a batch: this node is p's
   * primary and may serve it, and `from` is one of its replication targets.
   */
  private assertServes(p: number, from: string): void {
    const { view } = this.d;
    view.assertPrimary(p);
    if (!view.targets(p).some((t) => t.id === from)) {
      throw new GridNodeError(ErrorCode.PARTITION_MOVING, `node ${from} is not a target of partition ${p}`, p);
    }
  }

  /**
   * A batch pull: after waiting for the puller's topology and for the fences of the partitions
   * named, every snapshot is taken in one synchronous pass, each right after the checks a single
   * pull makes (this node is its primary and may serve it, no fence pending, the puller is a
   * replication target): a write acknowledged after its snapshot was taken was replicated to the
   * puller, which buffers it until the snapshot is installed. Snapshots are added while their
   * entries stay within a transfer unit and their estimated size within half a frame; the rest is
   * `later`, and a partition that fails a check or needs several parts is `alone`. The snapshots
   * of `alone` partitions count too, so that one pass never copies much more than two units (a
   * batch of big partitions would otherwise snapshot every one of them only to send none).
   * Empty partitions cost no unit: a batch of 4,096 of them is one answer (ADR 0056).
   */
  private async onBatchPull(m: PullMsg, ps: unknown): Promise<PullBatchReply> {
    const { view, table } = this.d;
    const n = view.partitionCount();
    if (!Array.isArray(ps) || ps.length > PULL_BATCH || !ps.every((p) => Number.isInteger(p) && (p as number) >= 0 && (p as number) < n)) {
      throw new GridNodeError(ErrorCode.BAD_REQUEST, 'state pull: bad partition list');
    }
    const list = ps as number[];
    if (m.v > view.topologyVersion()) await view.awaitTopology(m.v, this.d.opts.leaseMs);
    const fences: Promise<void>[] = [];
    for (const p of list) {
      const f = table.get(p)?.fence;
      if (f) fences.push(f);
    }
    if (fences.length > 0) await Promise.allSettled(fences);
    const frameBudget = snapshotPartBudget(this.d.opts.maxFrameSize);
    const unit = transferUnit(this.d.opts);
    const reply: PullBatchReply = { snaps: [], later: [], alone: [] };
    /** Estimated size of the answer, and the entry bytes in it. */
    let bytes = 0;
    let data = 0;
    /** Entry bytes snapshotted in this pass, sent or not. */
    let taken = 0;
    for (const p of list) {
      if (bytes >= frameBudget || data >= unit || taken >= 2 * unit) {
        reply.later.push(p);
        continue;
      }
      try {
        this.assertServes(p, m.from);
      } catch {
        reply.alone.push(p);
        continue;
      }
      if (table.get(p)?.fence) {
        reply.alone.push(p);
        continue;
      }
      const parts = this.d.snapshotParts(p, unit, m.pk === true);
      if (parts.length !== 1) {
        taken += unit * parts.length;
        reply.alone.push(p);
        continue;
      }
      const snap = parts[0]!;
      const size = snapshotSize(snap);
      const entries = snapshotDataBytes(snap);
      taken += entries;
      if (reply.snaps.length > 0 && (bytes + size > frameBudget || data + entries > unit)) {
        reply.later.push(p);
        continue;
      }
      bytes += size;
      data += entries;
      reply.snaps.push(snap);
    }
    return reply;
  }
}
