import type { CacheConfig, PartitionMap } from '@gridlink/protocol';
import type { NodeSpec } from '@gridlink/affinity';
import { NodeConfigError } from './errors.js';
import type { NodeOptions, NodeTiming, TlsOptions } from './config.js';
import { MemoryControlPlane } from './control/kv.js';
import { isBalanced, isSettled, partitionMapOf, withLossAccepted, type AutoAdjustPolicy, type TopologyRecord } from './control/topology.js';
import type { Logger } from './logger.js';
import { TOPOLOGY_KEY } from './control/keys.js';
import { GridNode, startNode } from './node.js';

export interface LocalClusterOptions extends Partial<NodeTiming> {
  /** Nodes started at once. Default 3. */
  nodes?: number;
  /** Backups per partition. Default 1. */
  backups?: number;
  /** Partition count. Default 1024. */
  partitions?: number;
  /** Node i listens on basePort + i (ids node-1, node-2, ...); default ephemeral ports. */
  basePort?: number;
  /** Config of caches created implicitly by first use. */
  cacheDefaults?: CacheConfig;
  /** Caches created at start. */
  caches?: Record<string, CacheConfig>;
  /** Zones assigned to nodes round-robin. */
  zones?: string[];
  autoAdjust?: Partial<AutoAdjustPolicy>;
  clusterId?: string;
  /** Start each node's HTTP server (/health, /metrics) on an ephemeral port. Default false. */
  http?: boolean;
  maxEntries?: number;
  maxBytes?: number;
  dedupWindowMs?: number;
  maxFrameSize?: number;
  authToken?: string;
  /** Serve TLS (clients and peers); peers verify each other with `tls.ca`. */
  tls?: TlsOptions;
  logger?: Logger;
  /** Wait at most this long for the cluster to form. Default 10 000 ms. */
  startTimeoutMs?: number;
}

export interface AddNodeOptions {
  id?: string;
  zone?: string;
  weight?: number;
}

interface Slot {
  id: string;
  port: number;
  zone: string | undefined;
  weight: number | undefined;
  node: GridNode | null;
}

/**
 * An embedded cluster: N real nodes on 127.0.0.1 in this process, sharing an in-memory control
 * plane, talking TCP to clients and to each other. For the demo, examples, tests and benchmarks.
 */
export class LocalCluster {
  readonly controlPlane = new MemoryControlPlane();
  private readonly slots = new Map<string, Slot>();
  private nextIndex = 1;
  private stopped = false;

  private constructor(private readonly options: LocalClusterOptions) {}

  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const n = options.nodes ?? 3;
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new NodeConfigError('nodes', 'must be an integer in [1, 64]');
    if (options.basePort !== undefined && (!Number.isInteger(options.basePort) || options.basePort < 1 || options.basePort + n > 65535)) {
      throw new NodeConfigError('basePort', 'must leave room for every node below 65536');
    }
    const cluster = new LocalCluster(options);
    try {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push(cluster.allocate({}).id);
      await Promise.all(ids.map((id) => cluster.launch(id, n)));
      await cluster.waitForTopology(
        (t) => ids.every((id) => t.members[id] !== undefined) && isSettled(t),
        options.startTimeoutMs ?? 10_000,
      );
      await cluster.waitForNodes();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  private allocate(o: AddNodeOptions): Slot {
    const index = this.nextIndex++;
    const id = o.id ?? `node-${index}`;
    if (this.slots.has(id)) throw new NodeConfigError('id', `node ${id} already exists`);
    const zones = this.options.zones;
    const slot: Slot = {
      id,
      port: this.options.basePort !== undefined ? this.options.basePort + index - 1 : 0,
      zone: o.zone ?? (zones && zones.length > 0 ? zones[(index - 1) % zones.length] : undefined),
      weight: o.weight,
      node: null,
    };
    this.slots.set(id, slot);
    return slot;
  }

  private async launch(id: string, bootstrapNodes: number): Promise<GridNode> {
    const slot = this.slots.get(id)!;
    const o = this.options;
    const base: NodeOptions = {
      id,
      controlPlane: this.controlPlane,
      host: '127.0.0.1',
      port: slot.port,
      partitions: o.partitions ?? 1024,
      backups: o.backups ?? 1,
      bootstrapNodes,
    };
    const timingKeys: (keyof NodeTiming)[] = [
      'leaseMs', 'renewIntervalMs', 'leaseMarginMs', 'coordinatorIntervalMs', 'replicationTimeoutMs',
      'forwardTimeoutMs', 'handshakeTimeoutMs', 'idleTimeoutMs', 'frameTimeoutMs', 'sweepIntervalMs', 'handoffTimeoutMs',
      'handoffOutageMs',
    ];
    for (const k of timingKeys) if (o[k] !== undefined) base[k] = o[k];
    if (slot.zone !== undefined) base.zone = slot.zone;
    if (slot.weight !== undefined) base.weight = slot.weight;
    if (o.cacheDefaults) base.cacheDefaults = o.cacheDefaults;
    if (o.caches) base.caches = o.caches;
    if (o.autoAdjust) base.autoAdjust = o.autoAdjust;
    if (o.clusterId) base.clusterId = o.clusterId;
    if (o.http) base.httpPort = 0;
    if (o.maxEntries !== undefined) base.maxEntries = o.maxEntries;
    if (o.maxBytes !== undefined) base.maxBytes = o.maxBytes;
    if (o.dedupWindowMs !== undefined) base.dedupWindowMs = o.dedupWindowMs;
    if (o.maxFrameSize !== undefined) base.maxFrameSize = o.maxFrameSize;
    if (o.authToken !== undefined) base.authToken = o.authToken;
    if (o.tls) base.tls = o.tls;
    if (o.logger) base.logger = o.logger;
    let node: GridNode;
    try {
      node = await startNode(base);
    } catch (err) {
      if (slot.port === 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || this.options.basePort !== undefined) throw err;
      node = await startNode({ ...base, port: 0 });
    }
    slot.node = node;
    slot.port = node.port;
    return node;
  }

  /**
   * Resolves once every running node has applied the control plane's current topology and serves
   * what it says that node serves (lease vouched for, no promotion fence pending).
   */
  private async waitForNodes(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = this.topologyVersion;
      const lagging = [...this.slots.values()].filter(
        (s) => s.node?.running && !s.node.hung && (s.node.topologyVersion() < v || (s.node.topology()?.members[s.id] !== undefined && !s.node.isServing())),
      );
      if (lagging.length === 0) return;
      if (Date.now() > deadline) throw new Error(`nodes ${lagging.map((s) => s.id).join(', ')} did not apply topology ${v} or do not serve it yet`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** "127.0.0.1:port" of every node not killed or stopped (hung nodes included). */
  get endpoints(): string[] {
    return [...this.slots.values()].filter((s) => s.node?.running).map((s) => `127.0.0.1:${s.port}`);
  }

  /** Ids of every node not killed or stopped. */
  get nodeIds(): string[] {
    return [...this.slots.values()].filter((s) => s.node?.running).map((s) => s.id);
  }

  node(id: string): GridNode {
    const n = this.slots.get(id)?.node;
    if (!n) throw new NodeConfigError('id', `no running node ${id}`);
    return n;
  }

  endpointOf(id: string): string {
    const s = this.slots.get(id);
    if (!s) throw new NodeConfigError('id', `no node ${id}`);
    return `127.0.0.1:${s.port}`;
  }

  /** The authoritative topology record (from the control plane). */
  topology(): TopologyRecord {
    const e = this.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY);
    if (!e) throw new Error('the cluster has no topology yet');
    return e.value;
  }

  get topologyVersion(): number {
    return this.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY)?.value.version ?? 0;
  }

  partitionMap(): PartitionMap {
    return partitionMapOf(this.topology());
  }

  /** Effective primary of a partition, or null when lost. */
  primaryOf(partition: number): string | null {
    return this.topology().owners[partition]?.[0] ?? null;
  }

  /** Resolves with the first topology record satisfying pred; rejects after timeoutMs. */
  waitForTopology(pred: (t: TopologyRecord) => boolean, timeoutMs = 10_000): Promise<TopologyRecord> {
    return new Promise((resolve, reject) => {
      let done = false;
      const check = (): void => {
        if (done) return;
        const e = this.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY);
        if (e && pred(e.value)) {
          done = true;
          unwatch();
          clearTimeout(timer);
          clearInterval(poll);
          resolve(e.value);
        }
      };
      const unwatch = this.controlPlane.watch(TOPOLOGY_KEY, () => check());
      const poll = setInterval(check, 20);
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        unwatch();
        clearInterval(poll);
        const e = this.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY);
        reject(new Error(`topology condition not met within ${timeoutMs} ms (version ${e?.value.version ?? 0})`));
      }, timeoutMs);
      check();
    });
  }

  /** Waits until the given nodes (default: all running, not hung) are members, nothing is moving and every partition sits with its target owners. */
  async waitForStable(timeoutMs = 10_000, ids?: string[]): Promise<TopologyRecord> {
    const want = ids ?? [...this.slots.values()].filter((s) => s.node?.running && !s.node.hung).map((s) => s.id);
    const t = await this.waitForTopology(
      (t) => want.every((id) => t.members[id] !== undefined && t.members[id].epoch === this.slots.get(id)?.node?.epoch) && isBalanced(t),
      timeoutMs,
    );
    await this.waitForNodes(timeoutMs);
    return t;
  }

  /** Abrupt death: sockets destroyed, timers stopped, no goodbye. */
  async kill(id: string): Promise<void> {
    this.node(id).kill();
  }

  /** Freezes the node: it stops reading, answering and renewing its lease; sockets stay open. */
  hang(id: string): void {
    this.node(id).hang();
  }

  resume(id: string): void {
    this.node(id).resume();
  }

  /** Kills the node if running and starts it again, empty, under the same id (and port when free). */
  async restart(id: string): Promise<GridNode> {
    const slot = this.slots.get(id);
    if (!slot) throw new NodeConfigError('id', `no node ${id}`);
    slot.node?.kill();
    slot.node = null;
    return this.launch(id, 1);
  }

  /** Starts a new node; it joins the cluster but holds data only once the baseline includes it. */
  async addNode(o: AddNodeOptions = {}): Promise<string> {
    const slot = this.allocate(o);
    await this.launch(slot.id, 1);
    return slot.id;
  }

  /** Gracefully stops one node (it gives up its lease at once). */
  async stopNode(id: string): Promise<void> {
    await this.node(id).stop();
  }

  private async updateTopology(mutate: (t: TopologyRecord) => TopologyRecord): Promise<TopologyRecord> {
    for (;;) {
      const e = this.controlPlane.peek<TopologyRecord>(TOPOLOGY_KEY);
      if (!e) throw new Error('the cluster has no topology yet');
      const next = mutate(e.value);
      next.version = e.value.version + 1;
      try {
        this.controlPlane.updateSync(TOPOLOGY_KEY, next, e.revision);
        return next;
      } catch {
        // a concurrent coordinator write: retry on the new record
      }
    }
  }

  /** Sets the baseline by hand (ids must have been seen by the cluster). */
  async setBaseline(ids: string[]): Promise<TopologyRecord> {
    if (!Array.isArray(ids) || ids.length === 0) throw new NodeConfigError('ids', 'must be a non-empty array of node ids');
    return this.updateTopology((t) => {
      const baseline: NodeSpec[] = ids.map((id) => {
        const m = t.members[id];
        const a = t.addresses[id];
        if (!m && !a) throw new NodeConfigError('ids', `node ${id} is unknown to the cluster`);
        const spec: NodeSpec = { id };
        const zone = m?.zone ?? a?.zone;
        if (zone !== undefined) spec.zone = zone;
        if (m?.weight !== undefined) spec.weight = m.weight;
        return spec;
      });
      return { ...t, baseline, adjust: null };
    });
  }

  async setAutoAdjust(policy: Partial<AutoAdjustPolicy>): Promise<TopologyRecord> {
    return this.updateTopology((t) => ({ ...t, autoAdjust: { ...t.autoAdjust, ...policy } }));
  }

  /** Accepts the loss of lost partitions: they are served again, empty. */
  async resetLostPartitions(partitions?: number[]): Promise<TopologyRecord> {
    return this.updateTopology((t) => withLossAccepted(t, partitions));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of this.slots.values()) s.node?.kill();
  }
}
