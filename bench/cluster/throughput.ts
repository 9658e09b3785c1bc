/**
 * Throughput and latency side by side: @gridlink/client → three gridlink-node processes (one
 * nats-server, backups = 1), ioredis → one redis-server, ioredis `Cluster` → a 3-master Redis
 * Cluster. For each value size, operation and number of requests in flight the three systems take
 * turns over several rounds (each round in a rotated order, after one warm-up window per system
 * and value size), and each figure is the median of its rounds: on a small shared machine one
 * window of one system can be 30–40 % off the next, which single windows turned into ratios.
 */
import { GridClient, bytesSerializer } from '@gridlink/client';
import type { ProcessCluster } from '@gridlink/testkit';
import { Cluster, Redis } from 'ioredis';
import { closedLoop, fmt, percentile, type LoadResult } from '../shared/measure.js';
import type { RedisClusterProcesses } from '../shared/redis-servers.js';

export const SYSTEMS = ['gridlink (3 nodes)', 'redis-server', 'Redis Cluster (3 masters)'] as const;
export type System = (typeof SYSTEMS)[number];
const SIZES = [64, 1024] as const;
const IN_FLIGHT = [1, 16, 256] as const;

interface Ops {
  put(key: string, value: Uint8Array): Promise<unknown>;
  get(key: string): Promise<unknown>;
}

export interface Cell {
  size: number;
  op: 'get' | 'put';
  inFlight: number;
  results: Record<System, LoadResult>;
}

export async function throughput(
  grid: ProcessCluster,
  redisPort: number,
  redisCluster: RedisClusterProcesses,
  durationMs: number,
  keyCount: number,
  rounds: number,
  warmupMs: number,
): Promise<Cell[]> {
  const keyOf = (i: number): string => `key-${(i % keyCount).toString().padStart(8, '0')}`;
  const client = await GridClient.connect({ endpoints: grid.endpoints });
  const redis = new Redis({ host: '127.0.0.1', port: redisPort });
  const masters = await redisCluster.masters();
  const rc = new Cluster(masters.map((m) => ({ host: '127.0.0.1', port: m.port })));
  const buf = (v: Uint8Array): Buffer => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const cache = client.cache<string, Uint8Array>('bench', { serializer: bytesSerializer });
  const systems: Record<System, Ops> = {
    'gridlink (3 nodes)': { put: (k, v) => cache.put(k, v), get: (k) => cache.get(k) },
    'redis-server': { put: (k, v) => redis.set(k, buf(v)), get: (k) => redis.getBuffer(k) },
    'Redis Cluster (3 masters)': { put: (k, v) => rc.set(k, buf(v)), get: (k) => rc.getBuffer(k) },
  };
  const cells: Cell[] = [];
  try {
    for (const size of SIZES) {
      const value = new Uint8Array(size).fill(7);
      for (const s of SYSTEMS) {
        for (let i = 0; i < keyCount; i += 200) await Promise.all(Array.from({ length: 200 }, (_, j) => systems[s].put(keyOf(i + j), value)));
        // Warm-up, at every concurrency the cells use: V8 needs seconds of load to optimize what
        // a process runs, longer at low rates (a put at 1 in flight cost the client 4× its steady
        // CPU and took 3–4× its steady latency during the first second, and came down over 3 s).
        for (const inFlight of [256, 16, 1]) {
          await closedLoop((i) => systems[s].put(keyOf(i), value), { inFlight, durationMs: warmupMs });
          await closedLoop((i) => systems[s].get(keyOf(i)), { inFlight, durationMs: warmupMs });
        }
      }
      for (const op of ['get', 'put'] as const) {
        for (const inFlight of IN_FLIGHT) {
          const runs = Object.fromEntries(SYSTEMS.map((s) => [s, [] as LoadResult[]])) as Record<System, LoadResult[]>;
          for (let r = 0; r < rounds; r++) {
            for (let j = 0; j < SYSTEMS.length; j++) {
              const s = SYSTEMS[(j + r) % SYSTEMS.length]!;
              const fn = op === 'get' ? (i: number) => systems[s].get(keyOf(i)) : (i: number) => systems[s].put(keyOf(i), value);
              runs[s].push(await closedLoop(fn, { inFlight, durationMs }));
            }
          }
          const results = Object.fromEntries(SYSTEMS.map((s) => [s, medianResult(runs[s])])) as Record<System, LoadResult>;
          cells.push({ size, op, inFlight, results });
          // The client's CPU per operation beside the rate: a client that got slower shows here
          // first (ADR 0075: a whole run once measured a client in a slow state).
          process.stderr.write(
            `  ${size} B ${op} @${inFlight}: ${SYSTEMS.map((s) => `${fmt(results[s].opsPerSec)}`).join(' / ')} ops/s; client CPU ${SYSTEMS.map((s) => fmt(results[s].cpuUsPerOp)).join(' / ')} µs/op\n`,
          );
        }
      }
    }
  } finally {
    await client.close();
    redis.disconnect();
    rc.disconnect();
  }
  return cells;
}

/** Per figure the median over the rounds; errors summed over them. */
function medianResult(runs: LoadResult[]): LoadResult {
  const m = (pick: (l: LoadResult) => number): number => percentile(runs.map(pick), 50);
  return {
    ops: runs.reduce((a, l) => a + l.ops, 0),
    errors: runs.reduce((a, l) => a + l.errors, 0),
    seconds: runs.reduce((a, l) => a + l.seconds, 0),
    opsPerSec: m((l) => l.opsPerSec),
    p50us: m((l) => l.p50us),
    p99us: m((l) => l.p99us),
    cpuUsPerOp: m((l) => l.cpuUsPerOp),
    serverCpuUsPerOp: m((l) => l.serverCpuUsPerOp),
  };
}

/** One table: per value size and operation, p50/p99 at 1 in flight and ops/s at 1, 16, 256; ratios vs one redis-server. */
export function throughputTable(cells: Cell[]): string {
  const [g, r, c] = SYSTEMS;
  const rows: string[] = [
    `| value | op | metric | ${g} | ${r} | ${c} | grid ÷ redis-server | Cluster ÷ redis-server |`,
    '|---|---|---|---|---|---|---|---|',
  ];
  const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
  for (const size of SIZES) {
    for (const op of ['get', 'put'] as const) {
      const at = (n: number): Cell => cells.find((x) => x.size === size && x.op === op && x.inFlight === n)!;
      const one = at(1);
      const lat = (name: string, pick: (l: LoadResult) => number): void => {
        rows.push(
          `| ${size} B | ${op} | ${name} at 1 in flight (µs) | ${fmt(pick(one.results[g]))} | ${fmt(pick(one.results[r]))} | ${fmt(pick(one.results[c]))} | ${ratio(pick(one.results[g]), pick(one.results[r]))} | ${ratio(pick(one.results[c]), pick(one.results[r]))} |`,
        );
      };
      lat('p50', (l) => l.p50us);
      lat('p99', (l) => l.p99us);
      for (const n of IN_FLIGHT) {
        const x = at(n).results;
        const err = SYSTEMS.some((s) => x[s].errors > 0) ? ` (errors: ${SYSTEMS.map((s) => x[s].errors).join('/')})` : '';
        rows.push(
          `| ${size} B | ${op} | ops/s at ${n} in flight${err} | ${fmt(Math.round(x[g].opsPerSec))} | ${fmt(Math.round(x[r].opsPerSec))} | ${fmt(Math.round(x[c].opsPerSec))} | ${ratio(x[g].opsPerSec, x[r].opsPerSec)} | ${ratio(x[c].opsPerSec, x[r].opsPerSec)} |`,
        );
      }
    }
  }
  return rows.join('\n');
}
