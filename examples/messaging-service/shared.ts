/**
 * Shared setup of the messaging example: the embedded grid (three nodes on fixed local ports, started
 * by the first worker if nobody serves them yet) and the local nats-server.
 */
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { connectNats, type NatsConnection } from '@gridlink/messaging';

export const GRID_BASE_PORT = Number(process.env.GRID_BASE_PORT ?? 10800);
export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
export const QUEUE = 'payments';
const endpoints = [0, 1, 2].map((i) => `127.0.0.1:${GRID_BASE_PORT + i}`);

export async function connectGrid(): Promise<GridClient> {
  return GridClient.connect({ endpoints, connectTimeout: 1000 });
}

/** Connects to the grid, starting the embedded one in this process when none answers. */
export async function gridOrStart(): Promise<{ grid: GridClient; cluster: LocalCluster | null }> {
  try {
    return { grid: await connectGrid(), cluster: null };
  } catch {
    console.log(`no grid on ${endpoints.join(', ')}: starting the embedded one in this process`);
    const cluster = await LocalCluster.start({ nodes: 3, backups: 1, basePort: GRID_BASE_PORT });
    return { grid: await connectGrid(), cluster };
  }
}

export async function nats(): Promise<NatsConnection> {
  try {
    return await connectNats({ servers: NATS_URL, maxReconnectAttempts: -1 });
  } catch (e) {
    console.error(`cannot reach nats-server at ${NATS_URL} (start one with: nats-server -a 127.0.0.1 -p 4222)`);
    throw e;
  }
}
