/**
 * `@gridlink/node/internal`: what the node's own tests, the benchmarks and tools need beyond the
 * public API (pure topology and routing functions, the replica state machine, the scheduler, the
 * peer client, the store). Not a stable API: it may change in any release.
 */
export { TOPOLOGY_KEY, LEASE_PREFIX, CACHE_PREFIX } from './control/keys.js';
export { cacheOwners, cacheRules, handOffDone, handOffRefused, initialTopology, lossDepth, nextTopology, nodeSafety, partitionMapOf, isSettled, isBalanced, rankingDepth, type CacheRule } from './control/topology.js';
export { holds, missesCaches, rankOf, recordForRank } from './partitions/depth.js';
export { coordinatorStep, deferHandBack } from './membership/handback.js';
export { lossRefusal, lostFor, roleOf, routeRequest, unsupportedCacheConfig, type Role, type RouteDecision } from './control/routing.js';
export {
  INITIAL_REPLICA,
  step,
  onRecord,
  mayWrite,
  phaseOf,
  type ReplicaState,
  type ReplicaEvent,
  type ReplicaAction,
  type ReplicaPhase,
  type Transition,
} from './partitions/replica.js';
export { Scheduler, delay, type TimerHandle } from './scheduler.js';
export { PeerClient, PEER_CLIENT_NAME, PEER_WIRE_VERSION, MIN_PEER_WIRE_VERSION, peerWireVersion, isBatch, type PeerClientOptions, type BatchPayload } from './peers/peer-client.js';
export { NodeStore, splitSnapshot, snapshotPartBudget, packedBlobBytes, type PartitionSnapshot, type ReplicationRecord, type StoreOptions, type StoreStats } from './store/index.js';
export { NodeMetrics, FastHistogram, type MetricsSource } from './metrics.js';
export { usage as cliUsage, envNameOf, CLI_OPTIONS, type CliOptionSpec } from './cli/options.js';
export { CLUSTER_DEFAULTS, joinOrCreateCluster, reconcileClusterSettings, type WantedClusterSettings } from './cli/cluster.js';
export { encodeReplicate, decodeReplicate } from './peers/replicate-codec.js';
export { withPeerWireRange, withNodeFeatures, commonVersion, refusedRange, wireRefusal, type WireRange } from './peers/wire-version.js';
export { RELEASE } from './release.js';
export { HTTP_PIPELINE_MAX, HTTP_LIMITS, type HttpLimits } from './server/listener.js';
