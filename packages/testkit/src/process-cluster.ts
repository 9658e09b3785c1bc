/**
 * ProcessCluster: a real multi-process grid on 127.0.0.1 — 1 or 3 nats-server processes
 * (JetStream, own store dirs) and N `gridlink-node` processes (the built CLI), with faults applied
 * by pid: kill (SIGKILL), hang (SIGSTOP) / resume (SIGCONT), stop (SIGTERM), restart under the
 * same id and port (empty: a node keeps its data in memory only); cutting one node off from the
 * control plane and — with `partitionable: true` — a full network partition (`isolate` / `heal`,
 * ADR 0032). Every process it starts is
 * ended by pid on `close()`, and on process exit if a test failed or timed out before that; its
 * temp dirs are removed the same way. Build the node package first (`packages/node/dist/cli.js`).
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { NODE_V8_FLAGS, NatsControlPlane, type TopologyRecord } from '@gridlink/node';
import { FaultProxy } from './fault-proxy.js';
import { NatsCluster, type NatsServer } from './nats-server.js';
import { exited, freePort, freePortOn, loopbackAliasesUsable, spawnError, spawnTracked, waitFor } from './processes.js';

export interface ProcessClusterOptions {
  /** Grid node processes. Default 3. */
  nodes?: number;
  /** nats-server processes: 1, or 3 forming a JetStream cluster. Default 1. */
  natsServers?: 1 | 3;
  /** Partitions of the cluster. Default 64 (small, so state transfer in tests is quick). */
  partitions?: number;
  /** Backups per partition. Default 1. */
  backups?: number;
  /** KV bucket replicas. Default: the number of NATS servers. */
  bucketReplicas?: number;
  /** Extra `gridlink-node` flags for every node. */
  nodeArgs?: string[];
  /**
   * Flags of the Node.js runtime every node process starts with (before the CLI's path). Default
   * `NODE_V8_FLAGS` of @gridlink/node, as the container image starts it (ADR 0046); `[]` for V8's
   * own defaults.
   */
  v8Flags?: readonly string[];
  /**
   * How long a node process may take to print its "listening" line before its start fails (the
   * error then carries its stderr). Default 30000.
   */
  startTimeoutMs?: number;
  /** Log level of the nodes (their stderr is kept per node). Default warn. */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Path of the built CLI. Default: `packages/node/dist/cli.js` of this workspace. */
  cliPath?: string;
  /** Node ids. Default `node-1` … `node-N`. */
  ids?: string[];
  /**
   * Route each node's NATS traffic through its own FaultProxies (needed by
   * `isolateFromControlPlane`). Default true; false connects the nodes to the servers directly, so
   * control-plane latency is not that of this (test) process's event loop.
   */
  controlPlaneProxies?: boolean;
  /** Give every node an HTTP port (`--http-port`, a free port each) for /health and /metrics. Default false. */
  http?: boolean;
  /**
   * Make every node partitionable from the others (`isolate` / `heal`): node i listens on its own
   * loopback address 127.0.1.i, dials its peers from it, and advertises a FaultProxy on
   * 127.0.0.1 in front of it, which can drop connections by source address. Needs all of 127/8
   * routed to loopback (Linux); `start` refuses with a clear message elsewhere (check
   * `loopbackAliasesUsable()` to skip). Default false.
   */
  partitionable?: boolean;
}

/** How a partitionable node is reached: its own loopback address, and the proxy in front of it. */
interface NodeNet {
  /** 127.0.1.i: the node listens on it and dials its peers from it. */
  address: string;
  /** On 127.0.0.1, forwarding to address:port; clients and peers dial this. */
  proxy: FaultProxy;
}

/** The fault proxies between one node and the NATS servers (one per server). */
interface ControlPlanePath {
  proxies: FaultProxy[];
}

/**
 * The `gridlink-node` CLI of the installed @gridlink/node (its built `dist/cli.js`), found the way
 * Node resolves the package from here: works from the workspace, from an npm or pnpm install, in
 * the ESM and the CommonJS build (where tsup's shim stands in for import.meta.url).
 */
function defaultCli(): string {
  const pkg = createRequire(import.meta.url).resolve('@gridlink/node/package.json');
  return join(dirname(pkg), 'dist', 'cli.js');
}

/** One `gridlink-node` process, restartable under the same id and port. */
export class GridNodeProcess {
  private child: ChildProcess | undefined;
  private out = '';
  private err = '';
  /** Starts of this process so far (1 after the first start). */
  starts = 0;
  /** Flags added to this node's own on its next starts (e.g. a different `--handoff-timeout-ms`). */
  extraArgs: string[] = [];
  /** How long `start()` waits for the "listening" line (ProcessClusterOptions.startTimeoutMs). */
  startTimeoutMs = 30_000;

  constructor(
    readonly id: string,
    readonly port: number,
    private readonly args: () => string[],
    private readonly cliPath: string,
    /** The port clients and peers dial when it is not `port` (a proxy in front of the node). */
    readonly dialPort: number = port,
    /** The node's HTTP port (/health, /metrics), when the cluster was started with `http: true`. */
    readonly httpPort?: number,
    /** Runtime flags before the CLI's path (ProcessClusterOptions.v8Flags). */
    private readonly v8Flags: readonly string[] = NODE_V8_FLAGS,
    /** The address the node listens on, its HTTP port too (`--host`): 127.0.1.i when partitionable. */
    readonly host: string = '127.0.0.1',
  ) {}

  /**
   * GET one of the node's HTTP paths (`/health/safe`, ...): its status code, or 0 when nothing
   * answers (not running, no HTTP port).
   */
  async httpStatus(path: string): Promise<number> {
    return (await this.httpGet(path, async (res) => (await res.arrayBuffer(), res.status))) ?? 0;
  }

  /** GET one of the node's HTTP paths and parse its JSON body; undefined when nothing answers or the body is no JSON. */
  httpJson<T>(path: string): Promise<{ status: number; body: T } | undefined> {
    return this.httpGet(path, async (res) => ({ status: res.status, body: (await res.json()) as T }));
  }

  /** GET `path` from the node's HTTP port and read the answer with `read`; undefined when nothing answers or reading fails. */
  private async httpGet<R>(path: string, read: (res: Response) => Promise<R>): Promise<R | undefined> {
    if (this.httpPort === undefined || !this.running) return undefined;
    try {
      return await read(await fetch(`http://${this.host}:${this.httpPort}${path}`, { signal: AbortSignal.timeout(2000) }));
    } catch {
      return undefined;
    }
  }

  /** `127.0.0.1:<port clients dial>`. */
  get endpoint(): string {
    return `127.0.0.1:${this.dialPort}`;
  }
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }
  /** stderr of the current run (JSON log lines). */
  get log(): string {
    return this.err;
  }

  /** Starts the process and waits for its "listening" line. */
  async start(): Promise<void> {
    if (this.running) return;
    this.out = '';
    this.err = '';
    const child = spawnTracked(process.execPath, [...this.v8Flags, this.cliPath, ...this.args(), ...this.extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Only the flags configure the node: GRIDLINK_* variables of the test process are dropped.
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GRIDLINK_'))),
    });
    this.child = child;
    this.starts++;
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => (this.out += d));
    child.stderr?.on('data', (d: string) => {
      if (this.err.length < 500_000) this.err += d;
    });
    let gone = false;
    try {
      await waitFor(`gridlink-node ${this.id} to listen`, () => {
        if (!this.running) {
          gone = true;
          const cause = spawnError(child);
          if (cause) throw new Error(`gridlink-node ${this.id} could not be started: ${cause.message}`);
          throw new Error(`gridlink-node ${this.id} exited (${String(child.exitCode ?? child.signalCode)}): ${this.err.slice(-2000)}`);
        }
        return this.out.includes(' listening on ');
      }, this.startTimeoutMs);
    } catch (err) {
      if (gone) throw err;
      // Timed out: the half-started process is ended (a start that failed leaves nothing running),
      // and what the node said is the only clue to why.
      child.kill('SIGKILL');
      await exited(child);
      throw new Error(`${(err as Error).message}; its stderr: ${this.err.slice(-2000)}`);
    }
  }

  /** SIGKILL; resolves once the process is gone. */
  async kill(): Promise<void> {
    const c = this.child;
    if (c && this.running) {
      process.kill(c.pid!, 'SIGKILL');
      await exited(c);
    }
  }
  /** SIGTERM (graceful: gives up its lease); resolves once the process exited. */
  async stop(): Promise<void> {
    const c = this.child;
    if (c && this.running) {
      process.kill(c.pid!, 'SIGCONT');
      process.kill(c.pid!, 'SIGTERM');
      await exited(c);
    }
  }
  /**
   * SIGTERM without waiting: the graceful stop runs (handoff, drain, lease given up); resolves
   * with the exit code once the process exited (null when a signal ended it). A hung process is
   * resumed first (SIGCONT), as by `stop()`: stopped, it would not act on the SIGTERM.
   */
  terminate(): Promise<number | null> {
    const c = this.child;
    if (!c || !this.running) return Promise.resolve(this.exitCode);
    process.kill(c.pid!, 'SIGCONT');
    process.kill(c.pid!, 'SIGTERM');
    return exited(c).then(() => c.exitCode);
  }
  /** SIGSTOP: sockets stay open, nothing is answered, the lease is not renewed. */
  hang(): void {
    if (this.child && this.running) process.kill(this.child.pid!, 'SIGSTOP');
  }
  /** SIGCONT after `hang()`. */
  resume(): void {
    if (this.child && this.running) process.kill(this.child.pid!, 'SIGCONT');
  }
  /** Kills (if running) and starts again under the same id and port, with no data. */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }
  /** Exit code of the last run, or null while it runs. */
  get exitCode(): number | null {
    return this.child?.exitCode ?? null;
  }
}

/** A multi-process grid on a real NATS control plane. */
export class ProcessCluster {
  /** The cluster's own control-plane handle, once asked for (one connection however many ask at once). */
  private observer: Promise<NatsControlPlane> | undefined;
  private closed = false;
  /** The running or finished close(): a second call waits for the same one. */
  private closing: Promise<void> | undefined;

  private readonly paths = new Map<string, ControlPlanePath>();
  /** Per node, when the cluster is partitionable. */
  private readonly nets = new Map<string, NodeNet>();
  /** Isolated nodes, and whether their clients are cut too. */
  private readonly isolated = new Map<string, { clients: boolean; controlPlane: boolean }>();
  /** Pairs of nodes cut from each other by `cut` (ids in order, joined by a newline). */
  private readonly cuts = new Set<string>();
  private partitionable = false;

  private constructor(
    readonly nats: NatsCluster,
    readonly nodes: GridNodeProcess[],
    readonly bucket: string,
    private readonly makeNode: (id: string, port: number, natsUrls: string[], httpPort?: number, net?: { host: string; dialPort: number }) => GridNodeProcess,
    private readonly http = false,
    private readonly proxies = true,
  ) {}

  /**
   * A node process: on a partitionable cluster with its own loopback address and a proxy in
   * front, else on 127.0.0.1 and a free port.
   */
  private async newNode(id: string): Promise<GridNodeProcess> {
    const natsUrls = await this.natsPathFor(id);
    if (!this.partitionable) return this.makeNode(id, await freePort(), natsUrls, this.http ? await freePort() : undefined);
    const i = this.nets.size + 1;
    if (i > 254) throw new Error('a partitionable ProcessCluster has at most 254 nodes');
    const address = `127.0.1.${i}`;
    const port = await freePortOn(address);
    const httpPort = this.http ? await freePortOn(address) : undefined;
    const proxy = await FaultProxy.start({ target: { host: address, port }, frames: false });
    await this.refuseIfClosed([proxy]);
    this.nets.set(id, { address, proxy });
    // A node added while another is isolated is cut off from that one too.
    for (const other of this.isolated.keys()) {
      const n = this.nets.get(other)!;
      proxy.blackholeFrom(n.address);
      n.proxy.blackholeFrom(address);
    }
    return this.makeNode(id, port, natsUrls, httpPort, { host: address, dialPort: proxy.port });
  }

  private netOf(id: string): NodeNet {
    const n = this.nets.get(id);
    if (!n) throw new Error(this.partitionable ? `no node ${id}` : 'isolate/heal need ProcessCluster.start({ partitionable: true })');
    return n;
  }

  /** The loopback address node `id` listens on and dials its peers from (partitionable clusters). */
  addressOf(id: string): string {
    return this.netOf(id).address;
  }

  /**
   * A full network partition of node `id`: every path between it and the other nodes is
   * blackholed both ways (their connections to it at its proxy, its connections to them at
   * theirs, by its source address: existing connections go silent, new ones are accepted and
   * never answered), and so is its control plane (as `isolateFromControlPlane`). Clients on
   * 127.0.0.1 still reach it, so a test can see it refuse to serve rather than merely vanish;
   * with `{ clients: true }` they are blackholed too. With `{ controlPlane: false }` it keeps its
   * control plane: cut off from its peers alone (an asymmetric partition). Needs
   * `partitionable: true`.
   */
  isolate(id: string, options: { clients?: boolean; controlPlane?: boolean } = {}): void {
    const self = this.netOf(id);
    const cutControlPlane = options.controlPlane !== false;
    if (cutControlPlane) this.controlPlanePath(id); // checked before anything is cut
    for (const [other, n] of this.nets) {
      if (other === id) continue;
      self.proxy.blackholeFrom(n.address);
      n.proxy.blackholeFrom(self.address);
    }
    if (options.clients === true) self.proxy.blackholeFrom('127.0.0.1');
    if (cutControlPlane) this.isolateFromControlPlane(id);
    this.isolated.set(id, { clients: options.clients === true, controlPlane: cutControlPlane });
  }

  /**
   * Heals `isolate(id)`. The connections that were blackholed are reset (bytes were swallowed
   * mid-stream; a real partition would have ended them by timeouts), so both sides reconnect.
   */
  heal(id: string): void {
    const self = this.netOf(id);
    const was = this.isolated.get(id);
    for (const [other, n] of this.nets) {
      if (other === id) continue;
      // Another node isolated on its own stays cut off from this one, and so does a pair `cut`.
      if (this.isolated.has(other) || this.cuts.has(cutKey(id, other))) continue;
      self.proxy.blackholeFrom(n.address, false);
      self.proxy.resetFrom(n.address);
      n.proxy.blackholeFrom(self.address, false);
      n.proxy.resetFrom(self.address);
    }
    if (was?.clients === true) {
      self.proxy.blackholeFrom('127.0.0.1', false);
      self.proxy.resetFrom('127.0.0.1');
    }
    if (was?.controlPlane !== false) this.healControlPlane(id);
    this.isolated.delete(id);
  }

  /**
   * Cuts the grid paths between nodes `a` and `b` both ways (each one's connections to the other,
   * blackholed at the other's proxy by source address), and nothing else: both still reach every
   * other node, the control plane and clients (a partial partition, ADR 0065). Needs
   * `partitionable: true`; `healCut(a, b)` ends it (`heal` of either leaves it in place).
   */
  cut(a: string, b: string): void {
    if (a === b) throw new Error(`cut needs two different nodes, got ${a} twice`);
    const na = this.netOf(a);
    const nb = this.netOf(b);
    na.proxy.blackholeFrom(nb.address);
    nb.proxy.blackholeFrom(na.address);
    this.cuts.add(cutKey(a, b));
  }

  /** Ends `cut(a, b)`; the connections that were blackholed are reset, so both sides reconnect. */
  healCut(a: string, b: string): void {
    const na = this.netOf(a);
    const nb = this.netOf(b);
    this.cuts.delete(cutKey(a, b));
    for (const [self, other] of [[na, nb], [nb, na]] as const) {
      // A node still isolated stays cut off from everyone.
      if (this.isolated.has(a) || this.isolated.has(b)) break;
      self.proxy.blackholeFrom(other.address, false);
      self.proxy.resetFrom(other.address);
    }
  }

  /** A node's own path to NATS: one FaultProxy per server, so its control plane can be cut alone. */
  private async pathFor(id: string): Promise<string[]> {
    const proxies = await Promise.all(this.nats.servers.map((s) => FaultProxy.start({ target: { host: '127.0.0.1', port: s.port }, frames: false })));
    await this.refuseIfClosed(proxies);
    this.paths.set(id, { proxies });
    return proxies.map((p) => `nats://127.0.0.1:${p.port}`);
  }

  /**
   * Proxies started while close() ran would be missed by it: they are closed here, and the caller
   * (addNode) stops with an error.
   */
  private async refuseIfClosed(proxies: FaultProxy[]): Promise<void> {
    if (!this.closed) return;
    await Promise.all(proxies.map((p) => p.close()));
    this.assertOpen();
  }

  /** Throws once close() was called: nothing may be started or opened after it. */
  private assertOpen(): void {
    if (this.closed) throw new Error('the ProcessCluster was closed');
  }

  /** The NATS URLs a node connects to: its own proxies, or the servers when proxies are off. */
  private async natsPathFor(id: string): Promise<string[]> {
    return this.proxies ? this.pathFor(id) : this.nats.urls;
  }

  /**
   * Cuts one node off from the control plane (every NATS server): its connections go silent and
   * new ones are refused, as in a network partition between it and NATS. Its grid connections
   * (clients, peers) are untouched.
   */
  isolateFromControlPlane(id: string): void {
    for (const p of this.controlPlanePath(id).proxies) {
      p.refuse(true);
      p.blackhole(true);
    }
  }

  /** Node `id`'s proxies to NATS; throws naming why there are none. */
  private controlPlanePath(id: string): ControlPlanePath {
    if (!this.nodes.some((n) => n.id === id)) throw new Error(`no node ${id}`);
    const path = this.paths.get(id);
    if (!path) throw new Error('isolating a node from the control plane needs its FaultProxies: this cluster was started with controlPlaneProxies: false');
    return path;
  }

  /**
   * The NATS server node `id` is connected to now: the one whose proxy on the node's path has a
   * connection open (undefined while it has none, or without control-plane proxies).
   */
  controlPlaneServerOf(id: string): NatsServer | undefined {
    const proxies = this.paths.get(id)?.proxies ?? [];
    const i = proxies.findIndex((p) => p.stats().open > 0);
    return i < 0 ? undefined : this.nats.servers[i];
  }

  /** Heals `isolateFromControlPlane`. */
  healControlPlane(id: string): void {
    for (const p of this.paths.get(id)?.proxies ?? []) p.heal();
  }

  static async start(options: ProcessClusterOptions = {}): Promise<ProcessCluster> {
    const n = options.nodes ?? 3;
    const cliPath = options.cliPath ?? defaultCli();
    if (!existsSync(cliPath)) throw new Error(`gridlink-node is not built: ${cliPath} is missing (build @gridlink/node first)`);
    const natsServers = options.natsServers ?? 1;
    const ids = options.ids ?? Array.from({ length: n }, (_, i) => `node-${i + 1}`);
    const twice = ids.find((id, i) => ids.indexOf(id) !== i);
    if (twice !== undefined) throw new Error(`ProcessCluster ids: ${twice} given twice`);
    // Through proxies, the nodes must know no other way to the servers (ADR 0061: a node leaves a
    // server that stops answering, and would reach a gossiped address past its cut proxies).
    const nats = await NatsCluster.start({ servers: natsServers, advertise: !(options.controlPlaneProxies ?? true) });
    const bucket = 'gridlink';
    const replicas = options.bucketReplicas ?? natsServers;
    const common = [
      '--bucket',
      bucket,
      '--bucket-replicas',
      String(replicas),
      '--partitions',
      String(options.partitions ?? 64),
      '--backups',
      String(options.backups ?? 1),
      // The first topology waits for every initial node, so all of them are in the baseline.
      '--bootstrap-nodes',
      String(options.ids?.length ?? n),
      '--log-level',
      options.logLevel ?? 'warn',
      ...(options.nodeArgs ?? []),
    ];
    const makeNode = (id: string, port: number, natsUrls: string[], httpPort?: number, net?: { host: string; dialPort: number }): GridNodeProcess => {
      const node = new GridNodeProcess(
        id,
        port,
        () => [
          '--id',
          id,
          '--host',
          net?.host ?? '127.0.0.1',
          '--port',
          String(port),
          ...(net ? ['--advertise-host', '127.0.0.1', '--advertise-port', String(net.dialPort)] : []),
          '--control-plane',
          natsUrls.join(','),
          ...(httpPort === undefined ? [] : ['--http-port', String(httpPort)]),
          ...common,
        ],
        cliPath,
        net?.dialPort ?? port,
        httpPort,
        options.v8Flags,
        net?.host,
      );
      if (options.startTimeoutMs !== undefined) node.startTimeoutMs = options.startTimeoutMs;
      return node;
    };
    const nodes: GridNodeProcess[] = [];
    const http = options.http ?? false;
    const cluster = new ProcessCluster(nats, nodes, bucket, makeNode, http, options.controlPlaneProxies ?? true);
    try {
      if (options.partitionable === true) {
        if (!(await loopbackAliasesUsable())) {
          throw new Error('ProcessCluster partitionable: needs 127.0.1.x to be loopback addresses (Linux routes all of 127/8); not available here');
        }
        cluster.partitionable = true;
      }
      for (const id of ids) nodes.push(await cluster.newNode(id));
      // The first node creates the cluster; the others join it.
      await nodes[0]?.start();
      await Promise.all(nodes.slice(1).map((p) => p.start()));
      await cluster.waitForMembers(ids);
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /** The node process with this id. */
  node(id: string): GridNodeProcess {
    const p = this.nodes.find((x) => x.id === id);
    if (!p) throw new Error(`no node ${id}`);
    return p;
  }

  /** `127.0.0.1:port` of every node (running or not), for a client's endpoint list. */
  get endpoints(): string[] {
    return this.nodes.map((p) => p.endpoint);
  }

  /** NATS client URLs. */
  get natsUrls(): string[] {
    return this.nats.urls;
  }

  /** Starts one more node process and waits until it is a member. */
  async addNode(id: string): Promise<GridNodeProcess> {
    this.assertOpen();
    // A second process under an id would replace the first one's proxies, which nothing closed then.
    if (this.nodes.some((x) => x.id === id) || this.paths.has(id) || this.nets.has(id)) throw new Error(`node ${id} exists already`);
    const p = await this.newNode(id);
    // close() ran meanwhile: it did not see this node; a process started now would outlive it.
    this.assertOpen();
    this.nodes.push(p);
    await p.start();
    await this.waitForMembers([id]);
    return p;
  }

  /** A control-plane handle of the cluster's own (opened on first use, closed by `close()`). */
  async controlPlane(): Promise<NatsControlPlane> {
    this.assertOpen();
    if (this.observer === undefined) {
      // The promise is kept, not the handle: callers that ask while it connects share it.
      const connecting = NatsControlPlane.connect({ servers: this.nats.urls, bucket: this.bucket, connectTimeoutMs: 20_000 });
      this.observer = connecting;
      connecting.catch(() => {
        if (this.observer === connecting) this.observer = undefined;
      });
    }
    return this.observer;
  }

  /** The current topology record, or null before the cluster formed. */
  async topology(): Promise<TopologyRecord | null> {
    const cp = await this.controlPlane();
    return (await cp.get<TopologyRecord>('topology'))?.value ?? null;
  }

  /** A failed topology read is polled again, unless the cluster was closed: then the wait ends with it. */
  private readonly unlessClosed = (err: unknown): null => {
    if (this.closed) throw err;
    return null;
  };

  /** Waits until the topology lists every one of `ids` as a member and nothing is syncing. */
  async waitForMembers(ids: string[], timeoutMs = 30_000): Promise<TopologyRecord> {
    let rec: TopologyRecord | null = null;
    await waitFor(
      `members ${ids.join(',')} settled`,
      async () => {
        rec = await this.topology().catch(this.unlessClosed);
        return rec !== null && ids.every((id) => rec!.members[id] !== undefined) && rec.syncing.every((s) => s.length === 0);
      },
      timeoutMs,
      50,
    );
    return rec!;
  }

  /** Waits until `id` is no longer a member (its lease judged expired, or given up). */
  async waitForGone(id: string, timeoutMs = 30_000): Promise<TopologyRecord> {
    let rec: TopologyRecord | null = null;
    await waitFor(
      `${id} gone from the topology`,
      async () => {
        rec = await this.topology().catch(this.unlessClosed);
        return rec !== null && rec.members[id] === undefined;
      },
      timeoutMs,
      50,
    );
    return rec!;
  }

  /**
   * Waits until `/health/safe` answers 200 on every running node (started with `http: true`),
   * every one of them judging on the topology the control plane holds now, whose members all
   * run: nothing any of them holds is under-replicated, moving or lost, and no dead node is still
   * counted as a holder. (A node answers on the topology it has applied; in
   * the moment after a step, before it applied it, it would call safe what the step just made
   * unsafe, e.g. a backup declared gone.)
   */
  async waitForSafe(timeoutMs = 30_000): Promise<void> {
    if (!this.http) throw new Error('waitForSafe needs a cluster started with http: true');
    await waitFor(
      'every running node safe on the current topology',
      async () => {
        const topo = await this.topology().catch(this.unlessClosed);
        if (topo === null) return false;
        // Every member is asked (a dead one not yet declared gone answers nothing: not safe), and
        // every running node.
        const members = Object.keys(topo.members);
        if (!members.every((id) => this.nodes.some((p) => p.id === id && p.running))) return false;
        const asked = this.nodes.filter((p) => p.running);
        const answers = await Promise.all(asked.map((p) => p.httpJson<{ safe?: boolean; topologyVersion?: number }>('/health/safe')));
        return asked.length > 0 && answers.every((a) => a?.status === 200 && a.body.safe === true && a.body.topologyVersion === topo.version);
      },
      timeoutMs,
      25,
    );
  }

  /** Kills every node and NATS server by pid and removes their directories. Idempotent. */
  close(): Promise<void> {
    this.closed = true;
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    await Promise.all(this.nodes.map((p) => p.kill()));
    await Promise.all([...this.paths.values()].flatMap((path) => path.proxies.map((p) => p.close())));
    await Promise.all([...this.nets.values()].map((n) => n.proxy.close()));
    // A NATS server a test left hung (SIGSTOP) would hold up the observer's drain for seconds:
    // it is about to be killed anyway, so it answers once more first.
    for (const s of this.nats.servers) s.resume();
    // A connection still being opened is waited for and closed too.
    if (this.observer) await this.observer.then((cp) => cp.close()).catch(() => undefined);
    await this.nats.close();
  }
}

/** The key of a pair of nodes in `ProcessCluster.cuts`, whatever their order. */
function cutKey(a: string, b: string): string {
  return a < b ? `${a}\n${b}` : `${b}\n${a}`;
}
