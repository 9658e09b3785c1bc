/**
 * Grid operations while the NATS stream leader is killed, today (ADR 0003 leases, before the
 * vouching of ADR 0007 is wired in): three gridlink-node processes on a 3-server NATS (R3 bucket),
 * 16 client workers doing put + get, kill -9 of the KV stream leader. Prints failed operations,
 * the longest time without a successful operation, and ops per 500 ms around the fault.
 */
import { GridClient } from '@gridlink/client';
import { ProcessCluster } from '@gridlink/testkit';

export interface GridNatsLeaderResult {
  failed: number;
  ok: number;
  longestPauseMs: number;
  firstError: string;
  timeline: string;
}

export async function gridNatsLeader(operationTimeout: number): Promise<GridNatsLeaderResult> {
  const cluster = await ProcessCluster.start({ nodes: 3, natsServers: 3, partitions: 64 });
  try {
    const client = await GridClient.connect({ endpoints: cluster.endpoints, operationTimeout, requestTimeout: 1000, heartbeatInterval: 200, heartbeatTimeout: 1500 });
    const cache = client.cache<string, number>('b');
    const okAt: number[] = [];
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
          if (!firstError) firstError = err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 80) : String(err);
        }
      }
    };
    const all = Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    await new Promise((r) => setTimeout(r, 2000));
    const cp = await cluster.controlPlane();
    const leader = (await cp.bucketStatus()).leader;
    const t0 = Date.now();
    await cluster.nats.servers.find((s) => s.name === leader)!.kill();
    await new Promise((r) => setTimeout(r, 15_000));
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
    return { failed, ok: okAt.length, longestPauseMs, firstError, timeline };
  } finally {
    await cluster.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const timeout of [10_000, 30_000]) {
    const r = await gridNatsLeader(timeout);
    console.log(`operationTimeout ${timeout}: ok ${r.ok}, failed ${r.failed} (${r.firstError || '—'}), longest pause ${r.longestPauseMs} ms`);
    console.log(`  ok ops per 500 ms from 1 s before the kill: ${r.timeline}`);
  }
}
