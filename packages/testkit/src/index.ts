export { FaultProxy, SilentServer } from './fault-proxy.js';
export type { FaultProxyOptions, FaultProxyTarget, FaultProxyStats, HalfOpenDirection } from './fault-proxy.js';
