/**
 * Planned changes on real processes over NATS: three `gridlink-node` processes on one nats-server,
 * a @gridlink/client under 32-way load (writers, read-backs, a shared counter), and
 *  - a rolling restart of every node: SIGTERM (graceful stop: hand-off first), exit code 0,
 *    restart under the same id, `gridlink safe --wait` and `/health/safe` 200 on every node, then
 *    the next one. The longest stall of a write to a partition the stopping node was primary of
 *    is reported (not asserted: speed lives in bench/), and for comparison that of a kill;
 *  - a graceful stop whose hand-off cannot finish (the coordinator hung with SIGSTOP): the node
 *    exits anyway once `--handoff-timeout-ms` has passed;
 *  - `gridlink decommission <id> --yes` under load, with backups = 1 and (a second cluster) with
 *    backups = 0: the node ends with no partitions, `gridlink status --json` agrees, and it stops.
 * In every case: no failed operation, no lost acknowledged write, the counter exact.
 *
 * Needs the built node and admin packages (`packages/{node,admin}/dist`).
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '@gridlink/affinity';
import { GridClosedError, type GridClient } from '@gridlink/client';
import { ProcessCluster, trackedPids, trackedTempDirs, waitFor } from '@gridlink/testkit';
import { connectClient, reportOnFailure } from './helpers/load.js';
import { spawnTracked } from '../src/processes.js';

const GRIDLINK = fileURLToPath(new URL('../../admin/bin/gridlink.mjs', import.meta.url));
const P = 64;
const WORKERS = 32;

/** Runs the admin CLI `gridlink` (built) against a cluster's control plane; bounded. */
function gridlink(cluster: ProcessCluster, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const http = cluster.nodes.flatMap((n) => (n.httpPort === undefined ? [] : ['--http', `${n.id}=http://127.0.0.1:${n.httpPort}`]));
  const all = [...args, '--control-plane', cluster.natsUrls.join(','), '--bucket', cluster.bucket, ...http];
  return new Promise((resolve, reject) => {
    const child = spawnTracked(process.execPath, [GRIDLINK, ...all], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`gridlink ${args.join(' ')} did not exit: ${err}`));
    }, 45_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

interface Put {
  key: string;
  start: number;
  end: number;
}

interface LoadResult {
  ops: number;
  failures: string[];
  acked: Map<string, number>;
  increments: number;
}

/**
 * 32 workers: each writes its own 8 keys in turn, reads back its last acknowledged write and
 * increments a shared counter. Every put is timed (start, acknowledgement) to measure stalls.
 */
class Load {
  readonly puts: Put[] = [];
  private readonly acked = new Map<string, number>();
  private readonly failures: string[] = [];
  private increments = 0;
  private count = 0;
  private stopping = false;
  private readonly all: Promise<void[]>;

  constructor(
    private readonly client: GridClient,
    readonly cacheName: string,
  ) {
    this.all = Promise.all(Array.from({ length: WORKERS }, (_, w) => this.worker(w)));
  }

  get ops(): number {
    return this.count;
  }

  private async worker(w: number): Promise<void> {
    const cache = this.client.cache<string, number>(this.cacheName);
    for (let n = 0; !this.stopping; n++) {
      const key = `w${w}-k${n % 8}`;
      try {
        const start = Date.now();
        await cache.put(key, n);
        this.puts.push({ key, start, end: Date.now() });
        this.acked.set(key, n);
        this.count++;
        const back = await cache.get(key);
        // Each key has one writer: a read after its acknowledged write sees that write.
        if (back !== n) this.failures.push(`read ${key}: ${String(back)} != ${n}`);
        this.count++;
        await cache.increment('counter');
        this.increments++;
        this.count++;
      } catch (err) {
        this.failures.push(`${key}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
        if (err instanceof GridClosedError) return; // a closed client rejects at once: stop, don't spin
      }
    }
  }

  /** Waits until `n` more operations completed. */
  async progress(n: number, timeoutMs = 30_000): Promise<void> {
    const target = this.count + n;
    await waitFor(`${n} more operations`, () => this.count >= target || this.failures.length > 0, timeoutMs);
    if (this.failures.length > 0) throw new Error(`operations failed: ${this.failures.slice(0, 3).join('; ')}`);
  }

  /** Longest put (start to acknowledgement) to a key of `partitions` that was in flight during [from, to]. */
  stall(partitions: Set<number>, from: number, to: number): number {
    let worst = 0;
    for (const p of this.puts) {
      if (p.end < from || p.start > to || !partitions.has(partitionOf(p.key, P))) continue;
      worst = Math.max(worst, p.end - p.start);
    }
    return worst;
  }

  /** Stops the workers; then checks no failure, every acknowledged write readable, counter exact. */
  async stopAndVerify(): Promise<LoadResult> {
    this.stopping = true;
    await this.all;
    const r: LoadResult = { ops: this.count, failures: this.failures, acked: this.acked, increments: this.increments };
    expect(r.failures).toEqual([]);
    const cache = this.client.cache<string, number>(this.cacheName);
    for (const [k, v] of r.acked) expect(await cache.get(k)).toBe(v);
    expect(await cache.get('counter')).toBe(r.increments);
    return r;
  }
}


/** Partitions `id` is primary of in the current topology. */
async function primariesOf(cluster: ProcessCluster, id: string): Promise<Set<number>> {
  const t = (await cluster.topology())!;
  return new Set(t.owners.flatMap((o, p) => (o[0] === id ? [p] : [])));
}

/** Handoff and drain durations from a stopped node's "handed off and drained" log line. */
function stopPhases(log: string): { handoffMs: number | string; drainMs: number | string } {
  const line = log.split('\n').find((l) => l.includes('"handed off and drained"'));
  if (line === undefined) return { handoffMs: '?', drainMs: '?' };
  const j = JSON.parse(line) as { handoffMs: number; drainMs: number };
  return { handoffMs: j.handoffMs, drainMs: j.drainMs };
}

interface StatusJson {
  members: { id: string; inBaseline: boolean; partitions: { primary: number; backup: number; moving: number } }[];
  baseline: string[];
  lost: number[];
  moving: number[];
}

/**
 * Decommissions `id` with the admin CLI under load, waits until it holds nothing, checks
 * `gridlink status --json`, then stops the node (exit code 0) and verifies the load.
 */
async function decommissionUnderLoad(cluster: ProcessCluster, client: GridClient, cacheName: string, id: string): Promise<void> {
  const load = new Load(client, cacheName);
  try {
    await load.progress(300);
    const d = await gridlink(cluster, ['decommission', id, '--yes', '--wait', '--wait-timeout', '30s']);
    expect(d.code, d.err + d.out).toBe(0);
    const t = (await cluster.topology())!;
    expect(t.owners.every((o) => !o.includes(id))).toBe(true);
    expect(t.syncing.every((s) => s.length === 0)).toBe(true);
    const st = await gridlink(cluster, ['status', '--json']);
    expect(st.code, st.err).toBe(0);
    const status = JSON.parse(st.out) as StatusJson;
    const me = status.members.find((m) => m.id === id)!;
    expect(me.inBaseline).toBe(false);
    expect(me.partitions).toEqual({ primary: 0, backup: 0, moving: 0 });
    expect(status.lost).toEqual([]);
    expect(status.moving).toEqual([]);
    expect(status.baseline).not.toContain(id);
    await load.progress(300);
    expect(await cluster.node(id).terminate()).toBe(0);
    await cluster.waitForGone(id);
    await load.progress(300);
  } finally {
    await load.stopAndVerify();
  }
}

afterAll(() => {
  // Every process the kit started is gone, and so is every directory it made.
  expect(trackedPids()).toEqual([]);
  expect(trackedTempDirs()).toEqual([]);
});

describe('planned changes on gridlink-node processes over NATS (backups = 1)', () => {
  let cluster: ProcessCluster;
  let client: GridClient;

  beforeAll(async () => {
    // Nodes talk to NATS directly: the control plane's latency is NATS's, not this busy process's.
    // Info logs: each stop logs how long its handoff and drain took.
    cluster = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: P, backups: 1, http: true, controlPlaneProxies: false, logLevel: 'info' });
    client = await connectClient(cluster);
  }, 60_000);
  reportOnFailure(() => cluster);

  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('rolling restart of every node under 32-way load: exit 0, safe again before the next, nothing failed or lost', async ({ annotate }) => {
    const load = new Load(client, 'roll');
    const stalls: string[] = [];
    try {
      await load.progress(300);
      for (const node of cluster.nodes) {
        const handedOff = await primariesOf(cluster, node.id);
        expect(handedOff.size).toBeGreaterThan(0);
        const from = Date.now();
        // For scale: the longest write to those partitions in the second before, with nothing changing.
        const calm = load.stall(handedOff, from - 1000, from);
        expect(await node.terminate()).toBe(0);
        const exitedAt = Date.now();
        const phases = stopPhases(node.log);
        // Writes to its partitions keep going while it is down.
        await load.progress(200);
        const stopStall = load.stall(handedOff, from, Date.now());
        await node.start();
        await cluster.waitForMembers(cluster.nodes.map((n) => n.id));
        const safe = await gridlink(cluster, ['safe', '--wait', '--wait-timeout', '30s']);
        expect(safe.code, safe.err + safe.out).toBe(0);
        await cluster.waitForSafe();
        await load.progress(200);
        const backStall = load.stall(handedOff, exitedAt, Date.now());
        stalls.push(`${node.id}: stop ${exitedAt - from} ms (handoff ${phases.handoffMs} ms, drain ${phases.drainMs} ms), longest write ${stopStall} ms while it handed off (${calm} ms in the second before), ${backStall} ms while it came back`);
      }
    } finally {
      await load.stopAndVerify();
    }
    const report = `rolling restart over NATS (3 processes, ${WORKERS} workers): ${stalls.join('; ')}`;
    console.log(report);
    await annotate(report);
  }, 90_000);

  it('for comparison, a kill (SIGKILL) under the same load: nothing failed or lost; its stall is reported', async ({ annotate }) => {
    const load = new Load(client, 'kill');
    let report = '';
    try {
      await load.progress(300);
      const node = cluster.node('node-2');
      const orphaned = await primariesOf(cluster, node.id);
      const from = Date.now();
      const calm = load.stall(orphaned, from - 1000, from);
      await node.kill();
      await cluster.waitForGone(node.id);
      await load.progress(200);
      report = `kill over NATS: longest write to its partitions ${load.stall(orphaned, from, Date.now())} ms (${calm} ms in the second before)`;
      await node.start();
      await cluster.waitForMembers(cluster.nodes.map((n) => n.id));
      await cluster.waitForSafe();
    } finally {
      await load.stopAndVerify();
    }
    console.log(report);
    await annotate(report);
  }, 60_000);

  it('a graceful stop whose handoff cannot finish (coordinator and successor hung) exits anyway after --handoff-timeout-ms', async () => {
    const victim = cluster.node('node-3');
    // A short handoff timeout, and a long lease only so that the victim cannot itself judge the
    // hung nodes dead and take over as coordinator before its timeout: nobody can move its
    // primaryships, so the handoff cannot finish.
    victim.extraArgs = ['--handoff-timeout-ms', '300', '--lease-ms', '5000'];
    expect(await victim.terminate()).toBe(0);
    await victim.start();
    await cluster.waitForMembers(cluster.nodes.map((n) => n.id));
    await cluster.waitForSafe();
    const cache = client.cache<string, number>('timeout');
    const keys = Array.from({ length: 100 }, (_, i) => `t${i}`);
    await Promise.all(keys.map((k, i) => cache.put(k, i)));
    expect((await primariesOf(cluster, 'node-3')).size).toBeGreaterThan(0);
    const before = (await cluster.topology())!.version;

    const others = [cluster.node('node-1'), cluster.node('node-2')];
    let elapsed: number;
    try {
      for (const n of others) n.hang();
      const from = Date.now();
      expect(await victim.terminate()).toBe(0);
      elapsed = Date.now() - from;
      expect(victim.log).toContain('handoff timed out; stopping anyway');
      // Nobody moved anything meanwhile: its primaryships fail over as after its lease is gone.
      expect((await cluster.topology())!.version).toBe(before);
    } finally {
      for (const n of others) n.resume();
    }
    expect(elapsed).toBeGreaterThanOrEqual(300);
    console.log(`graceful stop with a hung coordinator: exited 0 after ${elapsed} ms (handoff timeout 300 ms)`);
    const t = await cluster.waitForGone('node-3');
    expect(t.lost).toEqual([]);
    for (const [i, k] of keys.entries()) expect(await cache.get(k)).toBe(i);

    victim.extraArgs = [];
    await victim.start();
    await cluster.waitForMembers(cluster.nodes.map((n) => n.id));
    await cluster.waitForSafe();
  }, 60_000);

  it('gridlink decommission under load (backups = 1): the node ends with no partitions and stops; nothing failed or lost', async () => {
    await decommissionUnderLoad(cluster, client, 'decom1', 'node-3');
  }, 60_000);
});

describe('decommission on gridlink-node processes over NATS (backups = 0)', () => {
  let cluster: ProcessCluster;
  let client: GridClient;

  beforeAll(async () => {
    cluster = await ProcessCluster.start({ nodes: 3, natsServers: 1, partitions: 32, backups: 0, controlPlaneProxies: false });
    client = await connectClient(cluster);
  }, 60_000);
  reportOnFailure(() => cluster);

  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('gridlink decommission under load builds the copies first: no failed operation, no lost write, the node stops holding nothing', async () => {
    await decommissionUnderLoad(cluster, client, 'decom0', 'node-2');
  }, 60_000);
});
