/**
 * Grid node faults on three `gridlink-node` processes (one nats-server, backups = 1), under the
 * common workload through @gridlink/client: kill -9 of a node (then restarted empty), SIGSTOP of
 * a node (then resumed: it finds itself declared gone and rejoins), and a rolling restart (each
 * node SIGTERMed — a graceful stop that hands its primaries over first — started again and waited
 * for until the topology lists it and nothing is syncing and, with `http`, until it answers
 * `/health/ready` and every node `/health/safe`, then the next).
 */
import { partitionOf } from '@gridlink/affinity';
import { GridClient, bytesSerializer } from '@gridlink/client';
import { waitFor, type ProcessCluster } from '@gridlink/testkit';
import { delay } from '../shared/measure.js';
import { httpPortOf, httpStatus } from '../shared/node-http.js';
import { timelineOf, type ScenarioResult } from './scenario.js';
import { Workload, keyNames } from './workload.js';

/** Client settings of every grid scenario (fast failure detection, retries up to 20 s). */
export const GRID_CLIENT = {
  heartbeatInterval: 100,
  heartbeatTimeout: 600,
  requestTimeout: 1000,
  operationTimeout: 20_000,
  reconnect: { minDelay: 20, maxDelay: 300 },
} as const;

export interface GridFaultOptions {
  /** Sequential workers (one key each). */
  workers: number;
  /** How long the load keeps running after the affected keys are written again (ms). */
  tailMs: number;
  /** Nodes restarted in the rolling restart (default all). */
  rollingNodes?: number;
  /**
   * The nodes serve HTTP (started with `--http-port 0`): the rolling restart then also waits for
   * `/health/ready` of the restarted node and `/health/safe` of every node before the next.
   */
  http?: boolean;
}

export interface RollingNodeRow {
  id: string;
  affectedKeys: number;
  /** SIGTERM until the process exited (the graceful handoff and drain). */
  stopMs: number;
  /** SIGTERM until the restarted node is a member again and nothing is syncing. */
  readyMs: number;
  /** Longest pause of writes to the keys it was primary of that began between SIGTERM and its exit (the handoff), in full. */
  stallMs: number;
  /** The same for any key. */
  stallAnyMs: number;
  /** Longest pause of writes to the keys it was primary of that began after its exit, until ready + 500 ms (they move back to it). */
  rejoinStallOwnMs: number;
  /** The same for any key (the restart's own CPU burst on shared cores included). */
  rejoinStallMs: number;
  /** For scale: the longest pause of writes to any key in the second before SIGTERM, nothing changing. */
  calmMs: number;
  failed: number;
}

export interface GridFaultResults {
  kill: ScenarioResult;
  hang: ScenarioResult;
  rolling: ScenarioResult & { nodes: RollingNodeRow[] };
}

async function primariesOf(cluster: ProcessCluster, id: string, keys: string[]): Promise<number[]> {
  const topo = await cluster.topology();
  if (!topo) throw new Error('no topology');
  return keys.flatMap((k, i) => (topo.owners[partitionOf(k, topo.partitions)]?.[0] === id ? [i] : []));
}

export async function gridFaults(cluster: ProcessCluster, opts: GridFaultOptions): Promise<GridFaultResults> {
  const ids = cluster.nodes.map((n) => n.id);
  const client = await GridClient.connect({ endpoints: cluster.endpoints, ...GRID_CLIENT });
  const cache = client.cache<string, Uint8Array>('failover', { serializer: bytesSerializer });
  const keys = keyNames('f', opts.workers);
  const w = new Workload(cache, keys, new Uint8Array(64).fill(1));
  try {
    await w.flowing();

    const nodeFault = async (mode: 'kill' | 'hang', victim: string): Promise<ScenarioResult> => {
      const node = cluster.node(victim);
      const from = Date.now();
      await delay(1000);
      const affected = await primariesOf(cluster, victim, keys);
      const t0 = Date.now();
      if (mode === 'kill') await node.kill();
      else node.hang();
      const rec = await w.recovered(affected, t0, 15_000);
      await delay(opts.tailMs);
      const pauseEnd = Date.now();
      const pauseMs = w.writePause(affected, t0, pauseEnd);
      const back = Date.now();
      if (mode === 'kill') await node.start();
      else node.resume();
      let rejoined = true;
      try {
        await cluster.waitForMembers(ids, 30_000);
      } catch {
        rejoined = false;
      }
      const ready = Date.now();
      await delay(opts.tailMs);
      const to = Date.now();
      const t = timelineOf(w, from, to, [
        { at: t0, label: mode === 'kill' ? `kill -9 ${victim}` : `SIGSTOP ${victim}` },
        { at: back, label: mode === 'kill' ? 'restart (empty)' : 'SIGCONT' },
        { at: ready, label: rejoined ? 'member again, synced' : 'not rejoined in 30 s' },
      ]);
      return {
        name: mode === 'kill' ? 'grid: kill -9 of a node' : 'grid: SIGSTOP of a node',
        slug: mode === 'kill' ? 'grid-kill' : 'grid-sigstop',
        ...t,
        keys: keys.length,
        affectedKeys: affected.length,
        pauseMs,
        unrecovered: rec === null,
        notes: [
          `longest write pause over every key while it ${mode === 'kill' ? 'restarted and rejoined' : 'resumed and rejoined'}: ${w.writePause(keys.map((_, i) => i), back, to)} ms`,
          ...(rejoined ? [] : [`${victim} was not a member again 30 s after ${mode === 'kill' ? 'its restart' : 'SIGCONT'}`]),
        ],
      };
    };

    const kill = await nodeFault('kill', ids[1]!);
    const hang = await nodeFault('hang', ids[2]!);

    // Rolling restart: SIGTERM, start, wait until a member and synced, next.
    const from = Date.now();
    await delay(1000);
    const markers: { at: number; label: string }[] = [];
    const nodes: RollingNodeRow[] = [];
    const all = keys.map((_, i) => i);
    /** Waits until `path` answers 200 on each of `nodeIds` (their HTTP port found anew: a restart changes it). */
    const health = async (nodeIds: string[], path: string): Promise<void> => {
      if (!opts.http) return;
      for (const nid of nodeIds) {
        const node = cluster.node(nid);
        const port = await httpPortOf(node.pid!, node.port);
        await waitFor(`${path} of ${nid}`, async () => (await httpStatus(port, path)) === 200, 30_000, 20);
      }
    };
    await health(ids, '/health/safe');
    for (const id of ids.slice(0, opts.rollingNodes ?? ids.length)) {
      const affected = await primariesOf(cluster, id, keys);
      const t0 = Date.now();
      markers.push({ at: t0, label: `SIGTERM ${id}` });
      await cluster.node(id).stop();
      const stopped = Date.now();
      await cluster.node(id).start();
      await cluster.waitForMembers(ids, 30_000);
      await health([id], '/health/ready');
      await health(ids, '/health/safe');
      const ready = Date.now();
      markers.push({ at: ready, label: `${id} ready` });
      await delay(Math.min(500, opts.tailMs));
      const end = Date.now();
      nodes.push({
        id,
        affectedKeys: affected.length,
        stopMs: stopped - t0,
        readyMs: ready - t0,
        // A pause is attributed to the phase it began in: stopping (SIGTERM → exit) or rejoining.
        stallMs: w.pauseBeganIn(affected, t0, stopped, end, true),
        stallAnyMs: w.pauseBeganIn(all, t0, stopped, end, true),
        rejoinStallOwnMs: w.pauseBeganIn(affected, stopped, end, end, false),
        rejoinStallMs: w.pauseBeganIn(all, stopped, end, end, false),
        calmMs: w.pauseBeganIn(all, t0 - 1000, t0, t0, false),
        failed: w.failedBetween(t0, end),
      });
    }
    await delay(opts.tailMs);
    const to = Date.now();
    const t = timelineOf(w, from, to, markers);
    const rolling = {
      name: 'grid: rolling restart (SIGTERM, restart, ready, next)',
      slug: 'grid-rolling-restart',
      ...t,
      keys: keys.length,
      affectedKeys: nodes.reduce((a, n) => a + n.affectedKeys, 0),
      pauseMs: Math.max(...nodes.map((n) => n.stallMs)),
      unrecovered: false,
      notes: [
        `longest write pause on any key while a node stopped: ${Math.max(...nodes.map((n) => n.stallAnyMs))} ms`,
        `while a restarted node rejoined: ${Math.max(...nodes.map((n) => n.rejoinStallMs))} ms (on its own keys: ${Math.max(...nodes.map((n) => n.rejoinStallOwnMs))} ms)`,
      ],
      nodes,
    };
    return { kill, hang, rolling };
  } finally {
    await w.stop();
    await client.close();
  }
}
