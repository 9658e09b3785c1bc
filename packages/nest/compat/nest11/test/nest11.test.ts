/**
 * @gridlink/nest on Nest 11: a real Nest 11 app (child process started from this package's folder,
 * where @nestjs/* and the injected copy of @gridlink/nest resolve to 11.x) listening on 127.0.0.1,
 * against an embedded LocalCluster in this process. Needs the built dist (`pnpm build`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';

const here = fileURLToPath(new URL('..', import.meta.url));
const tsxCli = createRequire(import.meta.url).resolve('tsx/cli');

interface Ready {
  port: number;
  nestCore: string;
  nestCommon: string;
  nestCoreSeenByAdapter: string;
  gridlinkNest: string;
  cjsBuildLoads: boolean;
}

let cluster: LocalCluster | undefined;
let child: ChildProcess | undefined;
let ready: Ready;
let base: string;
const stderr: string[] = [];

function killChild(): void {
  if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killChild);

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}

async function getJson<T>(path: string): Promise<T> {
  const r = await fetch(base + path);
  expect(r.status).toBe(200);
  return (await r.json()) as T;
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, partitions: 64 });
  const proc = spawn(process.execPath, [tsxCli, 'app.ts'], {
    cwd: here,
    env: { ...process.env, GRID_ENDPOINTS: cluster.endpoints.join(','), NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = proc;
  proc.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
  ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Nest 11 app not ready in 20 s: ${stderr.join('')}`)), 20_000);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`Nest 11 app exited (${code ?? signal}) before READY: ${stderr.join('')}`));
    });
    createInterface({ input: proc.stdout }).on('line', (line) => {
      if (!line.startsWith('READY ')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice(6)) as Ready);
    });
  });
  base = `http://127.0.0.1:${ready.port}`;
});

afterAll(async () => {
  const proc = child;
  if (proc?.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    process.kill(proc.pid, 'SIGTERM');
    const timer = setTimeout(killChild, 5000);
    await exited;
    clearTimeout(timer);
  }
  process.off('exit', killChild);
  await cluster?.stop();
});

/** Runs failing.ts (FAIL=mode) to its end; resolves to its output and exit code. */
function runFailing(mode: 'init' | 'build'): Promise<{ stdout: string; code: number | null; signal: NodeJS.Signals | null }> {
  const proc = spawn(process.execPath, [tsxCli, 'failing.ts'], {
    cwd: here,
    env: { ...process.env, GRID_ENDPOINTS: cluster!.endpoints.join(','), FAIL: mode, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let err = '';
  proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    // A safety net, not a measurement: a process kept alive by an open client never exits.
    const timer = setTimeout(() => {
      if (proc.pid !== undefined) process.kill(proc.pid, 'SIGKILL');
      reject(new Error(`failing.ts (${mode}) still running 30 s after start (output: ${stdout}${err})`));
    }, 30_000);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, code, signal });
    });
  });
}

describe('@gridlink/nest on Nest 11', () => {
  it('a startup failing after the client connected closes it: the process ends by itself (onModuleInit throws)', async () => {
    const r = await runFailing('init');
    expect(r.stdout).toContain('FAILED init failed');
    expect([r.code, r.signal]).toEqual([0, null]);
  });

  it('a startup failing after the client connected closes it: the process ends by itself (a provider fails to build)', async () => {
    const r = await runFailing('build');
    expect(r.stdout).toContain('FAILED constructor failed');
    expect([r.code, r.signal]).toEqual([0, null]);
  });

  it('really runs on @nestjs/core and @nestjs/common 11.x, through the injected adapter copy', () => {
    expect(ready.nestCore).toMatch(/^11\./);
    expect(ready.nestCommon).toMatch(/^11\./);
    expect(ready.nestCoreSeenByAdapter).toMatch(/^11\./);
    expect(ready.cjsBuildLoads).toBe(true);
    expect(ready.gridlinkNest).toContain('node_modules/.pnpm/@gridlink+nest@file+packages+nest_@nestjs+common@11.');
  });

  it('connects the module to the grid and reports it healthy', async () => {
    const h = await getJson<{ grid: { status: string; connectedNodes: number; knownNodes: number } }>('/health');
    expect(h.grid.status).toBe('up');
    expect(h.grid.connectedNodes).toBeGreaterThan(0);
    expect(h.grid.knownNodes).toBe(2);
  });

  it('runs the handler once for two concurrent identical requests, then replays', async () => {
    const key = `nest11-concurrent-${Date.now()}`;
    const { runs: before } = await getJson<{ runs: number }>('/runs');
    expect((await post('/hold', {})).status).toBe(200);
    const headers = { 'idempotency-key': key, 'x-hold': '1' };
    const first = post('/orders', { item: 'book' }, headers);
    let second: Promise<{ status: number; headers: Headers; body: Buffer }> | undefined;
    try {
      // The first request holds the key (its handler has run) before the duplicate is sent.
      await waitFor(async () => (await getJson<{ runs: number }>('/runs')).runs === before + 1, 5000, 'first handler run');
      second = post('/orders', { item: 'book' }, headers);
      const dup = await second;
      expect(dup.status).toBe(409);
      expect(dup.headers.get('retry-after')).toBe('1');
    } finally {
      await post('/release', {});
    }
    const a = await first;
    expect(a.status).toBe(201);
    expect(JSON.parse(a.body.toString())).toMatchObject({ run: before + 1, item: 'book' });

    const replay = await post('/orders', { item: 'book' }, { 'idempotency-key': key });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(Buffer.compare(replay.body, a.body)).toBe(0);
    expect((await getJson<{ runs: number }>('/runs')).runs).toBe(before + 1);
  });

  it('answers 422 for the same key with another payload and 400 without a key', async () => {
    const key = `nest11-mismatch-${Date.now()}`;
    expect((await post('/orders', { item: 'a' }, { 'idempotency-key': key })).status).toBe(201);
    const r = await post('/orders', { item: 'b' }, { 'idempotency-key': key });
    expect(r.status).toBe(422);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect((await post('/orders', { item: 'a' })).status).toBe(400);
  });
});
