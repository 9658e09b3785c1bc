/**
 * dedupe() on real Express 5 and Express 4 apps listening on 127.0.0.1, with an embedded grid:
 * replay byte-for-byte, 422, 400, freed keys on throw/abort/5xx, concurrent duplicates on one
 * instance, bad keys and bodies, readiness and close on server close.
 */
import type { Server } from 'node:http';
import { request as httpRequest } from 'node:http';
import express5 from 'express';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import { closeServer, expectAbortWhileTakingKeyRunsNothing, gate, listen, post, teardown, waitFor } from './helpers.js';


let cluster: LocalCluster;
let probe: GridClient;

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, partitions: 64 });
  probe = await GridClient.connect({ endpoints: cluster.endpoints });
});
afterAll(() => teardown(probe, cluster));

/** Whether the dedupe lock for this key hash is free (a probe client can take and drop it). */
async function lockFree(keyHash: string): Promise<boolean> {
  const h = await probe.lock(`dedupe:gridlink-idempotency:${keyHash}`).tryAcquire({ leaseMs: 1000 });
  if (h === null) return false;
  await h.release();
  return true;
}

for (const [label, factory] of [
  ['Express 5', express5],
  ['Express 4', express4],
] as const) {
  describe(label, () => {
    let server: Server;
    let base: string;
    let grid: GridlinkHandle;
    let runs = 0;
    const tokens: number[] = [];
    const keyHashes: string[] = [];
    let hold = gate();
    let holdNext = false;
    let started = gate();
    let ordersMw: ReturnType<typeof dedupe>;

    beforeAll(async () => {
      const app = factory();
      app.use(express5.json({ limit: '64kb' }) as never);
      grid = gridlink(app as never, { endpoints: cluster.endpoints });
      await grid.ready;
      ordersMw = dedupe({ required: true, leaseMs: 2000 });
      app.post('/orders', ordersMw as never, (req: express5.Request, res: express5.Response) => {
        runs++;
        tokens.push(req.idempotency!.fencingToken);
        keyHashes.push(req.idempotency!.keyHash);
        const body = req.body as { item?: string };
        const finish = (): void => {
          res.status(201).setHeader('location', `/orders/${runs}`);
          res.json({ id: runs, item: body.item, at: process.hrtime.bigint().toString() });
        };
        if (holdNext) {
          holdNext = false;
          started.open();
          void hold.promise.then(finish);
        } else finish();
      });
      app.post('/boom', dedupe() as never, () => {
        runs++;
        throw new Error('handler failed');
      });
      app.post('/fail5xx', dedupe() as never, (_req: express5.Request, res: express5.Response) => {
        runs++;
        res.status(502).json({ upstream: 'down' });
      });
      app.post('/big', dedupe({ maxStoredBodyBytes: 1024 }) as never, (_req: express5.Request, res: express5.Response) => {
        runs++;
        res.status(201).type('text/plain').send('x'.repeat(4096));
      });
      app.post('/open', dedupe() as never, (req: express5.Request, res: express5.Response) => {
        res.json({ deduped: req.idempotency !== undefined });
      });
      app.post('/fp', dedupe({ header: false, fingerprint: (req: express5.Request) => [(req.body as { user: string }).user, (req.body as { amount: number }).amount] }) as never,
        (req: express5.Request, res: express5.Response) => {
          runs++;
          res.json({ n: runs });
        });
      // Express 4 and 5 both hand errors to a 4-argument handler.
      app.use((err: Error & { status?: number }, _req: express5.Request, res: express5.Response, _next: express5.NextFunction) => {
        res.status(err.status ?? 500).json({ error: err.message });
      });
      ({ server, base } = await listen(app as never));
    });
    afterAll(() => teardown(server));

    it('runs the handler once and replays the stored response byte for byte, marked', async () => {
      const key = `${label}-replay-${Date.now()}`;
      const before = runs;
      const first = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': key });
      expect(first.status).toBe(201);
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      const seen: unknown[] = [];
      const onDuplicate = (e: unknown): void => void seen.push(e);
      ordersMw.deduper.on('duplicate', onDuplicate);
      const ops = grid.client!.stats().operations;
      const again = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': key, 'user-agent': 'retrying-client/1.0' });
      ordersMw.deduper.off('duplicate', onDuplicate);
      // A replay is one grid read: the stored response comes back without taking the lock (taking
      // and releasing it was two operations).
      expect(grid.client!.stats().operations - ops).toBe(1);
      expect(await lockFree(keyHashes[keyHashes.length - 1]!)).toBe(true);
      // The event names the client, so misbehaving ones can be found.
      expect(seen).toEqual([
        expect.objectContaining({ outcome: 'replayed', method: 'POST', route: '/orders', userAgent: 'retrying-client/1.0', keyHash: keyHashes[keyHashes.length - 1] }),
      ]);
      expect(String((seen[0] as { clientAddress: string }).clientAddress)).toContain('127.0.0.1');
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('location')).toBe(first.headers.get('location'));
      expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
      expect(Buffer.compare(again.body, first.body)).toBe(0);
      expect(runs).toBe(before + 1);
    });

    it('runs the handler when something that is not a stored response sits under the key, then replays its response', async () => {
      const key = `${label}-foreign-${Date.now()}`;
      const before = runs;
      expect((await post(base, '/orders', { item: 'x' }, { 'idempotency-key': key })).status).toBe(201);
      const name = `dedupe:gridlink-idempotency:${keyHashes[keyHashes.length - 1]!}`;
      // Another writer puts something else under the record's name.
      await probe.cache<string, unknown>('gridlink-idempotency').put(name, 'not a stored response');
      const second = await post(base, '/orders', { item: 'x' }, { 'idempotency-key': key });
      expect(second.status).toBe(201);
      expect(second.headers.get('idempotent-replayed')).toBeNull();
      expect(runs).toBe(before + 2);
      // Its response replaced the foreign value: the next duplicate is a replay of it.
      const third = await post(base, '/orders', { item: 'x' }, { 'idempotency-key': key });
      expect(third.headers.get('idempotent-replayed')).toBe('true');
      expect(Buffer.compare(third.body, second.body)).toBe(0);
      expect(runs).toBe(before + 2);
      expect(await lockFree(keyHashes[keyHashes.length - 1]!)).toBe(true);
    });

    it('answers 422 when the key is reused with a different payload', async () => {
      const key = `${label}-mismatch-${Date.now()}`;
      expect((await post(base, '/orders', { item: 'a' }, { 'idempotency-key': key })).status).toBe(201);
      const r = await post(base, '/orders', { item: 'b' }, { 'idempotency-key': key });
      expect(r.status).toBe(422);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
      expect(JSON.parse(r.body.toString())).toMatchObject({ status: 422, type: 'urn:gridlink:problem:idempotency-key-reused' });
    });

    it('answers 400 when the key is required and missing, and passes through where it is optional', async () => {
      const r = await post(base, '/orders', { item: 'a' });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:missing-idempotency-key' });
      const open = await post(base, '/open', {});
      expect(JSON.parse(open.body.toString())).toEqual({ deduped: false });
    });

    it('rejects oversized, empty and non-ASCII keys with 400 and takes no lock', async () => {
      const before = runs;
      for (const bad of ['x'.repeat(256), '""', '"a\\qb"']) {
        const r = await post(base, '/orders', { item: 'a' }, { 'idempotency-key': bad });
        expect(r.status, bad).toBe(400);
        expect(JSON.parse(r.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:invalid-idempotency-key' });
      }
      // A non-ASCII byte in a header value (fetch refuses to send one, so use node:http).
      const status = await new Promise<number>((resolve, reject) => {
        const u = new URL(base);
        const req = httpRequest({ host: u.hostname, port: u.port, path: '/orders', method: 'POST', headers: { 'content-type': 'application/json' } });
        req.setHeader('idempotency-key', Buffer.from('caf\u00e9', 'latin1').toString('latin1'));
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end('{}');
      });
      expect(status).toBe(400);
      expect(runs).toBe(before);
    });

    it('accepts a quoted key (sf-string) as the same key as its unquoted form', async () => {
      const key = `${label}-quoted-${Date.now()}`;
      const a = await post(base, '/orders', { item: 'q' }, { 'idempotency-key': `"${key}"` });
      const b = await post(base, '/orders', { item: 'q' }, { 'idempotency-key': key });
      expect(a.status).toBe(201);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
    });

    it('answers 413 for a huge body before any key is taken', async () => {
      const r = await post(base, '/orders', { item: 'x'.repeat(200_000) }, { 'idempotency-key': `${label}-huge` });
      expect(r.status).toBe(413);
      // The same key is free for a normal request.
      expect((await post(base, '/orders', { item: 'small' }, { 'idempotency-key': `${label}-huge` })).status).toBe(201);
    });

    it('rejects a concurrent duplicate on the same instance at once with 409 and Retry-After', async () => {
      const key = `${label}-concurrent-${Date.now()}`;
      hold = gate();
      started = gate();
      holdNext = true;
      const first = post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
      try {
        await started.promise;
        // Needs locks to exclude each other within one GridClient (per-handle ownership).
        const dup = await post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
        expect(dup.status).toBe(409);
        expect(dup.headers.get('retry-after')).toBe('1');
        expect(dup.headers.get('content-type')).toContain('application/problem+json');
        expect(JSON.parse(dup.body.toString())).toMatchObject({ status: 409, type: 'urn:gridlink:problem:request-in-progress' });
      } finally {
        hold.open();
      }
      expect((await first).status).toBe(201);
      const hash = keyHashes[keyHashes.length - 1]!;
      // After completion the duplicate gets the replay.
      await waitFor(async () => (await post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key })).headers.get('idempotent-replayed') === 'true', 5000, 'replay');
      expect(hash.length).toBeGreaterThan(20);
    });

    it('frees the key when the handler throws or answers 5xx, so a retry runs again', async () => {
      for (const path of ['/boom', '/fail5xx']) {
        const key = `${label}-${path}-${Date.now()}`;
        const before = runs;
        const a = await post(base, path, {}, { 'idempotency-key': key });
        expect(a.status).toBeGreaterThanOrEqual(500);
        // The lock is freed after the response is sent; poll until the retry runs the handler.
        await waitFor(async () => {
          const r = await post(base, path, {}, { 'idempotency-key': key });
          return r.status >= 500 && r.headers.get('idempotent-replayed') === null && runs >= before + 2;
        }, 5000, 'retry to run again');
      }
    });

    it('frees the key when the client aborts the connection', async () => {
      const key = `${label}-abort-${Date.now()}`;
      hold = gate();
      started = gate();
      holdNext = true;
      const ac = new AbortController();
      const pending = fetch(`${base}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ item: 'abandoned' }),
        signal: ac.signal,
      }).catch((e: unknown) => e);
      await started.promise;
      const hash = keyHashes[keyHashes.length - 1]!;
      expect(await lockFree(hash)).toBe(false);
      ac.abort();
      await pending;
      await waitFor(() => lockFree(hash), 5000, 'lock freed after abort');
      hold.open();
    });

    it('a client that aborts while the key is being taken: the handler does not run, and the key is free', async () => {
      await expectAbortWhileTakingKeyRunsNothing({ server, base, cluster, runs: () => runs, key: `${label}-abort-early-${Date.now()}` });
    });

    it('does not keep a response body above maxStoredBodyBytes: the replay has the status and says the body was omitted', async () => {
      const key = `${label}-big-${Date.now()}`;
      const before = runs;
      const a = await post(base, '/big', {}, { 'idempotency-key': key });
      expect(a.status).toBe(201);
      expect(a.body.length).toBe(4096);
      const b = await post(base, '/big', {}, { 'idempotency-key': key });
      expect(b.status).toBe(201);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(b.headers.get('idempotent-body-omitted')).toBe('true');
      expect(b.body.length).toBe(0);
      expect(runs).toBe(before + 1);
    });

    it('de-duplicates by a fingerprint of chosen body fields when there is no header', async () => {
      const user = `${label}-u-${Date.now()}`;
      const a = await post(base, '/fp', { user, amount: 5, note: 'first' });
      const b = await post(base, '/fp', { user, amount: 5, note: 'second' });
      const c = await post(base, '/fp', { user, amount: 6 });
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(Buffer.compare(a.body, b.body)).toBe(0);
      expect(c.headers.get('idempotent-replayed')).toBeNull();
    });

    it('leaves no lock behind after a flood of concurrent requests with many keys', async () => {
      const keys = Array.from({ length: 20 }, (_, i) => `${label}-flood-${Date.now()}-${i}`);
      const replies = await Promise.all(keys.flatMap((k) => [0, 1, 2].map(() => post(base, '/orders', { item: k }, { 'idempotency-key': k }))));
      for (const r of replies) expect([201, 409]).toContain(r.status);
      await waitFor(() => ordersMw.deduper.inFlight === 0, 5000, 'every key released');
      await waitFor(async () => {
        const all = await Promise.all(keys.map((k) => post(base, '/orders', { item: k }, { 'idempotency-key': k })));
        return all.every((r) => r.status === 201 && r.headers.get('idempotent-replayed') === 'true');
      }, 5000, 'every key replayable');
    });

    it('exposes req.grid and app.locals.grid, and readiness', async () => {
      const r = await fetch(`${base}/health/ready`);
      expect(r.status).toBe(200);
      expect(await r.json()).toMatchObject({ status: 'ready' });
      expect(grid.client).toBeInstanceOf(GridClient);
      expect(grid.isReady()).toBe(true);
    });
  });
}

describe('gridlink() lifecycle', () => {
  it('closes the client it owns when the HTTP server closes', async () => {
    const app = express5();
    const grid = gridlink(app, { endpoints: cluster.endpoints });
    const client = await grid.ready;
    let seen: unknown;
    app.get('/x', (req, res) => {
      seen = req.grid;
      res.end('ok');
    });
    const { server, base } = await listen(app);
    await fetch(`${base}/x`);
    expect(seen).toBe(client);
    await closeServer(server);
    await waitFor(() => !grid.isReady(), 5000, 'client closed');
    expect(() => client.cache('x')).toThrow();
  });

  for (const [label, make] of [
    ['Express 4', express4],
    ['Express 5', express5],
  ] as const) {
    it(`${label}: req.grid in routes registered before gridlink(), in mounted apps, and assignable; undefined until connected`, async () => {
      const app = make() as unknown as express5.Express;
      const seen: Record<string, unknown> = {};
      app.get('/early', (req, res) => {
        seen.early = req.grid;
        res.end('ok');
      });
      const sub = make() as unknown as express5.Express;
      sub.get('/inner', (req, res) => {
        seen.inner = req.grid;
        res.end('ok');
      });
      app.use('/sub', sub);
      const grid = gridlink(app, { endpoints: cluster.endpoints });
      // Before the client connects, as a middleware that sets it once connected would leave it.
      const { server, base } = await listen(app);
      const other = { fake: true };
      app.get('/late', (req, res) => {
        seen.beforeAssign = req.grid;
        req.grid = other as unknown as GridClient;
        seen.assigned = req.grid;
        res.end('ok');
      });
      try {
        if (grid.client === undefined) {
          await fetch(`${base}/early`);
          expect(seen.early).toBeUndefined();
        }
        const client = await grid.ready;
        for (const path of ['/early', '/sub/inner', '/late']) expect((await fetch(`${base}${path}`)).status).toBe(200);
        expect(seen.early).toBe(client);
        expect(seen.inner).toBe(client);
        expect(seen.beforeAssign).toBe(client);
        expect(seen.assigned).toBe(other);
        // The assignment stayed on that one request.
        await fetch(`${base}/early`);
        expect(seen.early).toBe(client);
      } finally {
        await closeServer(server);
        await grid.close();
      }
    });
  }

  it('reports 503 on /health/ready while the grid cannot be reached', async () => {
    const app = express5();
    // `health: {}` is the default path, as its type says (it used to be refused for want of a path).
    const grid = gridlink(app, { endpoints: ['127.0.0.1:1'], connectTimeout: 200 }, { reconnectDelayMs: 50, health: {} });
    const { server, base } = await listen(app);
    const r = await fetch(`${base}/health/ready`);
    expect(r.status).toBe(503);
    await closeServer(server);
    await grid.close();
    await expect(grid.ready).rejects.toThrow('closed');
  });

  it('validates its arguments with field-named errors', () => {
    expect(() => gridlink({} as never, {})).toThrow(/"app"/);
    // Refused before any connection attempt: req.grid goes on the app's request prototype.
    expect(() => gridlink(Object.assign(() => undefined, { use: () => undefined }) as never, { endpoints: ['127.0.0.1:1'] })).toThrow(/request prototype/);
    expect(() => gridlink(express5(), {}, { health: { path: 'nope' } })).toThrow(/"health\.path": must be a path starting with "\/", got "nope"/);
    expect(() => gridlink(express5(), {}, { health: true } as never)).toThrow(/"health"/);
    expect(() => gridlink(express5(), {}, { health: { path: null } } as never)).toThrow(/"health\.path": must be a path starting with "\/", got null/);
    // null is not "left out": refused with the value it got (it used to be taken as 1000).
    expect(() => gridlink(express5(), {}, { reconnectDelayMs: null } as never)).toThrow(/"reconnectDelayMs": must be an integer in \[1, 2147483647\], got object/);
    expect(() => dedupe({ leaseMs: -1 })).toThrow(/leaseMs/);
    expect(() => dedupe({ failMode: 'sometimes' as never })).toThrow(/failMode/);
    // Checked before anything is connected or registered.
    expect(() => dedupe(null as never)).toThrow(/"options"/);
    expect(() => gridlink(express5(), {}, { reconnectDelayMs: 2 ** 31 })).toThrow(/reconnectDelayMs/);
    expect(() => gridlink(express5(), {}, { reconnectDelay: 50 } as never)).toThrow(/"reconnectDelay"/);
    expect(() => gridlink(express5(), {}, { health: null } as never)).toThrow(/"health"/);
    expect(() => gridlink(express5(), {}, { health: { pth: '/x' } } as never)).toThrow(/health\.pth/);
    expect(() => gridlink(express5(), {}, { onError: 'log' } as never)).toThrow(/onError/);
    expect(() => gridlink(express5(), {}, null as never)).toThrow(/"options"/);
    // Arrays are objects to typeof, not options objects: refused as the wrong type they are.
    expect(() => gridlink(express5(), { endpoints: ['127.0.0.1:1'] }, [] as never)).toThrow(/^invalid dedupe option "options": must be an object$/);
    expect(() => gridlink(express5(), { endpoints: ['127.0.0.1:1'] }, { health: [] } as never)).toThrow(/^invalid dedupe option "health": /);
    expect(() => dedupe([] as never)).toThrow(/^invalid dedupe option "options": must be an object$/);
    expect(() => dedupe({ logger: [] } as never)).toThrow(/^invalid dedupe option "logger": /);
    // The client config too, with the client's own checks: it used to fail every connection
    // attempt, retried for ever, ready never resolving.
    expect(() => gridlink(express5(), {})).toThrow(/^invalid dedupe option "clientConfig\.endpoints": /);
    expect(() => gridlink(express5(), { endpoints: ['grid-0:99999'] })).toThrow(/"clientConfig\.endpoints\[0\]"/);
    expect(() => gridlink(express5(), { endpoints: ['127.0.0.1:1'], connectTimeout: -1 })).toThrow(/"clientConfig\.connectTimeout"/);
  });
});

describe('dedupe() app-wide', () => {
  it('covers every mutating route, scopes keys by path, and lets GET through', async () => {
    const app = express5();
    app.use(express5.json());
    gridlink(app, await GridClient.connect({ endpoints: cluster.endpoints }));
    app.use(dedupe());
    let runs = 0;
    app.post('/items/:id', (req, res) => {
      runs++;
      res.status(201).json({ id: req.params.id, run: runs });
    });
    app.get('/items/:id', (req, res) => {
      res.json({ id: req.params.id, seen: req.idempotency !== undefined });
    });
    const { server, base } = await listen(app);
    try {
      const key = `app-wide-${Date.now()}`;
      const a = await post(base, '/items/1', {}, { 'idempotency-key': key });
      const b = await post(base, '/items/2', {}, { 'idempotency-key': key });
      const c = await post(base, '/items/1', {}, { 'idempotency-key': key });
      expect([a.status, b.status, c.status]).toEqual([201, 201, 201]);
      expect(b.headers.get('idempotent-replayed')).toBeNull();
      expect(c.headers.get('idempotent-replayed')).toBe('true');
      expect(runs).toBe(2);
      const g = await fetch(`${base}/items/1`, { headers: { 'idempotency-key': key } });
      expect(await g.json()).toEqual({ id: '1', seen: false });
    } finally {
      await closeServer(server);
      await (app.locals.grid as GridClient).close();
    }
  });
});
