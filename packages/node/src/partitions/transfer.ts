/**
 * State transfer: a node syncing a partition pulls a snapshot from its primary (in parts when
 * it does not fit in a frame), a bounded number of partitions at a time, retrying with backoff;
 * the primary serves pulls once the requester is one of its replication targets.
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
import { joinSnapshots, type NodeStore, type PartitionSnapshot } from '../store/index.js';
import type { ReplicaDriver } from './driver.js';
import type { PullMsg, PullReply } from './messages.js';
import type { PartitionTable } from './table.js';

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
  snapshotParts(p: number): PartitionSnapshot[];
}

export class StateTransfer {
  private readonly queue: number[] = [];
  private active = 0;
  /** Multi-part snapshots being pulled from this node, by transfer id. */
  private readonly outgoing = new Map<string, { parts: PartitionSnapshot[]; timer: { cancel(): void } }>();

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
  }

  private drain(): void {
    while (this.active < this.d.opts.pullConcurrency && this.queue.length > 0) {
      const p = this.queue.shift()!;
      this.active++;
      void this.pull(p).finally(() => {
        this.active--;
        this.drain();
      });
    }
  }

  private async pull(p: number): Promise<void> {
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
        const first = (await this.d.peers.peer(src).request(Op.PEER_STATE_PULL, { p, v, from: this.d.id } satisfies PullMsg, opts.replicationTimeoutMs)) as PullReply;
        const parts = [first.snap];
        for (let index = 1; index < first.total; index++) {
          const msg: PullMsg = { p, v, from: this.d.id, id: first.id!, index };
          parts.push(((await this.d.peers.peer(src).request(Op.PEER_STATE_PULL, msg, opts.replicationTimeoutMs)) as PullReply).snap);
        }
        if (table.get(p) !== st || !st.replica.pulling || view.epoch !== epoch || view.roleOf(p) !== 'syncing') return;
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
  async onStatePull(m: PullMsg): Promise<PullReply> {
    const { view, table } = this.d;
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
    view.assertPrimary(m.p);
    if (!view.targets(m.p).some((t) => t.id === m.from)) {
      throw new GridNodeError(ErrorCode.PARTITION_MOVING, `node ${m.from} is not a target of partition ${m.p}`, m.p);
    }
    const parts = this.d.snapshotParts(m.p);
    if (parts.length === 1) return { snap: parts[0]!, total: 1 };
    const id = randomUUID();
    const timer = this.d.scheduler.setTimeout(() => this.outgoing.delete(id), 30_000);
    this.outgoing.set(id, { parts, timer });
    return { snap: parts[0]!, total: parts.length, id };
  }
}
