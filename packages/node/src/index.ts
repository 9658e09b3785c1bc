/**
 * `@gridlink/node`: run grid nodes (GridNode, startNode), an embedded cluster (LocalCluster),
 * their configuration, control plane and errors. Internals for tests and tools live behind
 * `@gridlink/node/internal`.
 */
export { GridNode, startNode } from './node.js';
export { LocalCluster, type LocalClusterOptions, type AddNodeOptions } from './local-cluster.js';
export { DEFAULT_TIMING, resolveNodeOptions, type NodeOptions, type NodeTiming, type TlsOptions, type ResolvedNodeOptions } from './config.js';
// The control plane's key layout: a contract with operator tools (@gridlink/admin) that read it.
export { TOPOLOGY_KEY, LEASE_PREFIX, CACHE_PREFIX, isBucketName } from './control/keys.js';
export { topologyProblem, leaseProblem } from './control/records.js';
export { MemoryControlPlane, type ControlPlane, type KvEntry, type KvEvent } from './control/kv.js';
export { DEFAULT_AUTO_ADJUST, clusterSafety, fencedMembers, lostAnywhere, nodeSafety, wantedCopies, withLossAccepted, type AutoAdjustPolicy, type LeaseRecord, type MemberInfo, type NodeSafety, type SyncEntry, type TopologyRecord } from './control/topology.js';
export type { Role } from './control/routing.js';
export { NodeConfigError, GridNodeError, CasConflictError } from './errors.js';
export { PeerUnavailableError } from './peers/peer-client.js';
export { silentLogger, consoleLogger, type Logger } from './logger.js';
// The store stays reachable here for the memory benchmark; prefer @gridlink/node/internal.
export { NodeStore, StoreError, type StoreOptions, type StoreStats } from './store/index.js';
export {
  NatsControlPlane,
  ControlPlaneUnavailableError,
  ControlPlaneBucketMissingError,
  ControlPlaneResetError,
  parseNatsServers,
  type NatsControlPlaneOptions,
  type NatsTlsOptions,
} from './control/nats.js';
// gridlink-node's option parser (flags and GRIDLINK_* variables): deployment checks validate manifests with it.
export { parseCli, envNameOf, unknownVariables, type CliConfig, type CliParseResult, type ControlPlaneSpec, type UnknownVariable } from './cli/options.js';
export { CLUSTER_KEY, type ClusterRecord } from './cli/cluster.js';
// The --nats-creds check gridlink-node runs before connecting; the admin CLI runs it on its own --nats-creds.
export { checkNatsCredsFile } from './cli/files.js';
export { NODE_V8_FLAGS, youngGenerationConfigured } from './cli/v8-flags.js';
