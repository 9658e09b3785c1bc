export { FaultProxy, SilentServer } from './fault-proxy.js';
export type { FaultProxyOptions, FaultProxyTarget, FaultProxyStats, HalfOpenDirection } from './fault-proxy.js';
export { NatsCluster, NatsServer, type NatsServerOptions } from './nats-server.js';
export { freePort, freePortOn, loopbackAliasesUsable, makeTempDir, portOpen, removeTempDir, trackedPids, trackedTempDirs, waitFor, waitForPort } from './processes.js';
export { ProcessCluster, GridNodeProcess, type ProcessClusterOptions } from './process-cluster.js';
export { ScriptedNode, type ScriptedHandler, type ScriptedReply } from './scripted-node.js';
