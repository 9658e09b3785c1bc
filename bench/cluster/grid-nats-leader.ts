/**
 * Grid operations while the NATS stream leader is killed: three gridlink-node processes on a
 * 3-server NATS (R3 bucket), 16 client workers doing put + get, kill -9 of the KV stream leader.
 * Prints failed operations, the longest time without a successful operation, whether any member
 * was declared gone, and ops/s and errors per 100 ms around the fault.
 */
import { GridClient } from '@gridlink/client';
import { ProcessCluster } from '@gridlink/testkit';

export interface GridNatsLeaderResult {
  failed: number;
  ok: number;
  longestPauseMs: number;
  firstError: string;
  timeline: string;
  /** Per 100 ms from 1 s before the kill: [ops/s, errors]. */
  perTenth: [number, number][];
  /** The KV accepted writes again this long after the kill. */
  kvStallMs: number;
  /** Some member's epoch changed (it was declared gone) during the run. */
  declaredGone: boolean;
}

export async function gridNatsLeader(operationTimeout: number): Promise<GridNatsLeaderResult> {
  const cluster = await ProcessCluster.start({ nodes: 3, natsServers: 3, partitions: 64 });
  try {
    const client = await GridClient.connect({ endpoints: cluster.endpoints, operationTimeout, requestTimeout: 1000, heartbeatInterval: 200, heartbeatTimeout: 1500 });
    const cache = client.cache<string, number>('b');
    const okAt: number[] = [];
    const failedAt: number[] = [];
    let failed = 0;
    let firstError = '';
    let running = true;
    const worker = async (w: number): Promise<void> => {
      for (let n = 0; running; n++) {
        try {
          await cache.put(`w${w}-${n % 16}`, n);
          await cache.get(`w${w}-${n % 16}`);
          okAt.push(Date.now());
        } catch (err) {
          failed++;
          failedAt.push(Date.now());
          if (!firstError) firstError = err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 80) : String(err);
        }
      }
    };
    const all = Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    await new Promise((r) => setTimeout(r, 2000));
    const cp = await cluster.controlPlane();
    const members = (): string => JSON.stringify(Object.entries((topo ?? { members: {} }).members).map(([id, m]) => [id, m.epoch]).sort());
    let topo = await cluster.topology();
    const before = members();
    const leader = (await cp.bucketStatus()).leader;
    const t0 = Date.now();
    await cluster.nats.servers.find((s) => s.name === leader)!.kill();
    let kvStallMs = -1;
    while (Date.now() - t0 < 15_000) {
      if (kvStallMs < 0) {
        try {
          await cp.put('bench.probe', Date.now());
          kvStallMs = Date.now() - t0;
        } catch {
          // still electing
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    topo = await cluster.topology();
    const declaredGone = members() !== before;
    running = false;
    await all;
    await client.close();
    let longestPauseMs = 0;
    const after = okAt.filter((t) => t >= t0 - 1000).sort((a, b) => a - b);
    for (let i = 1; i < after.length; i++) longestPauseMs = Math.max(longestPauseMs, after[i]! - after[i - 1]!);
    const buckets: number[] = [];
    for (const t of after) {
      const b = Math.floor((t - t0) / 500);
      if (b >= -2 && b < 30) buckets[b + 2] = (buckets[b + 2] ?? 0) + 1;
    }
    const timeline = Array.from({ length: 32 }, (_, i) => buckets[i] ?? 0).join(' ');
    const perTenth: [number, number][] = Array.from({ length: 160 }, () => [0, 0]);
    for (const t of okAt) {
      const b = Math.floor((t - t0) / 100) + 10;
      if (b >= 0 && b < perTenth.length) perTenth[b]![0] += 10;
    }
    for (const t of failedAt) {
      const b = Math.floor((t - t0) / 100) + 10;
      if (b >= 0 && b < perTenth.length) perTenth[b]![1]++;
    }
    return { failed, ok: okAt.length, longestPauseMs, firstError, timeline, perTenth, kvStallMs, declaredGone };
  } finally {
    await cluster.close();
  }
}

/** The 100 ms timeline as a table: time from the kill, ops/s, errors. Runs of equal rows are folded. */
export function printPerTenth(rows: [number, number][]): string {
  const out = ['| from kill (ms) | ops/s | errors |', '|---|---|---|'];
  let i = 0;
  while (i < rows.length) {
    let j = i;
    while (j + 1 < rows.length && rows[j + 1]![0] === 0 && rows[i]![0] === 0 && rows[j + 1]![1] === rows[i]![1]) j++;
    const from = (i - 10) * 100;
    const to = (j - 10) * 100 + 100;
    out.push(`| ${j > i ? `${from}…${to}` : String(from)} | ${rows[i]![0]} | ${rows[i]![1]} |`);
    i = j + 1;
  }
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const timeout of [10_000, 30_000]) {
    const r = await gridNatsLeader(timeout);
    console.log(`operationTimeout ${timeout}: ok ${r.ok}, failed ${r.failed} (${r.firstError || '—'}), longest pause ${r.longestPauseMs} ms, KV stalled ${r.kvStallMs} ms, member declared gone: ${r.declaredGone ? 'yes' : 'no'}`);
    console.log(`  ok ops per 500 ms from 1 s before the kill: ${r.timeline}`);
    console.log(printPerTenth(r.perTenth));
  }
}
