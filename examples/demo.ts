/**
 * gridlink demo: an embedded 3-node grid (backups = 1), a client streaming writes and reads,
 * and one node killed in the middle — without a single failed request.
 *
 *   pnpm demo
 */
import { partitionOf } from '@gridlink/affinity';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';

const WORKERS = 8;
const RUN_MS = 4000;
const KILL_AT_MS = 1500;

const cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 1024 });
console.log(`embedded grid up: ${cluster.nodeIds.length} nodes at ${cluster.endpoints.join(', ')}`);

const client = await GridClient.connect({ endpoints: cluster.endpoints, name: 'demo' });
client.on('nodeDown', ({ nodeId }) => console.log(`  event nodeDown        ${nodeId}`));
client.on('topologyChanged', ({ version, changedPartitions }) =>
  console.log(`  event topologyChanged version ${version}, ${changedPartitions} partitions changed primary`),
);

const topo = client.topology();
const primaries = new Map<string, number>();
const map = cluster.partitionMap();
for (const idx of map.primaries) {
  const id = map.nodes[idx]?.id ?? 'lost';
  primaries.set(id, (primaries.get(id) ?? 0) + 1);
}
console.log(`client connected; topology version ${topo.version}, ${topo.partitions} partitions`);
for (const [id, n] of primaries) console.log(`  ${id}: primary for ${n} partitions`);

const sessions = client.cache<string, { user: string; visits: number }>('sessions');
const counters = client.cache<string, number>('counters');

// The node that is primary for user:42's partition is the one we will kill.
const victimPartition = partitionOf('user:42', topo.partitions);
const victim = cluster.primaryOf(victimPartition)!;
console.log(`\nstreaming writes and reads with ${WORKERS} workers; ${victim} (primary of user:42) dies at ${KILL_AT_MS} ms`);

const acknowledged = new Map<string, number>();
let ok = 0;
let failed = 0;
let increments = 0;
let stop = false;
const started = Date.now();

async function worker(w: number): Promise<void> {
  for (let i = 0; !stop; i++) {
    // Each worker owns its own 25 users, so every key has one writer and a read must see its write.
    const user = `user:${w}-${i % 25}`;
    try {
      await sessions.put(user, { user, visits: i });
      acknowledged.set(user, i);
      const back = await sessions.get(user);
      if (back?.visits !== i) throw new Error(`read ${JSON.stringify(back)} after writing visits=${i}`);
      await counters.increment('page-views');
      increments++;
      ok += 3;
    } catch (err) {
      failed++;
      console.log(`  request failed: ${(err as Error).message}`);
    }
  }
}

const workers = Array.from({ length: WORKERS }, (_, w) => worker(w));
setTimeout(() => {
  console.log(`  ${Date.now() - started} ms: killing ${victim}`);
  void cluster.kill(victim);
}, KILL_AT_MS);
await new Promise((resolve) => setTimeout(resolve, RUN_MS));
stop = true;
await Promise.all(workers);

let missing = 0;
for (const [user, visits] of acknowledged) {
  if ((await sessions.get(user))?.visits !== visits) missing++;
}
const views = await counters.get('page-views');
const stats = client.stats();

console.log(`\n${ok} requests succeeded, ${failed} failed, ${stats.retries} retried transparently`);
console.log(`${acknowledged.size} acknowledged writes checked after the kill: ${missing} missing`);
console.log(`counter page-views = ${views}, acknowledged increments = ${increments} (exactly once: ${views === increments})`);

const token = await client.withLock('nightly-report', (lock) => lock.fencingToken);
console.log(`lock nightly-report held and released with fencing token ${token}`);

await client.close();
await cluster.stop();
const good = failed === 0 && missing === 0 && views === increments;
console.log(good ? '\nno request failed while a node died.' : '\nsomething went wrong (see above).');
process.exitCode = good ? 0 : 1;
