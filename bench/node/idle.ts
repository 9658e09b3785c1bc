/**
 * What an idle grid costs: three `gridlink-node` processes on one nats-server, formed and settled
 * (every partition owned, nothing syncing), then left alone with no client for a window; the CPU
 * each node process spends per second of that window (% of one CPU, from /proc), for several
 * partition counts side by side. A node's periodic work (leases, promises, sweeps, heartbeats)
 * should cost what changes, not what the cluster has. With `STALL=1` the nats-server is hung
 * (SIGSTOP) through the window instead: no lease can be renewed, so the nodes keep serving on each
 * other's promises (ADR 0007), asked every 100 ms — the control-plane stall a leader change is.
 *
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/node/idle.ts
 *   PARTITIONS=1024,65536 SECONDS=20 npx tsx bench/node/idle.ts
 *   CLI_PATH=/other/checkout/packages/node/dist/cli.js npx tsx bench/node/idle.ts   # another build
 *
 * (After `pnpm build`: the nodes are the built CLI.)
 */
import { ProcessCluster } from '@gridlink/testkit';
import { processCpuUs, table } from '../shared/measure.js';

const PARTITIONS = (process.env.PARTITIONS ?? '1024,16384,65536').split(',').map(Number);
const SECONDS = Number(process.env.SECONDS ?? 10);
/** Settling after the cluster formed (first leases, promise rounds, the sweeps' first passes). */
const STALL = process.env.STALL === '1';
const SETTLE_MS = Number(process.env.SETTLE_MS ?? 5000);

const rows: (string | number)[][] = [['partitions', 'node-1 % CPU', 'node-2 % CPU', 'node-3 % CPU', 'members stayed', 'start to settled (s)']];
for (const partitions of PARTITIONS) {
  const t0 = performance.now();
  const cluster = await ProcessCluster.start({ nodes: 3, partitions, controlPlaneProxies: false, ...(process.env.CLI_PATH !== undefined ? { cliPath: process.env.CLI_PATH } : {}) });
  try {
    const formed = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const ids = ['node-1', 'node-2', 'node-3'];
    const before = (await cluster.topology())?.members ?? {};
    const pids = ids.map((id) => cluster.node(id).pid!);
    const a = pids.map(processCpuUs);
    const start = performance.now();
    if (STALL) cluster.nats.servers[0]!.hang();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const wall = performance.now() - start;
    const b = pids.map(processCpuUs);
    if (STALL) cluster.nats.servers[0]!.resume();
    const after = (await cluster.topology())?.members ?? {};
    // The same members under the same epochs: nobody was declared gone while idle.
    const stayed = ids.every((id) => before[id] !== undefined && before[id]?.epoch === after[id]?.epoch);
    rows.push([partitions, ...pids.map((_, i) => ((100 * (b[i]! - a[i]!)) / (wall * 1000)).toFixed(1)), stayed ? 'yes' : 'NO', formed.toFixed(1)]);
  } finally {
    await cluster.close();
  }
}
console.log(
  `Idle gridlink-node processes (3 nodes, one nats-server, backups 1), ${SECONDS} s after ${SETTLE_MS / 1000} s of settling` +
    `${STALL ? ', the nats-server hung (SIGSTOP) through them' : ''}; CPU from /proc (10 ms ticks).\n`,
);
console.log(table(rows));
