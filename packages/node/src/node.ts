/**
 * GridNode: the composition of a grid node. It builds the parts and wires their events; the
 * work is done by the parts:
 *   server/       listeners and connections (TCP/TLS, HTTP health and metrics)
 *   membership/   the cluster view (topology, epoch), own lease, coordinator loop
 *   peers/        links to the other nodes
 *   partitions/   replica state machine, replication + resync + fence, backup side, state transfer
 *   requests/     dispatch (fast path, local, forward), fan-out, locks, peer ops
 *
 * Somewhat over 400 lines: besides the wiring it holds the node's public face (start/stop with the
 * graceful hand-off sequence, kill/hang/resume for the embedded cluster, the read-only views the
 * HTTP endpoints and LocalCluster use); moving the stop sequence into lifecycle.ts is the next cut.
 */
import { randomUUID } from 'node:crypto';
import type { CacheConfig, PartitionMap, RequestFrame } from '@gridlink/protocol';
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from './config.js';
import { NodeConfigError } from './errors.js';
import { CACHE_PREFIX, LEASE_PREFIX, TOPOLOGY_KEY } from './control/keys.js';
import { topologyProblem } from './control/records.js';
import type { ControlPlane, KvEvent } from './control/kv.js';
import type { Role } from './control/routing.js';
import { handOffDone, nodeSafety, type CacheRule, type LeaseRecord, type NodeSafety, type TopologyRecord } from './control/topology.js';
import { Lifecycle } from './lifecycle.js';
import { StartupSteps, type Logger } from './logger.js';
import { CacheRuleBook, Coordinator } from './membership/coordinator.js';
import { HandoffBudget } from './membership/handoff-budget.js';
import { OwnLease } from './membership/lease.js';
import { soleHolderOf } from './membership/reach-fence.js';
import { PromiseBook } from './membership/promises.js';
import { PeerReach } from './membership/reach.js';
import { ClusterView } from './membership/view.js';
import { NodeMetrics, type MetricsSource } from './metrics.js';
import { BackupReceiver } from './partitions/backup.js';
import { ReplicaDriver } from './partitions/driver.js';
import { Replicator } from './partitions/replication.js';
import { PartitionTable } from './partitions/table.js';
import { StateTransfer } from './partitions/transfer.js';
import { PeerLinks } from './peers/links.js';
import { Dispatcher } from './requests/dispatch.js';
import { FanOut, type RouteFn } from './requests/fanout.js';
import { Forwarder } from './requests/forward.js';
import { LockService } from './requests/locks.js';
import { handlePeerOp, onPeerReplicate, type PeerOpsDeps } from './requests/peer-ops.js';
import { Scheduler } from './scheduler.js';
import { ServerEdge } from './server/listener.js';
import type { ConnectionHost, DEFERRED, RequestOutcome, ServerConnection } from './server/connection.js';
import { NodeStore } from './store/index.js';
import { PEER_WIRE } from './peers/wire-version.js';

/** How often a graceful stop checks its hand-off's budget while it waits. */
const HANDOFF_CHECK_MS = 50;

/** How long a graceful stop waits for the control plane to delete its lease (at most a lease). */
const RELEASE_WITHIN_MS = 1000;

/**
 * A grid node: serves the gridlink protocol over TCP, holds a membership lease in the control
 * plane, owns partitions as primary or backup according to the topology record, replicates
 * writes synchronously to backups, transfers state to joining nodes and forwards misrouted
 * requests to the primary.
 */
export class GridNode implements ConnectionHost, MetricsSource {
  readonly id: string;
  readonly opts: ResolvedNodeOptions;
  readonly scheduler = new Scheduler();
  readonly store: NodeStore;
  readonly metrics: NodeMetrics;
  private readonly kv: ControlPlane;
  private readonly log: Logger;
  private readonly life = new Lifecycle();
  private readonly view: ClusterView;
  private readonly lease: OwnLease;
  private readonly coordinator: Coordinator;
  private readonly promises: PromiseBook;
  private readonly table = new PartitionTable();
  private readonly peers: PeerLinks;
  /** Whether this node reaches the other members over the grid (ADR 0063). */
  private readonly reach: PeerReach;
  private readonly replicator: Replicator;
  private readonly driver: ReplicaDriver;
  private readonly transfer: StateTransfer;
  private readonly backup: BackupReceiver;
  private readonly forwarder: Forwarder;
  private readonly locks: LockService;
  private readonly fanout: FanOut;
  private readonly dispatcher: Dispatcher;
  private readonly peerOps: PeerOpsDeps;
  private readonly edge: ServerEdge;
  private readonly unwatch: (() => void)[] = [];
  /**
   * Duration of the last graceful handoff (ms, fractional: an embedded cluster can hand off within
   * a millisecond), 0 before any.
   */
  lastHandoffMs = 0;
  /** The cache rules the coordinator steps with (per-cache backups), for the graceful stop's wait. */
  private readonly caches: () => readonly CacheRule[];
  private topologyAppliedAt = 0;

  constructor(options: NodeOptions) {
    this.opts = resolveNodeOptions(options);
    const opts = this.opts;
    this.id = opts.id;
    this.kv = opts.controlPlane;
    this.log = opts.logger;
    const storeOpts: ConstructorParameters<typeof NodeStore>[0] = { dedupWindowMs: opts.dedupWindowMs, cacheDefaults: opts.cacheDefaults };
    if (opts.maxEntries !== undefined) storeOpts.maxEntries = opts.maxEntries;
    if (opts.maxBytes !== undefined) storeOpts.maxBytes = opts.maxBytes;
    this.store = new NodeStore(storeOpts);
    this.metrics = new NodeMetrics(this);
    const { id, scheduler, store, metrics, kv, log, life, table } = this;
    const leaseValid = (): boolean => this.lease.valid();

    const mayServe = (p: number): boolean => {
      if (!this.mayServeAsPrimary(p)) return false;
      // Asked before anything of p is served: lock leases it kept while it could not serve
      // resume first (ADR 0072).
      this.driver.servable(p);
      return true;
    };
    this.view = new ClusterView(id, opts.partitions, scheduler, mayServe);
    const view = this.view;
    // A partition served again empty after a loss starts its counter at the topology's floor.
    store.useCounterFloors((p) => view.topo?.floors?.[String(p)] ?? 0);
    const refreshTopology = (): Promise<void> => this.refreshTopology();
    view.refresh = refreshTopology;
    this.lease = new OwnLease({
      id,
      opts,
      kv,
      scheduler,
      log,
      life,
      epoch: () => view.epoch,
      port: () => this.edge.port,
      rejoinCheck: refreshTopology,
      pullsPending: () => this.transfer.pending.pulls > 0,
      fenced: () => this.fenced(),
      unreachable: () => this.reach.unreachable(),
      isMember: () => view.isMember(),
      mayGiveUp: () => this.reach.fenced() && this.losesNoCopy(),
      newLife: () => this.startOver('fence ended after this life gave its lease up', {}),
    });
    this.peers = new PeerLinks(id, opts, scheduler, view);
    const base = { id, opts, scheduler, store, metrics, kv, log, life, view, table, peers: this.peers };
    this.promises = new PromiseBook({ id, opts, view, peers: this.peers, scheduler, life, log, leaseRemainingMs: () => this.lease.remainingMs(), gaveUp: () => this.lease.gaveUp() });
    const cacheRules = new CacheRuleBook(store, opts.backups);
    const caches = (): readonly CacheRule[] => cacheRules.rules(view.topo?.backups ?? opts.backups);
    this.caches = caches;
    this.coordinator = new Coordinator({
      ...base,
      renewed: () => this.lease.renewed(),
      applyTopology: (rec) => this.applyTopology(rec),
      refreshTopology,
      caches,
      acceptedThroughout: (from, to) => this.lease.acceptedThroughout(from, to),
    });
    this.reach = new PeerReach({
      id,
      view,
      scheduler,
      log,
      timing: { intervalMs: opts.renewIntervalMs, timeoutMs: opts.leaseMs / 2, cutMs: opts.leaseMs, renewedAfterMs: 2 * opts.renewIntervalMs, cutRequests: 3 },
      askAlive: (peer, timeoutMs) => this.promises.askAlive(peer, timeoutMs),
      renewedAt: (peer) => this.coordinator.renewalSeenAt(peer),
      heard: (peer, sentAt, answer) => this.coordinator.late.answered(peer, sentAt, answer),
    });
    this.replicator = new Replicator(base);
    this.transfer = new StateTransfer({
      ...base,
      driver: () => this.driver,
      snapshotParts: (p, maxBytes, packed) => this.replicator.snapshotParts(p, maxBytes, packed),
      onTransferred: (bytes, seconds) => metrics.onTransfer(bytes, seconds),
    });
    this.driver = new ReplicaDriver({
      ...base,
      synced: () => this.lease.synced,
      caughtUp: () => this.lease.caughtUp,
      topologyVersion: () => view.topologyVersion(),
      enqueuePull: (p) => this.transfer.enqueue(p),
      startFence: (p, st, fenceId) => this.replicator.startFence(p, st, fenceId),
      scheduleLeaseWrite: () => this.lease.scheduleWrite(),
      resync: (p, ids) => this.replicator.resyncNow(p, ids),
      // Its last answer over the grid; else (never asked yet: a cluster seconds old) its last
      // renewal seen, earlier than its death by up to an outage: a longer pause, the safe side.
      lastHeard: (peerId, epoch) => this.reach.lastAnswered(peerId, epoch) ?? this.coordinator.renewalSeenUnder(peerId, epoch),
    });
    this.backup = new BackupReceiver(opts, view, store, table, this.driver);
    this.forwarder = new Forwarder(this.peers, opts.forwardTimeoutMs);
    this.locks = new LockService({ scheduler, store, assertPrimary: (p) => view.assertPrimary(p), commit: (p, r) => this.replicator.commit(p, r) });
    const { replicator, forwarder, locks } = this;
    const handlePeer = (frame: RequestFrame): Promise<unknown> => this.handlePeer(frame);
    const replicate = (payload: unknown): unknown => onPeerReplicate(this.backup, payload);
    this.dispatcher = new Dispatcher({ ...base, replicator, forwarder, locks, fanout: () => this.fanout, leaseValid: mayServe, handlePeer, replicate });
    this.fanout = new FanOut({
      ...base,
      leaseValid,
      route: (...a: Parameters<RouteFn>) => this.dispatcher.route(...a),
      executeAsPrimary: (p, op, payload, session) => this.dispatcher.executeAsPrimary(p, op, payload, session),
    });
    this.peerOps = { store, dispatcher: this.dispatcher, fanout: this.fanout, backup: this.backup, transfer: this.transfer, promises: this.promises };
    this.edge = new ServerEdge(opts, scheduler, log, () => life.state === 'running', (n) => metrics.connections.set(n));
  }

  private handlePeer(frame: RequestFrame): Promise<unknown> {
    return handlePeerOp(this.peerOps, frame);
  }

  // -------------------------------------------------------------------------------------------
  // Lifecycle

  async start(): Promise<void> {
    if (this.life.state !== 'new') throw new Error('node already started');
    this.life.state = 'running';
    const { store, scheduler, opts } = this;
    const steps = new StartupSteps(this.log, { id: this.id }, 'listening');
    try {
      await this.startSteps(steps);
    } finally {
      steps.done();
    }
    this.coordinator.started();
    scheduler.setInterval(() => void this.lease.renew(), opts.renewIntervalMs);
    scheduler.setInterval(() => this.driver.checkServing((p) => this.mayServeAsPrimary(p)), opts.renewIntervalMs);
    scheduler.setInterval(() => void this.coordinator.tick(), opts.coordinatorIntervalMs);
    this.promises.start();
    this.reach.start();
    scheduler.setInterval(() => {
      store.sweep(opts.sweepBudget);
    }, opts.sweepIntervalMs);
    this.log.info('node started', { id: this.id, port: this.port });
  }

  /** `start()`'s waits, each named in `steps`. */
  private async startSteps(steps: StartupSteps): Promise<void> {
    const { kv, store, scheduler, opts } = this;
    for (const [name, config] of Object.entries(opts.caches)) store.createCache(name, config);
    await this.edge.listen(this);
    steps.step('listening for HTTP');
    if (opts.httpPort !== undefined) await this.edge.listenHttp({ id: this.id, registry: this.metrics.registry, isReady: () => this.isReady(), topologyVersion: () => this.topologyVersion(), unsafeReason: () => this.unsafeReason() });

    this.unwatch.push(
      kv.watch<LeaseRecord>(LEASE_PREFIX, (e) => scheduler.run(() => this.coordinator.onLeaseEvent(e))),
      kv.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => scheduler.run(() => this.onTopologyEvent(e))),
      kv.watch<CacheConfig>(CACHE_PREFIX, (e) => scheduler.run(() => this.onCacheEvent(e))),
    );
    // The control plane lost its state (ADR 0028): the view this node serves on came from records
    // that no longer exist, and a new cluster may form on the new ones. Serving on would be
    // split brain; stop now (a process restart joins whatever the control plane holds now).
    if (kv.onReset) {
      this.unwatch.push(
        kv.onReset((err) => {
          this.log.error('control plane lost its state: this node stops; start it again to join the cluster the control plane holds now', { id: this.id, err: err.message });
          this.kill();
        }),
      );
    }
    steps.step('reading the members (control plane)');
    await this.coordinator.load();
    // Before anything of this node goes into the control plane (its caches' configs, its lease)
    // or its topology is applied: a node of another cluster's settings stops here.
    this.refuseOtherCluster((await kv.get<TopologyRecord>(TOPOLOGY_KEY))?.value ?? null);
    steps.step('reading the caches (control plane)');
    for (const e of await kv.list<CacheConfig>(CACHE_PREFIX)) store.createCache(e.key.slice(CACHE_PREFIX.length), e.value);
    for (const [name, config] of Object.entries(opts.caches)) {
      if ((await kv.get(CACHE_PREFIX + name)) === null) await kv.put(CACHE_PREFIX + name, config);
    }
    steps.step('reading the topology (control plane)');
    await this.refreshTopology();
    steps.step('writing its lease (control plane)');
    await this.lease.renew();
  }

  /**
   * Graceful stop: first hands every partition it is primary of to a caught-up backup (its lease
   * says "leaving" and the coordinator promotes the first staying owner; requests arriving
   * meanwhile are served or forwarded), bounded by `handoffTimeoutMs` of time the control plane
   * answers and `handoffOutageMs` more while it does not (ADR 0071); then refuses new requests,
   * lets in-flight ones finish (bounded), gives up its lease and closes.
   */
  async stop(): Promise<void> {
    if (this.life.state !== 'running') return;
    if (!this.scheduler.isFrozen && this.view.isMember()) {
      // Bounded even if the control plane does not answer at all; on failure stop anyway.
      const t0 = performance.now();
      const budget = new HandoffBudget(this.opts.handoffTimeoutMs, this.opts.handoffOutageMs, t0);
      // The newest topology this node knows of as the stop begins, its own or a member's answer.
      const knownVersion = Math.max(this.view.topologyVersion(), this.coordinator.late.newestVersion(Date.now()));
      let settled = false;
      const handoff = this.handOff().then(
        () => {
          settled = true;
        },
        (err: unknown) => {
          settled = true;
          // Once the stop has gone on without it, a late failure is no news (it would be
          // logged after "node stopped").
          if (this.life.state === 'running') this.log.warn('handoff failed; stopping anyway', { id: this.id, err: String(err) });
        },
      );
      // The budget is judged here alone (the hand-off may be stuck in a control-plane request of
      // its own: the leaving lease, a topology read); the hand-off ends its wait once it is over.
      while (!settled && !this.handoffSpent(budget, knownVersion)) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([handoff, new Promise<void>((r) => (timer = setTimeout(r, HANDOFF_CHECK_MS)))]);
        clearTimeout(timer);
      }
      this.handoffOver = true;
      this.lastHandoffMs = performance.now() - t0;
      this.metrics.onHandoff(this.lastHandoffMs / 1000);
      if (!settled) {
        const outageMs = Math.round(budget.outageCountedMs);
        this.log.warn('handoff timed out; stopping anyway', {
          id: this.id,
          primaries: this.view.primaryPartitions().length,
          ...(outageMs > 0 ? { reason: 'the control plane did not answer', outageMs } : {}),
        });
      }
    }
    this.life.state = 'stopping';
    this.edge.pushStopping();
    const drainStart = Date.now();
    const deadline = drainStart + 2000;
    while (Date.now() < deadline && this.edge.anyInFlight() && !this.scheduler.isFrozen) {
      await new Promise((r) => setTimeout(r, 10));
    }
    this.log.info('handed off and drained', { id: this.id, handoffMs: Math.round(this.lastHandoffMs), drainMs: Date.now() - drainStart, inFlightLeft: this.edge.anyInFlight() });
    try {
      // Bounded: past a lease, deleting it saves nobody any wait.
      await this.lease.release(Math.min(RELEASE_WITHIN_MS, this.opts.leaseMs));
    } catch (err) {
      this.log.warn('could not delete lease', { err: String(err) });
    }
    this.shutdown(false);
  }

  /**
   * True when no partition this node is primary of has another caught-up owner to take it (an
   * owner the coordinator refuses to hand it to, ADR 0038, does not count), and no partition it
   * alone holds is being pulled by another node (a decommission in progress: stopping now would
   * lose the only copy).
   */
  private handedOff(): boolean {
    const t = this.view.topo;
    if (!t || !this.view.isMember()) return true;
    return handOffDone(t, this.id, this.caches());
  }

  /** Set by `stop()` once the hand-off's budget is spent: the hand-off stops waiting. */
  private handoffOver = false;

  private async handOff(): Promise<void> {
    this.lease.leaving = true;
    await this.lease.renew();
    // Judge on the latest record (a baseline change may have been written just now). Reads fail
    // too while the control plane elects a leader: then the wait below re-reads (and the watch
    // delivers); giving up here would stop the node before anyone took its partitions.
    try {
      await this.refreshTopology();
    } catch {
      // judged on the record held; the budget bounds the wait
    }
    while (!this.handedOff() && this.life.state === 'running' && !this.handoffOver) {
      // Each wait re-reads the topology once first: not more often than a renewal interval.
      await this.view.awaitTopology(this.view.topologyVersion() + 1, this.opts.renewIntervalMs);
    }
  }

  /**
   * Counts the time since the last check against the hand-off's budget: as an outage while this
   * node's lease renewals have gone unacknowledged for two renewal intervals (an answer takes
   * milliseconds; nobody can commit a topology then), and after one until its lease is confirmed
   * again (a lapse costs a lease before this node, or a coordinator, acts on it) — unless another
   * member answered its "are you alive?" lately with a topology newer than any this node knew of
   * when the stop began (`knownVersion`): then the control plane commits for the others and only
   * this node is cut off from it. (Newer than its own view is not enough: a node whose NATS server
   * died can be a record behind the others through a whole outage.) Says so once when the wait
   * goes on for that reason.
   */
  private handoffSpent(budget: HandoffBudget, knownVersion: number): boolean {
    const now = Date.now();
    const answering = (now - this.lease.lastAckAt <= 2 * this.opts.renewIntervalMs && this.lease.valid()) || this.coordinator.late.newestVersion(now) > knownVersion;
    const before = budget.outageCountedMs;
    const spent = budget.spent(performance.now(), answering);
    if (!answering && before === 0 && budget.outageCountedMs > 0 && !spent) {
      this.log.warn('the control plane does not answer: the hand-off waits for it (no other node can take the partitions meanwhile)', { id: this.id, upToMs: this.opts.handoffOutageMs });
    }
    return spent;
  }

  /** Abrupt death: sockets destroyed, timers stopped, no goodbye. */
  kill(): void {
    if (this.life.state === 'stopped') return;
    this.shutdown(true);
  }

  private shutdown(abrupt: boolean): void {
    this.life.state = 'stopped';
    this.scheduler.stop();
    for (const u of this.unwatch.splice(0)) u();
    this.edge.close(abrupt);
    this.peers.destroyAll();
    this.view.releaseAll();
    this.forwarder.rejectAll();
    this.log.info('node stopped', { id: this.id, abrupt });
  }

  /** Simulates a frozen process: nothing is read or answered and no timer fires until resume(). */
  hang(): void {
    if (this.life.state !== 'running') return;
    this.scheduler.freeze();
    this.edge.pause();
    this.peers.pause();
  }

  resume(): void {
    if (this.life.state !== 'running') return;
    this.edge.resume();
    this.peers.resume();
    this.scheduler.thaw();
    void this.lease.renew();
  }

  get running(): boolean {
    return this.life.state === 'running';
  }

  get hung(): boolean {
    return this.scheduler.isFrozen;
  }

  // -------------------------------------------------------------------------------------------
  // Introspection

  get port(): number {
    return this.edge.port;
  }

  get httpPort(): number | undefined {
    return this.edge.httpPort;
  }

  /**
   * Whether this node withholds its lease renewals on purpose: cut off from most members (ADR
   * 0063), or asked to by the coordinator (ADR 0065).
   */
  private fenced(): boolean {
    return this.reach.fenced() || this.fencedByCoordinator();
  }

  /**
   * Every partition this node holds has another owner whose lease renewal, under the epoch the
   * topology lists it with, was seen within a lease (and not deleted since): this life going
   * loses no copy (ADR 0073).
   */
  private losesNoCopy(): boolean {
    const topo = this.view.topo;
    if (topo === null) return false;
    const now = Date.now();
    const renewing = new Set<string>();
    for (const [id, m] of Object.entries(topo.members)) {
      // Under the epoch the topology lists: a restarted node renews as a new, empty life.
      const seen = this.coordinator.renewalSeenUnder(id, m.epoch);
      if (id !== this.id && seen !== undefined && now - seen <= this.opts.leaseMs) renewing.add(id);
    }
    return soleHolderOf(topo, this.id, renewing) === 0;
  }

  /** Whether the topology asks this life not to renew its lease (ADR 0065), logged when it changes. */
  private fencedByCoordinator(): boolean {
    const fenced = this.view.topo?.fenced?.[this.id] === this.view.epoch;
    if (fenced !== this.coordinatorFenced) {
      this.coordinatorFenced = fenced;
      if (fenced) this.log.warn('the coordinator asks this node to stop renewing its lease: it cannot reach a member that renews, which cannot reach it either or is preferred; letting the lease run out', { epoch: this.view.epoch });
      else this.log.info('the coordinator no longer asks this node to stop renewing its lease', { epoch: this.view.epoch });
    }
    return fenced;
  }

  private coordinatorFenced = false;

  /** Changes on restart and whenever this node learns it was declared gone. */
  get epoch(): string {
    return this.view.epoch;
  }

  /** State transfers completed since start (partitions pulled or installed). */
  get transfers(): number {
    return this.driver.transfers;
  }

  /** State-transfer requests sent since start (a batch of partitions is one; ADR 0056). */
  get pullRequests(): number {
    return this.transfer.requests;
  }

  /** The most state-transfer pulls this node had running at once since start, not counting ones slow to be answered (ADR 0074). */
  get mostPullsInFlight(): number {
    return this.transfer.mostInFlight;
  }

  /** The largest state-transfer answer this node received since start, in entry bytes (keys and values; ADR 0074). */
  get largestPullAnswerBytes(): number {
    return this.transfer.largestAnswer;
  }

  /** Snapshots pushed to backups that missed records (gap, timeout, promotion) since start. */
  get resyncs(): number {
    return this.replicator.resyncs;
  }

  topologyVersion(): number {
    return this.view.topologyVersion();
  }

  topology(): TopologyRecord | null {
    return this.view.topo;
  }

  partitionCount(): number {
    return this.view.partitionCount();
  }

  partitionMap(): PartitionMap {
    return this.view.partitionMap();
  }

  /** Joined (a member under the current epoch) and holding every assigned partition caught up. */
  isReady(): boolean {
    const t = this.view.topo;
    if (!t || !this.view.isMember() || this.life.state !== 'running') return false;
    return !t.syncing.some((s) => s.some((e) => e.id === this.id));
  }

  /**
   * Serves what the topology says it serves: ready, able to vouch for its lease when it is primary
   * of anything, and no promotion fence pending (requests would wait on it).
   */
  isServing(): boolean {
    if (!this.isReady() || this.scheduler.isFrozen) return false;
    const n = this.view.topo!.partitions;
    for (let p = 0; p < n; p++) {
      if (this.roleOf(p) !== 'primary') continue;
      if (!this.mayServeAsPrimary(p)) return false;
      if ((this.table.get(p)?.replica.fencing ?? 0) !== 0) return false;
    }
    return true;
  }

  /** Safety of what this node holds, from the topology it holds (see /health/safe). */
  safety(): NodeSafety | null {
    const t = this.view.topo;
    return t === null ? null : nodeSafety(t, this.id);
  }

  /**
   * Null when no partition this node holds is under-replicated, moving or lost (and it is a
   * running member): taking it down now loses no copy nobody else has.
   */
  unsafeReason(): { reason: string; [k: string]: unknown } | null {
    if (this.life.state !== 'running') return { reason: 'stopping' };
    const s = this.safety();
    if (s === null || !this.view.isMember()) return { reason: 'not a member yet' };
    // Its lease is not renewed (it cannot reach the control plane, or is fenced: ADR 0063): the
    // coordinator may drop it any moment (ADR 0062 keeps it a while), so another fault now could
    // find partitions with a copy fewer than they seem to have.
    if (!this.lease.valid()) return { reason: 'lease not renewed' };
    // It stopped renewing on purpose (ADR 0063, 0065): its lease runs out within a lease.
    if (this.fenced()) return { reason: 'fenced' };
    if (s.safe) return null;
    const reason = s.lost.length > 0 ? 'partitions lost' : s.moving.length > 0 ? 'partitions moving' : 'partitions under-replicated';
    return { reason, lost: s.lost, moving: s.moving, underReplicated: s.underReplicated };
  }

  /**
   * May this node serve p, of which its topology makes it primary: its lease is certainly valid,
   * or its backups' promises vouch for it (ADR 0007) — never once this life gave its lease up
   * (ADR 0073; `PromiseBook.mayServe` checks that).
   */
  private mayServeAsPrimary(p: number): boolean {
    return this.promises.mayServe(p, this.lease.valid());
  }

  /** The lease is certainly valid: renewed recently enough, judged from when the renewal was sent. */
  leaseValid(): boolean {
    return this.lease.valid();
  }

  roleOf(p: number): Role {
    return this.view.roleOf(p);
  }

  partitionCounts(): { owned: number; primary: number; moving: number } {
    let owned = 0;
    let primary = 0;
    let moving = 0;
    const n = this.view.topo?.partitions ?? 0;
    for (let p = 0; p < n; p++) {
      const r = this.roleOf(p);
      if (r === 'primary') primary++;
      if (r === 'primary' || r === 'backup') owned++;
      if (r === 'syncing') moving++;
    }
    return { owned, primary, moving };
  }

  /** Seconds since the control plane last acknowledged this node's lease renewal (NaN before any). */
  leaseAgeSeconds(): number {
    return this.lease.lastAckAt === 0 ? Number.NaN : (Date.now() - this.lease.lastAckAt) / 1000;
  }

  /** Seconds since this node applied a newer topology (NaN before any). */
  topologyAgeSeconds(): number {
    return this.topologyAppliedAt === 0 ? Number.NaN : (Date.now() - this.topologyAppliedAt) / 1000;
  }

  replicationInFlight(): number {
    return this.table.replicationInFlight();
  }

  /** Node-to-node wire versions this node speaks (ADR 0060). */
  wireRange(): { min: number; max: number } {
    return { ...this.opts[PEER_WIRE] };
  }

  storeStats(): { entries: number; bytes: number; evictions: number; expired: number } {
    return this.store.stats();
  }

  clientConnections(): number {
    return this.edge.clientConnections();
  }

  /**
   * @internal Sizes of the node's own tables, queues and timers, for leak tests: once the work
   * that filled them is over (clients gone, locks freed, peers back, windows passed) each returns
   * to its value on an idle node. Not a stable API.
   */
  bookkeeping(): NodeBookkeeping {
    const store = this.store.stats();
    const waiters = this.view.waiters;
    const transfer = this.transfer.pending;
    return {
      clientConnections: this.edge.clientConnections(),
      peerConnections: this.edge.peerConnections(),
      sockets: this.edge.sockets(),
      outputBytes: this.edge.outputBytes(),
      peerLinks: this.peers.size,
      timeouts: this.scheduler.pendingTimeouts,
      deferred: this.scheduler.deferredCount,
      lockWaiters: this.locks.waiting,
      forwards: this.forwarder.inFlight,
      replications: this.table.replicationInFlight(),
      pulls: transfer.pulls,
      outgoingSnapshots: transfer.outgoing,
      topologyWaiters: waiters.version,
      goneWaiters: waiters.gone,
      promisesHeld: this.promises.heldCount,
      locks: store.locks,
      outcomes: store.dedupEntries,
      sessions: store.dedupSessions,
      caches: store.caches,
      shards: store.shards,
      slabs: store.slabs,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Topology: control-plane events in, the parts told in order

  /** The last malformed topology record's problem, logged once (the coordinator re-reads it each tick). */
  private lastTopologyProblem: string | null = null;

  private onTopologyEvent(e: KvEvent<TopologyRecord>): void {
    if (e.type !== 'put') return;
    if (e.revision > this.view.topoRevision) this.view.topoRevision = e.revision;
    this.applyTopology(e.value);
  }

  private onCacheEvent(e: KvEvent<CacheConfig>): void {
    if (e.type !== 'put') return;
    const name = e.key.slice(CACHE_PREFIX.length);
    try {
      this.store.createCache(name, e.value);
    } catch (err) {
      // A config this node cannot read (written by hand, or by an incompatible version) is
      // ignored: the cache keeps the config it had, or the cluster's defaults.
      this.log.error('ignoring a malformed cache config in the control plane', { cache: name, err: String(err) });
    }
  }

  /**
   * A cluster's partition count and id are fixed when it forms: a node configured with others
   * must not join it. Checked on the record as read, before the node writes anything (cache
   * configs, its lease) or applies it: it used to be listed as a member while ignoring every
   * topology record as malformed (never ready, an error in its log), or to be refused by its
   * peers' handshakes one by one.
   */
  private refuseOtherCluster(rec: unknown): void {
    if (rec === null || typeof rec !== 'object') return;
    const { partitions, clusterId } = rec as { partitions?: unknown; clusterId?: unknown };
    if (typeof partitions === 'number' && partitions !== this.opts.partitions) {
      throw new NodeConfigError('partitions', `the cluster in this control plane has ${partitions} partitions, this node is configured with ${this.opts.partitions} (fixed when the cluster formed)`);
    }
    if (typeof clusterId === 'string' && clusterId !== this.opts.clusterId) {
      throw new NodeConfigError('clusterId', `the cluster in this control plane is "${clusterId}", this node is configured with "${this.opts.clusterId}"`);
    }
  }

  private async refreshTopology(): Promise<void> {
    const e = await this.kv.get<TopologyRecord>(TOPOLOGY_KEY);
    if (!e || this.life.state === 'stopped') return;
    if (e.revision > this.view.topoRevision) this.view.topoRevision = e.revision;
    this.applyTopology(e.value);
  }

  /**
   * This node's previous epoch was declared gone (topology `version` no longer lists it, most
   * often because its lease lapsed while it was hung or cut off): its data is stale, start over
   * empty.
   */
  private declaredGone(version: number): void {
    this.startOver('declared gone by the cluster', { topologyVersion: version, leaseValid: this.lease.valid() });
  }

  /** A new life under a new epoch, empty: what this node held is stale (or may be). */
  private startOver(why: string, fields: Record<string, unknown>): void {
    this.log.warn(`${why}; rejoining empty`, { id: this.id, epoch: this.view.epoch, ...fields });
    this.view.epoch = randomUUID();
    for (const p of this.store.heldPartitions()) this.store.dropPartition(p);
    this.table.clear();
    this.transfer.clearQueue();
    this.promises.clearHeld();
    this.lease.restart();
  }

  private applyTopology(rec: TopologyRecord): void {
    if (this.life.state === 'stopped') return;
    const view = this.view;
    const problem = topologyProblem(rec, this.opts.partitions);
    if (problem !== null) {
      // Every node reads the same record: crashing on it would take the whole cluster down.
      // Serve on with the last good topology; the coordinator writes it again over this one.
      view.topoMalformed = true;
      if (problem !== this.lastTopologyProblem) this.log.error('ignoring a malformed topology record in the control plane', { problem, revision: view.topoRevision });
      this.lastTopologyProblem = problem;
      return;
    }
    this.lastTopologyProblem = null;
    const prev = view.topo;
    if (prev && rec.version <= prev.version) return;
    view.topoMalformed = false;
    const wasMember = prev?.members[this.id]?.epoch === view.epoch;
    view.set(rec);
    this.topologyAppliedAt = Date.now();
    // Also when this epoch was a member only in records this node never saw (its watch skipped
    // them): the record names it as departed, and it would renew a lease nobody admits (ADR 0069).
    const dropped = rec.members[this.id]?.epoch !== view.epoch && (wasMember || rec.departed?.[this.id] === view.epoch);
    if (dropped) this.declaredGone(rec.version);

    this.driver.onTopology(prev, rec, wasMember);
    view.wakeGone();
    this.forwarder.onTopology(rec);
    view.wakeVersion(rec.version);
    this.locks.wakeAll();
    this.edge.pushTopology(rec.version);
    this.metrics.onTopology(rec.version);
  }

  // -------------------------------------------------------------------------------------------
  // ConnectionHost

  connectionOpened(_conn: ServerConnection): void {
    this.metrics.connections.set(this.edge.clientConnections());
  }

  connectionClosed(conn: ServerConnection): void {
    this.edge.remove(conn);
    this.metrics.connections.set(this.edge.clientConnections());
  }

  handleRequest(conn: ServerConnection, frame: RequestFrame): RequestOutcome | Promise<RequestOutcome> | typeof DEFERRED {
    return this.dispatcher.handleRequest(conn, frame);
  }
}

/** @internal What `GridNode.bookkeeping()` reports (counts). */
export interface NodeBookkeeping {
  /** Open connections of clients, and of other nodes' peer links. */
  clientConnections: number;
  peerConnections: number;
  /** Accepted sockets not yet closed (closing ones included), and the answers they owe (bytes). */
  sockets: number;
  outputBytes: number;
  /** This node's peer clients (one per other node and address). */
  peerLinks: number;
  /** Scheduler timeouts pending, and callbacks deferred while frozen. */
  timeouts: number;
  deferred: number;
  /** Lock acquisitions waiting on this node, forwards awaiting the primary, replications in flight. */
  lockWaiters: number;
  forwards: number;
  replications: number;
  /** State transfer: pulls queued or running, multi-part snapshots kept for pullers. */
  pulls: number;
  outgoingSnapshots: number;
  /** Waiters on a topology version, races against a replication target leaving. */
  topologyWaiters: number;
  goneWaiters: number;
  /** Promises held from other owners (ADR 0007). */
  promisesHeld: number;
  /** Store: lock leases, (session, seq) outcomes, sessions remembered. */
  locks: number;
  outcomes: number;
  sessions: number;
  /**
   * Store: caches known (the configured ones, and the implicit ones it holds entries of) and
   * shards held (per cache and partition; an implicit cache's empty one until the next sweep).
   */
  caches: number;
  shards: number;
  /** Store: slabs of small entries (64 KiB each; ADR 0078). */
  slabs: number;
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
