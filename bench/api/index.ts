/**
 * The orders example (examples/api-express) under load, each app in its own process, the grid
 * (three nodes) in another and redis-server in a third, so the load generator (autocannon, here)
 * shares no event loop with what it measures:
 *   - without de-duplication,
 *   - with @gridlink/express dedupe(),
 *   - with express-idempotency + express-idempotency-redis-adapter (the most used npm
 *     idempotency middleware) on redis-server;
 *   - a reference, "two-puts": two plain grid puts around the handler, without lock or
 *     de-duplication (duplicates run): what any design writing the grid twice per request costs.
 * Phase 1: every request has a fresh Idempotency-Key (the cost on normal traffic).
 * Phase 2: every key is sent 4 times by concurrent connections (a misbehaving client): handler
 * runs are compared with distinct keys — a run beyond one per key is a duplicate that ran.
 * Cost without wall time: over the throughput rounds, CPU time of the app process and of the
 * grid process per request (from /proc, 10 ms ticks over thousands of requests) and grid
 * operations per request; and the middleware's own work (key hashing, header check, the stored
 * record's encoding) timed in this process.
 * Before anything is measured each app runs under load for API_BENCH_WARMUP seconds: a process
 * (app or grid node) needs seconds of load before V8 has optimized the paths it runs, longer at
 * low request rates — a 64 B grid put at one in flight costs the client 4× its steady CPU in
 * the first second and reaches its steady latency only after 3–4 s (bench/cluster/throughput.ts).
 *   API_BENCH_MODES (comma-separated; default none,two-puts,gridlink,gridlink-after-send,
 *   express-idempotency — skipped without redis-server; also none-embedded, gridlink-embedded,
 *   gridlink-after-send-embedded: the same app with its three-node grid inside the app's process,
 *   as the example runs, compared with none-embedded), API_BENCH_SECONDS (default 3),
 *   API_BENCH_ROUNDS (default 3), API_BENCH_CONNECTIONS (default 16),
 *   API_BENCH_WARMUP (default 5), API_BENCH_LATENCY_ROUNDS (default 5: rounds at one in flight,
 *   the modes taking turns; the added p50 is the median of each round's difference to none)
 */
import { Agent, request } from 'node:http';
import { msgpackSerializer } from '@gridlink/client';
import { checkHeaderKey, payloadHash, scopedKeyHash } from '@gridlink/dedupe';
import { closedLoop, nsPerOp, processContextSwitches, processCpuUs, processSyscalls, table, type LoadResult } from '../shared/measure.js';
import { startCluster, startRedis } from '../shared/processes.js';
import { appStats, postOrders, startApp, stopApp, type AppChild } from './app-process.js';

const seconds = Number(process.env.API_BENCH_SECONDS ?? 3);
const connections = Number(process.env.API_BENCH_CONNECTIONS ?? 16);
const warmupSeconds = Number(process.env.API_BENCH_WARMUP ?? 5);
/**
 * Node options for the app processes only, space-separated (Node refuses `--cpu-prof` in
 * NODE_OPTIONS): `API_BENCH_APP_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/p"` profiles each app.
 */
const appNodeArgs = (process.env.API_BENCH_APP_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

async function partnerCalls(app: AppChild): Promise<number> {
  return (await appStats(app)).partnerCalls;
}

/** CPU and grid operations a mode spent over its throughput rounds. */
interface Cost {
  requests: number;
  appCpuUs: number;
  gridCpuUs: number;
  /** The app process's read- and write-class system calls (/proc/<pid>/io) and context switches. */
  appSyscalls: number;
  appSwitches: number;
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
  keys: number;
}

async function load(base: string, durationS: number, copiesPerKey: number, tag: string): Promise<Run> {
  let n = 0;
  const keys = new Set<string>();
  const result = await postOrders(base, connections, durationS, () => {
    const key = `${tag}-${Math.floor(n++ / copiesPerKey)}`;
    keys.add(key);
    return key;
  });
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    keys: keys.size,
  };
}

/** One POST /orders over a keep-alive connection; resolves with the status. */
function poster(base: string): (key: string) => Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL(`${base}/orders`);
  const body = JSON.stringify({ sku: 'book', qty: 1 });
  return (key) =>
    new Promise<number>((resolve, reject) => {
      const req = request(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'idempotency-key': key } },
        (res) => {
          res.resume();
          res.once('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.once('error', reject);
      req.end(body);
    });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const DEFAULT_MODES = ['none', 'two-puts', 'gridlink', 'gridlink-after-send', 'express-idempotency'];
const KNOWN_MODES = [...DEFAULT_MODES, 'none-embedded', 'gridlink-embedded', 'gridlink-after-send-embedded'];
/** The bare app each mode is compared with: the same grid, in the grid process or embedded. */
const baseOf = (mode: string): string => (mode.endsWith('-embedded') ? 'none-embedded' : 'none');
const chosen = process.env.API_BENCH_MODES?.split(',');
// Checked before any process starts.
if (chosen !== undefined && (chosen.some((m) => !KNOWN_MODES.includes(m)) || chosen.some((m) => !chosen.includes(baseOf(m))))) {
  console.error(`API_BENCH_MODES: ${chosen.join(',')} — the modes are ${KNOWN_MODES.join(', ')} (each mode's baseline, none or none-embedded, is required with it)`);
  process.exit(2);
}
const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
const redis = await startRedis();
const modes = (chosen ?? DEFAULT_MODES).filter((m) => redis || m !== 'express-idempotency');
if (!redis && (chosen ?? DEFAULT_MODES).includes('express-idempotency')) console.log('redis-server not found: the express-idempotency row is skipped');

const rounds = Number(process.env.API_BENCH_ROUNDS ?? 3);
/** Rounds at one request in flight: windows there move by ±600 µs, so more of them than of throughput. */
const latencyRounds = Number(process.env.API_BENCH_LATENCY_ROUNDS ?? 5);
const apps = new Map<string, AppChild>();
const runs = new Map<string, Run[]>(modes.map((m) => [m, []]));
/** Per mode, one latency result per round at one request in flight (the modes take turns). */
const single = new Map<string, LoadResult[]>(modes.map((m) => [m, []]));
const dupRows: (string | number)[][] = [];
const opsPerRequest = new Map<string, number>();
const costs = new Map<string, Cost>(modes.map((m) => [m, { requests: 0, appCpuUs: 0, gridCpuUs: 0, appSyscalls: 0, appSwitches: 0 }]));
try {
  for (const mode of modes) apps.set(mode, await startApp(mode, cluster.endpoints, redis?.port, appNodeArgs));
  // JIT (of the app and of the grid paths it uses), connections, partition map.
  for (const mode of modes) await load(apps.get(mode)!.base, warmupSeconds, 1, `${mode}-warm`);
  // Latency at one request in flight (µs resolution), then throughput under autocannon; the
  // modes take turns round by round so that drift in machine load spreads over all of them.
  // One request in flight: the modes take turns, round by round, so that the added p50 is taken
  // between windows measured next to each other (one window per mode moved 2x between runs).
  const posts = new Map(modes.map((mode) => [mode, poster(apps.get(mode)!.base)]));
  for (let r = 0; r < latencyRounds; r++) {
    for (const mode of modes) {
      const app = apps.get(mode)!;
      const post = posts.get(mode)!;
      let issued = 0;
      const ops0 = (await appStats(app)).gridOps;
      single.get(mode)!.push(
        await closedLoop(
          (i) => {
            issued++;
            return post(`${mode}-single-${r}-${i}`);
          },
          { inFlight: 1, durationMs: 2000, warmupMs: r === 0 ? 1000 : 250 },
        ),
      );
      // Every request of the loop has completed: an exact count, unlike under autocannon (which
      // abandons the requests in flight at its end).
      if (r === 0) opsPerRequest.set(mode, ((await appStats(app)).gridOps - ops0) / Math.max(1, issued));
    }
  }
  for (let r = 0; r < rounds; r++) {
    for (const mode of modes) {
      const app = apps.get(mode)!;
      const syscalls = (): number => {
        const io = processSyscalls(app.proc.pid!);
        return io.r + io.w;
      };
      const before = { app: processCpuUs(app.proc.pid!), grid: processCpuUs(cluster.proc.pid!), syscalls: syscalls(), switches: processContextSwitches(app.proc.pid!) };
      const run = await load(app.base, seconds, 1, `${mode}-unique-${r}`);
      const c = costs.get(mode)!;
      c.requests += run.requests;
      c.appCpuUs += processCpuUs(app.proc.pid!) - before.app;
      c.gridCpuUs += processCpuUs(cluster.proc.pid!) - before.grid;
      c.appSyscalls += syscalls() - before.syscalls;
      c.appSwitches += processContextSwitches(app.proc.pid!) - before.switches;
      runs.get(mode)!.push(run);
    }
  }
  for (const mode of modes) {
    const app = apps.get(mode)!;
    const before = await partnerCalls(app);
    const d = await load(app.base, Math.max(2, seconds), 4, `${mode}-dup`);
    const ran = (await partnerCalls(app)) - before;
    dupRows.push([mode, d.requests, d.keys, ran, mode === baseOf(mode) ? '-' : Math.max(0, ran - d.keys), d.non2xx]);
  }
} finally {
  for (const app of apps.values()) await stopApp(app);
  await redis?.stop();
  await cluster.stop();
}

const isBase = (mode: string): boolean => mode === baseOf(mode);
const baseRps = (mode: string): number => median(runs.get(baseOf(mode))!.map((r) => r.rps));
/** Per round, this mode's p50 − its bare app's p50 of the same round; its median is the added p50. */
const addedP50s = (mode: string): number[] => single.get(mode)!.map((x, r) => x.p50us - single.get(baseOf(mode))![r]!.p50us);
const rows = modes.map((mode) => {
  const rs = runs.get(mode)!;
  const rps = median(rs.map((r) => r.rps));
  const one = single.get(mode)!;
  const added = addedP50s(mode);
  return [
    mode,
    Math.round(median(one.map((x) => x.p50us))),
    Math.round(median(one.map((x) => x.p99us))),
    isBase(mode) ? '-' : `${Math.round(median(added))} (${added.map(Math.round).join(', ')})`,
    Math.round(rps),
    median(rs.map((r) => r.p50)),
    median(rs.map((r) => r.p99)),
    isBase(mode) ? '-' : `${(rps / baseRps(mode)).toFixed(2)}x`,
    rs.reduce((a, r) => a + r.non2xx + r.errors, 0),
  ];
});

console.log(
  `Orders API, POST /orders with a fresh Idempotency-Key per request. Latency: 1 request in flight, ${latencyRounds} rounds of 2 s (modes take turns; medians; added p50 = median of each round's difference to the bare app on the same grid — none, or none-embedded for the -embedded modes — the rounds' in brackets).`,
);
console.log('-embedded: the example as `pnpm example:api-express` runs it, its three-node grid in the app process; the others: the grid in a process of its own.');
console.log(`Throughput: autocannon, ${connections} connections, median of ${rounds} rounds of ${seconds} s (modes take turns).\n`);
console.log(
  table([
    ['middleware', 'p50 µs (1 in flight)', 'p99 µs (1 in flight)', 'added p50 µs', 'req/s', 'p50 ms', 'p99 ms', 'throughput vs bare app', 'non-2xx + errors'],
    ...rows,
  ]),
);
console.log('\nEvery key sent 4 times by concurrent connections (a misbehaving client):\n');
console.log(table([['middleware', 'requests', 'distinct keys', 'handler runs', 'duplicates that ran', 'non-2xx (409 in progress)'], ...dupRows]));
const perReq = (c: Cost, v: number): number => v / Math.max(1, c.requests);
console.log(
  '\nCost per request: CPU, read/write system calls and context switches of the app over the throughput rounds (from /proc); grid operations the app\'s client made per request, at 1 in flight (exact):\n',
);
console.log(
  table([
    ['middleware', 'requests', 'app CPU µs/req', 'added app CPU µs/req', 'grid CPU µs/req', 'grid ops/req', 'app syscalls/req', 'app switches/req'],
    ...modes.map((mode) => {
      const c = costs.get(mode)!;
      const base = costs.get(baseOf(mode))!;
      return [
        mode,
        c.requests,
        Math.round(perReq(c, c.appCpuUs)),
        isBase(mode) ? '-' : Math.round(perReq(c, c.appCpuUs) - perReq(base, base.appCpuUs)),
        mode.endsWith('-embedded') ? 'in the app' : Math.round(perReq(c, c.gridCpuUs)),
        (opsPerRequest.get(mode) ?? Number.NaN).toFixed(2),
        perReq(c, c.appSyscalls).toFixed(2),
        perReq(c, c.appSwitches).toFixed(2),
      ];
    }),
  ]),
);

// The middleware's own work per request, without the grid: hashing the scoped key and the
// payload, checking the header, encoding the stored record (what putAndRelease carries).
const scope = { method: 'POST', route: '/orders', tenant: undefined };
const body = { sku: 'book', qty: 1 };
const responseBody = Buffer.from(JSON.stringify({ id: '5f0c8c9e-1d0a-4e55-9a9f-2b8f8f7d2c11', sku: 'book', qty: 1, token: 12345 }));
let sink = 0;
const own: [string, number][] = [
  ['checkHeaderKey', nsPerOp(() => void (sink += 'key' in checkHeaderKey('orders-123e4567-e89b-12d3-a456-426614174000', 255) ? 1 : 0), 100_000)],
  ['scopedKeyHash (canonical JSON + SHA-256)', nsPerOp(() => void (sink += scopedKeyHash(scope, 'h', 'orders-123e4567').length), 100_000)],
  ['payloadHash (canonical JSON + SHA-256)', nsPerOp(() => void (sink += payloadHash(body).length), 100_000)],
  [
    'stored record encoding (the client\'s MessagePack serializer)',
    nsPerOp(() => void (sink += msgpackSerializer.serialize({ v: 1, fp: 'x'.repeat(43), status: 201, headers: [['content-type', 'application/json; charset=utf-8'], ['location', '/orders/1']], body: responseBody, at: Date.now() }).length), 100_000),
  ],
];
console.log('\nThe middleware\'s own work per request (this process, no grid):\n');
console.log(table([['step', 'µs'], ...own.map(([k, ns]) => [k, (ns / 1000).toFixed(2)]), ['total', (own.reduce((a, [, ns]) => a + ns, 0) / 1000).toFixed(2)]]));
if (sink < 0) console.log(sink);
console.log('\nTargets: added p50 ≤ 150 µs, throughput ≥ 0.8x of the bare app, no duplicate runs.');
