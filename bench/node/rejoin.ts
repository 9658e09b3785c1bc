/**
 * What a restart costs at many partitions: three `gridlink-node` processes on one nats-server,
 * a few thousand keys written, then one node killed (SIGKILL) and started again empty. It rejoins
 * under a new epoch and pulls every partition it is assigned (ADR 0004, 0037). Reported per
 * partition count: time from the restart until it is a member again and until nothing is syncing
 * (its primaryships handed back), topology versions written meanwhile, each node's CPU over the
 * re-sync (% of one CPU, from /proc), "lease lapsed" warnings logged, and whether any OTHER node
 * was declared gone (its epoch changed). A re-sync should cost what it moves (data, changes),
 * not the number of partitions.
 *
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/node/rejoin.ts
 *   PARTITIONS=1024,65536 KEYS=5000 npx tsx bench/node/rejoin.ts
 *   CLI_PATH=/other/checkout/packages/node/dist/cli.js npx tsx bench/node/rejoin.ts   # another build
 *   V8_PROF=/tmp/prof npx tsx bench/node/rejoin.ts   # --cpu-prof of every node into that directory
 *
 * (After `npx pnpm --filter "@gridlink/testkit..." build`: the nodes are the built CLI.)
 */
import type { TopologyRecord } from '@gridlink/node';
import { ProcessCluster } from '@gridlink/testkit';
import { processCpuUs, table } from '../shared/measure.js';
import { benchKeys, fixedCount, wireOps } from './load.js';
import { WireClient } from './wire-client.js';

const PARTITIONS = (process.env.PARTITIONS ?? '1024,16384,65536').split(',').map(Number);
const KEYS = Number(process.env.KEYS ?? 5000);
const VICTIM = process.env.VICTIM ?? 'node-3';
/** Give up waiting for the re-sync after this long (it is reported as not settled). */
const TIMEOUT_S = Number(process.env.TIMEOUT_S ?? 300);
const PROF = process.env.V8_PROF;

const cpuUs = (pid: number | undefined): number => (pid === undefined ? 0 : processCpuUs(pid));
const count = (text: string, needle: string): number => text.split(needle).length - 1;

const rows: (string | number)[][] = [
  ['partitions', 'member again (s)', 'nothing syncing (s)', 'topology versions', 'node-1 % CPU', 'node-2 % CPU', 'node-3 % CPU', '"lease lapsed"', 'others declared gone'],
];
for (const partitions of PARTITIONS) {
  const cluster = await ProcessCluster.start({
    nodes: 3,
    partitions,
    controlPlaneProxies: false,
    ...(process.env.CLI_PATH !== undefined ? { cliPath: process.env.CLI_PATH } : {}),
    ...(PROF !== undefined ? { v8Flags: ['--cpu-prof', `--cpu-prof-dir=${PROF}/${partitions}`] } : {}),
  });
  try {
    const ids = ['node-1', 'node-2', 'node-3'];
    const client = new WireClient(cluster.endpoints);
    await client.connect();
    const put = wireOps(client, 'rejoin', benchKeys(KEYS)).put(new Uint8Array(100).fill(7));
    // A freshly formed cluster of many partitions may answer NOT_READY for a moment: retry.
    const putRetrying = async (i: number): Promise<void> => {
      for (let attempt = 0; ; attempt++) {
        try {
          await put(i);
          return;
        } catch (err) {
          if (attempt >= 100) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    await fixedCount(putRetrying, KEYS, 32);
    client.close();
    const before = (await cluster.topology())!;
    const others = ids.filter((id) => id !== VICTIM);
    const victim = cluster.node(VICTIM);
    const oldEpoch = before.members[VICTIM]!.epoch;
    await victim.kill();
    // Let the cluster declare it gone first (a restart within a lease would look the same, later).
    await cluster.waitForGone(VICTIM, 30_000);
    const gone = (await cluster.topology())!;
    const logsAt = new Map(others.map((id) => [id, cluster.node(id).log.length]));
    const cpu0 = new Map(others.map((id) => [id, cpuUs(cluster.node(id).pid)]));
    const cp = await cluster.controlPlane();
    const t0 = performance.now();
    await victim.start();
    let memberAt = Number.NaN;
    let settledAt = Number.NaN;
    let last = gone;
    // Every topology version through a watch (polling the record, megabytes at 65,536
    // partitions, every few ms would load the nats-server the nodes depend on).
    const done = new Promise<void>((resolve) => {
      const unwatch = cp.watch<TopologyRecord>('topology', (e) => {
        if (e.type !== 'put' || e.value.version <= last.version) return;
        const rec = e.value;
        if (process.env.TRACE === '1') {
          let syncing = 0;
          let primary = 0;
          for (const x of rec.syncing) if (x.some((s) => s.id === VICTIM)) syncing++;
          for (const o of rec.owners) if (o[0] === VICTIM) primary++;
          console.error(`${((performance.now() - t0) / 1000).toFixed(2)} s  v${rec.version}  syncing ${syncing}  primary ${primary}  members ${Object.keys(rec.members).join(',')}`);
        }
        last = rec;
        const m = rec.members[VICTIM];
        if (Number.isNaN(memberAt) && m !== undefined && m.epoch !== oldEpoch) memberAt = performance.now() - t0;
        if (!Number.isNaN(memberAt) && rec.syncing.every((x) => x.length === 0) && rec.owners.some((o) => o[0] === VICTIM)) {
          settledAt = performance.now() - t0;
          unwatch();
          resolve();
        }
      });
      setTimeout(() => {
        unwatch();
        resolve();
      }, TIMEOUT_S * 1000).unref();
    });
    await done;
    const wall = performance.now() - t0;
    const cpu = new Map<string, number>(others.map((id) => [id, cpuUs(cluster.node(id).pid) - cpu0.get(id)!]));
    cpu.set(VICTIM, cpuUs(victim.pid)); // a new process: all its CPU is the re-sync's
    const lapsed = ids.reduce((n, id) => n + count(cluster.node(id).log.slice(id === VICTIM ? 0 : logsAt.get(id)!), 'lease lapsed'), 0);
    const declared = others.filter((id) => last.members[id]?.epoch !== gone.members[id]?.epoch);
    rows.push([
      partitions,
      Number.isNaN(memberAt) ? 'never' : (memberAt / 1000).toFixed(2),
      Number.isNaN(settledAt) ? `> ${TIMEOUT_S}` : (settledAt / 1000).toFixed(2),
      last.version - gone.version,
      ...ids.map((id) => ((100 * cpu.get(id)!) / (wall * 1000)).toFixed(0)),
      lapsed,
      declared.length === 0 ? 'none' : declared.join(','),
    ]);
    console.error(`${partitions}: done (${(wall / 1000).toFixed(1)} s)`);
    if (PROF !== undefined) {
      // SIGTERM so that the nodes write their profiles (a kill writes none).
      for (const id of ids) await cluster.node(id).stop();
    }
  } finally {
    await cluster.close();
  }
}
console.log(
  `Restart of one node of three, empty, at several partition counts (one nats-server, backups 1, ${KEYS} keys of 100 B); ` +
    `times from its start; CPU from /proc over that span (10 ms ticks).\n`,
);
console.log(table(rows));
