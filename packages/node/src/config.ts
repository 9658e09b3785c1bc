import { DEFAULT_MAX_FRAME_SIZE, DEFAULT_PORT, MAX_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE, type CacheConfig } from '@gridlink/protocol';
import { NodeConfigError } from './errors.js';
import type { ControlPlane } from './control/kv.js';
import { unsupportedCacheConfig } from './control/routing.js';
import { cacheConfigProblem } from './store/payload.js';
import { DEFAULT_AUTO_ADJUST, type AutoAdjustPolicy } from './control/topology.js';
import { silentLogger, type Logger } from './logger.js';
import { NODE_FEATURES, PEER_WIRE, nodeFeaturesOf, peerWireRangeOf, type WireRange } from './peers/wire-version.js';

/** Timing knobs, all in milliseconds. See docs/node.md for why the defaults are what they are. */
export interface NodeTiming {
  /** Length of a membership lease. */
  leaseMs: number;
  /** How often the lease is renewed. */
  renewIntervalMs: number;
  /** Subtracted from a lease's end (measured from when its renewal was sent) before serving as primary. */
  leaseMarginMs: number;
  /** How often the coordinator re-evaluates liveness and the topology. */
  coordinatorIntervalMs: number;
  /** A write waits this long at most for a backup that is neither acknowledging nor declared gone. */
  replicationTimeoutMs: number;
  /** A forwarded request waits this long at most for the primary. */
  forwardTimeoutMs: number;
  /** A connection must complete its handshake within this. */
  handshakeTimeoutMs: number;
  /** A connection that sends nothing (heartbeats count) for this long is closed. */
  idleTimeoutMs: number;
  /** A frame, once started, must arrive completely within this (slow senders are cut off). */
  frameTimeoutMs: number;
  /** TTL sweep period. */
  sweepIntervalMs: number;
  /**
   * Graceful stop: how long the node waits for its primaryships to move to caught-up backups
   * before it stops anyway (then those partitions fail over as after a kill).
   */
  handoffTimeoutMs: number;
  /**
   * Graceful stop: how much longer the node waits for its hand-off while the control plane does
   * not answer it (no other node could take its partitions meanwhile; ADR 0071).
   * `handoffTimeoutMs` counts only the time it answers.
   */
  handoffOutageMs: number;
}

export const DEFAULT_TIMING: NodeTiming = {
  leaseMs: 1000,
  renewIntervalMs: 250,
  leaseMarginMs: 150,
  coordinatorIntervalMs: 50,
  replicationTimeoutMs: 3000,
  forwardTimeoutMs: 3000,
  handshakeTimeoutMs: 5000,
  idleTimeoutMs: 30_000,
  frameTimeoutMs: 10_000,
  sweepIntervalMs: 1000,
  handoffTimeoutMs: 5000,
  handoffOutageMs: 15_000,
};

export interface TlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
  /** CA used to verify peers when nodes talk to each other over TLS. */
  ca?: string | Buffer;
  rejectUnauthorized?: boolean;
}

export interface NodeOptions extends Partial<NodeTiming> {
  /** Node id, unique in the cluster and stable across restarts. */
  id: string;
  controlPlane: ControlPlane;
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Port; 0 picks an ephemeral one. Default 10800. */
  port?: number;
  /** Address peers and clients are told to use. Default: host. */
  advertiseHost?: string;
  /**
   * Port peers and clients are told to use, when something in front of the node (port mapping,
   * NAT, a proxy) forwards another port to the listen port. Default: the listen port.
   */
  advertisePort?: number;
  zone?: string;
  weight?: number;
  /**
   * Cluster settings, used by the node that creates the cluster; a node joining one whose
   * partition count (or `clusterId`) differs from these is refused at start (NodeConfigError).
   */
  clusterId?: string;
  partitions?: number;
  backups?: number;
  /** The cluster is created once this many nodes hold a lease. Default 1. */
  bootstrapNodes?: number;
  autoAdjust?: Partial<AutoAdjustPolicy>;
  /** Caches created at startup (name → config). */
  caches?: Record<string, CacheConfig>;
  /** Config of caches created implicitly by their first use. Default {} (no expiry). */
  cacheDefaults?: CacheConfig;
  /** Per-node bound on entries (LRU eviction). Default unbounded. */
  maxEntries?: number;
  /** Per-node bound on key+value bytes (LRU eviction). Default unbounded. */
  maxBytes?: number;
  /** How long (session, seq) outcomes are remembered. Default 120 000 ms. */
  dedupWindowMs?: number;
  /** Entries examined per TTL sweep tick. Default 1000. */
  sweepBudget?: number;
  /** Partitions pulled in parallel during state transfer. Default 8. */
  pullConcurrency?: number;
  /**
   * Most entry bytes a state-transfer answer carries (and the size of one part of a partition
   * pulled in parts), at most half of `maxFrameSize`. Default 131 072 (128 KiB): a rejoining node
   * takes data in between serving writes (ADR 0074). Larger: faster re-sync, longer write pauses.
   */
  transferUnitBytes?: number;
  maxFrameSize?: number;
  /** Clients beyond this are refused. Default 10 000. */
  maxConnections?: number;
  /** Bearer token clients (and peers) must present. Default none. */
  authToken?: string;
  tls?: TlsOptions;
  /** HTTP port for /health and /metrics; 0 = ephemeral; undefined = no HTTP server. */
  httpPort?: number;
  httpHost?: string;
  logger?: Logger;
}

export interface ResolvedNodeOptions extends NodeTiming {
  id: string;
  controlPlane: ControlPlane;
  host: string;
  port: number;
  advertiseHost: string;
  /** Undefined: the port the node actually listens on (also when `port` is 0). */
  advertisePort: number | undefined;
  zone: string | undefined;
  weight: number | undefined;
  clusterId: string;
  partitions: number;
  backups: number;
  bootstrapNodes: number;
  autoAdjust: AutoAdjustPolicy;
  caches: Record<string, CacheConfig>;
  cacheDefaults: CacheConfig;
  maxEntries: number | undefined;
  maxBytes: number | undefined;
  dedupWindowMs: number;
  sweepBudget: number;
  pullConcurrency: number;
  transferUnitBytes: number;
  maxFrameSize: number;
  maxConnections: number;
  authToken: string | undefined;
  tls: TlsOptions | undefined;
  httpPort: number | undefined;
  httpHost: string;
  logger: Logger;
  /** Node-to-node wire versions this node speaks (its release's, unless a test set another: withPeerWireRange). */
  [PEER_WIRE]: WireRange;
  /** Feature bits this node grants (withNodeFeatures; else every one of this release). */
  [NODE_FEATURES]: number;
}

/** Default, smallest and largest `transferUnitBytes` (ADR 0074). */
export const DEFAULT_TRANSFER_UNIT_BYTES = 128 * 1024;
export const MIN_TRANSFER_UNIT_BYTES = 16 * 1024;
export const MAX_TRANSFER_UNIT_BYTES = 1024 * 1024 * 1024;

/**
 * Longest timing option, in ms: 2^31 − 1 (about 24.8 days), the longest delay a Node.js timer
 * takes. A longer one fires after 1 ms instead (TimeoutOverflowWarning): a node given
 * `handshakeTimeoutMs: 3e9` refused every handshake at once, one given `idleTimeoutMs: 3e9`
 * closed every connection at once.
 */
export const MAX_TIMING_MS = 2 ** 31 - 1;

function int(field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new NodeConfigError(field, `must be an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}

export function resolveNodeOptions(o: NodeOptions): ResolvedNodeOptions {
  if (typeof o !== 'object' || o === null) throw new NodeConfigError('options', 'must be an object');
  if (typeof o.id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(o.id)) {
    throw new NodeConfigError('id', 'must be 1-64 characters of [A-Za-z0-9._-]');
  }
  const cp = o.controlPlane as Partial<ControlPlane> | undefined;
  if (!cp || typeof cp.get !== 'function' || typeof cp.watch !== 'function') {
    throw new NodeConfigError('controlPlane', 'must implement ControlPlane');
  }
  const t: NodeTiming = { ...DEFAULT_TIMING };
  for (const k of Object.keys(DEFAULT_TIMING) as (keyof NodeTiming)[]) {
    if (o[k] !== undefined) t[k] = int(k, o[k], 1, MAX_TIMING_MS);
  }
  if (t.renewIntervalMs >= t.leaseMs) throw new NodeConfigError('renewIntervalMs', 'must be shorter than leaseMs');
  if (t.leaseMarginMs + t.renewIntervalMs >= t.leaseMs) {
    throw new NodeConfigError('leaseMarginMs', 'leaseMarginMs + renewIntervalMs must be shorter than leaseMs');
  }
  // Given (null included: it is not "left out") or the default; refused when not a non-empty
  // string. `??` took null and '' for left out on some of these and not on others.
  const text = (field: string, v: unknown, def: string): string => {
    if (v === undefined) return def;
    if (typeof v !== 'string' || v === '') throw new NodeConfigError(field, `must be a non-empty string, got ${JSON.stringify(v) ?? typeof v}`);
    return v;
  };
  const host = text('host', o.host, '127.0.0.1');
  const autoAdjust: AutoAdjustPolicy = { ...DEFAULT_AUTO_ADJUST, ...o.autoAdjust };
  if (typeof autoAdjust.enabled !== 'boolean') throw new NodeConfigError('autoAdjust.enabled', 'must be a boolean');
  int('autoAdjust.softTimeoutMs', autoAdjust.softTimeoutMs, 0);
  int('autoAdjust.hardTimeoutMs', autoAdjust.hardTimeoutMs, autoAdjust.softTimeoutMs);
  if (o.zone !== undefined && (typeof o.zone !== 'string' || o.zone === '')) throw new NodeConfigError('zone', 'must be a non-empty string');
  if (o.weight !== undefined && (typeof o.weight !== 'number' || !(o.weight > 0) || !Number.isFinite(o.weight))) {
    throw new NodeConfigError('weight', 'must be a positive finite number');
  }
  if (o.httpPort !== undefined) int('httpPort', o.httpPort, 0, 65535);
  const backups = o.backups === undefined ? 1 : int('backups', o.backups, 0, 16);
  // Cache configs are checked here with the store's own rules (they used to pass here and fail
  // start() with a StoreError naming "config.<field>").
  const cacheConfig = (field: string, config: unknown): void => {
    const bad = cacheConfigProblem(config) ?? unsupportedCacheConfig(config as CacheConfig);
    if (bad !== null) throw new NodeConfigError(`${field}${bad.field === '' ? '' : '.' + bad.field}`, bad.message);
    // On the wire nil means absent; in these options, as in the others, only undefined does.
    for (const [k, v] of Object.entries(config as object)) if (v === null) throw new NodeConfigError(`${field}.${k}`, 'must be left out, not null, for the default');
  };
  if (o.caches !== undefined && (typeof o.caches !== 'object' || o.caches === null || Array.isArray(o.caches))) throw new NodeConfigError('caches', 'must be an object of cache configs');
  for (const [name, config] of Object.entries(o.caches ?? {})) cacheConfig(`caches.${name}`, config);
  if (o.cacheDefaults !== undefined) cacheConfig('cacheDefaults', o.cacheDefaults);
  const logger = o.logger === undefined ? silentLogger : o.logger;
  if (typeof logger !== 'object' || logger === null || !(['debug', 'info', 'warn', 'error'] as const).every((m) => typeof (logger as Partial<Logger>)[m] === 'function')) {
    throw new NodeConfigError('logger', 'must be a Logger (debug, info, warn and error functions)');
  }
  return {
    ...t,
    id: o.id,
    controlPlane: o.controlPlane,
    host,
    port: o.port === undefined ? DEFAULT_PORT : int('port', o.port, 0, 65535),
    advertiseHost: text('advertiseHost', o.advertiseHost, host),
    advertisePort: o.advertisePort === undefined ? undefined : int('advertisePort', o.advertisePort, 1, 65535),
    zone: o.zone,
    weight: o.weight,
    clusterId: text('clusterId', o.clusterId, 'gridlink'),
    partitions: o.partitions === undefined ? 1024 : int('partitions', o.partitions, 1, 65536),
    backups,
    bootstrapNodes: o.bootstrapNodes === undefined ? 1 : int('bootstrapNodes', o.bootstrapNodes, 1, 1000),
    autoAdjust,
    caches: o.caches ?? {},
    cacheDefaults: o.cacheDefaults ?? {},
    maxEntries: o.maxEntries === undefined ? undefined : int('maxEntries', o.maxEntries, 1),
    maxBytes: o.maxBytes === undefined ? undefined : int('maxBytes', o.maxBytes, 1),
    dedupWindowMs: o.dedupWindowMs === undefined ? 120_000 : int('dedupWindowMs', o.dedupWindowMs, 1),
    sweepBudget: o.sweepBudget === undefined ? 1000 : int('sweepBudget', o.sweepBudget, 1),
    pullConcurrency: o.pullConcurrency === undefined ? 8 : int('pullConcurrency', o.pullConcurrency, 1, 1024),
    transferUnitBytes: o.transferUnitBytes === undefined ? DEFAULT_TRANSFER_UNIT_BYTES : int('transferUnitBytes', o.transferUnitBytes, MIN_TRANSFER_UNIT_BYTES, MAX_TRANSFER_UNIT_BYTES),
    maxFrameSize: o.maxFrameSize === undefined ? DEFAULT_MAX_FRAME_SIZE : int('maxFrameSize', o.maxFrameSize, MIN_MAX_FRAME_SIZE, MAX_MAX_FRAME_SIZE),
    maxConnections: o.maxConnections === undefined ? 10_000 : int('maxConnections', o.maxConnections, 1),
    authToken: o.authToken,
    tls: o.tls,
    httpPort: o.httpPort,
    httpHost: text('httpHost', o.httpHost, host),
    logger,
    [PEER_WIRE]: peerWireRangeOf(o),
    [NODE_FEATURES]: nodeFeaturesOf(o),
  };
}
