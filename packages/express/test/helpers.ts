import type { AddressInfo } from 'node:net';
import { Server, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { expect } from 'vitest';

export interface Reply {
  status: number;
  headers: Headers;
  body: Buffer;
}

export async function post(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const r = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}

/**
 * A POST of `{}` through node:http: no redirect following, no decompression — the bytes as sent;
 * no Accept-Encoding unless given (fetch would add one and decode the answer).
 */
export function rawPost(base: string, path: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(base + path);
    const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST', headers: { 'content-type': 'application/json', ...headers } });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end('{}');
  });
}

export function listen(app: { listen(port: number, host: string, cb: () => void): Server }): Promise<{ server: Server; base: string }> {
  return new Promise((resolve) => {
    const server = app.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, base: `http://127.0.0.1:${port}` });
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/**
 * What a test file's afterAll tears down: an HTTP server (closed with its connections), a grid
 * client or gridlink handle (`close()`), a cluster (`stop()`); undefined when never made.
 */
export type Teardown = Server | { close(): Promise<unknown> } | { stop(): Promise<unknown> } | null | undefined;

/**
 * Tears down what a test file started, one after the other in the order given (the HTTP servers,
 * then the clients of the grid, then the cluster), skipping what was never made (a beforeAll that
 * failed part way) and going on past a failure: the cluster is stopped even when a server or
 * client would not close. Rejects at the end with the first failure.
 */
export async function teardown(...items: Teardown[]): Promise<void> {
  const failures: unknown[] = [];
  for (const item of items) {
    if (item === null || item === undefined) continue;
    try {
      if (item instanceof Server) await closeServer(item);
      else if ('stop' in item) await item.stop();
      else await item.close();
    } catch (e) {
      failures.push(e);
    }
  }
  if (failures.length > 0) throw failures[0];
}

/** Polls `cond` until it holds or the deadline passes. */
export async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A promise with its resolve function exposed, to hold a handler until the test lets it go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

/** What the abort check needs of an embedded grid (a LocalCluster): its nodes, hung and resumed. */
export interface HangableCluster {
  readonly nodeIds: string[];
  hang(id: string): void;
  resume(id: string): void;
}

/**
 * A client aborts its request while the key is being taken (every grid node hung, so the
 * adapter's first grid operation waits): once the grid answers again, the handler must not
 * run for it, and the key must be free, so the same request sent again runs the handler (a 201,
 * not a replay of an answer no one received). `runs()` counts the handler runs of POST /orders;
 * `server` is the app's HTTP server (Express, or Nest's on either platform).
 */
export async function expectAbortWhileTakingKeyRunsNothing(t: { server: Server; base: string; cluster: HangableCluster; runs: () => number; key: string }): Promise<void> {
  const server = t.server;
  const closed = new Promise<void>((resolve) => {
    server.once('request', (req: IncomingMessage) => {
      if (req.socket.destroyed) resolve();
      else req.socket.once('close', () => resolve());
    });
  });
  const before = t.runs();
  const ids = t.cluster.nodeIds;
  for (const id of ids) t.cluster.hang(id);
  try {
    const ac = new AbortController();
    const pending = fetch(`${t.base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': t.key },
      body: JSON.stringify({ item: 'gone' }),
      signal: ac.signal,
    }).catch((e: unknown) => e);
    // Aborted once the app has the request (its body sent with it), while the grid cannot answer.
    await new Promise<void>((resolve) => server.once('request', () => resolve()));
    ac.abort();
    await pending;
    await closed;
  } finally {
    for (const id of ids) t.cluster.resume(id);
  }
  let again: Awaited<ReturnType<typeof post>> | undefined;
  await waitFor(async () => {
    const r = await post(t.base, '/orders', { item: 'gone' }, { 'idempotency-key': t.key });
    if (r.status === 409) return false;
    again = r;
    return true;
  }, 10_000, 'the key to be freed after the abort');
  expect(again!.status).toBe(201);
  expect(again!.headers.get('idempotent-replayed')).toBeNull();
  expect(t.runs()).toBe(before + 1);
}
