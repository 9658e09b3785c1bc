/**
 * One bench/api app (app-server.ts) as a child process: started with its mode, the grid's
 * endpoints and (for express-idempotency) redis-server's port, and stopped again. Shared by
 * index.ts and profile.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const here = dirname(fileURLToPath(import.meta.url));

export interface AppChild {
  proc: ChildProcess;
  /** http://127.0.0.1:<port> */
  base: string;
}

/** Starts the app of `mode`; `nodeArgs` go to its Node process (profiler flags, say). */
export async function startApp(mode: string, endpoints: string[], redisPort?: number, nodeArgs: readonly string[] = []): Promise<AppChild> {
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', join(here, 'app-server.ts'), mode, endpoints.join(','), String(redisPort ?? '')], {
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

/** Stops the app with SIGTERM (it exits cleanly, writing a profile if asked), SIGKILL after 3 s. */
export async function stopApp(app: AppChild): Promise<void> {
  if (app.proc.exitCode !== null || app.proc.signalCode !== null) return;
  const exited = once(app.proc, 'exit');
  app.proc.kill('SIGTERM');
  const t = setTimeout(() => app.proc.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

/**
 * The app's GET /bench/stats: handler runs (partnerCalls), grid operations its client completed,
 * and its monotonic clock in µs (the clock of V8's CPU profile).
 */
export async function appStats(app: AppChild): Promise<{ partnerCalls: number; gridOps: number; now: number }> {
  return (await (await fetch(`${app.base}/bench/stats`)).json()) as { partnerCalls: number; gridOps: number; now: number };
}

/**
 * POST /orders under autocannon for `durationS` seconds over `connections` connections, each
 * request with the Idempotency-Key `nextKey()` gives (the bench's load on every app).
 */
export function postOrders(base: string, connections: number, durationS: number, nextKey: () => string): Promise<autocannon.Result> {
  return autocannon({
    url: `${base}/orders`,
    connections,
    duration: durationS,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sku: 'book', qty: 1 }),
        setupRequest: (req: { headers?: Record<string, string> }) => {
          req.headers = { ...req.headers, 'idempotency-key': nextKey() };
          return req;
        },
      },
    ],
  });
}
