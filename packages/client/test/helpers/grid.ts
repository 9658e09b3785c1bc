import { afterAll, beforeAll } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient } from '@gridlink/client';

/**
 * A one-node embedded grid (16 partitions, no backups) and a client connected to it, for the
 * tests of the enclosing describe block or file: started in beforeAll, closed in afterAll.
 */
export function oneNodeGrid(): { readonly cluster: LocalCluster; readonly client: GridClient } {
  let cluster: LocalCluster | undefined;
  let client: GridClient | undefined;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
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
