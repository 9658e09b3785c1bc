/**
 * Where a rolling restart's rejoin pauses come from (ADR 0074): three gridlink-node processes, 32
 * sequential put + get workers (bench/cluster's workload), optionally PRELOAD entries of 1 KiB in
 * another cache, then each node in turn stopped (SIGTERM), started and waited for. Per rejoin:
 * the longest put pause of each key, split by whether the rejoining node owns its partition, the
 * longest pauses with their times, and what happened around them (topology versions with the
 * primaries they moved, the client's map changes and retries, stalls of this process's own loop).
 *
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/cluster/rejoin-trace.ts   # after pnpm build
 *   PRELOAD=20000 HEALTH=1 ...   # the data bench/cluster's throughput phase leaves; its health polling
 *   V8FLAGS="--max-semi-space-size=4 --cpu-prof --cpu-prof-dir=/tmp/prof" ...   # the nodes' V8 flags
 */
import { partitionOf } from '@gridlink/affinity';
import { GridClient, bytesSerializer } from '@gridlink/client';
import type { TopologyRecord } from '@gridlink/node';
import { ProcessCluster, waitFor } from '@gridlink/testkit';
import { delay } from '../shared/measure.js';
import { httpPortOf, httpStatus } from '../shared/node-http.js';
import { GRID_CLIENT } from './grid-faults.js';
import { Workload, keyNames } from './workload.js';

const events: { at: number; what: string }[] = [];
const v8Flags = process.env['V8FLAGS']?.split(' ').filter(Boolean);
const cluster = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 64, nodeArgs: ['--http-port', '0'], ...(v8Flags !== undefined ? { v8Flags } : {}) });
const t0 = Date.now();
// A 10 ms timer of this process (the client and the workers): a late one is a stall of its own.
{
  let last = Date.now();
  setInterval(() => {
    const now = Date.now();
    if (now - last > 40) events.push({ at: now, what: `bench process loop blocked ${now - last - 10} ms` });
    last = now;
  }, 10).unref();
}
const rel = (t: number): string => `${t - t0}`;
const note = (what: string): void => {
  events.push({ at: Date.now(), what });
};
try {
  const cp = await cluster.controlPlane();
  let prev: TopologyRecord | undefined;
  cp.watch<TopologyRecord>('topology', (e) => {
    if (e.type !== 'put' || e.value === undefined) return;
    const t = e.value;
    if (prev !== undefined) {
      let primaries = 0;
      let owners = 0;
      const moved: string[] = [];
      for (let p = 0; p < t.partitions; p++) {
        if (prev.owners[p]?.[0] !== t.owners[p]?.[0]) {
          primaries++;
          if (moved.length < 4) moved.push(`${p}:${prev.owners[p]?.[0]}→${t.owners[p]?.[0]}`);
        }
        if (prev.owners[p]?.join() !== t.owners[p]?.join()) owners++;
      }
      note(`topology v${t.version}: ${primaries} primaries, ${owners} owner lists changed ${moved.join(' ')} members ${Object.keys(t.members ?? {}).join(',')}`);
    }
    prev = t;
  });
  const client = await GridClient.connect({ endpoints: cluster.endpoints, ...GRID_CLIENT });
  client.on('retry', (e) => note(`retry op ${e.op} attempt ${e.attempt}: ${e.error.name} ${e.error.message.slice(0, 60)}`));
  client.on('topologyChanged', (e) => note(`client map v${e.version} (${e.changedPartitions} changed)`));
  const cache = client.cache<string, Uint8Array>('failover', { serializer: bytesSerializer });
  // PRELOAD=n: n entries of 1 KiB in another cache first (bench/cluster's throughput phase leaves ~20,000).
  const preload = Number(process.env['PRELOAD'] ?? 0);
  const big = client.cache<string, Uint8Array>('preload', { serializer: bytesSerializer });
  for (let i = 0; i < preload; i += 200) await Promise.all(Array.from({ length: Math.min(200, preload - i) }, (_, j) => big.put(`p-${i + j}`, new Uint8Array(1024).fill(3))));
  if (preload > 0) note(`preloaded ${preload} entries of 1 KiB`);
  const keys = keyNames('f', 32);
  const w = new Workload(cache, keys, new Uint8Array(64).fill(1));
  await w.flowing();
  await delay(1000);
  const ids = cluster.nodes.map((n) => n.id);
  const windows: { id: string; stopped: number; end: number }[] = [];
  for (const id of ids) {
    note(`SIGTERM ${id}`);
    await cluster.node(id).stop();
    const stopped = Date.now();
    note(`${id} exited`);
    await cluster.node(id).start();
    note(`${id} started`);
    await cluster.waitForMembers(ids, 30_000);
    note(`${id} member, synced`);
    if (process.env['HEALTH'] === '1') {
      // What bench/cluster's rolling restart does: /health/ready of the node, /health/safe of every node (polled every 20 ms).
      for (const [nid, path] of [[id, '/health/ready'], ...ids.map((n) => [n, '/health/safe'])] as [string, string][]) {
        const node = cluster.node(nid);
        const port = await httpPortOf(node.pid!, node.port);
        await waitFor(`${path} of ${nid}`, async () => (await httpStatus(port, path)) === 200, 30_000, 20);
      }
      note(`${id} ready, every node safe`);
    }
    await delay(1000);
    windows.push({ id, stopped, end: Date.now() });
  }
  await w.stop();
  const topo = await cluster.topology();
  for (const win of windows) {
    console.log(`\n## ${win.id}: pauses > 80 ms that began after it exited (t in ms from start)`);
    const pauses: { k: number; from: number; to: number }[] = [];
    keys.forEach((_, k) => {
      const acks = w.putAcks[k]!;
      for (let i = 1; i < acks.length; i++) {
        if (acks[i - 1]! >= win.stopped && acks[i - 1]! < win.end && acks[i]! - acks[i - 1]! > 80) pauses.push({ k, from: acks[i - 1]!, to: acks[i]! });
      }
    });
    pauses.sort((a, b) => b.to - b.from - (a.to - a.from));
    const involves = (k: number): boolean => topo!.owners[partitionOf(keys[k]!, topo!.partitions)]!.includes(win.id);
    const worst = new Map<number, number>();
    for (const p of pauses) worst.set(p.k, Math.max(worst.get(p.k) ?? 0, p.to - p.from));
    const list = (inv: boolean): string => keys.map((_, k) => k).filter((k) => involves(k) === inv).map((k) => worst.get(k) ?? 0).join(' ');
    console.log(`  longest pause per key, keys whose partition ${win.id} owns: ${list(true)}`);
    console.log(`  longest pause per key, the other keys: ${list(false)}`);
    for (const p of pauses.slice(0, 8)) console.log(`  key ${p.k} (partition ${partitionOf(keys[p.k]!, topo!.partitions)}): ${rel(p.from)} → ${rel(p.to)} = ${p.to - p.from} ms`);
    console.log('  events:');
    for (const e of events) if (e.at >= win.stopped - 200 && e.at <= win.end) console.log(`    ${rel(e.at)} ${e.what}`);
  }
  // Graceful stops, so that --cpu-prof (V8FLAGS) writes every node's profile.
  for (const n of cluster.nodes) await n.stop();
} finally {
  await cluster.close();
}
process.exit(0);
