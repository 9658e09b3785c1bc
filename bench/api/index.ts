/**
 * The orders example (examples/api-express) under load, each app in its own process, the grid
 * (three nodes) in another and redis-server in a third, so the load generator (autocannon, here)
 * shares no event loop with what it measures:
 *   - without de-duplication,
 *   - with @gridlink/express dedupe(),
 *   - with express-idempotency + express-idempotency-redis-adapter (the most used npm
 *     idempotency middleware) on redis-server.
 * Phase 1: every request has a fresh Idempotency-Key (the cost on normal traffic).
 * Phase 2: every key is sent 4 times by concurrent connections (a misbehaving client): handler
 * runs are compared with distinct keys — a run beyond one per key is a duplicate that ran.
 *   API_BENCH_SECONDS (default 5), API_BENCH_CONNECTIONS (default 16)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { table } from '../shared/measure.js';
import { startCluster, startRedis } from '../shared/processes.js';

const here = dirname(fileURLToPath(import.meta.url));
const seconds = Number(process.env.API_BENCH_SECONDS ?? 5);
const connections = Number(process.env.API_BENCH_CONNECTIONS ?? 16);

interface AppChild {
  proc: ChildProcess;
  base: string;
}

async function startApp(mode: string, endpoints: string[], redisPort: number | undefined): Promise<AppChild> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(here, 'app-server.ts'), mode, endpoints.join(','), String(redisPort ?? '')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: process.env,
  });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`${mode} app exited with ${code}`)));
  });
  return { proc, base: `http://127.0.0.1:${port}` };
}

async function stopApp(app: AppChild): Promise<void> {
  if (app.proc.exitCode !== null || app.proc.signalCode !== null) return;
  const exited = once(app.proc, 'exit');
  app.proc.kill('SIGTERM');
  const t = setTimeout(() => app.proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

async function partnerCalls(app: AppChild): Promise<number> {
  return ((await (await fetch(`${app.base}/bench/stats`)).json()) as { partnerCalls: number }).partnerCalls;
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
  const result = await autocannon({
    url: `${base}/orders`,
    connections,
    duration: durationS,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sku: 'book', qty: 1 }),
        setupRequest: (req: { headers?: Record<string, string> }) => {
          const key = `${tag}-${Math.floor(n++ / copiesPerKey)}`;
          keys.add(key);
          req.headers = { ...req.headers, 'idempotency-key': key };
          return req;
        },
      },
    ],
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

const cluster = await startCluster({ nodes: 3, backups: 1, partitions: 1024 });
const redis = await startRedis();
const modes = ['none', 'gridlink', ...(redis ? ['express-idempotency'] : [])];
if (!redis) console.log('redis-server not found: the express-idempotency row is skipped');

const rows: (string | number)[][] = [];
const dupRows: (string | number)[][] = [];
let baseline: Run | undefined;
try {
  for (const mode of modes) {
    const app = await startApp(mode, cluster.endpoints, redis?.port);
    try {
      await load(app.base, 1, 1, `${mode}-warm`); // warm-up: JIT, connections, partition map
      const r = await load(app.base, seconds, 1, `${mode}-unique`);
      baseline ??= r;
      rows.push([
        mode,
        Math.round(r.rps),
        r.p50,
        r.p99,
        mode === 'none' ? '-' : `${(r.rps / baseline.rps).toFixed(2)}x`,
        mode === 'none' ? '-' : Math.round((r.p50 - baseline.p50) * 1000),
        r.non2xx + r.errors,
      ]);
      const before = await partnerCalls(app);
      const d = await load(app.base, Math.max(2, Math.round(seconds / 2)), 4, `${mode}-dup`);
      const runs = (await partnerCalls(app)) - before;
      dupRows.push([mode, d.requests, d.keys, runs, mode === 'none' ? '-' : Math.max(0, runs - d.keys), d.non2xx]);
    } finally {
      await stopApp(app);
    }
  }
} finally {
  await redis?.stop();
  await cluster.stop();
}

console.log(`Orders API, POST /orders, ${connections} connections, ${seconds} s per row (autocannon); latency in ms.\n`);
console.log(
  table([
    ['middleware', 'req/s', 'p50 ms', 'p99 ms', 'throughput vs none', 'added p50 µs', 'non-2xx + errors'],
    ...rows,
  ]),
);
console.log('\nEvery key sent 4 times by concurrent connections (a misbehaving client):\n');
console.log(table([['middleware', 'requests', 'distinct keys', 'handler runs', 'duplicates that ran', 'non-2xx (409 in progress)'], ...dupRows]));
console.log('\nTargets: added p50 ≤ 150 µs, throughput ≥ 0.8x of none, no duplicate runs.');
