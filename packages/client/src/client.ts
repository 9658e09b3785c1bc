/**
 * GridClient: the entry point. Wires the connection manager, partition service and invoker
 * together and exposes caches, locks, topology, stats and events.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import type { GridKey } from '@gridlink/affinity';
import { MAX_CACHE_NAME_BYTES, PushKind, utf8Length, type CacheConfig, type NodeInfo, type PartitionMap } from '@gridlink/protocol';
import { isCacheName } from './cache-name.js';
import { GridCache, type CacheOptions, type ClientContext, type OpOptions } from './cache.js';
import { describe, resolveConfig, type GridClientConfig, type ResolvedConfig } from './config.js';
import { ConnectionManager, type ManagerBookkeeping } from './connection-manager.js';
import { GridClosedError, GridConfigError, GridError, LockTimeoutError } from './errors.js';
import { Invoker, optionNamesError, type RetryEvent } from './invoker.js';
import { GridLock, LockHandle, LockTable, checkWaitMs, type AcquireOptions } from './lock.js';
import { PartitionService } from './partition-service.js';

export interface GridClientEvents {
  /** A connection to a node was established. */
  connected: (e: { nodeId: string; address: string }) => void;
  /** A connection was lost (or closed by the node). */
  disconnected: (e: { nodeId: string; address: string; error: GridError | null }) => void;
  /** The client has a connection to this node again. */
  nodeUp: (e: { nodeId: string }) => void;
  /** The client no longer has a connection to this node. */
  nodeDown: (e: { nodeId: string }) => void;
  /** A newer partition map was installed. */
  topologyChanged: (e: { version: number; previousVersion: number | null; changedPartitions: number }) => void;
  /** An operation attempt failed with a retryable error and will be retried. */
  retry: (e: RetryEvent) => void;
  /** Something went wrong in the background (refused node, lost lock, ...). */
  error: (e: GridError) => void;
}

export interface TopologySnapshot {
  clusterId: string | undefined;
  version: number | null;
  partitions: number;
  backups: number | null;
  nodes: (NodeInfo & { connected: boolean })[];
}

export interface NodeStats {
  nodeId: string;
  connected: boolean;
  inFlight: number;
  /** Requests sent to this node (attempts: a retry counts again). */
  requests: number;
  /** Of those, the ones that failed: an error answer, a timeout, a lost connection. */
  errors: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
}

export interface ClientStats {
  /**
   * Nodes with counters or a usable connection. A node's counters are dropped once it is neither
   * in the current partition map nor behind a connection (it left the cluster for good).
   */
  nodes: NodeStats[];
  operations: number;
  failedOperations: number;
  retries: number;
  mapRefreshes: number;
  mapRefreshFailures: number;
  topologyVersion: number | null;
  /**
   * How single-partition operations were routed: `primary` / `roundRobin` count the requests sent
   * to the partition's primary per the map or round-robin (no map, primary not connected);
   * `hits` are those answered by the node they were sent to, `misses` those the node had to
   * forward (its response is marked FORWARDED) — partition-aware routing's hit rate is
   * hits / (hits + misses).
   */
  routing: { primary: number; roundRobin: number; hits: number; misses: number };
  /** Responses the node marked as forwarded (request reached a non-primary). */
  forwarded: number;
  /**
   * Attempts the client refused at the connection it had routed them to, before sending anything
   * (a request over the frame limit, a connection that stopped being open, a signal aborted
   * meanwhile): no node's requests or errors. Calls refused before routing (bad arguments, a
   * value that does not serialise, a closed client) are counted nowhere.
   */
  unsent: number;
}

/** @internal What `GridClient.bookkeeping()` reports: the connection manager's counts and the client's own. */
export interface ClientBookkeeping extends Omit<ManagerBookkeeping, 'listeners'> {
  /** Listeners on the connection manager and the partition service (the client wires them once). */
  managerListeners: number;
  partitionListeners: number;
  /** Operations not settled yet, and sequence numbers still open (may be sent again). */
  operations: number;
  openSeqs: number;
  /** Lock handles holding a lock whose lease has not passed (close() releases them). */
  heldLocks: number;
  /** Lock handles with an automatic renewal scheduled, and whether the renewal timer is armed. */
  renewals: number;
  renewalTimer: boolean;
  /** A partition map refresh is under way. */
  mapRefresh: boolean;
}

/**
 * The longest close() lets the release of one held lock take (ms; the operation timeout when
 * shorter): a hung node must not hold close() for a whole operation timeout.
 */
export const CLOSE_RELEASE_TIMEOUT_MS = 2000;

/** The options of `cache()`, and of `createCache()` (those and a call's deadline and signal). */
const CACHE_OPTION_NAMES: ReadonlySet<string> = new Set(['serializer']);
const CREATE_CACHE_OPTION_NAMES: ReadonlySet<string> = new Set(['serializer', 'signal', 'timeoutMs']);

export interface WithLockOptions extends AcquireOptions {
  /** Use tryAcquire semantics: fail at once with LockTimeoutError when held elsewhere. */
  noWait?: boolean;
}

export class GridClient extends EventEmitter<GridClientEvents> {
  /** Random id of this client's session, shared by all its connections. */
  readonly sessionId: string = randomUUID();
  private readonly cfg: ResolvedConfig;
  private readonly manager: ConnectionManager;
  private readonly partitionService: PartitionService;
  private readonly invoker: Invoker;
  private readonly ctx: ClientContext;
  /** This client's held locks (released by close()) and their automatic renewal (one timer for all). */
  private readonly locks: LockTable;
  private closing: Promise<void> | null = null;

  private constructor(config: GridClientConfig) {
    super();
    this.cfg = resolveConfig(config);
    this.locks = new LockTable((_h, err) => this.reportError(err), Math.min(CLOSE_RELEASE_TIMEOUT_MS, this.cfg.operationTimeout));
    this.manager = new ConnectionManager(this.cfg, this.sessionId);
    this.partitionService = new PartitionService(this.manager, this.cfg.requestTimeout);
    this.invoker = new Invoker(this.cfg, this.manager, this.partitionService, {
      onRetry: (e) => this.notify('retry', e),
    });
    const ps = this.partitionService;
    this.ctx = {
      invoker: this.invoker,
      partitions: ps,
      manager: this.manager,
      partitionCount: () => ps.map?.partitions ?? ps.partitions,
      partitionAware: this.cfg.partitionAware,
      operationTimeout: this.cfg.operationTimeout,
    };
    this.wire();
  }

  /**
   * Validates the config, connects to the first reachable endpoint and returns the client, all
   * within one connectTimeout: the address finder, the first connection and the wait for the
   * first partition map draw on the same budget.
   */
  static async connect(config: GridClientConfig): Promise<GridClient> {
    const client = new GridClient(config);
    const deadline = performance.now() + client.cfg.connectTimeout;
    try {
      await client.manager.start(deadline);
    } catch (e) {
      await client.close();
      throw e;
    }
    // Fetch the first partition map; routing works without it (round-robin) if this fails. Waited
    // for only until the deadline: a node that hangs after its handshake must not hold connect()
    // for several requestTimeouts, nor past connectTimeout (the refresh goes on in the background).
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      client.partitionService.refresh().catch(() => undefined),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, deadline - performance.now())))),
    ]);
    clearTimeout(timer);
    return client;
  }

  private wire(): void {
    const m = this.manager;
    const ps = this.partitionService;
    m.on('handshake', (ok, _conn, onlyConnection) => {
      // The only connection, to a node whose topology is older than our map: the whole cluster was
      // restarted (its versions started over). Forget the old map rather than ignore every new one.
      if (onlyConnection && ps.map !== null && ok.topologyVersion < ps.map.version) {
        this.cfg.logger?.warn?.('topology version went backwards: the cluster was restarted; discarding the old map', {
          nodeId: ok.nodeId,
          version: ok.topologyVersion,
          previous: ps.map.version,
        });
        ps.reset();
      }
      if (ps.partitions === 0 || ps.map === null) ps.partitions = ok.partitions;
      ps.observe(ok.topologyVersion, false, ok.nodeId);
    });
    m.on('clusterChanged', () => {
      ps.reset();
      this.forgetDepartedNodes();
    });
    m.on('version', (v, refresh, nodeId) => ps.observe(v, refresh, nodeId));
    m.on('push', (frame, conn) => {
      if (frame.push === PushKind.TOPOLOGY_CHANGED) {
        const v = (frame.payload as { version?: unknown }).version;
        const version = typeof v === 'number' ? v : frame.topologyVersion;
        ps.observe(version, true, conn.nodeId);
        // The node holds the map this client routes by (a newer one wakes them once installed):
        // what it refused while it was behind (not yet the primary in its own view), it may take now.
        const held = ps.map?.version;
        if (held !== undefined && version === held) this.invoker.wakeTransitionWaiters();
      }
    });
    m.on('connected', (nodeId, address) => this.notify('connected', { nodeId, address }));
    m.on('disconnected', (nodeId, address, error) => {
      this.notify('disconnected', { nodeId, address, error });
      void ps.refresh();
    });
    m.on('nodeUp', (nodeId) => this.notify('nodeUp', { nodeId }));
    m.on('nodeDown', (nodeId) => {
      this.forgetDepartedNodes();
      this.notify('nodeDown', { nodeId });
    });
    m.on('error', (e) => this.reportError(e));
    ps.on('changed', (map, previous) => {
      let changed = 0;
      for (let p = 0; p < map.partitions; p++) {
        const a = previous === null ? undefined : previous.nodes[previous.primaries[p] ?? -1]?.id;
        const b = map.nodes[map.primaries[p] ?? -1]?.id;
        if (a !== b) changed++;
      }
      this.cfg.logger?.info?.('partition map updated', { version: map.version, changedPartitions: changed });
      this.notify('topologyChanged', { version: map.version, previousVersion: previous?.version ?? null, changedPartitions: changed });
      m.onTopology(map, previous);
      this.forgetDepartedNodes();
    });
  }

  /**
   * Drops the per-node counters of nodes that have left: neither in the current partition map
   * (which lists the baseline, so a node down for a while stays) nor behind a connection of the
   * manager (open or draining). Runs when a connection is lost and when a new map is installed,
   * the two ways a node can stop being either.
   */
  private forgetDepartedNodes(): void {
    const map = this.partitionService.map;
    const inMap = new Set(map === null ? [] : map.nodes.map((n) => n.id));
    const conns = this.manager.connections();
    this.invoker.forgetNodes((id) => inMap.has(id) || conns.has(id));
  }

  /**
   * Emits an event to the application's listeners from inside the client's own work (a response
   * handler, a renewal, a map refresh). A listener that throws must not cut that work short — the
   * new map not followed, the lost lock's signal never aborted, the operation failed with the
   * listener's error — nor be swallowed: its error is thrown again on a microtask, an uncaught
   * exception as an abort listener's would be, and the later listeners of that event are skipped
   * as with any emitter.
   */
  private notify<E extends keyof GridClientEvents>(event: E, payload: Parameters<GridClientEvents[E]>[0]): void {
    try {
      (this.emit as (event: E, payload: unknown) => boolean)(event, payload);
    } catch (e) {
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private checkOpen(): void {
    if (this.closing !== null) throw new GridClosedError();
  }

  /**
   * A typed view of a named cache. The name is a string of 1 to 255 UTF-8 bytes and the
   * serializer, when given, has serialize and deserialize methods; otherwise GridConfigError
   * naming `name` or `serializer`. Null options (or serializer) mean the default.
   */
  cache<K extends GridKey = GridKey, V = unknown>(name: string, options?: CacheOptions<V> | null): GridCache<K, V> {
    this.checkOpen();
    if (!isCacheName(name)) {
      const got = typeof name === 'string' ? `${utf8Length(name)} bytes` : describe(name);
      throw new GridConfigError('name', `a cache name must be a string of 1 to ${MAX_CACHE_NAME_BYTES} UTF-8 bytes, got ${got}`);
    }
    const bad = optionNamesError(options, CACHE_OPTION_NAMES);
    if (bad !== null) throw bad;
    const serializer = (options as { serializer?: unknown } | null | undefined)?.serializer;
    if (serializer !== undefined && serializer !== null) {
      const s = serializer as Record<string, unknown>;
      if ((typeof s !== 'object' && typeof s !== 'function') || typeof s.serialize !== 'function' || typeof s.deserialize !== 'function') {
        throw new GridConfigError('serializer', `must be an object with serialize and deserialize methods, got ${describe(serializer)}`);
      }
    }
    return new GridCache<K, V>(name, this.ctx, options ?? {});
  }

  /** Creates a cache with a config (idempotent) and returns its view. */
  async createCache<K extends GridKey = GridKey, V = unknown>(
    name: string,
    config: CacheConfig = {},
    options: CacheOptions<V> & OpOptions = {},
  ): Promise<GridCache<K, V>> {
    const bad = optionNamesError(options, CREATE_CACHE_OPTION_NAMES);
    if (bad !== null) throw bad;
    const { serializer, ...call } = (options as (CacheOptions<V> & OpOptions) | null) ?? {};
    const c = this.cache<K, V>(name, { serializer });
    await c.create(config, call);
    return c;
  }

  /** A distributed lock on `key`. */
  lock(key: GridKey): GridLock {
    this.checkOpen();
    return new GridLock(this.ctx, this.locks, key);
  }

  /**
   * Runs `fn` while holding the lock on `key`, releasing it in every outcome. The handle (with its
   * fencing token and a signal that aborts if the lock is lost) is passed to `fn`.
   */
  async withLock<T>(key: GridKey, fn: (handle: LockHandle) => Promise<T> | T, options?: WithLockOptions | null): Promise<T> {
    const o = options ?? {};
    const lock = this.lock(key);
    if (typeof fn !== 'function') throw new GridConfigError('fn', `must be a function, got ${describe(fn)}`);
    if (o.noWait !== undefined && typeof o.noWait !== 'boolean') throw new GridConfigError('noWait', `must be a boolean, got ${describe(o.noWait)}`);
    let handle: LockHandle;
    if (o.noWait === true) {
      // Not used without a wait, but checked as everywhere: a bad value is a mistake to report.
      checkWaitMs(o.waitMs);
      const r = await lock.attempt(o);
      if (!r.acquired) throw new LockTimeoutError('lock is held elsewhere', { heldForMs: r.heldForMs });
      handle = r.handle;
    } else {
      handle = await lock.acquire(o);
    }
    let result: T;
    try {
      result = await fn(handle);
    } catch (e) {
      await handle.release().catch(() => undefined);
      throw e;
    }
    // If the lock was lost before the critical section finished, release throws LockNotHeldError:
    // the caller must learn that the section did not run under an exclusive hold. Likewise when
    // close() released it meanwhile (this release then sends nothing): GridClosedError.
    await handle.release();
    if (handle.releasedOnClose) throw new GridClosedError('the client was closed while withLock ran: the lock was released before the function finished');
    return result;
  }

  /** The current partition map and connection state. */
  topology(): TopologySnapshot {
    const map: PartitionMap | null = this.partitionService.map;
    const connected = new Set(this.manager.healthyNodeIds());
    return {
      clusterId: this.manager.cluster,
      version: map?.version ?? null,
      partitions: map?.partitions ?? this.partitionService.partitions,
      backups: map?.backups ?? null,
      nodes: (map?.nodes ?? []).map((n) => ({ ...n, connected: connected.has(n.id) })),
    };
  }

  /**
   * Emits `error` to the application's listeners. With none, the emitter (eventemitter3) would
   * drop it without a trace, so it goes to the configured logger (error level) or, without one, to
   * a process warning: a lost lock or a refused node is never silent. The lock's `onLost`
   * listeners and `signal` report a loss as well.
   */
  private reportError(err: GridError): void {
    if (this.listenerCount('error') > 0) {
      this.notify('error', err);
      return;
    }
    if (this.cfg.logger?.error) this.cfg.logger.error(err.message, { code: err.code, name: err.name });
    else process.emitWarning(err.message, { type: 'GridlinkWarning', code: err.code });
  }

  /** Counters and latency percentiles. */
  stats(): ClientStats {
    const inv = this.invoker;
    const connected = new Set(this.manager.healthyNodeIds());
    const ids = new Set<string>([...inv.perNode.keys(), ...connected]);
    const nodes: NodeStats[] = [...ids].sort().map((id) => {
      const c = inv.counters(id);
      return {
        nodeId: id,
        connected: connected.has(id),
        inFlight: c.inFlight,
        requests: c.requests,
        errors: c.errors,
        latencyP50Ms: c.latency.percentile(0.5),
        latencyP99Ms: c.latency.percentile(0.99),
      };
    });
    return {
      nodes,
      operations: inv.operations,
      failedOperations: inv.failedOperations,
      retries: inv.retries,
      mapRefreshes: this.partitionService.refreshes,
      mapRefreshFailures: this.partitionService.refreshFailures,
      topologyVersion: this.partitionService.map?.version ?? null,
      routing: {
        primary: inv.routed.primary,
        roundRobin: inv.routed['round-robin'],
        hits: Math.max(0, inv.routed.primary + inv.routed['round-robin'] - inv.forwarded),
        misses: inv.forwarded,
      },
      forwarded: inv.forwarded,
      unsent: inv.unsent,
    };
  }

  /**
   * @internal Sizes of the client's own tables, queues and timers, for leak tests: once the work
   * that filled them is over each returns to its value on an idle client. Not part of the API.
   */
  bookkeeping(): ClientBookkeeping {
    const { listeners, ...m } = this.manager.bookkeeping();
    return {
      ...m,
      managerListeners: listeners,
      operations: this.invoker.activeOperations,
      openSeqs: this.invoker.openSeqs,
      heldLocks: this.locks.size,
      renewals: this.locks.renewals.size,
      renewalTimer: this.locks.renewals.armed,
      mapRefresh: this.partitionService.refreshing,
      partitionListeners: this.partitionService.listenerCount('changed'),
    };
  }

  /**
   * Stops accepting operations and lock renewal, waits for in-flight operations (each is bounded
   * by its deadline), releases every lock this client still holds (each release bounded by a
   * short deadline; a failed one leaves the lock to its lease), closes every connection and
   * clears every timer. Idempotent.
   */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.invoker.close();
    this.locks.stopRenewals();
    await this.invoker.whenIdle();
    // After the operations: one made under a lock must not land after another holder took it.
    await this.locks.releaseAll();
    this.partitionService.close();
    // Every user operation has finished: what may still be pending is the client's own traffic
    // (a map refresh, a heartbeat), possibly waiting on a hung node. Close without waiting for it.
    await this.manager.close(0);
    this.removeAllListeners();
  }
}
