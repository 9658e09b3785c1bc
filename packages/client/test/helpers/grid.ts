import { afterAll, afterEach, beforeAll } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient } from '@gridlink/client';

export interface Grid {
  readonly cluster: LocalCluster;
  readonly client: GridClient;
}

/** A one-node embedded grid (16 partitions, no backups) and a client connected to it (see gridFixture). */
export function oneNodeGrid(): Grid {
  return gridFixture({ nodes: 1, backups: 0, partitions: 16 });
}

/**
 * An embedded grid started with `options` and a client connected to it, for the tests of the
 * enclosing describe block or file: started in beforeAll, closed in afterAll.
 */
export function gridFixture(options: Parameters<typeof LocalCluster.start>[0]): Grid {
  let cluster: LocalCluster | undefined;
  let client: GridClient | undefined;
  beforeAll(async () => {
    cluster = await LocalCluster.start(options);
    client = await GridClient.connect({ endpoints: cluster.endpoints, connectTimeout: 3000 });
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.stop();
  });
  return {
    get cluster(): LocalCluster {
      if (!cluster) throw new Error('the grid has not started');
      return cluster;
    },
    get client(): GridClient {
      if (!client) throw new Error('the client has not connected');
      return client;
    },
  };
}

/**
 * What one test sets up beyond `grid`'s own client: `cleanups`, run in reverse order after each
 * test, and `connect()`, another client of `grid` ('error' events ignored) closed after the test.
 */
export function perTest(grid: Grid): { cleanups: (() => Promise<unknown>)[]; connect: () => Promise<GridClient> } {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  return {
    cleanups,
    connect: async (): Promise<GridClient> => {
      const client = await GridClient.connect({ endpoints: grid.cluster.endpoints, connectTimeout: 3000 });
      client.on('error', () => undefined);
      cleanups.push(() => client.close());
      return client;
    },
  };
}
