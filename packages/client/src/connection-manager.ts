/**
 * Connection manager: the first connection (staggered over the endpoints, in order), then
 * background connections to every endpoint and every node the topology names, one connection per
 * node identity, reconnects with jittered exponential backoff, and address re-resolution
 * (periodic, on connection loss, on topology change).
 */
import { EventEmitter } from 'eventemitter3';
import type { HandshakeOk, PartitionMap, PushFrame } from '@gridlink/protocol';
import { PushKind } from '@gridlink/protocol';
import { resolveEndpoints } from './address-finder.js';
import { backoffDelay } from './backoff.js';
import type { ResolvedConfig } from './config.js';
import { Connection } from './connection.js';
import { formatEndpoint, type Endpoint } from './endpoints.js';
import { ClusterMismatchError, GridClosedError, GridConnectionError, GridError, GridServerError, GridTlsError, type EndpointFailure } from './errors.js';
import { RaceFailure, staggeredRace } from './stagger.js';

export interface ManagerEvents {
  connected: (nodeId: string, address: string) => void;
  disconnected: (nodeId: string, address: string, error: GridError | null) => void;
  nodeUp: (nodeId: string) => void;
  nodeDown: (nodeId: string) => void;
  /** Handshake data of a newly registered connection (topology version, partitions, cluster). */
  handshake: (ok: HandshakeOk, conn: Connection, onlyConnection: boolean) => void;
  /** The cluster identity changed (every connection had been lost and a new cluster answered). */
  clusterChanged: (clusterId: string, previous: string) => void;
  version: (version: number, refresh: boolean, nodeId: string) => void;
  push: (frame: PushFrame, conn: Connection) => void;
  error: (error: GridError) => void;
}

/** Connections, the requests pending on them and their listeners; addresses, attempts, timers, waiters. */
export interface ManagerBookkeeping {
  connections: number;
  pendingRequests: number;
  connectionListeners: number;
  addresses: number;
  connecting: number;
  /** Reconnect timers armed, and the timer holding back topology-only addresses. */
  reconnectTimers: number;
  connectionWaiters: number;
  /** Listeners on the manager itself. */
  listeners: number;
}

interface AddressState {
  endpoint: Endpoint;
  /** Node last seen behind this address. */
  nodeId: string | undefined;
  connecting: Connection | null;
  /** When the current attempt started (performance.now()). */
  attemptStartedAt: number;
  failures: number;
  timer: NodeJS.Timeout | null;
  lastError: string | undefined;
  /** The TLS failure last reported on `error` for this address (reported once until it changes or a handshake succeeds). */
  reportedTls: string | undefined;
}

export class ConnectionManager extends EventEmitter<ManagerEvents> {
  private readonly nodes = new Map<string, Connection>();
  private readonly addresses = new Map<string, AddressState>();
  private seeds: Endpoint[];
  private topologyEndpoints: Endpoint[] = [];
  private clusterId: string | undefined;
  private closed = false;
  private started = false;
  private resolving: Promise<void> | null = null;
  private periodic: NodeJS.Timeout | null = null;
  private holdTimer: NodeJS.Timeout | null = null;
  private waiters = new Set<() => void>();
  /** Aborted by close(): ends an address resolution under way (its finder's signal aborts too). */
  private readonly stopping = new AbortController();

  constructor(
    private readonly cfg: ResolvedConfig,
    private readonly sessionId: string,
  ) {
    super();
    this.seeds = [...cfg.endpoints];
    this.clusterId = cfg.clusterId;
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
    this.cfg.logger?.[level]?.(msg, fields);
  }

  private healthyCache: string[] | null = null;

  /** Currently usable connections' node ids, in a stable order (do not mutate the result). */
  healthyNodeIds(): string[] {
    if (this.healthyCache !== null) {
      // Cheap validity check: a connection may have stopped being usable on its own.
      let ok = true;
      for (const id of this.healthyCache) {
        if (this.nodes.get(id)?.usable !== true) {
          ok = false;
          break;
        }
      }
      if (ok) return this.healthyCache;
    }
    const out: string[] = [];
    for (const [id, c] of this.nodes) if (c.usable) out.push(id);
    this.healthyCache = out.sort();
    return this.healthyCache;
  }

  private invalidateHealthy(): void {
    this.healthyCache = null;
  }

  connection(nodeId: string): Connection | undefined {
    const c = this.nodes.get(nodeId);
    return c?.usable ? c : undefined;
  }

  /** Every registered connection (usable or draining). */
  connections(): Map<string, Connection> {
    return this.nodes;
  }

  get cluster(): string | undefined {
    return this.clusterId;
  }

  /** Sizes of what the manager keeps (see GridClient.bookkeeping). */
  bookkeeping(): ManagerBookkeeping {
    let pendingRequests = 0;
    let connectionListeners = 0;
    for (const c of this.nodes.values()) {
      pendingRequests += c.inFlight;
      for (const e of c.eventNames()) connectionListeners += c.listenerCount(e);
    }
    let connecting = 0;
    let reconnectTimers = this.holdTimer !== null ? 1 : 0;
    for (const s of this.addresses.values()) {
      if (s.connecting !== null) connecting++;
      if (s.timer !== null) reconnectTimers++;
    }
    let listeners = 0;
    for (const e of this.eventNames()) listeners += this.listenerCount(e);
    return {
      connections: this.nodes.size,
      pendingRequests,
      connectionListeners,
      addresses: this.addresses.size,
      connecting,
      reconnectTimers,
      connectionWaiters: this.waiters.size,
      listeners,
    };
  }

  /** Addresses the manager knows, with the node behind each and the last error. */
  knownAddresses(): { address: string; nodeId: string | undefined; lastError: string | undefined }[] {
    return [...this.addresses.entries()].map(([address, s]) => ({ address, nodeId: s.nodeId, lastError: s.lastError }));
  }

  /**
   * Makes the first connection. Endpoints are tried in order with `connectStagger`; resolves on
   * the first handshake; rejects with GridConnectionError listing each endpoint's cause.
   *
   * Everything here draws on one budget ending at `deadline` (performance.now() time; the caller's
   * connect() set it connectTimeout ahead): the address finder's answer, then the race to the
   * first handshake with what the finder left. With `endpoints` configured beside the finder, the
   * finder gets at most half of the budget, so a hung finder leaves the endpoints the other half.
   */
  async start(deadline: number): Promise<void> {
    const left = (): number => Math.max(1, Math.ceil(deadline - performance.now()));
    let finderUsed = false;
    if (this.cfg.addressFinder !== undefined) {
      finderUsed = true;
      try {
        const budget = this.seeds.length > 0 ? Math.max(1, Math.ceil(left() / 2)) : left();
        const found = await resolveEndpoints(this.cfg.addressFinder, budget);
        if (found.length > 0) this.seeds = mergeEndpoints(found, this.cfg.endpoints);
      } catch (e) {
        this.log('warn', 'address finder failed at startup', { error: (e as Error).message });
        if (this.seeds.length === 0) {
          throw new GridConnectionError(`address finder failed: ${(e as Error).message}`, { cause: e, retryable: true });
        }
      }
    }
    const endpoints = [...this.seeds];
    if (endpoints.length === 0) throw new GridConnectionError('no endpoints to connect to', { retryable: true });
    // What the finder left of the budget (all of it without a finder: the race is the whole bound).
    const raceTimeout = finderUsed ? left() : this.cfg.connectTimeout;
    try {
      await staggeredRace<Connection>({
        count: endpoints.length,
        stagger: this.cfg.connectStagger,
        timeout: raceTimeout,
        attempt: async (i, signal) => {
          const ep = endpoints[i] as Endpoint;
          const state = this.addressState(ep);
          const conn = this.newConnection(ep);
          state.connecting = conn;
          state.attemptStartedAt = performance.now();
          try {
            const ok = await conn.connect(signal);
            state.connecting = null;
            if (!this.register(conn, ok, state)) throw new GridConnectionError(`${conn.address}: ${state.lastError ?? 'refused'}`);
            return conn;
          } catch (e) {
            state.connecting = null;
            state.lastError = (e as Error).message;
            // An attempt that outlived the race (e.g. a blackholed endpoint) is retried like any
            // background connection.
            if (this.started && !this.closed) {
              this.reportTls(state, e);
              this.scheduleReconnect(state);
              this.ensureConnections();
            }
            throw e;
          }
        },
      });
    } catch (e) {
      if (e instanceof RaceFailure) {
        const list = endpoints.map((ep, i): EndpointFailure => {
          const f: EndpointFailure = {
            endpoint: formatEndpoint(ep),
            cause:
              e.causes[i] !== 'no answer yet'
                ? (e.causes[i] ?? 'unknown')
                : finderUsed
                  ? `no answer within the ${raceTimeout} ms the address finder left`
                  : `no answer within ${raceTimeout} ms`,
          };
          const err = e.errors[i];
          if (err instanceof Error) f.error = err;
          return f;
        });
        this.closeAll();
        // Every node refused the handshake for a reason a retry does not change (a wrong token,
        // another cluster, no common version): the same call would fail the same way.
        // Likewise a TLS handshake that failed on the settings (an untrusted certificate).
        const refusedForGood = list.every((l) => (l.error instanceof GridServerError || l.error instanceof GridTlsError) && !l.error.retryable);
        throw new GridConnectionError(
          `could not connect to any endpoint within ${this.cfg.connectTimeout} ms: ` + list.map((l) => `${l.endpoint} (${l.cause})`).join('; '),
          { endpoints: list, retryable: !refusedForGood },
        );
      }
      this.closeAll();
      throw e;
    }
    if (this.closed) throw new GridClosedError();
    this.started = true;
    if (this.cfg.reResolveInterval > 0) {
      this.periodic = setInterval(() => this.reResolve(), this.cfg.reResolveInterval);
      this.periodic.unref();
    }
    this.ensureConnections();
  }

  private addressState(ep: Endpoint): AddressState {
    const key = formatEndpoint(ep);
    let s = this.addresses.get(key);
    if (s === undefined) {
      s = { endpoint: ep, nodeId: undefined, connecting: null, attemptStartedAt: 0, failures: 0, timer: null, lastError: undefined, reportedTls: undefined };
      this.addresses.set(key, s);
    }
    return s;
  }

  private newConnection(ep: Endpoint): Connection {
    return new Connection({
      endpoint: ep,
      sessionId: this.sessionId,
      clientName: this.cfg.name,
      clusterId: this.cfg.clusterId,
      authToken: this.cfg.auth?.token,
      tls: this.cfg.tls,
      connectTimeout: this.cfg.connectTimeout,
      heartbeatInterval: this.cfg.heartbeatInterval,
      heartbeatTimeout: this.cfg.heartbeatTimeout,
      requestTimeout: this.cfg.requestTimeout,
    });
  }

  /**
   * Registers a connection whose handshake succeeded. Returns false (and closes it) when it is
   * refused: another cluster, or a duplicate of an already connected node.
   */
  private register(conn: Connection, ok: HandshakeOk, state: AddressState): boolean {
    if (this.closed) {
      conn.close();
      return false;
    }
    if (this.clusterId !== undefined && ok.clusterId !== this.clusterId) {
      const mayAdopt = this.cfg.clusterId === undefined && this.nodes.size === 0;
      if (!mayAdopt) {
        const err = new ClusterMismatchError(
          `${conn.address}: node ${ok.nodeId} belongs to cluster ${ok.clusterId}, expected ${this.clusterId}`,
        );
        state.lastError = err.message;
        this.log('warn', 'refused node of another cluster', { address: conn.address, nodeId: ok.nodeId, clusterId: ok.clusterId });
        conn.close();
        this.emit('error', err);
        return false;
      }
      const previous = this.clusterId;
      this.clusterId = ok.clusterId;
      this.log('warn', 'cluster identity changed (every previous connection was lost)', { previous, clusterId: ok.clusterId });
      this.emit('clusterChanged', ok.clusterId, previous);
    }
    this.clusterId = ok.clusterId;
    state.nodeId = ok.nodeId;
    state.failures = 0;
    state.lastError = undefined;
    state.reportedTls = undefined;
    const existing = this.nodes.get(ok.nodeId);
    if (existing !== undefined && existing.state !== 'closed') {
      // Two addresses of one node: keep the first connection.
      conn.close();
      return true;
    }
    this.nodes.set(ok.nodeId, conn);
    this.invalidateHealthy();
    conn.on('close', (err) => this.onClose(conn, ok.nodeId, state, err));
    conn.on('version', (v, refresh) => this.emit('version', v, refresh, ok.nodeId));
    conn.on('push', (frame) => {
      if (frame.push === PushKind.NODE_STOPPING) {
        conn.markDraining();
        this.log('info', 'node is stopping; draining its connection', { nodeId: ok.nodeId });
        void conn.drain(this.cfg.operationTimeout);
      }
      this.emit('push', frame, conn);
    });
    this.log('info', 'connected', { nodeId: ok.nodeId, address: conn.address });
    this.emit('handshake', ok, conn, this.nodes.size === 1);
    this.emit('connected', ok.nodeId, conn.address);
    this.emit('nodeUp', ok.nodeId);
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
    return true;
  }

  private onClose(conn: Connection, nodeId: string, state: AddressState, err: GridError | null): void {
    if (this.nodes.get(nodeId) === conn) this.nodes.delete(nodeId);
    this.invalidateHealthy();
    if (this.closed) return;
    this.log('info', 'disconnected', { nodeId, address: conn.address, error: err?.message });
    state.lastError = err?.message;
    this.emit('disconnected', nodeId, conn.address, err);
    this.emit('nodeDown', nodeId);
    this.scheduleReconnect(state);
    this.reResolve();
  }

  /**
   * A background attempt failed its TLS handshake: settings to fix (an untrusted certificate, a
   * node not serving TLS), which retrying alone will not. Reported on `error` once, not at every
   * attempt; again only when the failure changes or after a handshake succeeded. The address is
   * still retried with backoff (a certificate may be replaced on the node).
   */
  private reportTls(state: AddressState, e: unknown): void {
    if (!(e instanceof GridTlsError) || state.reportedTls === e.message) return;
    state.reportedTls = e.message;
    this.log('warn', 'TLS handshake failed', { address: formatEndpoint(state.endpoint), error: e.message });
    this.emit('error', e);
  }

  private scheduleReconnect(state: AddressState): void {
    if (this.closed || state.timer !== null || state.connecting !== null) return;
    const delay = backoffDelay(this.cfg.reconnect, state.failures, Math.random());
    state.failures++;
    this.log('debug', 'reconnect scheduled', { address: formatEndpoint(state.endpoint), failures: state.failures, delayMs: delay });
    state.timer = setTimeout(() => {
      state.timer = null;
      this.ensureConnections();
    }, delay);
    state.timer.unref();
  }

  /** Addresses the client should keep a connection to: seeds and every node of the topology. */
  private targets(): Endpoint[] {
    return mergeEndpoints(this.seeds, this.topologyEndpoints);
  }

  /**
   * Starts a connection to every target address that has none and is not backing off. The
   * user's endpoints come first: addresses learnt only from the topology are tried once no
   * endpoint of unknown identity is still handshaking, so a node reachable through a configured
   * address (a proxy, a service name) is not connected a second time through its advertised one.
   */
  ensureConnections(): void {
    if (this.closed || !this.started) return;
    const targets = this.targets();
    const wanted = new Set(targets.map(formatEndpoint));
    const seedKeys = new Set(this.seeds.map(formatEndpoint));
    const now = performance.now();
    // A configured endpoint of unknown identity that started handshaking less than one stagger
    // ago holds back topology-only addresses; a silent one holds them back for one stagger only.
    let holdUntil = 0;
    const hold = (state: AddressState): void => {
      holdUntil = Math.max(holdUntil, state.attemptStartedAt + this.cfg.connectStagger);
    };
    for (const ep of targets) {
      const key = formatEndpoint(ep);
      const state = this.addressState(ep);
      const isSeed = seedKeys.has(key);
      if (state.connecting !== null) {
        if (isSeed && state.nodeId === undefined) hold(state);
        continue;
      }
      if (state.timer !== null) continue;
      const known = state.nodeId !== undefined ? this.nodes.get(state.nodeId) : undefined;
      if (known !== undefined && known.state !== 'closed') continue;
      if (!isSeed && holdUntil > now) continue;
      this.connectBackground(state);
      if (isSeed && state.nodeId === undefined) hold(state);
    }
    if (holdUntil > now && this.holdTimer === null) {
      this.holdTimer = setTimeout(() => {
        this.holdTimer = null;
        this.ensureConnections();
      }, Math.ceil(holdUntil - now) + 1);
      this.holdTimer.unref();
    }
    // Forget addresses that are no longer wanted and have nothing in progress.
    for (const [key, s] of this.addresses) {
      if (wanted.has(key)) continue;
      if (s.timer !== null) {
        clearTimeout(s.timer);
        s.timer = null;
      }
      if (s.connecting === null) this.addresses.delete(key);
    }
  }

  private connectBackground(state: AddressState): void {
    const conn = this.newConnection(state.endpoint);
    state.connecting = conn;
    state.attemptStartedAt = performance.now();
    conn.connect().then(
      (ok) => {
        state.connecting = null;
        // Refused after its handshake (a node of another cluster): one failed attempt, counted
        // once, by scheduleReconnect, as a refused or failed handshake is.
        if (!this.register(conn, ok, state)) this.scheduleReconnect(state);
        this.ensureConnections();
      },
      (e: unknown) => {
        state.connecting = null;
        state.lastError = (e as Error).message;
        if (this.closed) return;
        this.log('debug', 'connection attempt failed', { address: conn.address, error: state.lastError });
        this.reportTls(state, e);
        this.scheduleReconnect(state);
        this.ensureConnections();
      },
    );
  }

  /**
   * The topology changed: connect to its nodes (by identity) and re-resolve addresses.
   *
   * A node the cluster has just declared gone (alive in `previous`, not alive now) has lost its
   * lease and serves nothing; a hung one may never answer. Its connection is dropped so requests
   * waiting on it are retried at once on the new primaries instead of waiting out their request
   * timeout. The usual reconnect loop brings the connection back if the node rejoins.
   */
  onTopology(map: PartitionMap, previous: PartitionMap | null = null): void {
    if (previous !== null) {
      const wasAlive = new Set(previous.nodes.filter((n) => n.alive).map((n) => n.id));
      for (const n of map.nodes) {
        if (n.alive || !wasAlive.has(n.id)) continue;
        const conn = this.nodes.get(n.id);
        if (conn === undefined) continue;
        this.log('info', 'dropping the connection to a node the cluster declared gone', { nodeId: n.id, address: conn.address });
        conn.destroy(new GridConnectionError(`${conn.address}: node ${n.id} was declared gone by the cluster`, { retryable: true }));
      }
    }
    this.topologyEndpoints = map.nodes
      .filter((n) => n.alive && typeof n.host === 'string' && Number.isInteger(n.port) && n.port > 0)
      .map((n) => ({ host: n.host, port: n.port }));
    // An address known to belong to a node that is already connected needs no connection.
    for (const n of map.nodes) {
      if (!n.alive || typeof n.host !== 'string') continue;
      const s = this.addressState({ host: n.host, port: n.port });
      if (s.nodeId === undefined) s.nodeId = n.id;
    }
    this.ensureConnections();
    this.reResolve();
  }

  /** Re-resolves addresses through the finder (single-flight), then connects to new ones. */
  reResolve(): void {
    if (this.closed || this.cfg.addressFinder === undefined) {
      this.ensureConnections();
      return;
    }
    if (this.resolving !== null) return;
    const finder = this.cfg.addressFinder;
    this.resolving = resolveEndpoints(finder, this.cfg.connectTimeout, this.stopping.signal)
      .then(
        (found) => {
          if (found.length > 0) this.seeds = mergeEndpoints(found, this.cfg.endpoints);
        },
        (e: unknown) => {
          if (!this.closed) this.log('warn', 'address re-resolution failed', { error: (e as Error).message });
        },
      )
      .finally(() => {
        this.resolving = null;
        this.ensureConnections();
      });
  }

  /** Resolves when some connection is usable, or rejects when `signal` aborts or the manager closes. */
  waitForConnection(signal: AbortSignal): Promise<void> {
    if (this.closed) return Promise.reject(new GridClosedError());
    if (this.healthyNodeIds().length > 0) return Promise.resolve();
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    // Nothing usable: make sure attempts are under way right now.
    for (const s of this.addresses.values()) {
      if (s.timer !== null && s.failures <= 1) {
        clearTimeout(s.timer);
        s.timer = null;
      }
    }
    this.ensureConnections();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(done);
        reject(signal.reason as Error);
      };
      const done = (): void => {
        signal.removeEventListener('abort', onAbort);
        if (this.closed) reject(new GridClosedError());
        else resolve();
      };
      this.waiters.add(done);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  private closeAll(): void {
    for (const s of this.addresses.values()) {
      if (s.timer !== null) clearTimeout(s.timer);
      s.timer = null;
      s.connecting?.close();
      s.connecting = null;
    }
    for (const c of this.nodes.values()) c.close();
    this.nodes.clear();
    this.invalidateHealthy();
  }

  /** Drains every connection (up to `drainMs`), cancels attempts and timers. */
  async close(drainMs: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopping.abort(new GridClosedError());
    if (this.periodic !== null) clearInterval(this.periodic);
    this.periodic = null;
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
    for (const s of this.addresses.values()) {
      if (s.timer !== null) clearTimeout(s.timer);
      s.timer = null;
      s.connecting?.close();
      s.connecting = null;
    }
    await Promise.all([...this.nodes.values()].map((c) => c.drain(drainMs)));
    this.nodes.clear();
    this.invalidateHealthy();
    if (this.resolving !== null) await this.resolving.catch(() => undefined);
    this.removeAllListeners();
  }
}

/** Merges endpoint lists keeping the first occurrence's position. */
export function mergeEndpoints(...lists: Endpoint[][]): Endpoint[] {
  const seen = new Set<string>();
  const out: Endpoint[] = [];
  for (const list of lists) {
    for (const ep of list) {
      const k = formatEndpoint(ep);
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(ep);
    }
  }
  return out;
}
