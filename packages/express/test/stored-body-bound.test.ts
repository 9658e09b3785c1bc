/**
 * A response body as large as docs/api.md says `maxStoredBodyBytes` may be is stored and
 * replayed whole (real Express app, real grid): the stored response goes to the grid in one
 * request, which the grid client keeps within 4 MiB. The bound used to be 64 MiB, and a body
 * over about 4 MiB was never stored: every retry ran the handler again.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import { listen, rawPost, teardown } from './helpers.js';

/** The largest `maxStoredBodyBytes` of docs/api.md's options table. */
function documentedMax(): number {
  const doc = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8');
  const row = doc.split('\n').find((l) => l.startsWith('| `maxStoredBodyBytes` |'));
  const m = /\| (\d[\d  ]*)–(\d[\d  ]*)/.exec(row ?? '');
  if (m === null) throw new Error('no documented range for maxStoredBodyBytes');
  return Number((m[2] as string).replace(/[\s ]/g, ''));
}

let cluster: LocalCluster;
let grid: GridlinkHandle;
let server: Server;
let base: string;
let runs = 0;
const errors: unknown[] = [];
const max = documentedMax();

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, partitions: 16 });
  const app = express();
  grid = gridlink(app, { endpoints: cluster.endpoints });
  await grid.ready;
  const body = Buffer.alloc(max, 0x61);
  app.post(
    '/export',
    dedupe({ required: true, metrics: false, maxStoredBodyBytes: max, logger: { error: (_m, f) => void errors.push(f) } }),
    (_req, res) => {
      runs++;
      res.type('application/octet-stream').send(body);
    },
  );
  ({ server, base } = await listen(app));
}, 30_000);

afterAll(() => teardown(server, grid, cluster));

describe('maxStoredBodyBytes at its documented bound', () => {
  it('a body of that size is stored and replayed whole, the handler running once', async () => {
    expect(max).toBeGreaterThan(1024 * 1024);
    const first = await rawPost(base, '/export', { 'idempotency-key': 'big-1' });
    expect([first.status, first.body.length]).toEqual([200, max]);
    const again = await rawPost(base, '/export', { 'idempotency-key': 'big-1' });
    expect([again.status, again.headers['idempotent-replayed'], again.body.length, runs, errors]).toEqual([200, 'true', max, 1, []]);
  }, 30_000);
});
