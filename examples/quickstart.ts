/** The README's quick start, verbatim: kept runnable and run by the test suite. */
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';

// Zero-setup: an embedded 3-node grid in this process (use real grid pods in production).
const cluster = await LocalCluster.start({ nodes: 3, backups: 1 });

const client = await GridClient.connect({ endpoints: cluster.endpoints });
const sessions = client.cache<string, { user: string; cart: string[] }>('sessions');

await sessions.put('user:42', { user: 'u42', cart: ['book'] }, { ttlMs: 30 * 60_000 });
await client.cache<string, number>('counters').increment('page-views');

// Kill a node abruptly, like a pod dying: its backups take over, no call fails.
await cluster.kill(cluster.nodeIds[0]!);
console.log(await sessions.get('user:42')); // { user: 'u42', cart: ['book'] }

// Distributed lock with a fencing token that only ever grows.
await client.withLock('nightly-report', async (lock) => {
  console.log('fencing token', lock.fencingToken);
});

await client.close();
await cluster.stop();
