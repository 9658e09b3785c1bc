/**
 * The API examples as docs/api.md runs them (`pnpm example:api-express` / `example:api-nest`):
 * they serve on PORT until Ctrl-C, answer a retried POST with the stored response, refuse a
 * concurrent duplicate with 409, answer their health endpoint, and on SIGINT or SIGTERM close the
 * HTTP server, the grid client and the embedded grid, and exit 0 on their own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort, waitFor } from '@gridlink/testkit';

const root = fileURLToPath(new URL('../..', import.meta.url));

const CASES = [
  { file: 'examples/api-express/server.ts', health: '/health/ready', signal: 'SIGINT' },
  { file: 'examples/api-express/server.ts', health: '/health/ready', signal: 'SIGTERM' },
  { file: 'examples/api-nest/main.ts', health: '/health', signal: 'SIGINT' },
  { file: 'examples/api-nest/main.ts', health: '/health', signal: 'SIGTERM' },
] as const;

/** Starts an example as docs/api.md does (PORT set) and waits until it serves. */
async function serve(file: string): Promise<{ port: number; child: ChildProcess; output: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: root,
    env: { ...process.env, PORT: String(port), TSX_TSCONFIG_PATH: 'tsconfig.json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.setEncoding('utf8');
  child.stderr!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => (out += d));
  child.stderr!.on('data', (d: string) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, sig) => r({ code, signal: sig })));
  try {
    await waitFor(`${file} to serve`, () => {
      if (child.exitCode !== null) throw new Error(`${file} exited: ${out}`);
      return out.includes(`orders API on http://127.0.0.1:${port}`);
    }, 45_000);
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    throw err;
  }
  return { port, child, output: () => out, exited };
}

describe.each(CASES)('$file, stopped with $signal', ({ file, health, signal }) => {
  it('serves, replays, refuses a concurrent duplicate, answers health, and exits 0 promptly', async () => {
    const { port, child, output, exited } = await serve(file);
    try {
      const base = `http://127.0.0.1:${port}`;
      const post = (key: string, body: unknown): Promise<Response> =>
        fetch(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: JSON.stringify(body) });

      const first = await post('k1', { sku: 'book', qty: 1 });
      expect(first.status).toBe(201);
      const order = (await first.json()) as { id: string };
      const again = await post('k1', { sku: 'book', qty: 1 });
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(((await again.json()) as { id: string }).id).toBe(order.id);
      expect((await post('k1', { sku: 'pen', qty: 2 })).status).toBe(422);
      const read = await fetch(`${base}/orders/${order.id}`);
      expect(read.status).toBe(200);
      expect(((await read.json()) as { id: string }).id).toBe(order.id);

      // Concurrent duplicates of a new key: one runs, the rest are refused (409) or replayed.
      const burst = await Promise.all(Array.from({ length: 10 }, () => post('k2', { sku: 'book', qty: 1 })));
      const statuses = burst.map((r) => (r.headers.get('idempotent-replayed') === 'true' ? 'replayed' : String(r.status)));
      await Promise.all(burst.map((r) => r.arrayBuffer()));
      expect(statuses.filter((s) => s === '201')).toHaveLength(1);
      expect(statuses.every((s) => ['201', 'replayed', '409'].includes(s))).toBe(true);

      const h = await fetch(base + health);
      expect(h.status).toBe(200);
      expect(JSON.stringify(await h.json())).toMatch(/"connectedNodes":[1-9]/);

      const t0 = Date.now();
      child.kill(signal);
      const end = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
      expect(end, `${file} still running 10 s after ${signal}: ${output()}`).toEqual({ code: 0, signal: null });
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
  });
});

describe.each([CASES[1], CASES[3]])('$file, stopped with $signal while a request is under way', ({ file, signal }) => {
  it('answers that request before it exits (graceful: the key is stored, not left to its lease)', async () => {
    const { port, child, output, exited } = await serve(file);
    try {
      // A request whose body is still arriving when the signal comes.
      const body = JSON.stringify({ sku: 'book', qty: 1 });
      const socket = net.connect(port, '127.0.0.1');
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('data', (d: string) => (answer += d));
      socket.on('error', () => undefined);
      const socketClosed = new Promise<void>((r) => socket.once('close', () => r()));
      await new Promise<void>((r) => socket.once('connect', () => r()));
      // Expect: 100-continue, so the server says when it has the request (a connection whose
      // request it has not read yet is idle, and closing the server closes idle connections).
      // HTTP/1.1 keeps the connection alive by default: the stopping server must end it after the
      // answer itself, not hold it (and its exit) for its keep-alive timeout.
      socket.write(`POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\nexpect: 100-continue\r\nidempotency-key: under-way\r\ncontent-length: ${body.length}\r\n\r\n`);
      await waitFor('100 Continue', () => answer.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 20_000);
      socket.write(body.slice(0, 5));
      child.kill(signal);
      // Once it stops taking connections, the rest of the body arrives.
      await waitFor('the server to stop accepting', () => portRefuses(port), 20_000);
      socket.write(body.slice(5));
      await socketClosed;
      expect(answer).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 201 /);
      expect(answer, 'the answer tells the client the connection ends').toMatch(/\r\nconnection: close\r\n/i);
      const end = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
      expect(end, `${file} still running 20 s after ${signal}: ${output()}`).toEqual({ code: 0, signal: null });
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    }
  });
});

/** True when a connection to the port is refused (the server stopped listening). */
function portRefuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
}
