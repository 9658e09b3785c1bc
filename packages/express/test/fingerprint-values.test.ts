/**
 * Values JSON cannot hold, returned by `payload` and `fingerprint` functions, on a real Express
 * app with a real grid: NaN is not the string "NaN", 5n is not "5n". They hashed alike, so a
 * retry with a different payload was replayed instead of answered 422, and two requests with
 * different fingerprints shared one key (the second got the first's response).
 */
import type { Server } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import { listen, post, teardown } from './helpers.js';

/** What the app's functions make of a body's `v`: a few values no JSON body holds. */
const special: Record<string, unknown> = { nan: NaN, inf: Infinity, big: 5n };
const valueOf = (req: express.Request): unknown => {
  const v = (req.body as { v: string }).v;
  return Object.hasOwn(special, v) ? special[v] : v;
};

let cluster: LocalCluster;
let grid: GridlinkHandle;
let server: Server;
let base: string;
let runs = 0;

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  const app = express();
  app.use(express.json());
  grid = gridlink(app, { endpoints: cluster.endpoints });
  await grid.ready;
  const handler = (_req: express.Request, res: express.Response): void => {
    runs++;
    res.status(201).json({ run: runs });
  };
  app.post('/payload', dedupe({ required: true, metrics: false, payload: valueOf }), handler);
  app.post('/fingerprint', dedupe({ header: false, metrics: false, fingerprint: (req) => ['charge', valueOf(req)] }), handler);
  ({ server, base } = await listen(app));
}, 30_000);

afterAll(() => teardown(server, grid, cluster));

const run = (reply: { body: Buffer }): number => (JSON.parse(reply.body.toString()) as { run: number }).run;

describe('payload fingerprints of values JSON cannot hold', () => {
  it.each([
    ['nan', 'NaN'],
    ['inf', 'Infinity'],
    ['big', '5n'],
  ])('a retry whose payload is %s where the first was its look-alike string (or back) is refused 422', async (value, lookAlike) => {
    for (const [first, second, key] of [
      [value, lookAlike, `k-${value}-1`],
      [lookAlike, value, `k-${value}-2`],
    ] as const) {
      const a = await post(base, '/payload', { v: first }, { 'idempotency-key': key });
      expect(a.status).toBe(201);
      const same = await post(base, '/payload', { v: first }, { 'idempotency-key': key });
      expect([same.status, same.headers.get('idempotent-replayed'), run(same)]).toEqual([201, 'true', run(a)]);
      const other = await post(base, '/payload', { v: second }, { 'idempotency-key': key });
      expect(other.status).toBe(422);
    }
  });
});

describe('fingerprint keys of values JSON cannot hold', () => {
  it('NaN and "NaN", 5n and "5n" are different requests: each runs once, each retry gets its own replay', async () => {
    const firsts = new Map<string, number>();
    for (const v of ['nan', 'NaN', 'big', '5n', 'inf', 'Infinity']) {
      const r = await post(base, '/fingerprint', { v });
      expect([v, r.status, r.headers.get('idempotent-replayed')]).toEqual([v, 201, null]);
      firsts.set(v, run(r));
    }
    for (const [v, n] of firsts) {
      const again = await post(base, '/fingerprint', { v });
      expect([v, again.status, again.headers.get('idempotent-replayed'), run(again)]).toEqual([v, 201, 'true', n]);
    }
  });
});
