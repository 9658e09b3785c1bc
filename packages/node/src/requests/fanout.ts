/**
 * Operations over many partitions: multi-key ops split by partition (each part routed on its
 * own, in parallel), and cluster-wide ops fanned out to every member (size, clear, cache
 * creation).
 *
 * Size and clear cover each partition exactly once: the node handling the request splits the
 * partitions by their primary in *its* topology and asks each member for exactly its share; a
 * member counts or clears a partition only while it may act as its primary (the same check as a
 * single-key op: role in its own topology, and its lease valid or vouched for, ADR 0007), and
 * otherwise refuses the whole share (NOT_READY / NOT_PRIMARY, retryable) before touching any of
 * it. So a node whose lease lapsed, or whose view of the topology differs, never answers with a
 * partial count or a partial clear.
 */
import { partitionOfBytes } from '@gridlink/affinity';
import { ErrorCode, Op, type Bytes, type CacheConfig } from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import { CACHE_PREFIX } from '../control/keys.js';
import { lostPartitionsOf, unsupportedCacheConfig } from '../control/routing.js';
import type { ControlPlane } from '../control/kv.js';
import { GridNodeError } from '../errors.js';
import type { ClusterView } from '../membership/view.js';
import type { PeerLinks } from '../peers/links.js';
import type { NodeStore } from '../store/index.js';
import type { ExecResult, ForwardMsg } from './messages.js';

/** The `parts` of a PEER_SIZE / PEER_CLEAR share, validated (undefined: none given). */
function partsOf(v: unknown, partitions: number): number[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > partitions || !v.every((p) => Number.isInteger(p) && (p as number) >= 0 && (p as number) < partitions)) {
    throw new GridNodeError(ErrorCode.BAD_REQUEST, `parts must be a list of at most ${partitions} partition numbers`);
  }
  return v as number[];
}

export type RouteFn = (p: number, op: Op, payload: unknown, session: string, allowForward: boolean) => Promise<ExecResult>;

export interface FanOutDeps {
  readonly opts: ResolvedNodeOptions;
  readonly kv: ControlPlane;
  readonly store: NodeStore;
  readonly view: ClusterView;
  readonly peers: PeerLinks;
  /** Node-wide lease check; size and clear judge per partition instead (view.assertPrimary). */
  leaseValid(): boolean;
  route: RouteFn;
  executeAsPrimary(p: number, op: Op, payload: unknown, session: string): Promise<unknown>;
}

export class FanOut {
  constructor(private readonly d: FanOutDeps) {}

  private groupByPartition<T>(items: T[], keyOf: (t: T) => Bytes): Map<number, number[]> {
    const groups = new Map<number, number[]>();
    const n = this.d.view.partitionCount();
    items.forEach((item, i) => {
      const p = partitionOfBytes(keyOf(item), n);
      let g = groups.get(p);
      if (!g) groups.set(p, (g = []));
      g.push(i);
    });
    return groups;
  }

  async getAll(payload: { cache: string; keys: Bytes[] }, session: string, allowForward: boolean): Promise<ExecResult> {
    const groups = this.groupByPartition(payload.keys, (k) => k);
    const values: (Bytes | null)[] = new Array<Bytes | null>(payload.keys.length).fill(null);
    let forwarded = false;
    await Promise.all(
      [...groups].map(async ([p, idx]) => {
        const sub = { cache: payload.cache, keys: idx.map((i) => payload.keys[i]!) };
        const r = await this.d.route(p, Op.CACHE_GET_ALL, sub, session, allowForward);
        forwarded ||= r.forwarded;
        const vals = (r.result as { values: (Bytes | null)[] }).values;
        idx.forEach((i, j) => (values[i] = vals[j] ?? null));
      }),
    );
    return { result: { values }, forwarded };
  }

  async putAll(payload: { cache: string; entries: [Bytes, Bytes][]; seq: number; ttlMs?: number }, session: string, allowForward: boolean): Promise<ExecResult> {
    const groups = this.groupByPartition(payload.entries, (e) => e[0]);
    let forwarded = false;
    await Promise.all(
      [...groups].map(async ([p, idx]) => {
        const sub: Record<string, unknown> = { cache: payload.cache, entries: idx.map((i) => payload.entries[i]!), seq: payload.seq };
        if (payload.ttlMs !== undefined) sub['ttlMs'] = payload.ttlMs;
        const r = await this.d.route(p, Op.CACHE_PUT_ALL, sub, session, allowForward);
        forwarded ||= r.forwarded;
      }),
    );
    return { result: {}, forwarded };
  }

  /** Partitions by their primary, in this node's topology. */
  private sharesByPrimary(): Map<string, number[]> {
    const t = this.d.view.topo;
    if (!t) throw new GridNodeError(ErrorCode.NOT_READY, 'the node has not joined a cluster yet');
    const shares = new Map<string, number[]>();
    t.owners.forEach((o, p) => {
      const primary = o[0];
      if (primary === undefined) return;
      let s = shares.get(primary);
      if (!s) shares.set(primary, (s = []));
      s.push(p);
    });
    return shares;
  }

  async clusterSize(cache: string): Promise<number> {
    const t = this.d.view.topo;
    if (!t) throw new GridNodeError(ErrorCode.NOT_READY, 'the node has not joined a cluster yet');
    const lost = lostPartitionsOf(t, cache, this.d.store.cacheConfig(cache));
    if (lost !== undefined) throw new GridNodeError(ErrorCode.PARTITION_LOST, `partition ${lost} is lost`, lost);
    const sizes = await Promise.all(
      [...this.sharesByPrimary()].map(async ([id, parts]) =>
        id === this.d.view.id ? this.localPrimarySize(cache, parts) : ((await this.d.peers.peer(id).request(Op.PEER_SIZE, { cache, parts }, this.d.opts.forwardTimeoutMs)) as number),
      ),
    );
    return sizes.reduce((a, b) => a + b, 0);
  }

  /**
   * Entries of `cache` in `parts` (default: every partition this node is primary of), refusing
   * unless this node may serve every one of them as primary right now.
   */
  async localPrimarySize(cache: string, parts?: unknown): Promise<number> {
    const share = partsOf(parts, this.d.view.partitionCount()) ?? this.d.view.primaryPartitions();
    for (const p of share) this.d.view.assertPrimary(p);
    return this.d.store.localSize(cache, share);
  }

  async clusterClear(payload: { cache: string; seq: number }, session: string): Promise<void> {
    await Promise.all(
      [...this.sharesByPrimary()].map(async ([id, parts]) => {
        const share = { cache: payload.cache, seq: payload.seq, parts };
        if (id === this.d.view.id) await this.localClear(share, session);
        else await this.d.peers.peer(id).request(Op.PEER_CLEAR, { ...share, session }, this.d.opts.forwardTimeoutMs);
      }),
    );
  }

  /**
   * Clears `cache` in `parts` (default: every partition this node is primary of) as their
   * primary; refuses before clearing anything unless it may serve every one of them.
   */
  async localClear(payload: { cache: string; seq: number; parts?: unknown }, session: string): Promise<void> {
    const share = partsOf(payload.parts, this.d.view.partitionCount()) ?? this.d.view.primaryPartitions();
    for (const p of share) this.d.view.assertPrimary(p);
    await Promise.all(
      share.map(async (p) => {
        await this.d.executeAsPrimary(p, Op.CACHE_CLEAR, { cache: payload.cache, seq: payload.seq }, session);
      }),
    );
  }

  async createCache(payload: { cache: string; config: CacheConfig }): Promise<Record<string, never>> {
    const unsupported = unsupportedCacheConfig(payload.config);
    if (unsupported !== null) throw new GridNodeError(ErrorCode.BAD_REQUEST, `config.${unsupported.field}: ${unsupported.message}`);
    this.d.store.createCache(payload.cache, payload.config);
    await this.d.kv.put(CACHE_PREFIX + payload.cache, payload.config);
    const msg: ForwardMsg = { op: Op.CACHE_CREATE, payload, session: '', local: true };
    await Promise.allSettled(this.d.view.otherMembers().map((id) => this.d.peers.peer(id).request(Op.PEER_FORWARD, msg, this.d.opts.forwardTimeoutMs)));
    return {};
  }
}
