import { GridClient, type GridClientConfig } from '@gridlink/client';

/**
 * The real client as the node's tests use it: short failure detection (heartbeats every 100 ms,
 * a silent connection closed after 600 ms, one attempt bounded by 400 ms) so killed or hung
 * nodes are left quickly, and a generous deadline per operation to ride out a failover.
 */
export function connectClient(endpoints: string[], overrides: Partial<GridClientConfig> = {}): Promise<GridClient> {
  return GridClient.connect({
    endpoints,
    heartbeatInterval: 100,
    heartbeatTimeout: 600,
    requestTimeout: 400,
    operationTimeout: 15_000,
    reconnect: { minDelay: 20, maxDelay: 300 },
    ...overrides,
  });
}
