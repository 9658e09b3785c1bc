/**
 * Defects found by the dedupe/express audit, each on a real Express 5 app on 127.0.0.1 with an
 * embedded grid: writeHead() headers in the replay, a repeated Idempotency-Key, reporters and
 * policies that throw, a closed client, fingerprints and scopes that are not what they claim,
 * and the breaker's clock.
 */
import type { Server } from 'node:http';
import { connect } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { GridClient, bytesSerializer } from '@gridlink/client';
import { checkHeaderKey, scopedKeyHash } from '@gridlink/dedupe';
import fc from 'fast-check';
import { LocalCluster } from '@gridlink/node';
import { dedupe } from '@gridlink/express';
import { listen, post, teardown, waitFor, type Reply } from './helpers.js';

let cluster: LocalCluster;
let client: GridClient;
let closedClient: GridClient;
/** A client whose grid is gone (its only node stopped): every call is a grid fault. */
let deadClient: GridClient;
let server: Server;
let base: string;
let runs = 0;
let use: 'closed' | 'dead' | 'good' = 'closed';
const loggerLines: string[] = [];
const breakerMw = dedupe({
  client: () => (use === 'closed' ? closedClient : use === 'dead' ? deadClient : client),
  metrics: false,
  gridTimeoutMs: 500,
  breaker: { failureThreshold: 1, openMs: 100 },
});

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  client = await GridClient.connect({ endpoints: cluster.endpoints });
  closedClient = await GridClient.connect({ endpoints: cluster.endpoints });
  await closedClient.close();
  const doomed = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  deadClient = await GridClient.connect({ endpoints: doomed.endpoints, reconnect: { minDelay: 20, maxDelay: 100 } });
  await doomed.stop();
  const app = express();
  app.disable('x-powered-by'); // as helmet does: nothing calls setHeader before the handler
  app.use(express.json());
  const counted = (req: express.Request, res: express.Response): void => {
    runs++;
    res.status(201).json({ n: runs, deduped: req.idempotency !== undefined });
  };
  app.post('/writehead', dedupe({ client, metrics: false }), (_req, res) => {
    runs++;
    res.writeHead(201, { 'Content-Type': 'text/plain; charset=utf-8', Location: `/things/${runs}` });
    res.end(`thing ${runs}`);
  });
  app.post('/writehead-array', dedupe({ client, metrics: false }), (_req, res) => {
    runs++;
    res.writeHead(201, ['Content-Type', 'text/csv', 'ETag', `"v${runs}"`]);
    res.write('a,b\n');
    res.end(`1,${runs}\n`);
  });
  app.post('/plain', dedupe({ client, metrics: false }), counted);
  const throwingLogger = {
    info: () => {
      throw new Error('logger down');
    },
    warn: () => {
      throw new Error('logger down');
    },
    error: (m: string) => {
      loggerLines.push(m);
      throw new Error('logger down');
    },
  };
  const listenerThrows = dedupe({ client, metrics: false, logger: throwingLogger });
  for (const ev of ['stored', 'released', 'duplicate'] as const) {
    listenerThrows.deduper.on(ev, () => {
      throw new Error(`${ev} listener failed`);
    });
  }
  app.post('/reporters-throw', listenerThrows, counted);
  app.post('/reporters-throw-5xx', listenerThrows, (_req, res) => {
    runs++;
    res.status(500).json({ n: runs });
  });
  app.post('/store-status-throws', dedupe({ client, metrics: false, storeStatus: () => { throw new Error('policy bug'); } }), counted);
  app.post('/breaker', breakerMw, counted);
  app.post('/fp-async', dedupe({ client, metrics: false, header: false, fingerprint: async (req: express.Request) => (req.body as { user: string }).user }), counted);
  app.post('/fp-map', dedupe({ client, metrics: false, header: false, fingerprint: (req: express.Request) => new Map([['user', (req.body as { user: string }).user]]) }), counted);
  app.post('/fp-optional', dedupe({ client, metrics: false, header: false, fingerprint: (req: express.Request) => (req.body as { user?: string }).user }), counted);
  app.post('/tenant-async', dedupe({ client, metrics: false, tenant: (async () => 'acme') as never }), counted);
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: err.message });
  });
  ({ server, base } = await listen(app));
});

afterAll(() => teardown(server, client, deadClient, cluster));

const key = (what: string): string => `${what}-${process.hrtime.bigint()}`;

/** A POST written by hand, so a header line can be sent twice. */
function rawPost(path: string, headerLines: string[], body: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(base + path);
    const sock = connect(Number(u.port), u.hostname, () => {
      sock.end(
        [`POST ${path} HTTP/1.1`, `host: ${u.host}`, 'connection: close', 'content-type: application/json', `content-length: ${Buffer.byteLength(body)}`, ...headerLines, '', body].join('\r\n'),
      );
    });
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const headers = new Headers();
      const [statusLine = '', ...lines] = head.split('\r\n');
      for (const l of lines) headers.append(l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim());
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: Buffer.from(rest.join('\r\n\r\n'), 'latin1') });
    });
  });
}

describe('the replay', () => {
  it('keeps headers given to writeHead() (object and flat array form) when nothing called setHeader before', async () => {
    const k = key('wh');
    const first = await post(base, '/writehead', {}, { 'idempotency-key': k });
    const again = await post(base, '/writehead', {}, { 'idempotency-key': k });
    expect(first.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.status).toBe(201);
    expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(again.headers.get('location')).toBe(first.headers.get('location'));
    expect(again.body.toString()).toBe(first.body.toString());

    const k2 = key('wha');
    const csv = await post(base, '/writehead-array', {}, { 'idempotency-key': k2 });
    const csvAgain = await post(base, '/writehead-array', {}, { 'idempotency-key': k2 });
    expect(csvAgain.headers.get('idempotent-replayed')).toBe('true');
    expect(csvAgain.headers.get('content-type')).toBe('text/csv');
    expect(csvAgain.headers.get('etag')).toBe(csv.headers.get('etag'));
    expect(csvAgain.body.toString()).toBe(csv.body.toString());
  });
});

/** A POST with these exact bytes as the Idempotency-Key value; resolves with the status. */
function postKeyBytes(path: string, keyBytes: Uint8Array): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(base + path);
    // write, not end: Node closes a connection whose client half-closed, losing an answer that
    // waits for the grid.
    const sock = connect(Number(u.port), u.hostname, () => {
      sock.write(
        Buffer.concat([
          Buffer.from(`POST ${path} HTTP/1.1\r\nhost: ${u.host}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 2\r\nidempotency-key: `, 'latin1'),
          keyBytes,
          Buffer.from('\r\n\r\n{}', 'latin1'),
        ]),
      );
    });
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(text.split(' ')[1]), body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}

describe('keys', () => {
  it('random bytes as a key never crash the app: each request is served (a key) or refused with 400', async () => {
    const bytes = fc.uint8Array({ maxLength: 64 }).map((b) => b.filter((x) => x !== 0x0d && x !== 0x0a));
    const keyish = fc.oneof(bytes, fc.string({ unit: fc.constantFrom('"', '\\', 'k', ' ', ';', '='), maxLength: 10 }).map((s) => Buffer.from(s, 'latin1')));
    await fc.assert(
      fc.asyncProperty(keyish, async (b) => {
        const r = await postKeyBytes('/plain', b);
        const expected = checkHeaderKey(Buffer.from(b).toString('latin1'), 255);
        if ('key' in expected) expect(r.status).toBe(201);
        else {
          expect(r.status).toBe(400);
          // Refused by Node's HTTP parser (control bytes) or by the middleware, with a reason.
          if (r.body.length > 0) expect(JSON.parse(r.body)).toMatchObject({ type: 'urn:gridlink:problem:invalid-idempotency-key', detail: expect.any(String) });
        }
      }),
      { numRuns: 80 },
    );
    expect((await post(base, '/plain', {}, { 'idempotency-key': key('after-fuzz') })).status).toBe(201);
  });

  it('refuses an Idempotency-Key sent twice with 400, whether the lines differ or not, and runs nothing', async () => {
    const before = runs;
    for (const [a, b] of [
      ['k1', 'k2'],
      ['same', 'same'],
    ]) {
      const r = await rawPost('/plain', [`idempotency-key: ${a}-${before}`, `idempotency-key: ${b}-${before}`], '{}');
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:invalid-idempotency-key' });
    }
    expect(runs).toBe(before);
  });

  it('answers 400 for a fingerprint that returns a Promise or a Map, instead of giving every request one key', async () => {
    for (const path of ['/fp-async', '/fp-map']) {
      const a = await post(base, path, { user: `alice-${path}` });
      const b = await post(base, path, { user: `bob-${path}` });
      expect([a.status, b.status]).toEqual([400, 400]);
      expect(JSON.parse(b.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:unidentifiable-request' });
    }
  });

  it('treats a fingerprint that returns undefined as a keyless request (passed through), not as one shared key', async () => {
    const a = await post(base, '/fp-optional', {});
    const b = await post(base, '/fp-optional', {});
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.headers.get('idempotent-replayed')).toBeNull();
    expect(JSON.parse(b.body.toString())).toMatchObject({ deduped: false });
    const u = `carol-${runs}`;
    await post(base, '/fp-optional', { user: u });
    const replay = await post(base, '/fp-optional', { user: u });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
  });

  it('answers 400 for a tenant function that returns a Promise instead of scoping every tenant alike', async () => {
    const r = await post(base, '/tenant-async', {}, { 'idempotency-key': key('t') });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:unidentifiable-request' });
  });
});

describe('what the app plugs in fails', () => {
  it('a throwing logger and throwing event listeners neither hold the response back nor keep the key', async () => {
    const k = key('rep');
    const first = await post(base, '/reporters-throw', {}, { 'idempotency-key': k });
    expect(first.status).toBe(201);
    const again = await post(base, '/reporters-throw', {}, { 'idempotency-key': k });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    // 5xx: not stored, the key freed (the `released` listener throws), so a retry runs again.
    const k5 = key('rep5');
    const a = await post(base, '/reporters-throw-5xx', {}, { 'idempotency-key': k5 });
    const b = await post(base, '/reporters-throw-5xx', {}, { 'idempotency-key': k5 });
    expect([a.status, b.status]).toEqual([500, 500]);
    expect(JSON.parse(b.body.toString()).n).toBe(JSON.parse(a.body.toString()).n + 1);
    expect(loggerLines).toContain('a dedupe event listener threw');
  });

  it('a storeStatus that throws sends the response and frees the key (not stored)', async () => {
    const k = key('ss');
    const a = await post(base, '/store-status-throws', {}, { 'idempotency-key': k });
    const b = await post(base, '/store-status-throws', {}, { 'idempotency-key': k });
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(b.headers.get('idempotent-replayed')).toBeNull();
    expect(JSON.parse(b.body.toString()).n).toBe(JSON.parse(a.body.toString()).n + 1);
  });
});

describe('a closed client and the breaker', () => {
  it('a closed client (closed by the app itself) is unavailable (503, not a 500) but says nothing about the grid: the breaker stays closed', async () => {
    use = 'closed';
    for (let i = 0; i < 3; i++) {
      const r = await post(base, '/breaker', {}, { 'idempotency-key': key('closed') });
      expect(r.status).toBe(503);
      expect(JSON.parse(r.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:deduplication-unavailable' });
    }
    expect(breakerMw.deduper.breaker.state).toBe('closed');
    use = 'good';
    expect((await post(base, '/breaker', {}, { 'idempotency-key': key('ok') })).status).toBe(201);
  });

  it('a record that does not deserialise is no stored response: the handler runs and its answer replaces it; the breaker stays closed', async () => {
    use = 'good';
    const k = key('corrupt');
    const hash = scopedKeyHash({ method: 'POST', route: '/breaker', tenant: undefined }, 'h', k);
    // 0xc1 is never used in MessagePack: a grid read of it throws GridSerializationError.
    await client.cache('gridlink-idempotency', { serializer: bytesSerializer }).put(`dedupe:gridlink-idempotency:${hash}`, Uint8Array.of(0xc1));
    const before = runs;
    const r = await post(base, '/breaker', {}, { 'idempotency-key': k });
    expect(r.status).toBe(201);
    expect(r.headers.get('idempotent-replayed')).toBeNull();
    expect(runs).toBe(before + 1);
    expect(breakerMw.deduper.breaker.state).toBe('closed');
    const again = await post(base, '/breaker', {}, { 'idempotency-key': k });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.equals(r.body)).toBe(true);
    expect(runs).toBe(before + 1);
  });

  it('a grid that is gone opens it; a half-open probe meeting a closed client leaves it half-open for the next probe; a good grid closes it', async () => {
    use = 'dead';
    await waitFor(async () => (await post(base, '/breaker', {}, { 'idempotency-key': key('dead') })).status === 503 && breakerMw.deduper.breaker.state === 'open', 5000, 'breaker open');
    await waitFor(() => {
      const breaker = breakerMw.deduper.breaker;
      if (breaker.state === 'half-open') return true;
      const token = breaker.allow(performance.now());
      if (token === 0) return false;
      breaker.cancel(token);
      return true;
    }, 5000, 'breaker past openMs');
    use = 'closed';
    const probe = await post(base, '/breaker', {}, { 'idempotency-key': key('probe') });
    expect(probe.status).toBe(503);
    expect(breakerMw.deduper.breaker.state).toBe('half-open');
    use = 'good';
    expect((await post(base, '/breaker', {}, { 'idempotency-key': key('ok') })).status).toBe(201);
    expect(breakerMw.deduper.breaker.state).toBe('closed');
  });

  it('opens for openMs of monotonic time: a wall clock stepped back does not hold it open', async () => {
    use = 'dead';
    await waitFor(async () => (await post(base, '/breaker', {}, { 'idempotency-key': key('trip') })).status === 503 && breakerMw.deduper.breaker.state === 'open', 5000, 'breaker open');
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() - 3_600_000 }); // NTP stepped the clock back an hour
    try {
      use = 'good';
      await waitFor(async () => (await post(base, '/breaker', {}, { 'idempotency-key': key('after') })).status === 201, 3000, 'probe after openMs');
    } finally {
      vi.useRealTimers();
    }
  });
});
