import { GridClient, type GridClientConfig } from '@gridlink/client';
import { connect, type NatsConnection } from '@nats-io/transport-node';

/** The grid client settings the messaging tests use: killed or hung nodes are left quickly. */
export const GRID_CLIENT: Partial<GridClientConfig> = {
  heartbeatInterval: 100,
  heartbeatTimeout: 600,
  requestTimeout: 400,
  operationTimeout: 15_000,
  reconnect: { minDelay: 20, maxDelay: 300 },
};

export function connectGrid(endpoints: string[], overrides: Partial<GridClientConfig> = {}): Promise<GridClient> {
  return GridClient.connect({ endpoints, ...GRID_CLIENT, ...overrides });
}

/** A NATS connection; `name` is the connection's name as the server's /connz shows it. */
export function connectNats(url: string, name?: string): Promise<NatsConnection> {
  return connect({ servers: url, reconnectTimeWait: 100, maxReconnectAttempts: -1, pingInterval: 1000, ...(name !== undefined ? { name } : {}) });
}
