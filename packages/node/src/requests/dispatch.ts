/**
 * Request dispatch: every client request ends here. The fast path answers the common case (a
 * single-key op for a partition this node serves as primary right now) without the general
 * path's promise layers; the general path runs an op locally when primary, forwards it once to
 * the primary otherwise (routing it again when the primary changes on the way), fans multi-key
 * and cluster-wide ops out, and hands node-to-node ops to the peer handler.
 */
import { partitionOfBytes } from '@gridlink/affinity';
import {
  ErrorCode,
  MUTATING_OPS,
  Op,
  ResponseFlag,
  RequestFlag,
  SINGLE_KEY_OPS,
  errorPayload,
  validateRequest,
  type Bytes,
  type CacheConfig,
  type RequestFrame,
} from '@gridlink/protocol';
import { lossRefusal, lostFor, routeRequest } from '../control/routing.js';
import { GridNodeError } from '../errors.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import type { ClusterView } from '../membership/view.js';
import type { NodeMetrics } from '../metrics.js';
import type { Completion } from '../partitions/batches.js';
import type { Replicator } from '../partitions/replication.js';
import type { PartitionTable } from '../partitions/table.js';
import { DEFERRED, type RequestOutcome, type ServerConnection } from '../server/connection.js';
import type { MutateResult, NodeStore } from '../store/index.js';
import { toGridError } from './errors.js';
import type { FanOut } from './fanout.js';
import { primaryChanged, type Forwarder } from './forward.js';
import type { LockService } from './locks.js';
import type { ExecResult } from './messages.js';

export interface DispatcherDeps {
  readonly id: string;
  readonly life: Lifecycle;
  readonly log: Logger;
  readonly store: NodeStore;
  readonly metrics: NodeMetrics;
  readonly view: ClusterView;
  readonly table: PartitionTable;
  readonly replicator: Replicator;
  readonly forwarder: Forwarder;
  readonly locks: LockService;
  fanout(): FanOut;
  /** May serve partition p as primary now: the lease is valid, or promises cover it (ADR 0007). */
  leaseValid(p: number): boolean;
  /** Node-to-node ops (only on connections from peers). */
  handlePeer(frame: RequestFrame): Promise<unknown>;
  /** PEER_REPLICATE (see onPeerReplicate): its answer, or a promise of it. */
  replicate(payload: unknown): unknown;
}

/** A fast-path mutation waiting for its commit; then answered on its connection. */
export class PendingAnswer implements Completion {
  constructor(
    private readonly dispatcher: Dispatcher,
    readonly conn: ServerConnection,
    readonly id: number,
    readonly op: number,
    readonly started: number,
    readonly result: unknown,
  ) {}
  complete(err: Error | null): void {
    this.dispatcher.answerCommitted(this, err);
  }
}

export class Dispatcher {
  private readonly id: string;
  private readonly life: Lifecycle;
  private readonly view: ClusterView;
  private readonly table: PartitionTable;
  private readonly store: NodeStore;
  private readonly replicator: Replicator;

  constructor(private readonly d: DispatcherDeps) {
    // Read on every request: kept as own fields (one hop, as before the split).
    this.id = d.id;
    this.life = d.life;
    this.view = d.view;
    this.table = d.table;
    this.store = d.store;
    this.replicator = d.replicator;
  }

  handleRequest(conn: ServerConnection, frame: RequestFrame): RequestOutcome | Promise<RequestOutcome> | typeof DEFERRED {
    const started = performance.now();
    const op = frame.op as number;
    if (op < 100) {
      const fast = this.fastPath(conn, frame, started);
      if (fast !== null) return fast;
    } else if (op === Op.PEER_REPLICATE && conn.isPeer && this.life.state === 'running') {
      return this.replicateNow(frame);
    }
    return this.handleRequestSlow(conn, frame, started);
  }

  /**
   * The backup's side of replication without the general path's promise layers: answered at
   * once unless a record waits for a newer topology; errors answer as on the general path.
   */
  private replicateNow(frame: RequestFrame): RequestOutcome | Promise<RequestOutcome> {
    let r: unknown;
    try {
      r = this.d.replicate(frame.payload);
    } catch (err) {
      return this.errorOutcome(frame.op, err);
    }
    if (!(r instanceof Promise)) return { flags: 0, payload: r };
    return r.then(
      (payload: unknown) => ({ flags: 0, payload }),
      (err: unknown) => this.errorOutcome(frame.op, err),
    );
  }

  private async handleRequestSlow(conn: ServerConnection, frame: RequestFrame, started: number): Promise<RequestOutcome> {
    const op = frame.op as number;
    let outcome: RequestOutcome;
    try {
      if (this.life.state !== 'running') throw new GridNodeError(ErrorCode.NODE_STOPPING, 'the node is shutting down');
      validateRequest(frame);
      if (op >= 100) {
        if (!conn.isPeer) throw new GridNodeError(ErrorCode.UNKNOWN_OP, `op ${op} is reserved for nodes`);
        outcome = { flags: 0, payload: await this.d.handlePeer(frame) };
      } else {
        const allowForward = (frame.flags & RequestFlag.NO_FORWARD) === 0;
        const r = await this.execute(frame.op, frame.payload, conn.sessionId, allowForward);
        outcome = { flags: r.forwarded ? ResponseFlag.FORWARDED | ResponseFlag.REFRESH_MAP : 0, payload: r.result };
      }
    } catch (err) {
      outcome = this.errorOutcome(op, err);
    }
    if (op < 100) this.d.metrics.observeOp(op, (outcome.flags & ResponseFlag.ERROR) !== 0, (performance.now() - started) / 1000);
    return outcome;
  }

  private errorOutcome(op: number, err: unknown): RequestOutcome {
    const e = toGridError(err);
    let flags = ResponseFlag.ERROR;
    if (e.wireCode === ErrorCode.NOT_PRIMARY || e.wireCode === ErrorCode.PARTITION_MOVING || e.wireCode === ErrorCode.PARTITION_LOST) {
      flags |= ResponseFlag.REFRESH_MAP;
    }
    if (e.wireCode === ErrorCode.INTERNAL) this.d.log.error('request failed', { op, err: e.message });
    if (op < 100) this.d.metrics.onRejected(e.wireCode);
    return { flags, payload: errorPayload(e.wireCode, e.message, e.partition) };
  }

  private finishOp(op: number, started: number, outcome: RequestOutcome): RequestOutcome {
    this.d.metrics.observeOp(op, (outcome.flags & ResponseFlag.ERROR) !== 0, (performance.now() - started) / 1000);
    return outcome;
  }

  /**
   * The common case without the general path's promise layers: a single-key op (not a waiting
   * lock acquire) for a partition this node serves as primary right now, no promotion fence
   * pending. Reads with no replication in flight are answered synchronously; a mutation is
   * applied and answered once committed (replicated) exactly as executeAsPrimary does. Returns
   * null, having changed nothing, when the request needs the general path.
   */
  private fastPath(conn: ServerConnection, frame: RequestFrame, started: number): RequestOutcome | typeof DEFERRED | null {
    const op = frame.op;
    if (this.life.state !== 'running' || !SINGLE_KEY_OPS.has(op) || op === Op.LOCK_ACQUIRE) return null;
    try {
      validateRequest(frame);
    } catch {
      return null; // the general path answers it
    }
    const payload = frame.payload as { key?: Bytes; name?: Bytes };
    const key = (op >= Op.LOCK_TRY_ACQUIRE && op <= Op.LOCK_RENEW ? payload.name : payload.key) as Bytes;
    const t = this.view.topo;
    if (t === null) return null;
    const p = partitionOfBytes(key, t.partitions);
    // Any lost partition: the slow path applies the caches' loss policies.
    if ((t.owners[p] ?? [])[0] !== this.id || t.members[this.id]?.epoch !== this.view.epoch || t.lost.length > 0 || t.lostCaches !== undefined || !this.d.leaseValid(p)) return null;
    const st = this.table.part(p);
    if (st.replica.fencing !== 0) return null;
    if (!MUTATING_OPS.has(op)) {
      // Writes in flight, or a target that missed one: the general path waits (read barrier).
      if (st.inflight.size > 0 || st.failed.size > 0) return null;
      let outcome: RequestOutcome;
      try {
        outcome = { flags: 0, payload: this.store.read(p, op, frame.payload) };
      } catch (err) {
        outcome = this.errorOutcome(op, err);
      }
      return this.finishOp(op, started, outcome);
    }
    // A release naming an acquisition still waiting here ends that wait (its client gave it up).
    if (op === Op.LOCK_RELEASE) this.d.locks.cancelWaiting(p, frame.payload, conn.sessionId);
    let m: MutateResult;
    try {
      m = this.store.mutate(p, op, frame.payload, conn.sessionId);
    } catch (err) {
      return this.finishOp(op, started, this.errorOutcome(op, err));
    }
    // Answered when committed (replicated), through one object instead of promise layers.
    this.replicator.commitTo(p, m.record, new PendingAnswer(this, conn, frame.id, op, started, m.result));
    return DEFERRED;
  }

  /** A fast-path mutation is committed (err null) or failed: answers it. */
  answerCommitted(a: PendingAnswer, err: Error | null): void {
    if (err === null) {
      this.d.metrics.observeOp(a.op, false, (performance.now() - a.started) / 1000);
      a.conn.answer(a.id, 0, a.result);
    } else {
      const o = this.finishOp(a.op, a.started, this.errorOutcome(a.op, err));
      a.conn.answer(a.id, o.flags, o.payload);
    }
  }

  /** Runs a client op as this node: locally when primary, else forwarded once (when allowed). */
  async execute(op: Op, payload: unknown, session: string, allowForward: boolean): Promise<ExecResult> {
    const fanout = this.d.fanout();
    const topo = this.view.topo;
    if (topo !== null && (topo.lost.length > 0 || topo.lostCaches !== undefined)) this.applyLossPolicy(op, payload);
    switch (op) {
      case Op.HEARTBEAT:
        return { result: {}, forwarded: false };
      case Op.TOPOLOGY:
        return { result: this.view.partitionMap(), forwarded: false };
      case Op.CACHE_CREATE:
        return { result: await fanout.createCache(payload as { cache: string; config: CacheConfig }), forwarded: false };
      case Op.CACHE_GET_ALL:
        return fanout.getAll(payload as { cache: string; keys: Bytes[] }, session, allowForward);
      case Op.CACHE_PUT_ALL:
        return fanout.putAll(payload as { cache: string; entries: [Bytes, Bytes][]; seq: number; ttlMs?: number }, session, allowForward);
      case Op.CACHE_SIZE:
        return { result: { size: await fanout.clusterSize((payload as { cache: string }).cache) }, forwarded: false };
      case Op.CACHE_CLEAR:
        await fanout.clusterClear(payload as { cache: string; seq: number }, session);
        return { result: {}, forwarded: false };
      case Op.CACHE_SCAN:
        return this.route((payload as { partition: number }).partition, op, payload, session, allowForward);
      default:
        if (SINGLE_KEY_OPS.has(op)) {
          const p = payload as { key?: Bytes; name?: Bytes };
          const key = (op >= Op.LOCK_TRY_ACQUIRE && op <= Op.LOCK_RENEW ? p.name : p.key) as Bytes;
          return this.route(partitionOfBytes(key, this.view.partitionCount()), op, payload, session, allowForward);
        }
        throw new GridNodeError(ErrorCode.UNKNOWN_OP, `op ${op} is not supported`);
    }
  }

  /** While partitions are lost: the cache's partition-loss policy may refuse the op outright. */
  private applyLossPolicy(op: Op, payload: unknown): void {
    const cache = (payload as { cache?: unknown }).cache;
    if (typeof cache !== 'string') return;
    const r = lossRefusal(this.view.topo, this.store.cacheConfig(cache), cache, MUTATING_OPS.has(op));
    if (r !== null) throw new GridNodeError(r.code, r.message, r.partition);
  }

  async route(p: number, op: Op, payload: unknown, session: string, allowForward: boolean, rerouted = false): Promise<ExecResult> {
    const t = this.view.topo;
    let lossChecked = false;
    if (t !== null && (t.lost.length > 0 || t.lostCaches !== undefined) && Number.isInteger(p) && p >= 0 && p < t.partitions) {
      // The cache's policy decides whether a lost partition is served (IGNORE) or refused.
      const cache = (payload as { cache?: unknown }).cache;
      const name = typeof cache === 'string' ? cache : null;
      if (lostFor(t, p, name, name === null ? undefined : this.store.cacheConfig(name))) {
        throw new GridNodeError(ErrorCode.PARTITION_LOST, `partition ${p} is lost${name === null ? '' : ` for cache ${name}`}`, p);
      }
      lossChecked = true;
    }
    const d = routeRequest(t, this.id, this.view.epoch, p, allowForward, this.d.leaseValid(p), lossChecked);
    if (d.kind === 'local') return { result: await this.executeAsPrimary(p, op, payload, session), forwarded: false };
    if (d.kind === 'forward') {
      try {
        return { result: await this.d.forwarder.forward(d.to, p, op, payload, session), forwarded: true };
      } catch (err) {
        // The partition changed primary while the request was on its way: route it once more on
        // the new topology, exactly as a client retry would (same session and seq, so a mutation
        // still applies once), instead of answering NOT_PRIMARY.
        if (!rerouted && primaryChanged(err)) return this.route(p, op, payload, session, allowForward, true);
        throw err;
      }
    }
    throw new GridNodeError(d.code, d.message, p);
  }

  async executeAsPrimary(p: number, op: Op, payload: unknown, session: string): Promise<unknown> {
    this.view.assertPrimary(p);
    const st = this.table.part(p);
    if (st.fence) {
      await st.fence;
      this.view.assertPrimary(p);
    }
    if (!MUTATING_OPS.has(op)) {
      if (st.inflight.size > 0) await st.inflight.settled();
      // Nothing is read that a target lacks: a write this node applied and could not replicate
      // (it answered the client with an error) would otherwise be seen here and then be gone
      // after a failover. The target gets a snapshot first; one that refuses it (it follows a
      // newer primary) makes this read fail with NOT_PRIMARY.
      if (st.failed.size > 0) await this.replicator.ensureClean(p);
      this.view.assertPrimary(p);
      return this.store.read(p, op, payload);
    }
    if (op === Op.LOCK_ACQUIRE) return this.d.locks.acquire(p, payload as { name: Bytes; leaseMs: number; waitMs: number; seq: number }, session);
    // A release naming an acquisition still waiting here ends that wait (its client gave it up).
    if (op === Op.LOCK_RELEASE) this.d.locks.cancelWaiting(p, payload, session);
    const { result, record } = this.store.mutate(p, op, payload, session);
    await this.replicator.commit(p, record);
    return result;
  }
}
