import { afterEach } from 'vitest';
import { GridClient, type GridClientConfig } from '@gridlink/client';
import { LocalCluster, silentLogger, startNode, type ControlPlane, type GridNode, type LocalClusterOptions, type NodeOptions } from '@gridlink/node';
import { until } from './until.js';

/** Partitions of the three-node tests' cluster (`optionsOf`, `startThree`). */
export const THREE_PARTITIONS = 16;

/** Options of node `id` in the three-node tests: THREE_PARTITIONS partitions, one backup, formed by three. */
export const optionsOf = (id: string, controlPlane: ControlPlane, more: Partial<NodeOptions> = {}): NodeOptions => ({
  id,
  controlPlane,
  port: 0,
  partitions: THREE_PARTITIONS,
  backups: 1,
  bootstrapNodes: 3,
  logger: silentLogger,
  ...more,
});

/** Starts a, b and c (`planeOf` says each one's control plane) into `nodes`; resolves once all three serve as members. */
export async function startThree(nodes: GridNode[], planeOf: (id: string) => ControlPlane, more: Partial<NodeOptions> = {}): Promise<void> {
  nodes.push(...(await Promise.all(['a', 'b', 'c'].map((id) => startNode(optionsOf(id, planeOf(id), more))))));
  await until(() => nodes.every((n) => n.topology() !== null && Object.keys(n.topology()!.members).length === 3 && n.isServing()), 'three serving members');
}

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

/**
 * Nodes a test starts (pushed onto `nodes`, by `startThree` say) and one client, ended after each
 * test (the client closed first, then every node killed), also when the test fails.
 * `connectFast` is `connectClient`, recording the client for that teardown.
 */
export function perTestNodes(): { nodes: GridNode[]; connectFast: (endpoints: string[], overrides?: Partial<GridClientConfig>) => Promise<GridClient> } {
  const nodes: GridNode[] = [];
  let client: GridClient | undefined;
  afterEach(async () => {
    await client?.close();
    client = undefined;
    for (const n of nodes.splice(0)) n.kill();
  });
  return {
    nodes,
    connectFast: async (endpoints, overrides = {}) => {
      client = await connectClient(endpoints, overrides);
      return client;
    },
  };
}

/**
 * One embedded cluster and one client per test, both closed after each test (client first), also
 * when the test fails. `start` and `connect` record what they open for that teardown.
 */
export function perTestCluster(): {
  start(options: LocalClusterOptions): Promise<LocalCluster>;
  connect(config: GridClientConfig): Promise<GridClient>;
  /** `connectClient` (the short failure detection above) with `overrides`, closed after the test. */
  connectFast(endpoints: string[], overrides?: Partial<GridClientConfig>): Promise<GridClient>;
} {
  let cluster: LocalCluster | undefined;
  let client: GridClient | undefined;
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await cluster?.stop();
    cluster = undefined;
  });
  return {
    async start(options) {
      cluster = await LocalCluster.start(options);
      return cluster;
    },
    async connect(config) {
      client = await GridClient.connect(config);
      return client;
    },
    async connectFast(endpoints, overrides = {}) {
      client = await connectClient(endpoints, overrides);
      return client;
    },
  };
}
