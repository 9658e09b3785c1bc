import { afterAll, afterEach, beforeAll } from 'vitest';
import { GridClient, type GridClientConfig } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { FaultProxy } from '@gridlink/testkit';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { NatsServer } from './processes.js';

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

/** Publishes one message per id on core NATS: the id is its body and its Nats-Msg-Id. */
export function publishIds(nc: NatsConnection, subject: string, ids: string[]): void {
  for (const id of ids) {
    const h = headers();
    h.set('Nats-Msg-Id', id);
    nc.publish(subject, id, { headers: h });
  }
}

/** A handler held by a gate: which message ids it started, and the most that ran at once. */
export interface Gated {
  handler: (m: unknown, ctx: { id: string }) => Promise<void>;
  started: string[];
  max: () => number;
  open: () => void;
}

/** What a messaging test file shares: a grid, a nats-server, and what each test opened. */
export interface MessagingEnv {
  readonly cluster: LocalCluster;
  readonly nats: NatsServer;
  /** Run (last first) after each test. */
  readonly closers: (() => Promise<void> | void)[];
  /** A grid client closed after the test. */
  grid: () => Promise<GridClient>;
  /** A NATS connection closed after the test; `name` as the server's /connz shows it. */
  natsConn: (name?: string) => Promise<NatsConnection>;
  /** `x`, closed after the test. */
  closeAfter: <T extends { close(): Promise<void> | void }>(x: T) => T;
  /**
   * A grid client whose connections all go through fault proxies (kept open while blackholed, so
   * the client does not find its way round through the nodes' own addresses); operations are
   * given up after 1 s. Both are closed after the test.
   */
  proxiedGrid: () => Promise<{ gw: GridClient; proxies: FaultProxy[] }>;
  /** A promise that resolves once `open()` is called; opened after the test at the latest. */
  gate: () => { gate: Promise<void>; open: () => void };
  /** A handler that counts how many run at once and waits for `open()` (a `gate()`). */
  gated: () => Gated;
}

/**
 * Registers the file's hooks: a LocalCluster (3 nodes, backups 1, 64 partitions) and a
 * nats-server for the whole file, and closing what each test opened after it.
 */
export function messagingEnv(): MessagingEnv {
  let cluster: LocalCluster | undefined;
  let nats: NatsServer | undefined;
  const closers: (() => Promise<void> | void)[] = [];
  beforeAll(async () => {
    [cluster, nats] = await Promise.all([LocalCluster.start({ nodes: 3, backups: 1, partitions: 64 }), NatsServer.start()]);
  });
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });
  afterAll(async () => {
    await nats?.stop();
    await cluster?.stop();
  });
  const env: MessagingEnv = {
    get cluster(): LocalCluster {
      if (!cluster) throw new Error('the grid has not started');
      return cluster;
    },
    get nats(): NatsServer {
      if (!nats) throw new Error('nats-server has not started');
      return nats;
    },
    closers,
    grid: async () => {
      const g = await connectGrid(env.cluster.endpoints);
      closers.push(() => g.close());
      return g;
    },
    natsConn: async (name?: string) => {
      const nc = await connectNats(env.nats.url, name);
      closers.push(() => nc.close());
      return nc;
    },
    closeAfter: (x) => {
      closers.push(() => x.close());
      return x;
    },
    proxiedGrid: async () => {
      const proxies = await Promise.all(env.cluster.nodeIds.map((id) => FaultProxy.start({ target: env.cluster.endpointOf(id) })));
      closers.push(async () => {
        for (const p of proxies) await p.close();
      });
      const gw = await connectGrid(
        proxies.map((p) => p.endpoint),
        { heartbeatInterval: 10_000, heartbeatTimeout: 60_000, operationTimeout: 1000 },
      );
      closers.push(() => gw.close());
      return { gw, proxies };
    },
    gate: () => {
      let open: () => void = () => undefined;
      const gate = new Promise<void>((r) => (open = r));
      closers.push(() => open());
      return { gate, open };
    },
    gated: () => {
      let active = 0;
      let max = 0;
      const started: string[] = [];
      const { gate, open } = env.gate();
      return {
        started,
        max: () => max,
        open: () => open(),
        handler: async (_m, ctx) => {
          active++;
          max = Math.max(max, active);
          started.push(ctx.id);
          await gate;
          active--;
        },
      };
    },
  };
  return env;
}
