export { ExitCode, AdminError, AdminUsageError, AdminRefusedError, ControlPlaneUnreachableError, AdminInternalError, classifyError } from './errors.js';
export { parseDuration, formatDuration, MAX_DURATION_MS } from './duration.js';
export { updateTopology, readTopology, withTimeout, DEFAULT_TIMEOUT_MS } from './control.js';
export {
  autoAdjustCountdown,
  baselineSpecs,
  fencedNodes,
  movingPartitions,
  nodeSafe,
  partitionCounts,
  planBaseline,
  reportedUnreachable,
  safetyOf,
  underReplicated,
  wantedCopies,
  type BaselinePlan,
  type FencedNode,
  type FenceState,
  type NodePlan,
  type PartitionCounts,
  type SafetyReport,
} from './model.js';
export {
  clusterStatus,
  showBaseline,
  changeBaseline,
  changeAutoAdjust,
  resetLost,
  listCaches,
  sizeErrorOf,
  checkSafe,
  waitSafe,
  decommission,
  probeHttp,
  type HttpLocator,
  type AdminOptions,
  type StatusOptions,
  type ClusterStatus,
  type MemberStatus,
  type MemberState,
  type BaselineView,
  type BaselineChange,
  type BaselineChangeResult,
  type ChangeOptions,
  type AutoAdjustChange,
  type AutoAdjustResult,
  type ResetLostResult,
  type CacheInfo,
  type SizeError,
  type SafeReport,
  type NodeSafety,
  type DecommissionResult,
} from './admin.js';
export { connectControlPlane, type ConnectedControlPlane, type ConnectOptions } from './connect.js';
export { runCli, type CliIo, type CliDeps } from './run.js';
export { startDashboard, topologyView, type Dashboard, type DashboardOptions, type LeaseView, type TopologyView, type NodeMetricsView } from './dashboard/server.js';
export { parsePrometheus, sumOf, type Sample } from './prometheus.js';
