export { GridNode, startNode, TOPOLOGY_KEY, LEASE_PREFIX, CACHE_PREFIX } from './node.js';
export { LocalCluster, type LocalClusterOptions, type AddNodeOptions } from './local-cluster.js';
export { DEFAULT_TIMING, resolveNodeOptions, type NodeOptions, type NodeTiming, type TlsOptions, type ResolvedNodeOptions } from './config.js';
export { MemoryControlPlane, type ControlPlane, type KvEntry, type KvEvent } from './control/kv.js';
export {
  DEFAULT_AUTO_ADJUST,
  initialTopology,
  nextTopology,
  partitionMapOf,
  isSettled,
  isBalanced,
  type AutoAdjustPolicy,
  type LeaseRecord,
  type MemberInfo,
  type SyncEntry,
  type TopologyRecord,
} from './control/topology.js';
export { roleOf, routeRequest, type Role, type RouteDecision } from './control/routing.js';
export { NodeConfigError, GridNodeError, CasConflictError } from './errors.js';
export { PeerUnavailableError } from './peer.js';
export { silentLogger, consoleLogger, type Logger } from './logger.js';
export { NodeStore, StoreError, type StoreOptions, type StoreStats } from './store/index.js';
export {
  NatsControlPlane,
  ControlPlaneUnavailableError,
  parseNatsServers,
  type NatsControlPlaneOptions,
  type NatsTlsOptions,
} from './control/nats.js';
export { parseCli, usage as cliUsage, envNameOf, CLI_OPTIONS, type CliConfig, type CliOptionSpec, type CliParseResult, type ControlPlaneSpec } from './cli/options.js';
export { CLUSTER_KEY, CLUSTER_DEFAULTS, joinOrCreateCluster, reconcileClusterSettings, type ClusterRecord, type WantedClusterSettings } from './cli/cluster.js';
