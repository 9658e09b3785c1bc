/**
 * Grid node benchmark, with the cluster in its own process (bench/shared/cluster-process.ts):
 *  1. throughput and p50/p99 latency of get and put, 64 B and 1 KiB values, 1/16/256 requests in
 *     flight, 3 nodes, backups = 1, requests sent straight to each key's primary;
 *  2. memory per entry for 1M entries of 100 B (NodeStore in a child process with --expose-gc);
 *  3. failover pause: kill a partition's primary, time to the first acknowledged write to that
 *     partition (sent after the kill), median and max over 10 kills (the node is restarted and
 *     caught up between kills).
 *
 *   pnpm bench node                    # or: npx tsx bench/node/index.ts
 *   BENCH_SECONDS=2 MEM_ENTRIES=1000000 KILLS=10 npx tsx bench/node/index.ts
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeKey, partitionOfBytes } from '@gridlink/affinity';
import { Op } from '@gridlink/protocol';
import { closedLoop, delay, percentile, table } from '../shared/measure.js';
import { startCluster } from '../shared/processes.js';
import { WireClient } from './wire-client.js';

const here = dirname(fileURLToPath(import.meta.url));
const seconds = Number(process.env.BENCH_SECONDS ?? 1);
const memEntries = Number(process.env.MEM_ENTRIES ?? 1_000_000);
const kills = Number(process.env.KILLS ?? 10);
const KEYS = 10_000;
const keys = Array.from({ length: KEYS }, (_, i) => encodeKey(`key-${i.toString().padStart(8, '0')}`));

async function throughput(): Promise<void> {
  const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
  const client = new WireClient(cluster.endpoints);
  try {
    await client.connect();
    const rows: (string | number)[][] = [['op', 'value', 'in flight', 'ops/s', 'p50 µs', 'p99 µs', 'errors']];
    for (const size of [64, 1024]) {
      const value = new Uint8Array(size).fill(7);
      const cache = `b${size}`;
      // prefill so gets hit
      await closedLoop((i) => client.call(Op.CACHE_PUT, { cache, key: keys[i % KEYS]!, value, seq: client.nextSeq() }, keys[i % KEYS]!), {
        inFlight: 64,
        durationMs: 300,
        warmupMs: 0,
      });
      for (let i = 0; i < KEYS; i += 256) {
        await Promise.all(
          keys.slice(i, i + 256).map((key) => client.call(Op.CACHE_PUT, { cache, key, value, seq: client.nextSeq() }, key)),
        );
      }
      for (const op of ['get', 'put'] as const) {
        for (const inFlight of [1, 16, 256]) {
          const r = await closedLoop(
            (i) => {
              const key = keys[(i * 7919) % KEYS]!;
              return op === 'get'
                ? client.call(Op.CACHE_GET, { cache, key }, key)
                : client.call(Op.CACHE_PUT, { cache, key, value, seq: client.nextSeq() }, key);
            },
            { inFlight, durationMs: seconds * 1000, warmupMs: 200 },
          );
          rows.push([op, size === 64 ? '64 B' : '1 KiB', inFlight, Math.round(r.opsPerSec), Math.round(r.p50us), Math.round(r.p99us), r.errors]);
        }
      }
    }
    console.log('### Throughput and latency (3 nodes, backups = 1, client routes to primaries)\n');
    console.log(table(rows));
  } finally {
    client.close();
    await cluster.stop();
  }
}

function memory(): void {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(here, 'memory.ts')], {
    env: { ...process.env, MEM_ENTRIES: String(memEntries) },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`memory bench failed (${r.status})`);
  const m = JSON.parse(r.stdout.trim().split('\n').pop()!) as { entries: number; rawBytes: number; withDedup: number; settled: number };
  const raw = m.rawBytes / m.entries;
  console.log(`\n### Memory per entry (${m.entries.toLocaleString('en-US')} entries, 100 B values, NodeStore in-process, heapUsed + arrayBuffers after GC)\n`);
  console.log(
    table([
      ['state', 'bytes/entry', 'raw key+value', 'overhead ×'],
      ['right after the writes (dedup outcomes held)', Math.round(m.withDedup / m.entries), Math.round(raw), (m.withDedup / m.rawBytes).toFixed(2)],
      ['after the dedup window (entries only)', Math.round(m.settled / m.entries), Math.round(raw), (m.settled / m.rawBytes).toFixed(2)],
    ]),
  );
}

async function failover(): Promise<void> {
  const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
  const client = new WireClient(cluster.endpoints);
  const pauses: number[] = [];
  try {
    await client.connect();
    const value = new Uint8Array(64).fill(1);
    for (let k = 0; k < kills; k++) {
      const map = await client.refreshMap();
      // A key on a partition whose primary we kill (cycle through the nodes).
      const victim = cluster.nodeIds[k % cluster.nodeIds.length]!;
      const key = keys.find((kb) => map.nodes[map.primaries[partitionOfBytes(kb, map.partitions)]!]?.id === victim)!;
      await client.call(Op.CACHE_PUT, { cache: 'f', key, value, seq: client.nextSeq() }, key);
      const t0 = performance.now();
      const reply = await cluster.command(`kill ${victim}`);
      if (!reply.startsWith('ok')) throw new Error(reply);
      // First write SENT after the kill that is acknowledged.
      for (const giveUp = t0 + 20_000; ; ) {
        if (performance.now() > giveUp) throw new Error(`no write to ${victim}'s partition acknowledged within 20 s of the kill`);
        try {
          await client.call(Op.CACHE_PUT, { cache: 'f', key, value, seq: client.nextSeq() }, key);
          break;
        } catch (err) {
          if (process.env.BENCH_DEBUG) console.error(String(err));
          await delay(2);
        }
      }
      pauses.push(performance.now() - t0);
      if (process.env.BENCH_DEBUG) console.error(`kill ${k}: ${Math.round(pauses[pauses.length - 1]!)} ms`);
      await cluster.command(`restart ${victim}`);
      // Wait until the restarted node has caught up and is primary again somewhere.
      for (let i = 0; i < 400; i++) {
        const m = await client.refreshMap().catch(() => null);
        const idx = m?.nodes.findIndex((n) => n.id === victim && n.alive) ?? -1;
        if (m && idx >= 0 && m.primaries.filter((x) => x === idx).length > 0 && m.primaries.every((x) => x >= 0)) break;
        await delay(25);
      }
      await delay(300);
    }
    console.log(`\n### Failover pause (kill the primary → first acknowledged write to its partition, ${kills} kills; lease 1000 ms, renew 250 ms, margin 150 ms)\n`);
    console.log(
      table([
        ['median ms', 'max ms', 'min ms'],
        [Math.round(percentile(pauses, 50)), Math.round(Math.max(...pauses)), Math.round(Math.min(...pauses))],
      ]),
    );
  } finally {
    client.close();
    await cluster.stop();
  }
}

const only = process.env.BENCH_ONLY;
if (!only || only === 'throughput') await throughput();
if (!only || only === 'memory') memory();
if (!only || only === 'failover') await failover();
