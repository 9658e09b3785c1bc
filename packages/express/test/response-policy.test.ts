/**
 * What is sent, stored and replayed (ADR 0051), on a real Express 5 app on 127.0.0.1 with an
 * embedded grid: a handler that answers and then calls next() (or next(err)) keeps its answer;
 * a body the handler encoded keeps its Content-Encoding in the replay; the default storeStatus
 * (2xx, 3xx, 4xx but 408/425/429); no Content-Length on a replayed 204; dedupe() app-wide and on
 * the route at once.
 */
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import { brotliCompressSync, deflateRawSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import express from 'express';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { DEFAULT_REPLAY_HEADERS } from '@gridlink/dedupe';
import { dedupe } from '@gridlink/express';
import { listen, post, rawPost, teardown, waitFor } from './helpers.js';

let cluster: LocalCluster;
let client: GridClient;
let server: Server;
let base: string;
let server4: Server;
let base4: string;
let runs = 0;
const errorsSeen: string[] = [];
const lateWrites: (Error | null)[] = [];
let endCallbacks = 0;
/** Labels counted by the app-wide middleware, through a minimal prom-client look-alike. */
const labels: Record<string, string>[] = [];
const promLike = {
  Counter: class {
    inc(l: Record<string, string>): void {
      labels.push(l);
    }
  },
  register: { getSingleMetric: (): undefined => undefined },
};

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  client = await GridClient.connect({ endpoints: cluster.endpoints });
  const app = express();
  app.use(express.json());
  const mw = (): express.RequestHandler => dedupe({ client, metrics: false });
  app.post('/send-then-next', mw(), (_req, res, next) => {
    runs++;
    res.status(201).json({ n: runs });
    next(); // nothing else matches: Express's final handler answers 404 unless the answer above wins
  });
  app.post('/send-then-error', mw(), (_req, res, next) => {
    runs++;
    res.status(201).set('etag', `"e${runs}"`).json({ n: runs });
    next(new Error('failed after answering'));
  });
  app.post('/end-twice', mw(), (_req, res) => {
    runs++;
    res.status(201).json({ n: runs });
    res.write('late', (e) => lateWrites.push(e ?? null));
    res.end(() => void endCallbacks++);
  });
  app.post('/gzip-by-hand', mw(), (_req, res) => {
    runs++;
    res.status(201).type('application/json').setHeader('content-encoding', 'gzip');
    res.end(gzipSync(JSON.stringify({ n: runs })));
  });
  app.post('/gzip-writehead', mw(), (_req, res) => {
    runs++;
    res.writeHead(201, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip' });
    res.end(gzipSync(`run ${runs}`));
  });
  // The body JSON-encoded, then put through each coding of ?codings= in order (as stacked
  // compression would), with a strong ETag: what a compressor mounted after dedupe() hands it.
  // Vary: Origin set before dedupe() (as CORS middleware does): a replay keeps it beside its own.
  const varyOrigin: express.RequestHandler = (_req, res, next) => {
    res.setHeader('vary', 'Origin');
    next();
  };
  app.post('/encoded', varyOrigin, mw(), (req, res) => {
    runs++;
    const codings = (req.query.codings as string).split(',');
    let body: Buffer = Buffer.from(JSON.stringify({ n: runs, text: 'a body worth compressing '.repeat(20) }));
    for (const c of codings) body = ENCODERS[c]!(body);
    res.status(201).type('application/json').set('etag', `"v${runs}"`);
    res.setHeader('content-encoding', codings.map((c) => (c === 'raw-deflate' ? 'deflate' : c)).join(', '));
    res.end(body);
  });
  // A gzipped answer with digests of its bytes, which this route's replayHeaders keep.
  app.post('/digested', dedupe({ client, metrics: false, replayHeaders: [...DEFAULT_REPLAY_HEADERS, 'content-digest', 'repr-digest', 'content-md5'] }), (_req, res) => {
    runs++;
    const body = gzipSync(`digested ${runs}`);
    const sha = createHash('sha256').update(body).digest('base64');
    res.status(201).type('text/plain').setHeader('content-encoding', 'gzip');
    res.setHeader('content-digest', `sha-256=:${sha}:`);
    res.setHeader('repr-digest', `sha-256=:${sha}:`);
    res.setHeader('content-md5', createHash('md5').update(body).digest('base64'));
    res.end(body);
  });
  // 16 MiB of zeros, 16 KiB gzipped: stored (under 64 KiB), but far larger decoded.
  const bomb = gzipSync(Buffer.alloc(16 * 1024 * 1024));
  app.post('/bomb', dedupe({ client, metrics: false, maxStoredBodyBytes: 64 * 1024 }), (_req, res) => {
    runs++;
    res.status(201).type('application/json').setHeader('content-encoding', 'gzip');
    res.end(bomb);
  });
  app.post('/status/:code', mw(), (req, res) => {
    runs++;
    const code = Number(req.params.code);
    if (code >= 300 && code < 400) res.redirect(code, `/orders/${runs}`);
    else if (code === 204) res.status(204).end();
    else res.status(code).json({ n: runs });
  });
  const router = express.Router();
  router.use(dedupe({ client, metrics: false }));
  router.post('/both', dedupe({ client, metrics: false, required: true }), (_req, res) => {
    runs++;
    res.status(201).json({ n: runs });
  });
  app.use('/mounted', router);
  const items = express.Router();
  items.use(dedupe({ client, metrics: { client: promLike } }));
  items.post('/:id', (req, res) => {
    runs++;
    res.status(201).json({ id: req.params.id });
  });
  app.use('/items', items);
  // An error handler that does not look at res.headersSent, as many do.
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    errorsSeen.push(err.message);
    res.status(500).json({ error: err.message });
  });
  ({ server, base } = await listen(app));
  // The same two routes on Express 4 (finalhandler 1.x).
  const app4 = express4();
  app4.post('/send-then-next', dedupe({ client, metrics: false }) as never, (_req: express.Request, res: express.Response, next: express.NextFunction) => {
    runs++;
    res.status(201).json({ n: runs });
    next();
  });
  app4.post('/send-then-error', dedupe({ client, metrics: false }) as never, (_req: express.Request, res: express.Response, next: express.NextFunction) => {
    runs++;
    res.status(201).set('etag', `"e${runs}"`).json({ n: runs });
    next(new Error('failed after answering'));
  });
  app4.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    errorsSeen.push(err.message);
    res.status(500).json({ error: err.message });
  });
  ({ server: server4, base: base4 } = await listen(app4 as never));
});

afterAll(() => teardown(server, server4, client, cluster));

const key = (what: string): string => `${what}-${process.hrtime.bigint()}`;

/** Encoders of the /encoded route by ?codings= name ("compress": bytes no zlib decodes). */
const ENCODERS: Record<string, (b: Buffer) => Buffer> = {
  gzip: (b) => gzipSync(b),
  deflate: (b) => deflateSync(b),
  'raw-deflate': (b) => deflateRawSync(b),
  br: (b) => brotliCompressSync(b),
  compress: (b) => Buffer.concat([Buffer.from([0x1f, 0x9d, 0x90]), b]),
};

describe.each([
  ['Express 5', () => base],
  ['Express 4', () => base4],
] as const)('%s: an answer followed by next()', (_label, at) => {
  it('is what the client gets and what is replayed, not the final handler 404', async () => {
    const k = key('next');
    const first = await post(at(), '/send-then-next', {}, { 'idempotency-key': k });
    expect(first.status).toBe(201);
    const n = (JSON.parse(first.body.toString()) as { n: number }).n;
    const again = await post(at(), '/send-then-next', {}, { 'idempotency-key': k });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.equals(first.body)).toBe(true);
    expect(runs).toBeGreaterThanOrEqual(n);
    expect(JSON.parse(again.body.toString())).toEqual({ n });
  });

  it('with an error: the error handler runs, but the answer sent first is what goes out and is replayed', async () => {
    const k = key('err');
    const first = await post(at(), '/send-then-error', {}, { 'idempotency-key': k });
    expect(first.status).toBe(201);
    expect(first.headers.get('content-type')).toContain('application/json');
    expect(first.headers.get('etag')).toMatch(/^"e\d+"$/);
    expect(Object.keys(JSON.parse(first.body.toString()) as object)).toEqual(['n']);
    expect(errorsSeen).toContain('failed after answering');
    const again = await post(at(), '/send-then-error', {}, { 'idempotency-key': k });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('etag')).toBe(first.headers.get('etag'));
    expect(again.body.equals(first.body)).toBe(true);
  });
});

describe('writes after the answer', () => {
  it('are dropped, and their callbacks still run: a late write hears an error, a second end() hears the finish', async () => {
    const k = key('twice');
    const first = await post(base, '/end-twice', {}, { 'idempotency-key': k });
    expect(first.status).toBe(201);
    expect(Object.keys(JSON.parse(first.body.toString()) as object)).toEqual(['n']);
    await waitFor(() => endCallbacks === 1 && lateWrites.length === 1, 5000, 'the callbacks');
    expect(lateWrites[0]).toBeInstanceOf(Error);
    const again = await post(base, '/end-twice', {}, { 'idempotency-key': k });
    expect(again.body.equals(first.body)).toBe(true);
  });
});

describe('Content-Encoding', () => {
  it('is stored with the bytes it describes: the replay is byte for byte the encoded answer', async () => {
    for (const path of ['/gzip-by-hand', '/gzip-writehead']) {
      const k = key('gz');
      const first = await rawPost(base, path, { 'idempotency-key': k, 'accept-encoding': 'gzip' });
      expect(first.status).toBe(201);
      expect(first.headers['content-encoding']).toBe('gzip');
      const again = await rawPost(base, path, { 'idempotency-key': k, 'accept-encoding': 'gzip' });
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.status).toBe(201);
      expect(again.headers['content-encoding'], path).toBe('gzip');
      expect(again.body.equals(first.body)).toBe(true);
      expect(gunzipSync(again.body).equals(gunzipSync(first.body))).toBe(true);
      // fetch decodes both alike.
      const viaFetch = await post(base, path, {}, { 'idempotency-key': k });
      expect(viaFetch.body.equals(gunzipSync(first.body))).toBe(true);
    }
  });
});

describe('a replay to a retry that does not accept the stored Content-Encoding', () => {
  /** The answer of a first request that accepted `codings`, and a replay to `acceptEncoding` (undefined: no header). */
  async function replayTo(codings: string, acceptEncoding: string | undefined, path = `/encoded?codings=${codings}`): Promise<{ first: Awaited<ReturnType<typeof rawPost>>; again: Awaited<ReturnType<typeof rawPost>> }> {
    const k = key('ae');
    const first = await rawPost(base, path, { 'idempotency-key': k, 'accept-encoding': '*' });
    expect(first.status).toBe(201);
    const before = runs;
    const again = await rawPost(base, path, { 'idempotency-key': k, ...(acceptEncoding === undefined ? {} : { 'accept-encoding': acceptEncoding }) });
    expect(runs).toBe(before);
    expect(again.status).toBe(201);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.headers.vary).toMatch(/accept-encoding/i);
    if (path.startsWith('/encoded')) expect(again.headers.vary).toBe('Origin, Accept-Encoding');
    return { first, again };
  }

  it('is decoded when the retry sends no Accept-Encoding, lacks the coding, refuses it or asks for identity: no Content-Encoding, its own Content-Length, a weak ETag', async () => {
    for (const ae of [undefined, '', 'br', 'gzip;q=0, deflate', 'identity', '*;q=0, identity', 'gzip;q=0, *', 'gzip;q=oops']) {
      const { first, again } = await replayTo('gzip', ae);
      expect(again.headers['content-encoding'], String(ae)).toBeUndefined();
      expect(again.body.equals(gunzipSync(first.body)), String(ae)).toBe(true);
      expect(again.headers['content-length']).toBe(String(again.body.byteLength));
      expect(again.headers['content-type']).toContain('application/json');
      expect(again.headers.etag).toBe(`W/${first.headers.etag as string}`);
    }
  });

  it('is sent as stored, marked Vary: Accept-Encoding, when the retry accepts the coding (any case, x-gzip, *), or accepts no form of it at all', async () => {
    for (const ae of ['gzip', 'GZIP;q=0.5', 'x-gzip', '*', 'deflate, *;q=0.1', 'br, identity;q=0']) {
      const { first, again } = await replayTo('gzip', ae);
      expect(again.headers['content-encoding'], ae).toBe('gzip');
      expect(again.body.equals(first.body), ae).toBe(true);
      expect(again.headers.etag).toBe(first.headers.etag);
    }
  });

  it('decodes deflate (zlib and raw) and br, and only the outer codings the retry does not accept', async () => {
    for (const codings of ['deflate', 'raw-deflate', 'br']) {
      const { first, again } = await replayTo(codings, undefined);
      expect(again.headers['content-encoding'], codings).toBeUndefined();
      expect(JSON.parse(again.body.toString()), codings).toMatchObject({ text: expect.stringContaining('compressing') as unknown });
      expect(first.body.equals(again.body)).toBe(false);
    }
    const { first, again } = await replayTo('gzip,br', 'gzip');
    expect(first.headers['content-encoding']).toBe('gzip, br');
    expect(again.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(again.body).toString())).toMatchObject({ text: expect.stringContaining('compressing') as unknown });
  });

  it('is replayed without its body when the coding cannot be decoded, or decodes beyond maxStoredBodyBytes (a decompression bomb), as a body too large to store', async () => {
    for (const [codings, path] of [['compress', undefined], ['gzip', '/bomb']] as const) {
      const { again } = await replayTo(codings, 'identity', path);
      expect(again.headers['idempotent-body-omitted'], codings).toBe('true');
      expect(again.body.byteLength).toBe(0);
      expect(again.headers['content-encoding']).toBeUndefined();
      expect(again.headers['content-type']).toBeUndefined();
    }
    // The same stored bomb still goes to a retry that accepts gzip, as it was sent.
    const { first, again } = await replayTo('gzip', 'gzip', '/bomb');
    expect(again.body.equals(first.body)).toBe(true);
  });
});

describe('digests of the stored bytes (Content-Digest, Repr-Digest, Content-MD5 in replayHeaders)', () => {
  it('go with a replay of the stored bytes, and are dropped from a decoded replay', async () => {
    const k = key('digest');
    const first = await rawPost(base, '/digested', { 'idempotency-key': k, 'accept-encoding': 'gzip' });
    expect(first.status).toBe(201);
    const as = await rawPost(base, '/digested', { 'idempotency-key': k, 'accept-encoding': 'gzip' });
    expect(as.headers['idempotent-replayed']).toBe('true');
    expect(as.body.equals(first.body)).toBe(true);
    for (const h of ['content-digest', 'repr-digest', 'content-md5']) expect(as.headers[h], h).toBe(first.headers[h]);
    const decoded = await rawPost(base, '/digested', { 'idempotency-key': k, 'accept-encoding': 'identity' });
    expect(decoded.headers['idempotent-replayed']).toBe('true');
    expect(decoded.body.toString()).toBe(gunzipSync(first.body).toString());
    for (const h of ['content-digest', 'repr-digest', 'content-md5']) expect(decoded.headers[h], h).toBeUndefined();
  });
});

describe('the default storeStatus', () => {
  it('replays a redirect (a POST-redirect-GET does not run twice)', async () => {
    for (const code of [301, 302, 303, 307, 308]) {
      const k = key(`r${code}`);
      const first = await rawPost(base, `/status/${code}`, { 'idempotency-key': k });
      expect(first.status).toBe(code);
      const before = runs;
      const again = await rawPost(base, `/status/${code}`, { 'idempotency-key': k });
      expect(again.status).toBe(code);
      expect(again.headers['idempotent-replayed']).toBe('true');
      expect(again.headers.location).toBe(first.headers.location);
      expect(runs).toBe(before);
    }
  });

  it('does not store 408, 425 and 429: a retry runs again; other 4xx are replayed', async () => {
    for (const code of [408, 425, 429]) {
      const k = key(`t${code}`);
      const first = await rawPost(base, `/status/${code}`, { 'idempotency-key': k });
      expect(first.status).toBe(code);
      const again = await rawPost(base, `/status/${code}`, { 'idempotency-key': k });
      expect(again.status).toBe(code);
      expect(again.headers['idempotent-replayed'], String(code)).toBeUndefined();
      expect((JSON.parse(again.body.toString()) as { n: number }).n).toBe((JSON.parse(first.body.toString()) as { n: number }).n + 1);
    }
    const k = key('t404');
    await rawPost(base, '/status/404', { 'idempotency-key': k });
    expect((await rawPost(base, '/status/404', { 'idempotency-key': k })).headers['idempotent-replayed']).toBe('true');
  });

  it('replays a 204 without a Content-Length', async () => {
    const k = key('nc');
    const first = await rawPost(base, '/status/204', { 'idempotency-key': k });
    expect(first.status).toBe(204);
    const again = await rawPost(base, '/status/204', { 'idempotency-key': k });
    expect(again.status).toBe(204);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(again.headers['content-length']).toBeUndefined();
  });
});

describe('dedupe() app-wide and on the route', () => {
  it('de-duplicates once: the second middleware passes the request through instead of finding its own key taken', async () => {
    const k = key('both');
    const first = await post(base, '/mounted/both', {}, { 'idempotency-key': k });
    expect(first.status).toBe(201);
    const again = await post(base, '/mounted/both', {}, { 'idempotency-key': k });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.equals(first.body)).toBe(true);
    // The route's own options still apply to what the app-wide one lets through.
    expect((await post(base, '/mounted/both', {})).status).toBe(400);
  });
});

describe('metrics of app-wide dedupe()', () => {
  it('label requests by mount path, not by URL: the series stay bounded', async () => {
    for (let i = 0; i < 5; i++) expect((await post(base, `/items/${i}`, {}, { 'idempotency-key': key('items') })).status).toBe(201);
    expect(labels).toHaveLength(5);
    for (const l of labels) expect(l).toEqual({ route: '/items/*', outcome: 'proceed' });
  });
});
