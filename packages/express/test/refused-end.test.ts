/**
 * An `end()` that Node itself refuses, behind dedupe() on real Express 4 and 5 apps (127.0.0.1,
 * embedded grid): a status code outside 100-999 (Express 4's `res.status()` takes anything, so
 * `res.status(err.status)` without a status is `undefined`), a chunk that is neither a string nor
 * bytes (`res.end(123)`). Node throws from such an end() before anything goes out; the handler's
 * error then reaches the app's error handler, whose 500 is the answer.
 *
 * The capture used to hold that end() back (as it holds every end until the response is stored),
 * store it, then call Node's end() in a promise callback: the throw became an unhandled rejection
 * (the end of a Node process by default) and the client never got an answer. With storeAfterSend
 * the throw reached the handler, but the ticket was marked ended and never completed: the key
 * stayed held, renewed for as long as the process lived, and every retry got 409.
 *
 * Also: a status Express 4 takes as a string (`res.status('201')`, which Node sends as 201) is
 * stored as the number sent. Stored as "201" it was no stored response to the next read, so every
 * retry ran the handler again.
 */
import type { Server } from 'node:http';
import vm from 'node:vm';
import express5 from 'express';
import express4 from 'express4';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { dedupe, type DedupeMiddleware } from '@gridlink/express';
import { listen, teardown, waitFor, type Reply } from './helpers.js';

let cluster: LocalCluster;
let client: GridClient;
let server4: Server;
let server5: Server;
const bases: Record<string, string> = {};
const runs = new Map<string, number>();
const middlewares: DedupeMiddleware[] = [];
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => void unhandled.push(e);

type Handler = (req: express5.Request, res: express5.Response) => void;

/** The routes, each under /held (the default: stored before sent) and /after (storeAfterSend). */
const routes: Record<string, Handler> = {
  // Express 4: no check in res.status(); Node refuses the status when it writes the head.
  'status-undefined': (_req, res) => void res.status(undefined as never).json({ ok: true }),
  // A chunk Node refuses (a number), on a status it would have sent.
  'end-number': (_req, res) => void res.status(201).end(123 as never),
  // A string in an encoding that is not one (a number): Node refuses it as it refuses 'bogus'.
  'end-encoding-number': (_req, res) => void res.status(201).end('never stored', 1 as never),
  // Plain Node style on Express 5 (whose res.status() checks): a status set directly.
  'status-direct': (_req, res) => {
    res.statusCode = 1000;
    res.end('never sent');
  },
};

/**
 * end() calls Node takes, each sending the body "made": a string with '' or 'buffer' as its
 * encoding (Node writes it as UTF-8), and bytes in a Uint8Array of another realm (a vm context;
 * Node checks with util.types.isUint8Array, not instanceof).
 */
const acceptedEnds: Record<string, (res: express5.Response) => void> = {
  'encoding-empty': (res) => void res.end('made', '' as BufferEncoding),
  'encoding-buffer': (res) => void res.end('made', 'buffer' as BufferEncoding),
  'bytes-other-realm': (res) => void res.end(vm.runInNewContext('new Uint8Array([109, 97, 100, 101])') as Uint8Array),
};

function mount(app: express5.Express, label: string): void {
  app.use(express5.json());
  for (const [prefix, storeAfterSend] of [
    ['/held', false],
    ['/after', true],
  ] as const) {
    const mw = dedupe({ client, metrics: false, storeAfterSend });
    middlewares.push(mw);
    for (const [name, handler] of Object.entries(routes)) {
      const path = `${prefix}/${name}`;
      app.post(path, mw, (req, res) => {
        runs.set(`${label}${path}`, (runs.get(`${label}${path}`) ?? 0) + 1);
        handler(req, res);
      });
    }
    // end() calls Node takes: the answer is stored and replayed, as any other.
    for (const [name, end] of Object.entries(acceptedEnds)) {
      app.post(`${prefix}/${name}`, mw, (_req, res) => {
        runs.set(`${label}${prefix}/${name}`, (runs.get(`${label}${prefix}/${name}`) ?? 0) + 1);
        res.status(201);
        end(res);
      });
    }
    // Express 4 takes a string status; Node sends it as the number.
    app.post(`${prefix}/status-string`, mw, (_req, res) => {
      const n = (runs.get(`${label}${prefix}/status-string`) ?? 0) + 1;
      runs.set(`${label}${prefix}/status-string`, n);
      res.status('201' as never).json({ run: n });
    });
  }
  app.use((err: Error, _req: express5.Request, res: express5.Response, _next: express5.NextFunction) => {
    res.status(500).json({ error: err.message });
  });
}

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  client = await GridClient.connect({ endpoints: cluster.endpoints });
  const app4 = express4() as unknown as express5.Express;
  mount(app4, 'express4');
  ({ server: server4, base: bases.express4 } = await listen(app4));
  const app5 = express5();
  mount(app5, 'express5');
  ({ server: server5, base: bases.express5 } = await listen(app5));
});

afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await teardown(server4, server5, client, cluster);
});

/** A POST that fails after 10 s instead of waiting for an answer that never comes. */
async function send(base: string, path: string, key: string): Promise<Reply> {
  const r = await fetch(base + path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: '{}',
    signal: AbortSignal.timeout(10_000),
  });
  return { status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) };
}

const key = (what: string): string => `${what}-${process.hrtime.bigint()}`;

describe.each([
  ['express4', ['status-undefined', 'end-number']],
  ['express5', ['end-number', 'status-direct']],
] as const)('%s: an end() Node refuses', (label, names) => {
  for (const prefix of ['/held', '/after'] as const) {
    for (const name of names) {
      it(`${prefix}/${name}: throws to the handler, the error handler's 500 goes out, nothing is stored and the key is freed`, async () => {
        const path = `${prefix}/${name}`;
        const k = key(name);
        const first = await send(bases[label]!, path, k);
        expect(first.status).toBe(500);
        expect(JSON.parse(first.body.toString())).toEqual({ error: expect.stringMatching(/status code|"chunk" argument/) as unknown });
        expect(first.headers.get('idempotent-replayed')).toBeNull();
        // Freed, not held and renewed for ever: no request holds a key once the answer is out.
        await waitFor(() => middlewares.every((m) => m.deduper.inFlight === 0), 5000, 'every key freed');
        const again = await send(bases[label]!, path, k);
        expect(again.status).toBe(500);
        expect(again.headers.get('idempotent-replayed')).toBeNull();
        expect(runs.get(`${label}${path}`)).toBe(2);
        expect(unhandled).toEqual([]);
      });
    }
  }
});

describe('express4: a status given as a string', () => {
  for (const prefix of ['/held', '/after'] as const) {
    it(`${prefix}: is stored as the status sent, and replayed`, async () => {
      const k = key('string-status');
      const first = await send(bases.express4!, `${prefix}/status-string`, k);
      expect(first.status).toBe(201);
      await waitFor(() => middlewares.every((m) => m.deduper.inFlight === 0), 5000, 'the response stored');
      const again = await send(bases.express4!, `${prefix}/status-string`, k);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.body.equals(first.body)).toBe(true);
      expect(runs.get(`express4${prefix}/status-string`)).toBe(1);
    });
  }
});

describe.each(['express4', 'express5'] as const)('%s: an end() Node takes', (label) => {
  for (const prefix of ['/held', '/after'] as const) {
    for (const name of Object.keys(acceptedEnds)) {
      it(`${prefix}/${name}: goes out, is stored, and is replayed`, async () => {
        const path = `${prefix}/${name}`;
        const k = key(name);
        const first = await send(bases[label]!, path, k);
        expect(first.status).toBe(201);
        expect(first.body.toString()).toBe('made');
        await waitFor(() => middlewares.every((m) => m.deduper.inFlight === 0), 5000, 'the response stored');
        const again = await send(bases[label]!, path, k);
        expect(again.status).toBe(201);
        expect(again.headers.get('idempotent-replayed')).toBe('true');
        expect(again.body.toString()).toBe('made');
        expect(runs.get(`${label}${path}`)).toBe(1);
        expect(unhandled).toEqual([]);
      });
    }
  }
});

describe.each(['express4', 'express5'] as const)('%s: a string end() in an encoding that is no string', (label) => {
  for (const prefix of ['/held', '/after'] as const) {
    it(`${prefix}: Node's refusal reaches the handler as without the middleware; nothing is stored and the key is freed`, async () => {
      const path = `${prefix}/end-encoding-number`;
      const k = key('encoding-number');
      // Node throws once it has written the head (as without the middleware): Express then cuts
      // the connection, or the error handler's answer follows. Whatever the client gets, it is
      // no stored answer.
      const first: Reply | Error = await send(bases[label]!, path, k).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      if (!(first instanceof Error)) expect(first.headers.get('idempotent-replayed')).toBeNull();
      await waitFor(() => middlewares.every((m) => m.deduper.inFlight === 0), 5000, 'every key freed');
      const again: Reply | Error = await send(bases[label]!, path, k).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      if (!(again instanceof Error)) expect(again.headers.get('idempotent-replayed')).toBeNull();
      expect(runs.get(`${label}${path}`)).toBe(2);
      expect(unhandled).toEqual([]);
    });
  }
});
