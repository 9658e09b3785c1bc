/**
 * dedupe({ storeAfterSend: true }) on a real Express app with an embedded grid (ADR 0036): the
 * response goes out before it is stored, and the store frees the key in the same grid operation.
 * A duplicate arriving meanwhile gets 409 (or the replay once stored), never a second run.
 */
import type { Server } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import { listen, post, teardown, waitFor, type Reply } from './helpers.js';

let cluster: LocalCluster;
let probe: GridClient;
let server: Server;
let base: string;
let grid: GridlinkHandle;
const runs = new Map<string, number>();
let mw: ReturnType<typeof dedupe>;
let downRuns = 0;

async function lockFree(keyHash: string): Promise<boolean> {
  const h = await probe.lock(`dedupe:gridlink-idempotency:${keyHash}`).tryAcquire({ leaseMs: 1000 });
  if (h === null) return false;
  await h.release();
  return true;
}

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, partitions: 64 });
  probe = await GridClient.connect({ endpoints: cluster.endpoints });
  const app = express();
  app.use(express.json());
  grid = gridlink(app, { endpoints: cluster.endpoints });
  await grid.ready;
  mw = dedupe({ required: true, storeAfterSend: true });
  app.post('/orders', mw, (req, res) => {
    const k = req.idempotency!.keyHash;
    runs.set(k, (runs.get(k) ?? 0) + 1);
    res.status(201).json({ item: (req.body as { item: string }).item, token: req.idempotency!.fencingToken });
  });
  app.post('/down', dedupe({ storeAfterSend: true }), (_req, res) => {
    downRuns++;
    res.status(503).json({ retry: true });
  });
  ({ server, base } = await listen(app));
});
afterAll(() => teardown(server, grid, probe, cluster));

/** The key hash the middleware computed for the next stored response. */
function nextStored(): Promise<string> {
  return new Promise((resolve) => mw.deduper.once('stored', (e) => resolve(e.keyHash!)));
}

describe('storeAfterSend', () => {
  it('sends first, stores right after and frees the key; a retry gets the replay byte for byte', async () => {
    const stored = nextStored();
    const first = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': 'sas-1' });
    expect(first.status).toBe(201);
    const hash = await stored;
    expect(await lockFree(hash)).toBe(true);
    const again = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': 'sas-1' });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.equals(first.body)).toBe(true);
    expect(runs.get(hash)).toBe(1);
    expect((await post(base, '/orders', { item: 'pen' }, { 'idempotency-key': 'sas-1' })).status).toBe(422);
  });

  it('a duplicate right behind the response, and a concurrent burst, never run the handler twice', async () => {
    for (let round = 0; round < 10; round++) {
      const key = `sas-burst-${round}`;
      const burst = Array.from({ length: 8 }, () => post(base, '/orders', { item: 'x' }, { 'idempotency-key': key }));
      // Behind the first answer at once: 409 while the store is in flight, else the replay.
      const chase = burst[0]!.then(() => post(base, '/orders', { item: 'x' }, { 'idempotency-key': key }));
      const replies: Reply[] = await Promise.all([...burst, chase]);
      const originals = replies.filter((r) => r.status === 201 && r.headers.get('idempotent-replayed') === null);
      expect(originals).toHaveLength(1);
      for (const r of replies) {
        if (r.status === 409) expect(r.headers.get('retry-after')).toBe('1');
        else {
          expect(r.status).toBe(201);
          expect(r.body.equals(originals[0]!.body)).toBe(true);
        }
      }
    }
    for (const n of runs.values()) expect(n).toBe(1);
  });

  it('a status not stored (5xx) frees the key after the send, so a retry runs again', async () => {
    const first = await post(base, '/down', {}, { 'idempotency-key': 'sas-down' });
    expect(first.status).toBe(503);
    let second: Reply | undefined;
    await waitFor(async () => {
      second = await post(base, '/down', {}, { 'idempotency-key': 'sas-down' });
      return second.status === 503;
    }, 5000, 'the key to be freed');
    expect(second!.headers.get('idempotent-replayed')).toBeNull();
    expect(downRuns).toBe(2);
  });
});
