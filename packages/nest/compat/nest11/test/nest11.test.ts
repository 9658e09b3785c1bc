/**
 * @gridlink/nest on Nest 11: real Nest 11 apps (child processes started from this package's folder,
 * where @nestjs/* and the injected copy of @gridlink/nest resolve to 11.x) on both HTTP platforms
 * (@nestjs/platform-express and @nestjs/platform-fastify 11) listening on 127.0.0.1, against an
 * embedded LocalCluster in this process. Needs the built dist (`pnpm build`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';

const here = fileURLToPath(new URL('..', import.meta.url));
// tsx as a loader of the app's own process (not tsx's CLI, which runs the app in a grandchild that a
// SIGKILL of the CLI would leave running): the pid this test ends is the app's.
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

interface Ready {
  port: number;
  platform: string;
  adapter: string;
  platformVersion: string;
  nestCore: string;
  nestCommon: string;
  nestCoreSeenByAdapter: string;
  gridlinkNest: string;
  cjsBuildLoads: boolean;
  createWrappers: number;
}

interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
}

type Platform = 'express' | 'fastify';

let cluster: LocalCluster | undefined;
const children = new Set<ChildProcess>();

function kill(proc: ChildProcess): void {
  if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
function killChildren(): void {
  for (const c of children) kill(c);
}
process.on('exit', killChildren);

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts app.ts on `platform` as a child process; resolves once it printed READY. */
async function startApp(platform: Platform): Promise<{ proc: ChildProcess; ready: Ready; stderr: string[] }> {
  const proc = spawn(process.execPath, ['--import', tsxLoader, 'app.ts'], {
    cwd: here,
    env: { ...process.env, GRID_ENDPOINTS: cluster!.endpoints.join(','), PLATFORM: platform, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  const stderr: string[] = [];
  proc.stderr.on('data', (d: Buffer) => stderr.push(d.toString()));
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Nest 11 app (${platform}) not ready in 20 s: ${stderr.join('')}`)), 20_000);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`Nest 11 app (${platform}) exited (${code ?? signal}) before READY: ${stderr.join('')}`));
    });
    createInterface({ input: proc.stdout }).on('line', (line) => {
      if (!line.startsWith('READY ')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line.slice(6)) as Ready);
    });
  });
  return { proc, ready, stderr };
}

/** Ends a child app with SIGTERM (its shutdown hooks close the client), SIGKILL after 5 s. */
async function stopApp(proc: ChildProcess | undefined): Promise<void> {
  if (proc === undefined) return;
  if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    process.kill(proc.pid, 'SIGTERM');
    const timer = setTimeout(() => kill(proc), 5000);
    await exited;
    clearTimeout(timer);
  }
  children.delete(proc);
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, partitions: 64 });
});

afterAll(async () => {
  await Promise.all([...children].map(stopApp));
  process.off('exit', killChildren);
  await cluster?.stop();
});

/** Runs failing.ts (FAIL=mode) to its end; resolves to its output and exit code. */
function runFailing(mode: 'init' | 'build' | 'testing' | 'microservice' | 'microservice-build' | 'sse-app-interceptor' | 'sse-use-global'): Promise<{ stdout: string; code: number | null; signal: NodeJS.Signals | null }> {
  const proc = spawn(process.execPath, ['--import', tsxLoader, 'failing.ts'], {
    cwd: here,
    env: { ...process.env, GRID_ENDPOINTS: cluster!.endpoints.join(','), FAIL: mode, NODE_OPTIONS: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
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
      children.delete(proc);
      resolve({ stdout, code, signal });
    });
  });
}

describe('@gridlink/nest on Nest 11: a failed startup', () => {
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

  it('@nestjs/testing 11: a compile() failing after the client connected closes it: the process ends by itself', async () => {
    const r = await runFailing('testing');
    expect(r.stdout).toContain('FAILED constructor failed');
    expect([r.code, r.signal]).toEqual([0, null]);
  });

  it('@nestjs/microservices 11 (TCP on 127.0.0.1): listen() failing in onModuleInit, and createMicroservice() failing to build a provider, close the client: the process ends by itself', async () => {
    const [hooks, build] = await Promise.all([runFailing('microservice'), runFailing('microservice-build')]);
    expect(hooks.stdout).toContain('FAILED init failed');
    expect([hooks.code, hooks.signal]).toEqual([0, null]);
    expect(build.stdout).toContain('FAILED constructor failed');
    expect([build.code, build.signal]).toEqual([0, null]);
  });

  it('a global IdempotencyInterceptor (APP_INTERCEPTOR, useGlobalInterceptors) on an @Sse() route whose method it takes: init() / listen() refuse it, naming the route, and the client is closed', async () => {
    const [provider, useGlobal] = await Promise.all([runFailing('sse-app-interceptor'), runFailing('sse-use-global')]);
    expect(provider.stdout).toMatch(/FAILED invalid dedupe option "methods": includes POST, the method of this @Sse\(\) route, so the global IdempotencyInterceptor would de-duplicate it .* — route Events\.post \(global IdempotencyInterceptor\)/);
    expect([provider.code, provider.signal]).toEqual([0, null]);
    expect(useGlobal.stdout).toMatch(/FAILED invalid dedupe option "methods": includes GET, .* — route Events\.get \(global IdempotencyInterceptor\)/);
    expect([useGlobal.code, useGlobal.signal]).toEqual([0, null]);
  });

});

/**
 * The same core cases on both HTTP platforms of Nest 11: a fresh request, a concurrent duplicate
 * (409), the replay byte for byte, 422 (and 400), a handler that throws frees the key.
 */
describe.each<Platform>(['express', 'fastify'])('@gridlink/nest on Nest 11 with platform-%s', (platform) => {
  let proc: ChildProcess | undefined;
  let ready: Ready;
  let stderr: string[] = [];
  let base = '';

  beforeAll(async () => {
    const started = await startApp(platform);
    proc = started.proc;
    ready = started.ready;
    stderr = started.stderr;
    base = `http://127.0.0.1:${ready.port}`;
  });

  afterAll(async () => {
    await stopApp(proc);
  });

  async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    const r = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
  }

  async function getJson<T>(path: string): Promise<T> {
    const r = await fetch(base + path);
    expect(r.status).toBe(200);
    return (await r.json()) as T;
  }

  const runs = async (): Promise<number> => (await getJson<{ runs: number }>('/runs')).runs;

  it(`really runs on @nestjs/core and @nestjs/common 11.x and @nestjs/platform-${platform} 11.x, through the injected adapter copy`, () => {
    expect(ready.platform).toBe(platform);
    expect(ready.adapter).toBe(platform === 'fastify' ? 'FastifyAdapter' : 'ExpressAdapter');
    expect(ready.platformVersion).toMatch(/^11\./);
    expect(ready.nestCore).toMatch(/^11\./);
    expect(ready.nestCommon).toMatch(/^11\./);
    expect(ready.nestCoreSeenByAdapter).toMatch(/^11\./);
    expect(ready.cjsBuildLoads).toBe(true);
    // The ESM and the CJS build are both loaded: NestFactory.create is still wrapped once.
    expect(ready.createWrappers).toBe(1);
    expect(ready.gridlinkNest).toContain('node_modules/.pnpm/@gridlink+nest@file+packages+nest_@nestjs+common@11.');
  });

  it('connects the module to the grid and reports it healthy', async () => {
    const h = await getJson<{ grid: { status: string; connectedNodes: number; knownNodes: number } }>('/health');
    expect(h.grid.status).toBe('up');
    expect(h.grid.connectedNodes).toBeGreaterThan(0);
    expect(h.grid.knownNodes).toBe(2);
  });

  it('runs a fresh request once; a duplicate gets the stored response byte for byte, marked', async () => {
    const key = `nest11-${platform}-fresh-${Date.now()}`;
    const before = await runs();
    const a = await post('/orders', { item: 'pen' }, { 'idempotency-key': key });
    expect(a.status).toBe(201);
    expect(a.headers.get('idempotent-replayed')).toBeNull();
    expect(JSON.parse(a.body.toString())).toMatchObject({ run: before + 1, item: 'pen' });
    const b = await post('/orders', { item: 'pen' }, { 'idempotency-key': key });
    expect(b.status).toBe(201);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect(b.headers.get('content-type')).toBe(a.headers.get('content-type'));
    expect(Buffer.compare(b.body, a.body)).toBe(0);
    expect(await runs()).toBe(before + 1);
  });

  it('runs the handler once for two concurrent identical requests (409 for the second), then replays', async () => {
    const key = `nest11-${platform}-concurrent-${Date.now()}`;
    const before = await runs();
    expect((await post('/hold', {})).status).toBe(200);
    const headers = { 'idempotency-key': key, 'x-hold': '1' };
    const first = post('/orders', { item: 'book' }, headers);
    try {
      // The first request holds the key (its handler has run) before the duplicate is sent.
      await waitFor(async () => (await runs()) === before + 1, 5000, 'first handler run');
      const dup = await post('/orders', { item: 'book' }, headers);
      expect(dup.status).toBe(409);
      expect(dup.headers.get('retry-after')).toBe('1');
      expect(dup.headers.get('content-type')).toContain('application/problem+json');
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
    expect(await runs()).toBe(before + 1);
  });

  it('answers 422 for the same key with another payload and 400 without a key', async () => {
    const key = `nest11-${platform}-mismatch-${Date.now()}`;
    expect((await post('/orders', { item: 'a' }, { 'idempotency-key': key })).status).toBe(201);
    const r = await post('/orders', { item: 'b' }, { 'idempotency-key': key });
    expect(r.status).toBe(422);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(JSON.parse(r.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:idempotency-key-reused', status: 422 });
    expect((await post('/orders', { item: 'a' })).status).toBe(400);
  });

  it('an IdempotencyInterceptor given to useGlobalInterceptors() after init(), on a request-scoped POST @Sse() route: a 500 problem+json naming the route, logged once, no lock, the stream never runs', async () => {
    const refusal = /"methods": includes POST, the method of this @Sse\(\) route, so the global IdempotencyInterceptor would de-duplicate it .* — route LateSseController\.post \(global IdempotencyInterceptor\).*IdempotencyInterceptor cannot apply to an @Sse\(\) route/;
    for (let i = 0; i < 2; i++) {
      // The same key twice: a lock taken by the first would answer the second 409.
      const ac = new AbortController();
      try {
        const r = await fetch(`${base}/late-sse/post`, { method: 'POST', headers: { 'idempotency-key': `nest11-${platform}-late-sse` }, signal: ac.signal });
        expect(r.status).toBe(500);
        expect(r.headers.get('content-type')).toBe('application/problem+json');
        expect(((await r.json()) as { detail: string }).detail).toMatch(refusal);
      } finally {
        ac.abort();
      }
    }
    expect((await getJson<{ streams: number }>('/runs')).streams).toBe(0);
    expect(stderr.join('').split('\n').filter((line) => refusal.test(line))).toHaveLength(1);
  });

  it('frees the key when the handler throws: a retry with the same key runs again', async () => {
    const key = `nest11-${platform}-boom-${Date.now()}`;
    const before = await runs();
    expect((await post('/orders/boom', {}, { 'idempotency-key': key })).status).toBe(500);
    expect(await runs()).toBe(before + 1);
    // Freeing the key follows the 500; the retry may still find it held (409) for a moment.
    await waitFor(async () => (await post('/orders/boom', {}, { 'idempotency-key': key })).status === 500, 5000, 'the retry to run');
    expect(await runs()).toBe(before + 2);
  });
});
