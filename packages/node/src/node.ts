import { randomUUID } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { partitionOfBytes } from '@gridlink/affinity';
import {
  ErrorCode,
  MUTATING_OPS,
  Op,
  ProtocolError,
  ResponseFlag,
  RequestFlag,
  SINGLE_KEY_OPS,
  errorPayload,
  validateRequest,
  type Bytes,
  type CacheConfig,
  type ErrorPayload,
  type LockResult,
  type PartitionMap,
  type RequestFrame,
} from '@gridlink/protocol';
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from './config.js';
import { ServerConnection, type ConnectionHost, type RequestOutcome } from './connection.js';
import type { ControlPlane, KvEvent } from './control/kv.js';
import { roleOf, routeRequest, type Role } from './control/routing.js';
import { initialTopology, nextTopology, partitionMapOf, type LeaseRecord, type TopologyRecord } from './control/topology.js';
import { CasConflictError, GridNodeError } from './errors.js';
import { NodeMetrics } from './metrics.js';
import { PeerClient, PeerUnavailableError, isBatch } from './peer.js';
import { Scheduler, delay } from './scheduler.js';
import { NodeStore, StoreError, joinSnapshots, splitSnapshot, type PartitionSnapshot, type ReplicationRecord } from './store/index.js';

export const TOPOLOGY_KEY = 'topology';
export const LEASE_PREFIX = 'lease.';
export const CACHE_PREFIX = 'cache.';

/** Replication target: a node that must acknowledge every write of the partition. */
interface Target {
  id: string;
  epoch: string;
}

interface PartState {
  /** Replications in flight (reads and dedup hits wait for them). */
  inflight: Set<Promise<unknown>>;
  /** Targets whose copy may have missed a record: a snapshot is pushed before the next acknowledgement. */
  failed: Set<string>;
  /** Resyncs (snapshot pushes) in flight per target, with the counter their snapshot covers. */
  resyncs: Map<string, { counter: number; promise: Promise<void> }>;
  /** Promotion fence: a new primary checks its backups' counters before serving. */
  fence: Promise<void> | null;
  /** State transfer in progress: records received meanwhile are buffered. */
  pulling: boolean;
  buffer: ReplicationRecord[] | null;
  /** This copy missed a record: answer "gap" until a snapshot is installed. */
  awaitingSnapshot: boolean;
  /** A snapshot pushed in several parts, being received. */
  receiving: { id: string; parts: PartitionSnapshot[] } | null;
}

interface ReplicateMsg {
  p: number;
  v: number;
  from: string;
  epoch: string;
  rec?: ReplicationRecord;
  snap?: PartitionSnapshot;
  /** One part of a snapshot too large for one frame: parts are sent in order. */
  part?: { id: string; index: number; total: number; snap: PartitionSnapshot };
  probe?: boolean;
}

interface PullMsg {
  p: number;
  v: number;
  from: string;
  /** Continuation of a multi-part transfer: which part of which snapshot. */
  id?: string;
  index?: number;
}

interface PullReply {
  snap: PartitionSnapshot;
  total: number;
  id?: string;
}

type ReplicateReply = { s: 'ok'; counter?: number } | { s: 'gap' } | { s: 'stale' } | { s: 'gone' };

interface ForwardMsg {
  op: Op;
  payload: unknown;
  session: string;
  /** Apply on the receiving node only (cluster-wide cache creation). */
  local?: boolean;
}

type ForwardReply = { ok: true; result: unknown } | { ok: false; error: ErrorPayload };

interface ExecResult {
  result: unknown;
  forwarded: boolean;
}

const GONE = Symbol('gone');

/** Forwards abandoned because the partition's primary changed meanwhile (they are routed again). */
const PRIMARY_CHANGED = new WeakSet<Error>();

function keyHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function toGridError(err: unknown): GridNodeError {
  if (err instanceof GridNodeError) return err;
  if (err instanceof StoreError) return new GridNodeError(err.wireCode, err.message);
  if (err instanceof ProtocolError) return new GridNodeError(err.wireCode, err.message);
  if (err instanceof PeerUnavailableError) return new GridNodeError(ErrorCode.NOT_PRIMARY, err.message);
  return new GridNodeError(ErrorCode.INTERNAL, String((err as Error)?.message ?? err));
}

/**
 * A grid node: serves the gridlink protocol over TCP, holds a membership lease in the control
 * plane, owns partitions as primary or backup according to the topology record, replicates
 * writes synchronously to backups, transfers state to joining nodes and forwards misrouted
 * requests to the primary.
 */
export class GridNode implements ConnectionHost {
  readonly id: string;
  readonly opts: ResolvedNodeOptions;
  readonly scheduler = new Scheduler();
  readonly store: NodeStore;
  readonly metrics: NodeMetrics;
  private readonly kv: ControlPlane;
  private server: net.Server | null = null;
  private httpServer: http.Server | null = null;
  port = 0;
  httpPort: number | undefined;

  private topo: TopologyRecord | null = null;
  private topoRevision = 0;
  private mapCache: PartitionMap | null = null;
  private targetsCache: (readonly Target[] | undefined)[] = [];
  /** Peer clients by node id, valid for the address they were made for. */
  private readonly peerById = new Map<string, { host: string; port: number; client: PeerClient }>();
  /** Changes on restart and whenever this node learns it was declared gone. */
  epoch = randomUUID();
  private leaseValidUntil = 0;
  private lastRenewSentAt = 0;
  /** After a lapse: not primary until the control plane confirms membership. */
  private rejoinCheckAfter = 0;
  private synced: Record<string, number> = {};
  private readonly observed = new Map<string, { lease: LeaseRecord; revision: number; seenAt: number }>();
  private lastCoordinatorTick = 0;
  private coordinatorBusy = false;
  private lastCoordinatorInputs = '';
  private readonly parts = new Map<number, PartState>();
  private readonly conns = new Set<ServerConnection>();
  private readonly peers = new Map<string, PeerClient>();
  private readonly unwatch: (() => void)[] = [];
  private topoWaiters: { version: number; resolve: () => void }[] = [];
  private readonly goneWaiters = new Set<() => boolean>();
  private readonly forwards = new Set<{ p: number; primary: string; reject: (e: Error) => void }>();
  private readonly lockWaiters = new Map<string, Set<() => void>>();
  private readonly pullQueue: number[] = [];
  /** Multi-part snapshots being pulled from this node, by transfer id. */
  private readonly outgoing = new Map<string, { parts: PartitionSnapshot[]; timer: { cancel(): void } }>();
  private activePulls = 0;
  private leaseWriteScheduled = false;
  private state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  private readonly log;
  /** State transfers completed since start (partitions pulled or installed). */
  transfers = 0;
  /** Snapshots pushed to backups that missed records (gap, timeout, promotion) since start. */
  resyncs = 0;

  constructor(options: NodeOptions) {
    this.opts = resolveNodeOptions(options);
    this.id = this.opts.id;
    this.kv = this.opts.controlPlane;
    this.log = this.opts.logger;
    const storeOpts: ConstructorParameters<typeof NodeStore>[0] = { dedupWindowMs: this.opts.dedupWindowMs, cacheDefaults: this.opts.cacheDefaults };
    if (this.opts.maxEntries !== undefined) storeOpts.maxEntries = this.opts.maxEntries;
    if (this.opts.maxBytes !== undefined) storeOpts.maxBytes = this.opts.maxBytes;
    this.store = new NodeStore(storeOpts);
    this.metrics = new NodeMetrics(this);
    this.store.onLockFreed((p, name) => {
      this.locksFreed++;
      this.wakeLockWaiters(`${p}:${keyHex(name)}`);
    });
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error('node already started');
    this.state = 'running';
    for (const [name, config] of Object.entries(this.opts.caches)) this.store.createCache(name, config);
    await this.listen();
    if (this.opts.httpPort !== undefined) await this.listenHttp();

    this.unwatch.push(
      this.kv.watch<LeaseRecord>(LEASE_PREFIX, (e) => this.scheduler.run(() => this.onLeaseEvent(e))),
      this.kv.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => this.scheduler.run(() => this.onTopologyEvent(e))),
      this.kv.watch<CacheConfig>(CACHE_PREFIX, (e) => this.scheduler.run(() => this.onCacheEvent(e))),
    );
    const now = Date.now();
    for (const e of await this.kv.list<LeaseRecord>(LEASE_PREFIX)) {
      this.observed.set(e.value.id, { lease: e.value, revision: e.revision, seenAt: now });
    }
    for (const e of await this.kv.list<CacheConfig>(CACHE_PREFIX)) this.store.createCache(e.key.slice(CACHE_PREFIX.length), e.value);
    for (const [name, config] of Object.entries(this.opts.caches)) {
      if ((await this.kv.get(CACHE_PREFIX + name)) === null) await this.kv.put(CACHE_PREFIX + name, config);
    }
    await this.refreshTopology();
    await this.renewLease();
    this.lastCoordinatorTick = Date.now();
    this.scheduler.setInterval(() => void this.renewLease(), this.opts.renewIntervalMs);
    this.scheduler.setInterval(() => void this.coordinatorTick(), this.opts.coordinatorIntervalMs);
    this.scheduler.setInterval(() => {
      this.store.sweep(this.opts.sweepBudget);
    }, this.opts.sweepIntervalMs);
    this.log.info('node started', { id: this.id, port: this.port });
  }

  private listen(): Promise<void> {
    const onConn = (socket: net.Socket): void => {
      if (this.state !== 'running' || this.conns.size >= this.opts.maxConnections) {
        socket.destroy();
        return;
      }
      const conn = new ServerConnection(this, socket);
      this.conns.add(conn);
      this.metrics.connections.set(this.clientConnections());
    };
    const t = this.opts.tls;
    const server = t ? tls.createServer({ key: t.key, cert: t.cert }, onConn) : net.createServer(onConn);
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error('server error', { err: String(err) }));
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private listenHttp(): Promise<void> {
    const server = http.createServer((req, res) => {
      this.scheduler.run(() => void this.onHttp(req, res));
    });
    this.httpServer = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.httpPort, this.opts.httpHost, () => {
        server.off('error', reject);
        this.httpPort = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private async onHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/health/live') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ live: true, id: this.id }));
    } else if (url === '/health/ready') {
      const ready = this.isReady();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, id: this.id, topologyVersion: this.topologyVersion() }));
    } else if (url === '/metrics') {
      try {
        const body = await this.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(body);
      } catch (err) {
        res.writeHead(500).end(String(err));
      }
    } else {
      res.writeHead(404).end();
    }
  }

  /** Graceful stop: refuses new requests, lets in-flight ones finish (bounded), gives up its lease, closes. */
  async stop(): Promise<void> {
    if (this.state !== 'running') return;
    this.state = 'stopping';
    for (const c of this.conns) c.pushStopping();
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && [...this.conns].some((c) => c.inFlight > 0) && !this.scheduler.isFrozen) {
      await new Promise((r) => setTimeout(r, 10));
    }
    try {
      await this.kv.delete(LEASE_PREFIX + this.id);
    } catch (err) {
      this.log.warn('could not delete lease', { err: String(err) });
    }
    this.shutdown(false);
  }

  /** Abrupt death: sockets destroyed, timers stopped, no goodbye. */
  kill(): void {
    if (this.state === 'stopped') return;
    this.shutdown(true);
  }

  private shutdown(abrupt: boolean): void {
    this.state = 'stopped';
    this.scheduler.stop();
    for (const u of this.unwatch.splice(0)) u();
    for (const c of [...this.conns]) {
      if (abrupt) c.destroy();
      else c.close();
    }
    for (const p of this.peers.values()) p.destroy();
    this.peers.clear();
    this.peerById.clear();
    this.server?.close();
    this.httpServer?.closeAllConnections();
    this.httpServer?.close();
    for (const w of this.topoWaiters) w.resolve();
    this.topoWaiters = [];
    for (const f of this.forwards) f.reject(new GridNodeError(ErrorCode.NODE_STOPPING, 'node stopped'));
    this.forwards.clear();
    this.log.info('node stopped', { id: this.id, abrupt });
  }

  /** Simulates a frozen process: nothing is read or answered and no timer fires until resume(). */
  hang(): void {
    if (this.state !== 'running') return;
    this.scheduler.freeze();
    for (const c of this.conns) c.pause();
    for (const p of this.peers.values()) p.pause();
  }

  resume(): void {
    if (this.state !== 'running') return;
    for (const c of this.conns) c.resume();
    for (const p of this.peers.values()) p.resume();
    this.scheduler.thaw();
    void this.renewLease();
  }

  get running(): boolean {
    return this.state === 'running';
  }

  get hung(): boolean {
    return this.scheduler.isFrozen;
  }

  // -------------------------------------------------------------------------------------------
  // Introspection

  topologyVersion(): number {
    return this.topo?.version ?? 0;
  }

  topology(): TopologyRecord | null {
    return this.topo;
  }

  partitionCount(): number {
    return this.topo?.partitions ?? this.opts.partitions;
  }

  private isMember(): boolean {
    return this.topo?.members[this.id]?.epoch === this.epoch;
  }

  /** Joined (a member under the current epoch) and holding every assigned partition caught up. */
  isReady(): boolean {
    const t = this.topo;
    if (!t || !this.isMember() || this.state !== 'running') return false;
    return !t.syncing.some((s) => s.some((e) => e.id === this.id));
  }

  /**
   * Serves what the topology says it serves: ready, able to vouch for its lease when it is primary
   * of anything, and no promotion fence pending (requests would wait on it).
   */
  isServing(): boolean {
    if (!this.isReady() || this.scheduler.isFrozen) return false;
    const n = this.topo!.partitions;
    for (let p = 0; p < n; p++) {
      if (this.roleOf(p) !== 'primary') continue;
      if (!this.leaseValid()) return false;
      if (this.parts.get(p)?.fence) return false;
    }
    return true;
  }

  /** The lease is certainly valid: renewed recently enough, judged from when the renewal was sent. */
  leaseValid(): boolean {
    return Date.now() < this.leaseValidUntil && Date.now() >= this.rejoinCheckAfter;
  }

  roleOf(p: number): Role {
    return roleOf(this.topo, this.id, this.epoch, p);
  }

  partitionCounts(): { owned: number; primary: number; moving: number } {
    let owned = 0;
    let primary = 0;
    let moving = 0;
    const n = this.topo?.partitions ?? 0;
    for (let p = 0; p < n; p++) {
      const r = this.roleOf(p);
      if (r === 'primary') primary++;
      if (r === 'primary' || r === 'backup') owned++;
      if (r === 'syncing') moving++;
    }
    return { owned, primary, moving };
  }

  replicationInFlight(): number {
    let n = 0;
    for (const st of this.parts.values()) n += st.inflight.size;
    return n;
  }

  clientConnections(): number {
    let n = 0;
    for (const c of this.conns) if (!c.isPeer) n++;
    return n;
  }

  // -------------------------------------------------------------------------------------------
  // Control plane: leases, topology, caches

  private leaseRecord(): LeaseRecord {
    const r: LeaseRecord = {
      id: this.id,
      epoch: this.epoch,
      host: this.opts.advertiseHost,
      port: this.port,
      synced: { ...this.synced },
    };
    if (this.opts.zone !== undefined) r.zone = this.opts.zone;
    if (this.opts.weight !== undefined) r.weight = this.opts.weight;
    return r;
  }

  private async renewLease(): Promise<void> {
    if (this.state !== 'running' && this.state !== 'stopping') return;
    const now = Date.now();
    if (this.leaseValidUntil > 0 && now >= this.leaseValidUntil) {
      // Our lease may have expired: the coordinator may have declared us gone and promoted others.
      // Serve as primary again only once the control plane confirms we are still a member.
      this.log.warn('lease lapsed', { id: this.id });
      this.rejoinCheckAfter = now + this.opts.leaseMs;
      this.scheduler.setTimeout(() => void this.rejoinCheck(), this.opts.leaseMs);
    }
    const sentAt = now;
    this.lastRenewSentAt = sentAt;
    try {
      await this.kv.put(LEASE_PREFIX + this.id, this.leaseRecord());
      if ((this.state as string) === 'stopped') return;
      this.leaseValidUntil = Math.max(this.leaseValidUntil, sentAt + this.opts.leaseMs - this.opts.leaseMarginMs);
    } catch (err) {
      this.log.warn('lease renewal failed', { err: String(err) });
    }
  }

  /** After a lapse: re-read the topology (applying it notices if this epoch was declared gone). */
  private async rejoinCheck(): Promise<void> {
    await this.refreshTopology();
  }

  private scheduleLeaseWrite(): void {
    if (this.leaseWriteScheduled) return;
    this.leaseWriteScheduled = true;
    this.scheduler.setTimeout(() => {
      this.leaseWriteScheduled = false;
      void this.renewLease();
    }, 2);
  }

  private onLeaseEvent(e: KvEvent<LeaseRecord>): void {
    const id = e.key.slice(LEASE_PREFIX.length);
    if (e.type === 'delete') this.observed.delete(id);
    else this.observed.set(id, { lease: e.value, revision: e.revision, seenAt: Date.now() });
  }

  private onTopologyEvent(e: KvEvent<TopologyRecord>): void {
    if (e.type !== 'put') return;
    if (e.revision > this.topoRevision) this.topoRevision = e.revision;
    this.applyTopology(e.value);
  }

  private onCacheEvent(e: KvEvent<CacheConfig>): void {
    if (e.type === 'put') this.store.createCache(e.key.slice(CACHE_PREFIX.length), e.value);
  }

  private async refreshTopology(): Promise<void> {
    const e = await this.kv.get<TopologyRecord>(TOPOLOGY_KEY);
    if (!e || this.state === 'stopped') return;
    if (e.revision > this.topoRevision) this.topoRevision = e.revision;
    this.applyTopology(e.value);
  }

  /** Resolves once this node holds topology `version` or later (or after timeoutMs). */
  private async awaitTopology(version: number, timeoutMs: number): Promise<void> {
    if (this.topologyVersion() >= version) return;
    await this.refreshTopology();
    if (this.topologyVersion() >= version) return;
    await new Promise<void>((resolve) => {
      const w = { version, resolve };
      this.topoWaiters.push(w);
      this.scheduler.setTimeout(resolve, timeoutMs);
    });
  }

  /**
   * The coordinator: the alive node with the lowest id judges liveness from lease revisions (a
   * lease is alive while a new revision was seen within leaseMs on this node's clock) and moves
   * the topology record on with compare-and-set on its revision.
   */
  private async coordinatorTick(): Promise<void> {
    const now = Date.now();
    if (now - this.lastCoordinatorTick > this.opts.leaseMs / 2) {
      // This process stalled: what we observed is stale, so judge nobody dead on it.
      for (const o of this.observed.values()) o.seenAt = now;
    }
    this.lastCoordinatorTick = now;
    if (this.coordinatorBusy || this.state !== 'running' || !this.leaseValid()) return;
    const alive: LeaseRecord[] = [];
    for (const o of this.observed.values()) if (now - o.seenAt <= this.opts.leaseMs) alive.push(o.lease);
    const ids = alive.map((l) => l.id).sort();
    if (ids[0] !== this.id) return;
    this.coordinatorBusy = true;
    try {
      if (this.topo === null) {
        const existing = await this.kv.get<TopologyRecord>(TOPOLOGY_KEY);
        if (existing) {
          this.topoRevision = existing.revision;
          this.applyTopology(existing.value);
          return;
        }
        if (alive.length < this.opts.bootstrapNodes) return;
        const rec = initialTopology({
          clusterId: this.opts.clusterId,
          partitions: this.opts.partitions,
          backups: this.opts.backups,
          leases: alive,
          autoAdjust: this.opts.autoAdjust,
        });
        await this.kv.create(TOPOLOGY_KEY, rec);
        this.log.info('cluster created', { nodes: ids, partitions: rec.partitions });
        return;
      }
      // Skip the step when nothing it depends on changed (renewals alone change nothing).
      const inputs = `${this.topo.version}|${alive.map((l) => `${l.id}:${l.epoch}:${JSON.stringify(l.synced)}`).join(';')}`;
      if (inputs === this.lastCoordinatorInputs && this.topo.adjust === null) return;
      this.lastCoordinatorInputs = inputs;
      const next = nextTopology(this.topo, alive, now);
      if (next === null) return;
      await this.kv.update(TOPOLOGY_KEY, next, this.topoRevision);
    } catch (err) {
      this.lastCoordinatorInputs = '';
      if (err instanceof CasConflictError) await this.refreshTopology();
      else this.log.warn('coordinator write failed', { err: String(err) });
    } finally {
      this.coordinatorBusy = false;
    }
  }

  /** This node's previous epoch was declared gone: its data is stale, start over empty. */
  private declaredGone(): void {
    this.log.warn('declared gone by the cluster; rejoining empty', { id: this.id });
    this.epoch = randomUUID();
    this.synced = {};
    for (const p of this.store.heldPartitions()) this.store.dropPartition(p);
    this.parts.clear();
    this.pullQueue.length = 0;
    // A new life: the old lease's lapse is no reason to wait. This epoch becomes a member (and
    // then an owner) only after the coordinator saw a renewal carrying it, and leaseValid() holds
    // only once such a renewal was acknowledged.
    this.rejoinCheckAfter = 0;
    this.leaseValidUntil = 0;
    this.scheduleLeaseWrite();
  }

  private applyTopology(rec: TopologyRecord): void {
    if (this.state === 'stopped') return;
    const prev = this.topo;
    if (prev && rec.version <= prev.version) return;
    const wasMember = prev?.members[this.id]?.epoch === this.epoch;
    this.topo = rec;
    this.mapCache = null;
    this.targetsCache = [];
    if (wasMember && rec.members[this.id]?.epoch !== this.epoch) this.declaredGone();

    for (let p = 0; p < rec.partitions; p++) {
      const role = this.roleOf(p);
      if (role === 'none') {
        if (this.store.hasPartition(p) || this.parts.has(p)) {
          this.store.dropPartition(p);
          this.parts.delete(p);
        }
        delete this.synced[String(p)];
        continue;
      }
      if (role === 'syncing') {
        const st = this.part(p);
        if (!st.pulling && this.synced[String(p)] === undefined) this.enqueuePull(p);
        continue;
      }
      delete this.synced[String(p)];
      if (role === 'primary') {
        const before = prev?.owners[p] ?? [];
        const wasPrimary = wasMember && before[0] === this.id;
        if (!wasPrimary && before.length > 0 && prev !== null) this.startFence(p);
      }
    }
    for (const w of [...this.goneWaiters]) if (w()) this.goneWaiters.delete(w);
    for (const f of [...this.forwards]) {
      if ((rec.owners[f.p] ?? [])[0] !== f.primary) {
        this.forwards.delete(f);
        const err = new GridNodeError(ErrorCode.NOT_PRIMARY, 'the partition changed primary while forwarding', f.p);
        PRIMARY_CHANGED.add(err);
        f.reject(err);
      }
    }
    const waiters = this.topoWaiters;
    this.topoWaiters = [];
    for (const w of waiters) {
      if (rec.version >= w.version) w.resolve();
      else this.topoWaiters.push(w);
    }
    for (const set of this.lockWaiters.values()) for (const wake of set) wake();
    for (const c of this.conns) if (!c.isPeer) c.pushTopology(rec.version);
    this.metrics.onTopology(rec.version);
  }

  private part(p: number): PartState {
    let st = this.parts.get(p);
    if (!st) {
      st = { inflight: new Set(), failed: new Set(), resyncs: new Map(), fence: null, pulling: false, buffer: null, awaitingSnapshot: false, receiving: null };
      this.parts.set(p, st);
    }
    return st;
  }

  partitionMap(): PartitionMap {
    if (!this.topo) throw new GridNodeError(ErrorCode.NOT_READY, 'the node has not joined a cluster yet');
    this.mapCache ??= partitionMapOf(this.topo);
    return this.mapCache;
  }

  // -------------------------------------------------------------------------------------------
  // Peers

  private peer(id: string): PeerClient {
    const m = this.topo?.members[id] ?? this.topo?.addresses[id];
    if (!m) throw new PeerUnavailableError(`unknown node ${id}`);
    const known = this.peerById.get(id);
    if (known !== undefined && known.host === m.host && known.port === m.port) return known.client;
    const c = this.peerFor(id, m);
    this.peerById.set(id, { host: m.host, port: m.port, client: c });
    return c;
  }

  private peerFor(id: string, m: { host: string; port: number }): PeerClient {
    const key = `${id}@${m.host}:${m.port}`;
    let c = this.peers.get(key);
    if (!c) {
      for (const [k, old] of this.peers) {
        if (k.startsWith(`${id}@`)) {
          old.destroy();
          this.peers.delete(k);
        }
      }
      c = new PeerClient({
        selfId: this.id,
        peerId: id,
        host: m.host,
        port: m.port,
        clusterId: this.opts.clusterId,
        authToken: this.opts.authToken,
        tls: this.opts.tls,
        maxFrameSize: this.opts.maxFrameSize,
        scheduler: this.scheduler,
        connectTimeoutMs: this.opts.replicationTimeoutMs,
      });
      if (this.scheduler.isFrozen) c.pause();
      this.peers.set(key, c);
    }
    return c;
  }

  /** Resolves with GONE as soon as `stillThere()` turns false at a topology change. */
  private raceTopology<T>(promise: Promise<T>, stillThere: () => boolean): Promise<T | typeof GONE> {
    if (!stillThere()) return Promise.resolve(GONE);
    return new Promise<T | typeof GONE>((resolve, reject) => {
      const check = (): boolean => {
        if (stillThere()) return false;
        resolve(GONE);
        return true;
      };
      this.goneWaiters.add(check);
      promise.then(
        (v) => {
          this.goneWaiters.delete(check);
          resolve(v);
        },
        (e: unknown) => {
          this.goneWaiters.delete(check);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  connectionOpened(_conn: ServerConnection): void {
    this.metrics.connections.set(this.clientConnections());
  }

  connectionClosed(conn: ServerConnection): void {
    this.conns.delete(conn);
    this.metrics.connections.set(this.clientConnections());
  }

  handleRequest(conn: ServerConnection, frame: RequestFrame): RequestOutcome | Promise<RequestOutcome> {
    const started = performance.now();
    const op = frame.op as number;
    if (op < 100) {
      const fast = this.fastPath(conn, frame, started);
      if (fast !== null) return fast;
    }
    return this.handleRequestSlow(conn, frame, started);
  }

  private async handleRequestSlow(conn: ServerConnection, frame: RequestFrame, started: number): Promise<RequestOutcome> {
    const op = frame.op as number;
    let outcome: RequestOutcome;
    try {
      if (this.state !== 'running') throw new GridNodeError(ErrorCode.NODE_STOPPING, 'the node is shutting down');
      validateRequest(frame);
      if (op >= 100) {
        if (!conn.isPeer) throw new GridNodeError(ErrorCode.UNKNOWN_OP, `op ${op} is reserved for nodes`);
        outcome = { flags: 0, payload: await this.handlePeer(frame) };
      } else {
        const allowForward = (frame.flags & RequestFlag.NO_FORWARD) === 0;
        const r = await this.execute(frame.op, frame.payload, conn.sessionId, allowForward);
        outcome = { flags: r.forwarded ? ResponseFlag.FORWARDED | ResponseFlag.REFRESH_MAP : 0, payload: r.result };
      }
    } catch (err) {
      outcome = this.errorOutcome(op, err);
    }
    if (op < 100) this.metrics.observeOp(op, (outcome.flags & ResponseFlag.ERROR) !== 0, (performance.now() - started) / 1000);
    return outcome;
  }

  private errorOutcome(op: number, err: unknown): RequestOutcome {
    const e = toGridError(err);
    let flags = ResponseFlag.ERROR;
    if (e.wireCode === ErrorCode.NOT_PRIMARY || e.wireCode === ErrorCode.PARTITION_MOVING || e.wireCode === ErrorCode.PARTITION_LOST) {
      flags |= ResponseFlag.REFRESH_MAP;
    }
    if (e.wireCode === ErrorCode.INTERNAL) this.log.error('request failed', { op, err: e.message });
    return { flags, payload: errorPayload(e.wireCode, e.message, e.partition) };
  }

  private finishOp(op: number, started: number, outcome: RequestOutcome): RequestOutcome {
    this.metrics.observeOp(op, (outcome.flags & ResponseFlag.ERROR) !== 0, (performance.now() - started) / 1000);
    return outcome;
  }

  /**
   * The common case without the general path's promise layers: a single-key op (not a waiting
   * lock acquire) for a partition this node serves as primary right now, no promotion fence
   * pending. Reads with no replication in flight are answered synchronously; a mutation is
   * applied and answered once committed (replicated) exactly as executeAsPrimary does. Returns
   * null, having changed nothing, when the request needs the general path.
   */
  private fastPath(conn: ServerConnection, frame: RequestFrame, started: number): RequestOutcome | Promise<RequestOutcome> | null {
    const op = frame.op;
    if (this.state !== 'running' || !SINGLE_KEY_OPS.has(op) || op === Op.LOCK_ACQUIRE) return null;
    try {
      validateRequest(frame);
    } catch {
      return null; // the general path answers it
    }
    const payload = frame.payload as { key?: Bytes; name?: Bytes };
    const key = (op >= Op.LOCK_TRY_ACQUIRE && op <= Op.LOCK_RENEW ? payload.name : payload.key) as Bytes;
    const t = this.topo;
    if (t === null) return null;
    const p = partitionOfBytes(key, t.partitions);
    if ((t.owners[p] ?? [])[0] !== this.id || t.members[this.id]?.epoch !== this.epoch || t.lost.includes(p) || !this.leaseValid()) return null;
    const st = this.part(p);
    if (st.fence) return null;
    if (!MUTATING_OPS.has(op)) {
      if (st.inflight.size > 0) return null;
      let outcome: RequestOutcome;
      try {
        outcome = { flags: 0, payload: this.store.read(p, op, frame.payload) };
      } catch (err) {
        outcome = this.errorOutcome(op, err);
      }
      return this.finishOp(op, started, outcome);
    }
    let result: unknown;
    let record: ReplicationRecord | null;
    try {
      ({ result, record } = this.store.mutate(p, op, frame.payload, conn.sessionId));
    } catch (err) {
      return this.finishOp(op, started, this.errorOutcome(op, err));
    }
    return this.commit(p, record).then(
      () => this.finishOp(op, started, { flags: 0, payload: result }),
      (err: unknown) => this.finishOp(op, started, this.errorOutcome(op, err)),
    );
  }

  /** Runs a client op as this node: locally when primary, else forwarded once (when allowed). */
  private async execute(op: Op, payload: unknown, session: string, allowForward: boolean): Promise<ExecResult> {
    switch (op) {
      case Op.HEARTBEAT:
        return { result: {}, forwarded: false };
      case Op.TOPOLOGY:
        return { result: this.partitionMap(), forwarded: false };
      case Op.CACHE_CREATE:
        return { result: await this.createCache(payload as { cache: string; config: CacheConfig }), forwarded: false };
      case Op.CACHE_GET_ALL:
        return this.getAll(payload as { cache: string; keys: Bytes[] }, session, allowForward);
      case Op.CACHE_PUT_ALL:
        return this.putAll(payload as { cache: string; entries: [Bytes, Bytes][]; seq: number; ttlMs?: number }, session, allowForward);
      case Op.CACHE_SIZE:
        return { result: { size: await this.clusterSize((payload as { cache: string }).cache) }, forwarded: false };
      case Op.CACHE_CLEAR:
        await this.clusterClear(payload as { cache: string; seq: number }, session);
        return { result: {}, forwarded: false };
      case Op.CACHE_SCAN:
        return this.route((payload as { partition: number }).partition, op, payload, session, allowForward);
      default:
        if (SINGLE_KEY_OPS.has(op)) {
          const p = payload as { key?: Bytes; name?: Bytes };
          const key = (op >= Op.LOCK_TRY_ACQUIRE && op <= Op.LOCK_RENEW ? p.name : p.key) as Bytes;
          return this.route(partitionOfBytes(key, this.partitionCount()), op, payload, session, allowForward);
        }
        throw new GridNodeError(ErrorCode.UNKNOWN_OP, `op ${op} is not supported`);
    }
  }

  private async route(p: number, op: Op, payload: unknown, session: string, allowForward: boolean, rerouted = false): Promise<ExecResult> {
    const d = routeRequest(this.topo, this.id, this.epoch, p, allowForward, this.leaseValid());
    if (d.kind === 'local') return { result: await this.executeAsPrimary(p, op, payload, session), forwarded: false };
    if (d.kind === 'forward') {
      try {
        return { result: await this.forward(d.to, p, op, payload, session), forwarded: true };
      } catch (err) {
        // The partition changed primary while the request was on its way: route it once more on
        // the new topology, exactly as a client retry would (same session and seq, so a mutation
        // still applies once), instead of answering NOT_PRIMARY.
        if (!rerouted && err instanceof Error && PRIMARY_CHANGED.has(err)) return this.route(p, op, payload, session, allowForward, true);
        throw err;
      }
    }
    throw new GridNodeError(d.code, d.message, p);
  }

  private async forward(primary: string, p: number, op: Op, payload: unknown, session: string): Promise<unknown> {
    const timeout = this.opts.forwardTimeoutMs + (op === Op.LOCK_ACQUIRE ? (payload as { waitMs: number }).waitMs : 0);
    const msg: ForwardMsg = { op, payload, session };
    const reply = await new Promise<ForwardReply>((resolve, reject) => {
      const f = { p, primary, reject };
      this.forwards.add(f);
      let req: Promise<unknown>;
      try {
        req = this.peer(primary).request(Op.PEER_FORWARD, msg, timeout);
      } catch (err) {
        this.forwards.delete(f);
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      req.then(
        (r) => {
          this.forwards.delete(f);
          resolve(r as ForwardReply);
        },
        (e: unknown) => {
          this.forwards.delete(f);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
    if (reply.ok) return reply.result;
    throw new GridNodeError(reply.error.code as ErrorCode, reply.error.message, reply.error.partition);
  }

  private assertPrimary(p: number): void {
    const d = routeRequest(this.topo, this.id, this.epoch, p, false, this.leaseValid());
    if (d.kind !== 'local') throw new GridNodeError(d.kind === 'error' ? d.code : ErrorCode.NOT_PRIMARY, d.kind === 'error' ? d.message : 'not primary', p);
  }

  private async executeAsPrimary(p: number, op: Op, payload: unknown, session: string): Promise<unknown> {
    this.assertPrimary(p);
    const st = this.part(p);
    if (st.fence) {
      await st.fence;
      this.assertPrimary(p);
    }
    if (!MUTATING_OPS.has(op)) {
      if (st.inflight.size > 0) await Promise.allSettled([...st.inflight]);
      this.assertPrimary(p);
      return this.store.read(p, op, payload);
    }
    if (op === Op.LOCK_ACQUIRE) return this.lockAcquire(p, payload as { name: Bytes; leaseMs: number; waitMs: number; seq: number }, session);
    const { result, record } = this.store.mutate(p, op, payload, session);
    await this.commit(p, record);
    return result;
  }

  private async lockAcquire(p: number, payload: { name: Bytes; leaseMs: number; waitMs: number; seq: number }, session: string): Promise<unknown> {
    const deadline = Date.now() + payload.waitMs;
    const key = `${p}:${keyHex(payload.name)}`;
    for (;;) {
      this.assertPrimary(p);
      const freedBefore = this.locksFreed;
      const { result, record } = this.store.mutate(p, Op.LOCK_ACQUIRE, payload, session);
      await this.commit(p, record);
      const r = result as LockResult;
      const left = deadline - Date.now();
      if (r.acquired || left <= 0) return r;
      // A lock freed while the commit was awaited woke no waiter yet: try again at once.
      if (this.locksFreed !== freedBefore) continue;
      const wait = Math.max(1, Math.min(left, r.heldForMs ?? left));
      await new Promise<void>((resolve) => {
        let set = this.lockWaiters.get(key);
        if (!set) {
          set = new Set();
          this.lockWaiters.set(key, set);
        }
        const s = set;
        const timer = this.scheduler.setTimeout(() => wake(), wait);
        const wake = (): void => {
          timer.cancel();
          s.delete(wake);
          if (s.size === 0 && this.lockWaiters.get(key) === s) this.lockWaiters.delete(key);
          resolve();
        };
        s.add(wake);
      });
    }
  }

  /** Locks freed so far (any key): lets a lock waiter see a release it could not yet wait for. */
  private locksFreed = 0;

  private wakeLockWaiters(key: string): void {
    const set = this.lockWaiters.get(key);
    if (set) for (const wake of [...set]) wake();
  }

  /** Makes a mutation durable on every replication target before it is acknowledged. */
  private async commit(p: number, record: ReplicationRecord | null): Promise<void> {
    const st = this.part(p);
    if (record) {
      await this.replicate(p, record);
    } else if (st.inflight.size > 0) {
      // A dedup hit: the original may still be replicating.
      await Promise.allSettled([...st.inflight]);
    }
    if (st.failed.size > 0) await this.ensureClean(p);
  }

  /** Replication targets of p (read-only; cached until the topology changes). */
  private targets(p: number): readonly Target[] {
    const cached = this.targetsCache[p];
    if (cached !== undefined) return cached;
    const out = this.computeTargets(p);
    this.targetsCache[p] = out;
    return out;
  }

  private computeTargets(p: number): Target[] {
    const t = this.topo;
    if (!t) return [];
    const out: Target[] = [];
    const ids = [...(t.owners[p] ?? []), ...(t.syncing[p] ?? []).map((e) => e.id)];
    for (const id of ids) {
      const m = t.members[id];
      if (id !== this.id && m) out.push({ id, epoch: m.epoch });
    }
    return out;
  }

  private isTarget(p: number, target: Target): boolean {
    return this.targets(p).some((x) => x.id === target.id && x.epoch === target.epoch);
  }

  private async replicate(p: number, record: ReplicationRecord): Promise<void> {
    const targets = this.targets(p);
    if (targets.length === 0) return;
    const st = this.part(p);
    const started = Date.now();
    const work = targets.length === 1 ? this.replicateTo(p, targets[0]!, record) : Promise.all(targets.map((t) => this.replicateTo(p, t, record)));
    st.inflight.add(work);
    try {
      await work;
    } finally {
      st.inflight.delete(work);
      this.metrics.replicationSeconds.observe(this.metrics.replication, (Date.now() - started) / 1000);
    }
  }

  private async replicateTo(p: number, t: Target, record: ReplicationRecord): Promise<void> {
    const deadline = Date.now() + this.opts.replicationTimeoutMs;
    const stillThere = (): boolean => this.isTarget(p, t);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.part(p).failed.add(t.id);
        throw new GridNodeError(ErrorCode.REPLICATION_FAILED, `backup ${t.id} did not acknowledge in time`, p);
      }
      const msg: ReplicateMsg = { p, v: this.topologyVersion(), from: this.id, epoch: t.epoch, rec: record };
      let reply: ReplicateReply | typeof GONE;
      try {
        reply = await this.raceTopology(this.peer(t.id).request(Op.PEER_REPLICATE, msg, left, true) as Promise<ReplicateReply>, stillThere);
      } catch (err) {
        if (!stillThere()) return;
        if (err instanceof GridNodeError && err.wireCode === ErrorCode.TIMEOUT) continue;
        // Unreachable: it is dead or restarting; wait for the topology to drop it, retrying meanwhile.
        if ((await this.raceTopology(delay(this.scheduler, 50), stillThere)) === GONE) return;
        continue;
      }
      if (reply === GONE) return;
      switch (reply.s) {
        case 'ok':
          return;
        case 'stale':
          throw new GridNodeError(ErrorCode.NOT_PRIMARY, `node ${this.id} is no longer the primary of partition ${p}`, p);
        case 'gone':
          if ((await this.raceTopology(delay(this.scheduler, Math.max(1, deadline - Date.now())), stillThere)) === GONE) return;
          continue;
        case 'gap':
          await this.resync(p, t, record.counter);
          return;
      }
    }
  }

  /** Pushes a snapshot of p to t covering at least `minCounter` (single-flight per target). */
  private resync(p: number, t: Target, minCounter: number): Promise<void> {
    const st = this.part(p);
    const existing = st.resyncs.get(t.id);
    if (existing && existing.counter >= minCounter) return existing.promise;
    const counter = this.store.updateCounter(p);
    const parts = this.snapshotParts(p);
    const v = this.topologyVersion();
    const id = randomUUID();
    // All parts are written now, in order, so records sent later arrive after the last part.
    const sends = parts.map((snap, index) => {
      const msg: ReplicateMsg =
        parts.length === 1 ? { p, v, from: this.id, epoch: t.epoch, snap } : { p, v, from: this.id, epoch: t.epoch, part: { id, index, total: parts.length, snap } };
      return this.peer(t.id).request(Op.PEER_REPLICATE, msg, this.opts.replicationTimeoutMs) as Promise<ReplicateReply>;
    });
    const promise = (async () => {
      const replies = await this.raceTopology(Promise.all(sends), () => this.isTarget(p, t));
      if (replies === GONE) return;
      for (const reply of replies) {
        if (reply.s === 'stale') throw new GridNodeError(ErrorCode.NOT_PRIMARY, `node ${this.id} is no longer the primary of partition ${p}`, p);
        if (reply.s !== 'ok') throw new GridNodeError(ErrorCode.REPLICATION_FAILED, `backup ${t.id} refused a snapshot`, p);
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

  /** A snapshot of p in parts that each fit in a frame. */
  private snapshotParts(p: number): PartitionSnapshot[] {
    const snap = this.store.snapshot(p);
    return splitSnapshot(snap, Math.max(16 * 1024, Math.floor(this.opts.maxFrameSize / 2)));
  }

  private async ensureClean(p: number): Promise<void> {
    const st = this.part(p);
    for (const id of [...st.failed]) {
      const t = this.targets(p).find((x) => x.id === id);
      if (!t) {
        st.failed.delete(id);
        continue;
      }
      await this.resync(p, t, this.store.updateCounter(p));
    }
  }

  /**
   * A node that just became primary of p asks every other holder for its update counter; a
   * holder that is ahead (it got a record the old primary never acknowledged) or unreachable gets
   * a snapshot before this node acknowledges anything on p.
   */
  private startFence(p: number): void {
    const st = this.part(p);
    const fence = (async () => {
      const mine = this.store.updateCounter(p);
      // Holders only: a node still pulling gets its whole state from this primary anyway.
      const holders = this.targets(p).filter((t) => (this.topo?.owners[p] ?? []).includes(t.id));
      const probe = async (t: Target): Promise<void> => {
        const msg: ReplicateMsg = { p, v: this.topologyVersion(), from: this.id, epoch: t.epoch, probe: true };
        try {
          const reply = await this.raceTopology(
            this.peer(t.id).request(Op.PEER_REPLICATE, msg, this.opts.replicationTimeoutMs) as Promise<ReplicateReply>,
            () => this.isTarget(p, t),
          );
          if (reply === GONE) return;
          if (reply.s === 'ok' && reply.counter !== mine) st.failed.add(t.id);
        } catch {
          if (this.isTarget(p, t)) st.failed.add(t.id);
        }
      };
      await Promise.all(holders.map(probe));
      if (st.failed.size > 0) await this.ensureClean(p).catch(() => {});
    })();
    st.fence = fence;
    void fence.finally(() => {
      if (st.fence === fence) st.fence = null;
    });
  }

  // -------------------------------------------------------------------------------------------
  // Multi-partition ops

  private groupByPartition<T>(items: T[], keyOf: (t: T) => Bytes): Map<number, number[]> {
    const groups = new Map<number, number[]>();
    const n = this.partitionCount();
    items.forEach((item, i) => {
      const p = partitionOfBytes(keyOf(item), n);
      let g = groups.get(p);
      if (!g) groups.set(p, (g = []));
      g.push(i);
    });
    return groups;
  }

  private async getAll(payload: { cache: string; keys: Bytes[] }, session: string, allowForward: boolean): Promise<ExecResult> {
    const groups = this.groupByPartition(payload.keys, (k) => k);
    const values: (Bytes | null)[] = new Array<Bytes | null>(payload.keys.length).fill(null);
    let forwarded = false;
    await Promise.all(
      [...groups].map(async ([p, idx]) => {
        const sub = { cache: payload.cache, keys: idx.map((i) => payload.keys[i]!) };
        const r = await this.route(p, Op.CACHE_GET_ALL, sub, session, allowForward);
        forwarded ||= r.forwarded;
        const vals = (r.result as { values: (Bytes | null)[] }).values;
        idx.forEach((i, j) => (values[i] = vals[j] ?? null));
      }),
    );
    return { result: { values }, forwarded };
  }

  private async putAll(
    payload: { cache: string; entries: [Bytes, Bytes][]; seq: number; ttlMs?: number },
    session: string,
    allowForward: boolean,
  ): Promise<ExecResult> {
    const groups = this.groupByPartition(payload.entries, (e) => e[0]);
    let forwarded = false;
    await Promise.all(
      [...groups].map(async ([p, idx]) => {
        const sub: Record<string, unknown> = { cache: payload.cache, entries: idx.map((i) => payload.entries[i]!), seq: payload.seq };
        if (payload.ttlMs !== undefined) sub['ttlMs'] = payload.ttlMs;
        const r = await this.route(p, Op.CACHE_PUT_ALL, sub, session, allowForward);
        forwarded ||= r.forwarded;
      }),
    );
    return { result: {}, forwarded };
  }

  private primaryPartitions(): number[] {
    const out: number[] = [];
    const n = this.topo?.partitions ?? 0;
    for (let p = 0; p < n; p++) if (this.roleOf(p) === 'primary') out.push(p);
    return out;
  }

  private otherMembers(): string[] {
    return Object.keys(this.topo?.members ?? {}).filter((id) => id !== this.id);
  }

  private async clusterSize(cache: string): Promise<number> {
    const t = this.topo;
    if (!t) throw new GridNodeError(ErrorCode.NOT_READY, 'the node has not joined a cluster yet');
    if (t.lost.length > 0) throw new GridNodeError(ErrorCode.PARTITION_LOST, `partition ${t.lost[0]} is lost`, t.lost[0]);
    const sizes = await Promise.all([
      this.localPrimarySize(cache),
      ...this.otherMembers().map(async (id) => (await this.peer(id).request(Op.PEER_SIZE, { cache }, this.opts.forwardTimeoutMs)) as number),
    ]);
    return sizes.reduce((a, b) => a + b, 0);
  }

  private async localPrimarySize(cache: string): Promise<number> {
    const parts = this.leaseValid() ? this.primaryPartitions() : [];
    return this.store.localSize(cache, parts);
  }

  private async clusterClear(payload: { cache: string; seq: number }, session: string): Promise<void> {
    await Promise.all([
      this.localClear(payload, session),
      ...this.otherMembers().map((id) => this.peer(id).request(Op.PEER_CLEAR, { ...payload, session }, this.opts.forwardTimeoutMs)),
    ]);
  }

  private async localClear(payload: { cache: string; seq: number }, session: string): Promise<void> {
    await Promise.all(
      this.primaryPartitions().map(async (p) => {
        await this.executeAsPrimary(p, Op.CACHE_CLEAR, { cache: payload.cache, seq: payload.seq }, session);
      }),
    );
  }

  private async createCache(payload: { cache: string; config: CacheConfig }): Promise<Record<string, never>> {
    this.store.createCache(payload.cache, payload.config);
    await this.kv.put(CACHE_PREFIX + payload.cache, payload.config);
    const msg: ForwardMsg = { op: Op.CACHE_CREATE, payload, session: '', local: true };
    await Promise.allSettled(this.otherMembers().map((id) => this.peer(id).request(Op.PEER_FORWARD, msg, this.opts.forwardTimeoutMs)));
    return {};
  }

  // -------------------------------------------------------------------------------------------
  // Peer ops

  private async handlePeer(frame: RequestFrame): Promise<unknown> {
    switch (frame.op) {
      case Op.PEER_FORWARD: {
        const m = frame.payload as ForwardMsg;
        try {
          if (m.local && m.op === Op.CACHE_CREATE) {
            const c = m.payload as { cache: string; config: CacheConfig };
            this.store.createCache(c.cache, c.config);
            return { ok: true, result: {} } satisfies ForwardReply;
          }
          validateRequest({ ...frame, op: m.op, payload: m.payload });
          const r = await this.execute(m.op, m.payload, m.session, false);
          return { ok: true, result: r.result } satisfies ForwardReply;
        } catch (err) {
          const e = toGridError(err);
          return { ok: false, error: errorPayload(e.wireCode, e.message, e.partition) } satisfies ForwardReply;
        }
      }
      case Op.PEER_REPLICATE: {
        // Records sent in one tick to this node arrive as one batch: handled exactly as if they
        // had arrived as frames back to back (each starts now, in order).
        if (isBatch(frame.payload)) {
          const replies = frame.payload.batch.map((m) => this.onReplicate(m as ReplicateMsg));
          return { batch: replies.some((r) => r instanceof Promise) ? await Promise.all(replies.map(async (r) => r)) : replies };
        }
        return this.onReplicate(frame.payload as ReplicateMsg);
      }
      case Op.PEER_STATE_PULL:
        return this.onStatePull(frame.payload as { p: number; v: number; from: string });
      case Op.PEER_SIZE:
        return this.localPrimarySize((frame.payload as { cache: string }).cache);
      case Op.PEER_CLEAR: {
        const m = frame.payload as { cache: string; seq: number; session: string };
        await this.localClear(m, m.session);
        return {};
      }
      default:
        throw new GridNodeError(ErrorCode.UNKNOWN_OP, `unknown peer op ${frame.op}`);
    }
  }

  /** Backup side of replication (records, snapshot pushes and promotion probes). */
  /** Synchronous unless the sender knows a newer topology than this node (then it waits for it). */
  private onReplicate(m: ReplicateMsg): ReplicateReply | Promise<ReplicateReply> {
    if (m.v > this.topologyVersion()) return this.awaitTopology(m.v, this.opts.leaseMs).then(() => this.onReplicateNow(m));
    return this.onReplicateNow(m);
  }

  private onReplicateNow(m: ReplicateMsg): ReplicateReply {
    if (m.epoch !== this.epoch || !this.isMember()) return { s: 'gone' };
    const t = this.topo!;
    if ((t.owners[m.p] ?? [])[0] !== m.from) return t.version >= m.v ? { s: 'stale' } : { s: 'gone' };
    const role = this.roleOf(m.p);
    if (role === 'none' || role === 'primary') return { s: 'gone' };
    const st = this.part(m.p);
    if (m.probe) return { s: 'ok', counter: this.store.updateCounter(m.p) };
    if (m.part) {
      if (m.part.index === 0) {
        st.receiving = { id: m.part.id, parts: [] };
        st.buffer ??= [];
      }
      if (st.receiving?.id !== m.part.id) return { s: 'gap' };
      st.receiving.parts.push(m.part.snap);
      if (st.receiving.parts.length < m.part.total) return { s: 'ok' };
      m.snap = joinSnapshots(st.receiving.parts);
      st.receiving = null;
    }
    if (m.snap) {
      this.store.install(m.p, m.snap);
      st.awaitingSnapshot = false;
      if (st.pulling) this.finishPull(m.p, st, this.topologyVersion());
      else this.applyBuffered(m.p, st);
      return { s: 'ok' };
    }
    if (!m.rec) return { s: 'gone' };
    if ((st.pulling || st.receiving) && st.buffer) {
      st.buffer.push(m.rec);
      return { s: 'ok' };
    }
    if (st.awaitingSnapshot) return { s: 'gap' };
    if (!this.store.applyRecord(m.p, m.rec)) {
      st.awaitingSnapshot = true;
      return { s: 'gap' };
    }
    return { s: 'ok' };
  }

  /** Primary side of state transfer: a snapshot taken once the requester is a replication target. */
  private async onStatePull(m: PullMsg): Promise<PullReply> {
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
    if (m.v > this.topologyVersion()) await this.awaitTopology(m.v, this.opts.leaseMs);
    this.assertPrimary(m.p);
    const st = this.part(m.p);
    if (st.fence) await st.fence;
    this.assertPrimary(m.p);
    if (!this.targets(m.p).some((t) => t.id === m.from)) {
      throw new GridNodeError(ErrorCode.PARTITION_MOVING, `node ${m.from} is not a target of partition ${m.p}`, m.p);
    }
    const parts = this.snapshotParts(m.p);
    if (parts.length === 1) return { snap: parts[0]!, total: 1 };
    const id = randomUUID();
    const timer = this.scheduler.setTimeout(() => this.outgoing.delete(id), 30_000);
    this.outgoing.set(id, { parts, timer });
    return { snap: parts[0]!, total: parts.length, id };
  }

  private enqueuePull(p: number): void {
    const st = this.part(p);
    st.pulling = true;
    st.buffer = [];
    this.pullQueue.push(p);
    this.drainPulls();
  }

  private drainPulls(): void {
    while (this.activePulls < this.opts.pullConcurrency && this.pullQueue.length > 0) {
      const p = this.pullQueue.shift()!;
      this.activePulls++;
      void this.pull(p).finally(() => {
        this.activePulls--;
        this.drainPulls();
      });
    }
  }

  private async pull(p: number): Promise<void> {
    const epoch = this.epoch;
    for (let attempt = 0; ; attempt++) {
      const st = this.parts.get(p);
      if (!st?.pulling || this.epoch !== epoch || this.state !== 'running') return;
      if (this.roleOf(p) !== 'syncing') {
        st.pulling = false;
        st.buffer = null;
        return;
      }
      const src = this.topo!.owners[p]?.[0];
      const v = this.topologyVersion();
      if (src === undefined) {
        st.pulling = false;
        st.buffer = null;
        return;
      }
      try {
        const first = (await this.peer(src).request(Op.PEER_STATE_PULL, { p, v, from: this.id } satisfies PullMsg, this.opts.replicationTimeoutMs)) as PullReply;
        const parts = [first.snap];
        for (let index = 1; index < first.total; index++) {
          const msg: PullMsg = { p, v, from: this.id, id: first.id!, index };
          parts.push(((await this.peer(src).request(Op.PEER_STATE_PULL, msg, this.opts.replicationTimeoutMs)) as PullReply).snap);
        }
        if (this.parts.get(p) !== st || !st.pulling || this.epoch !== epoch || this.roleOf(p) !== 'syncing') return;
        this.store.install(p, parts.length === 1 ? first.snap : joinSnapshots(parts));
        this.finishPull(p, st, v);
        return;
      } catch (err) {
        this.log.debug('state pull failed; retrying', { p, src, err: String(err) });
        await delay(this.scheduler, Math.min(500, 20 * 2 ** Math.min(attempt, 5)));
      }
    }
  }

  /** Applies records received while a snapshot was on its way (those it already covers are ignored). */
  private applyBuffered(p: number, st: PartState): void {
    const buffered = st.buffer ?? [];
    st.buffer = null;
    st.awaitingSnapshot = false;
    for (const rec of buffered) {
      if (!this.store.applyRecord(p, rec)) {
        st.awaitingSnapshot = true;
        break;
      }
    }
  }

  private finishPull(p: number, st: PartState, v: number): void {
    st.pulling = false;
    this.applyBuffered(p, st);
    this.synced[String(p)] = v;
    this.transfers++;
    this.metrics.transfers.inc();
    this.scheduleLeaseWrite();
  }
}

/** Starts a node and resolves once it listens and holds a lease. */
export async function startNode(options: NodeOptions): Promise<GridNode> {
  const node = new GridNode(options);
  try {
    await node.start();
  } catch (err) {
    node.kill();
    throw err;
  }
  return node;
}
