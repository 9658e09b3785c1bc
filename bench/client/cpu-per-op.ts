/**
 * CPU time per operation of the client's process (process.cpuUsage: user + system) for grid get,
 * put and the de-duplication pair (lock attemptGet + putAndRelease), beside ioredis GET/SET
 * against one redis-server, at several in-flight counts. The 3-node LocalCluster and redis-server
 * run in their own processes; their CPU per op is shown too. On a machine shared with other work
 * the client's CPU per op is steadier than its throughput: compare that column.
 *
 *   npx tsx bench/client/cpu-per-op.ts                       # 64 B values, 1/16/256 in flight
 *   SIZE=1024 INF=256 ROUNDS=5 N=50000 npx tsx bench/client/cpu-per-op.ts
 *   OPS=get,put REDIS=0 npx tsx bench/client/cpu-per-op.ts  # only these rows, no redis
 *
 * (Run from the repository root with TSX_TSCONFIG_PATH=bench/tsconfig.json so that the built
 * packages are measured, as `pnpm bench` does.)
 */
import { GridClient, bytesSerializer } from '@gridlink/client';
import { Redis } from 'ioredis';
import { processCpuUs, table } from '../shared/measure.js';
import { startCluster, startRedis, type Child } from '../shared/processes.js';

const N = Number(process.env.N ?? 20_000);
const SIZE = Number(process.env.SIZE ?? 64);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const KEYS = 2000;
const inFlights = (process.env.INF ?? '1,16,256').split(',').map(Number);
const ops = new Set((process.env.OPS ?? 'get,put,lock').split(','));
const withRedis = process.env.REDIS !== '0';

const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 64 });
const client = await GridClient.connect({ endpoints: cluster.endpoints });
const redisChild = withRedis ? await startRedis() : null;
const redis = redisChild !== null ? new Redis({ port: redisChild.port, host: '127.0.0.1' }) : null;
const value = new Uint8Array(SIZE).fill(7);
const bv = Buffer.from(value);
const cache = client.cache<string, Uint8Array>('c', { serializer: bytesSerializer });
const keys = Array.from({ length: KEYS }, (_, i) => `k${i}`);
for (const k of keys) {
  await cache.put(k, value);
  await redis?.set(k, bv);
}

interface Sample {
  opsPerSec: number;
  clientUs: number;
  clientSysUs: number;
  serverUs: number;
}

async function run(op: (i: number) => Promise<unknown>, inFlight: number, server: Child): Promise<Sample> {
  let next = 0;
  const pid = server.proc.pid as number;
  const c0 = process.cpuUsage();
  const s0 = processCpuUs(pid);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < N) await op(next++);
    }),
  );
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { opsPerSec: (N / ms) * 1000, clientUs: (c.user + c.system) / N, clientSysUs: c.system / N, serverUs: (processCpuUs(pid) - s0) / N };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

// As the de-duplication middleware does: a lock per key (concurrent workers seldom collide; a
// refused attempt still costs one op), auto-renewed while held, watched for loss, then
// stored-and-released at once.
const onLost = (): void => undefined;
const lockPair = async (i: number): Promise<void> => {
  const k = keys[i % KEYS] as string;
  const r = await client.lock(k).attemptGet(cache, { autoRenew: true });
  if (!r.acquired) return;
  r.handle.onLost(onLost);
  await r.handle.putAndRelease(cache, value);
};

const cases: { name: string; op: (i: number) => Promise<unknown>; server: () => Child | null }[] = [];
if (ops.has('get')) cases.push({ name: 'grid get', op: (i) => cache.get(keys[i % KEYS] as string), server: () => cluster });
if (ops.has('put')) cases.push({ name: 'grid put', op: (i) => cache.put(keys[i % KEYS] as string, value), server: () => cluster });
if (ops.has('lock')) cases.push({ name: 'grid attemptGet+putAndRelease', op: lockPair, server: () => cluster });
if (redis !== null && redisChild !== null) {
  if (ops.has('get')) cases.push({ name: 'redis GET', op: (i) => redis.getBuffer(keys[i % KEYS] as string), server: () => redisChild });
  if (ops.has('put')) cases.push({ name: 'redis SET', op: (i) => redis.set(keys[i % KEYS] as string, bv), server: () => redisChild });
}

const rows: (string | number)[][] = [['op', 'in flight', 'ops/s', 'client CPU µs/op', '(min)', '(of it system)', 'server CPU µs/op']];
for (const inFlight of inFlights) {
  for (const c of cases) {
    const server = c.server() as Child;
    await run(c.op, inFlight, server); // warm-up
    const samples: Sample[] = [];
    for (let r = 0; r < ROUNDS; r++) samples.push(await run(c.op, inFlight, server));
    rows.push([
      c.name,
      inFlight,
      Math.round(median(samples.map((s) => s.opsPerSec))),
      median(samples.map((s) => s.clientUs)),
      Math.min(...samples.map((s) => s.clientUs)),
      median(samples.map((s) => s.clientSysUs)),
      median(samples.map((s) => s.serverUs)),
    ]);
  }
}
console.log(`value ${SIZE} B, ${N} ops per round, median (and least) of ${ROUNDS} rounds after a warm-up (client: this process; server: the cluster or redis process)\n`);
console.log(table(rows));

await client.close();
redis?.disconnect();
await cluster.stop();
await redisChild?.stop();
