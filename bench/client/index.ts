/**
 * Client benchmark, side by side in one run:
 *  - a bare Node TCP echo round trip (the floor),
 *  - @gridlink/client against a 3-node LocalCluster,
 *  - ioredis against a local redis-server (skipped with a note when redis-server is absent),
 * each server in its own process: latency, throughput, and CPU time per operation of the load
 * process and of the server process (which shows where a round trip's time goes). The two targets
 * are checked in alternating short windows (median of several rounds), because on a shared
 * machine one window's numbers move by tens of percent with the load of other processes. Then: time to first operation with the first endpoint
 * blackholed, and a failover timeline (ops/s and errors per 100 ms through a kill and a hang),
 * written as a table and as SVG charts under docs/.
 *
 *   pnpm bench client                      # full run
 *   BENCH_SECONDS=1 pnpm bench client      # shorter measurement windows
 */
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GridClient } from '@gridlink/client';
import { Redis } from 'ioredis';
import { closedLoop, delay, fmt, median, table, type LoadResult } from '../shared/measure.js';
import { startCluster, startEcho, startRedis } from '../shared/processes.js';
import { lineChart } from '../shared/svg.js';

const docs = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');
const seconds = Number(process.env.BENCH_SECONDS ?? 2);
const durationMs = seconds * 1000;
const VALUE_SIZE = 64;
const KEYS = 10_000;
const value = new Uint8Array(VALUE_SIZE).fill(7);
const keyOf = (i: number): string => `key-${(i % KEYS).toString().padStart(8, '0')}`; // 12 bytes

/** A pipelined client for the echo server: frames are u32 length + bytes, answered in order. */
class EchoClient {
  private readonly fifo: (() => void)[] = [];
  private pending: Buffer = Buffer.alloc(0);
  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
      while (this.pending.length >= 4) {
        const len = this.pending.readUInt32BE(0);
        if (this.pending.length < 4 + len) break;
        this.pending = this.pending.subarray(4 + len);
        this.fifo.shift()?.();
      }
    });
  }
  static async connect(port: number): Promise<EchoClient> {
    const socket = connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await once(socket, 'connect');
    return new EchoClient(socket);
  }
  roundTrip(size: number): Promise<void> {
    const frame = Buffer.allocUnsafe(4 + size);
    frame.writeUInt32BE(size, 0);
    return new Promise((resolve) => {
      this.fifo.push(resolve);
      this.socket.write(frame);
    });
  }
  close(): void {
    this.socket.destroy();
  }
}

type Row = { system: string; op: string; inFlight: number; r: LoadResult };

/** Target comparisons measured in alternating short windows (see `interleaved`). */
interface Interleaved {
  rounds: number;
  /** Median over rounds of each round's p50 at 1 in flight (µs). */
  echoP50: number;
  getP50: number;
  /** Median over rounds of get throughput at 256 in flight (ops/s). */
  get256: number;
  redis256: number | null;
  /** Put targets, measured the same way: p50 at 1 in flight, throughput at 256 in flight. */
  putP50: number;
  redisPutP50: number | null;
  put256: number;
  redisPut256: number | null;
  /** Median of the cluster process's CPU per op at 256 in flight (µs). */
  getCpu256: number;
  putCpu256: number;
}

async function measureAll(): Promise<{ rows: Row[]; interleaved: Interleaved }> {
  const rows: Row[] = [];
  const run = async (system: string, op: string, fn: (i: number) => Promise<unknown>, serverPid: number | undefined): Promise<void> => {
    for (const inFlight of [1, 16, 256]) {
      rows.push({ system, op, inFlight, r: await closedLoop(fn, { inFlight, durationMs, ...(serverPid !== undefined ? { serverPid } : {}) }) });
    }
  };

  // Every server stays up for the whole measurement (idle while another is measured), so the
  // target comparisons below can alternate between them.
  const echo = await startEcho();
  const echoClient = await EchoClient.connect(echo.port);
  // Request ~ key + header, response ~ value + header: the floor for a get of VALUE_SIZE bytes.
  const echoOp = (): Promise<void> => echoClient.roundTrip(VALUE_SIZE + 24);
  await run('tcp echo (floor)', 'round trip', echoOp, echo.proc.pid);

  const cluster = await startCluster({ nodes: 3, backups: 1 });
  const client = await GridClient.connect({ endpoints: cluster.endpoints });
  const cache = client.cache<string, Uint8Array>('bench');
  for (let i = 0; i < KEYS; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => cache.put(keyOf(i + j), value)));
  }
  const getOp = (i: number): Promise<unknown> => cache.get(keyOf(i));
  const putOp = (i: number): Promise<unknown> => cache.put(keyOf(i), value);
  await run('gridlink', 'get', getOp, cluster.proc.pid);
  await run('gridlink', 'put', putOp, cluster.proc.pid);

  const redis = await startRedis();
  let r: Redis | null = null;
  if (redis) {
    r = new Redis({ port: redis.port, host: '127.0.0.1', lazyConnect: true, enableAutoPipelining: false });
    await r.connect();
    const rc = r;
    const buf = Buffer.from(value);
    for (let i = 0; i < KEYS; i++) await rc.set(keyOf(i), buf);
    await run('ioredis→redis-server', 'get', (i) => rc.getBuffer(keyOf(i)), redis.proc.pid);
    await run('ioredis→redis-server', 'put', (i) => rc.set(keyOf(i), buf), redis.proc.pid);
  } else {
    console.log('redis-server not found: ioredis rows skipped (apt-get install redis-server)');
  }

  // On a shared machine the load of other processes changes from one second to the next, which
  // moves a single window's p50 by tens of percent. The targets therefore compare systems in
  // alternating short windows and take the median over the rounds.
  const rounds = 5;
  const windowMs = Math.max(200, durationMs / rounds);
  const opts = (inFlight: number, serverPid?: number): { inFlight: number; durationMs: number; warmupMs: number; serverPid?: number } => ({
    inFlight,
    durationMs: windowMs,
    warmupMs: 50,
    ...(serverPid !== undefined ? { serverPid } : {}),
  });
  const echoP50: number[] = [];
  const getP50: number[] = [];
  const get256: number[] = [];
  const redis256: number[] = [];
  const putP50: number[] = [];
  const redisPutP50: number[] = [];
  const put256: number[] = [];
  const redisPut256: number[] = [];
  const getCpu256: number[] = [];
  const putCpu256: number[] = [];
  const rbuf = Buffer.from(value);
  for (let k = 0; k < rounds; k++) {
    echoP50.push((await closedLoop(echoOp, opts(1))).p50us);
    getP50.push((await closedLoop(getOp, opts(1))).p50us);
    const g = await closedLoop(getOp, opts(256, cluster.proc.pid));
    get256.push(g.opsPerSec);
    getCpu256.push(g.serverCpuUsPerOp);
    putP50.push((await closedLoop(putOp, opts(1))).p50us);
    const pu = await closedLoop(putOp, opts(256, cluster.proc.pid));
    put256.push(pu.opsPerSec);
    putCpu256.push(pu.serverCpuUsPerOp);
    if (r !== null) {
      const rc = r;
      redis256.push((await closedLoop((i) => rc.getBuffer(keyOf(i)), opts(256))).opsPerSec);
      redisPutP50.push((await closedLoop((i) => rc.set(keyOf(i), rbuf), opts(1))).p50us);
      redisPut256.push((await closedLoop((i) => rc.set(keyOf(i), rbuf), opts(256))).opsPerSec);
    }
  }

  echoClient.close();
  await echo.stop();
  await client.close();
  await cluster.stop();
  r?.disconnect();
  await redis?.stop();
  return {
    rows,
    interleaved: {
      rounds,
      echoP50: median(echoP50),
      getP50: median(getP50),
      get256: median(get256),
      redis256: redis256.length > 0 ? median(redis256) : null,
      putP50: median(putP50),
      redisPutP50: redisPutP50.length > 0 ? median(redisPutP50) : null,
      put256: median(put256),
      redisPut256: redisPut256.length > 0 ? median(redisPut256) : null,
      getCpu256: median(getCpu256),
      putCpu256: median(putCpu256),
    },
  };
}

async function firstOpWithBlackhole(): Promise<string[][]> {
  // A server that accepts connections and never answers: the handshake hangs like a blackhole.
  const holes = [createServer(() => undefined), createServer(() => undefined)];
  for (const h of holes) h.listen(0, '127.0.0.1');
  await Promise.all(holes.map((h) => once(h, 'listening')));
  const holeEndpoints = holes.map((h) => `127.0.0.1:${(h.address() as { port: number }).port}`);
  const cluster = await startCluster({ nodes: 3, backups: 1 });
  const out: string[][] = [['endpoints (in order)', 'connectTimeout', 'connect + first put (ms)']];
  for (const blackholed of [0, 1, 2]) {
    const endpoints = [...holeEndpoints.slice(0, blackholed), ...cluster.endpoints];
    const t0 = performance.now();
    const client = await GridClient.connect({ endpoints, connectTimeout: 5000 });
    await client.cache<string, Uint8Array>('bench').put('first', value);
    const ms = performance.now() - t0;
    await client.close();
    out.push([`${blackholed} blackholed, then 3 live`, '5000 ms', ms.toFixed(1)]);
  }
  await cluster.stop();
  for (const h of holes) h.close();
  return out;
}

interface Timeline {
  ok: number[];
  errors: number[];
  faultAtMs: number;
}

async function failoverTimeline(fault: 'kill' | 'hang'): Promise<Timeline> {
  const bucketMs = 100;
  const totalMs = 6000;
  const faultAtMs = 1500;
  const cluster = await startCluster({ nodes: 3, backups: 1 });
  const client = await GridClient.connect({ endpoints: cluster.endpoints });
  const cache = client.cache<string, Uint8Array>('bench');
  const buckets = Math.ceil(totalMs / bucketMs);
  const ok = new Array<number>(buckets).fill(0);
  const errors = new Array<number>(buckets).fill(0);
  // The timeline starts after a warm-up under the same load, so "before" is steady state, not JIT.
  const warmupMs = 1500;
  let start = performance.now() + warmupMs;
  let stop = false;
  let n = 0;
  const worker = async (): Promise<void> => {
    while (!stop) {
      const i = n++;
      try {
        if (i % 2 === 0) await cache.put(keyOf(i), value);
        else await cache.get(keyOf(i));
        const b = Math.floor((performance.now() - start) / bucketMs);
        if (b >= 0 && b < buckets) ok[b]!++;
      } catch {
        const b = Math.floor((performance.now() - start) / bucketMs);
        if (b >= 0 && b < buckets) errors[b]!++;
      }
    }
  };
  const workers = Array.from({ length: 16 }, () => worker());
  await delay(warmupMs);
  start = performance.now();
  await delay(faultAtMs);
  const victim = cluster.nodeIds[0]!;
  await cluster.command(`${fault} ${victim}`);
  await delay(totalMs - faultAtMs);
  stop = true;
  await Promise.all(workers);
  if (fault === 'hang') await cluster.command(`resume ${victim}`);
  await client.close();
  await cluster.stop();
  return { ok: ok.map((c) => c * (1000 / bucketMs)), errors, faultAtMs };
}

const us = (v: number): string => `${v.toFixed(0)} µs`;

const { rows, interleaved } = await measureAll();
console.log('\n### Latency at 1 request in flight (64 B values)\n');
console.log(
  table([
    ['system', 'op', 'p50', 'p99', 'ops/s'],
    ...rows.filter((r) => r.inFlight === 1).map((r) => [r.system, r.op, us(r.r.p50us), us(r.r.p99us), r.r.opsPerSec]),
  ]),
);
console.log('\n### Throughput (ops/s) by requests in flight (64 B values)\n');
const systems = [...new Set(rows.map((r) => `${r.system}|${r.op}`))];
console.log(
  table([
    ['system', 'op', '1', '16', '256', 'errors'],
    ...systems.map((s) => {
      const [system, op] = s.split('|') as [string, string];
      const of = (k: number): number => rows.find((r) => r.system === system && r.op === op && r.inFlight === k)?.r.opsPerSec ?? NaN;
      const errs = rows.filter((r) => r.system === system && r.op === op).reduce((a, r) => a + r.r.errors, 0);
      return [system, op, of(1), of(16), of(256), errs];
    }),
  ]),
);
console.log('\n### CPU time per operation (µs): load process (client) / server process\n');
const cpu = (r: LoadResult): string => `${r.cpuUsPerOp.toFixed(1)} / ${Number.isNaN(r.serverCpuUsPerOp) ? '-' : r.serverCpuUsPerOp.toFixed(1)}`;
console.log(
  table([
    ['system', 'op', '1', '16', '256'],
    ...systems.map((s) => {
      const [system, op] = s.split('|') as [string, string];
      const of = (k: number): string => {
        const row = rows.find((r) => r.system === system && r.op === op && r.inFlight === k);
        return row ? cpu(row.r) : 'n/a';
      };
      return [system, op, of(1), of(16), of(256)];
    }),
  ]),
);
const floor = rows.find((r) => r.system.startsWith('tcp echo') && r.inFlight === 1)!.r.p50us;
const gget = rows.find((r) => r.system === 'gridlink' && r.op === 'get' && r.inFlight === 1)!.r.p50us;
const g256 = rows.find((r) => r.system === 'gridlink' && r.op === 'get' && r.inFlight === 256)!.r.opsPerSec;
const r256 = rows.find((r) => r.system.startsWith('ioredis') && r.op === 'get' && r.inFlight === 256)?.r.opsPerSec;
const iv = interleaved;
console.log(`\n### Targets (alternating windows: median of ${iv.rounds} rounds; in brackets, the tables above)\n`);
console.log(
  table([
    ['target', 'measured', 'met'],
    [
      'p50 get at 1 in flight ≤ 1.5× echo floor',
      `${(iv.getP50 / iv.echoP50).toFixed(2)}× (${us(iv.getP50)} / ${us(iv.echoP50)}) [${(gget / floor).toFixed(2)}×]`,
      iv.getP50 <= 1.5 * iv.echoP50 ? 'yes' : 'no',
    ],
    [
      'get throughput at 256 ≥ 0.7× ioredis→redis-server',
      iv.redis256 !== null && r256
        ? `${(iv.get256 / iv.redis256).toFixed(2)}× (${fmt(iv.get256)} / ${fmt(iv.redis256)} ops/s) [${(g256 / r256).toFixed(2)}×]`
        : 'n/a',
      iv.redis256 !== null ? (iv.get256 >= 0.7 * iv.redis256 ? 'yes' : 'no') : 'n/a',
    ],
    [
      'put throughput at 256 ≥ 1.0× ioredis→redis-server',
      iv.redisPut256 !== null ? `${(iv.put256 / iv.redisPut256).toFixed(2)}× (${fmt(iv.put256)} / ${fmt(iv.redisPut256)} ops/s)` : 'n/a',
      iv.redisPut256 !== null ? (iv.put256 >= iv.redisPut256 ? 'yes' : 'no') : 'n/a',
    ],
    [
      'server CPU per put ≤ 3× a get (256 in flight)',
      `${(iv.putCpu256 / iv.getCpu256).toFixed(2)}× (${iv.putCpu256.toFixed(1)} / ${iv.getCpu256.toFixed(1)} µs)`,
      iv.putCpu256 <= 3 * iv.getCpu256 ? 'yes' : 'no',
    ],
    [
      'p50 put at 1 in flight ≤ 1.2× ioredis→redis-server put',
      iv.redisPutP50 !== null ? `${(iv.putP50 / iv.redisPutP50).toFixed(2)}× (${us(iv.putP50)} / ${us(iv.redisPutP50)})` : 'n/a',
      iv.redisPutP50 !== null ? (iv.putP50 <= 1.2 * iv.redisPutP50 ? 'yes' : 'no') : 'n/a',
    ],
  ]),
);

console.log('\n### Time to first successful operation with blackholed endpoints first\n');
console.log(table(await firstOpWithBlackhole()));

console.log('\n### Failover timeline (16 in flight, 50% put / 50% get, node killed or hung at 1.5 s)\n');
const kill = await failoverTimeline('kill');
const hang = await failoverTimeline('hang');
const summary = (t: Timeline): (string | number)[] => {
  const faultBucket = t.faultAtMs / 100;
  const before = t.ok.slice(0, faultBucket);
  const mean = before.reduce((a, b) => a + b, 0) / Math.max(1, before.length);
  const dip = t.ok.slice(faultBucket).findIndex((v) => v >= 0.5 * mean);
  const low = t.ok.slice(faultBucket).filter((v) => v < 0.5 * mean).length;
  return [Math.round(mean), `${low * 100} ms`, dip === -1 ? 'never' : `${dip * 100} ms`, t.errors.reduce((a, b) => a + b, 0)];
};
console.log(
  table([
    ['fault', 'ops/s before', 'time below 50%', 'back to ≥ 50% after', 'failed operations'],
    ['kill', ...summary(kill)],
    ['hang', ...summary(hang)],
  ]),
);
console.log('\nPer 100 ms (ops/s | errors):');
console.log(
  table([
    ['t (s)', 'kill ops/s', 'kill errors', 'hang ops/s', 'hang errors'],
    ...kill.ok.map((v, i) => [(i / 10).toFixed(1), v, kill.errors[i]!, hang.ok[i] ?? 0, hang.errors[i] ?? 0]),
  ]),
);
for (const [name, t] of [['kill', kill], ['hang', hang]] as const) {
  const svg = lineChart(
    [
      { name: 'ops/s', color: '#2563eb', values: t.ok },
      { name: 'errors per 100 ms', color: '#dc2626', values: t.errors },
    ],
    {
      title: `gridlink client through a ${name} of one of 3 nodes (backups = 1, 16 in flight)`,
      bucketMs: 100,
      yLabel: 'ops/s',
      markers: [{ atMs: t.faultAtMs, label: `${name} node` }],
    },
  );
  writeFileSync(join(docs, `failover-${name}.svg`), svg);
}
console.log('\nwrote docs/failover-kill.svg and docs/failover-hang.svg');
