/**
 * The de-duplication lock lost while the handler runs (its only grid node stops answering, so a
 * renewal times out): the middleware reports `lockLost` with the key hash and fencing token, the
 * handler's `req.idempotency.signal` aborts, the app keeps serving (its client has no `error`
 * listener, as in most apps), and the request still gets an answer once the handler
 * finishes.
 */
import type { Server } from 'node:http';
import express5 from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import { gate, listen, post, teardown, waitFor } from './helpers.js';

let cluster: LocalCluster;
let grid: GridlinkHandle;
let server: Server;
let base: string;
const lost: { keyHash: string | undefined; fencingToken: number }[] = [];
const started = gate();
const hold = gate();
let signal: AbortSignal | undefined;

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 8 });
  const app = express5();
  app.use(express5.json());
  grid = gridlink(app as never, { endpoints: cluster.endpoints, requestTimeout: 100, operationTimeout: 300, heartbeatInterval: 1000 });
  await grid.ready;
  const mw = dedupe({ required: true, leaseMs: 300 });
  mw.deduper.on('lockLost', (e) => lost.push({ keyHash: e.keyHash, fencingToken: e.fencingToken }));
  app.post('/slow', mw as never, async (req: express5.Request, res: express5.Response) => {
    signal = req.idempotency!.signal;
    started.open();
    await hold.promise;
    res.status(201).json({ ok: true });
  });
  ({ server, base } = await listen(app as never));
});

afterAll(() => teardown(server, grid, cluster));

describe('the de-duplication lock lost mid-request', () => {
  it('emits lockLost and aborts the signal, and the app keeps serving', async () => {
    const reply = post(base, '/slow', { n: 1 }, { 'idempotency-key': 'lost-1' });
    await started.promise;
    const nodeId = cluster.nodeIds[0]!;
    cluster.hang(nodeId);
    try {
      await waitFor(() => lost.length === 1, 10_000, 'lockLost');
      expect(lost[0]!.keyHash).toMatch(/^[A-Za-z0-9_-]{20,}$/); // hashed, never the raw key
      expect(lost[0]!.keyHash).not.toContain('lost-1');
      expect(lost[0]!.fencingToken).toBeGreaterThan(0);
      expect(signal?.aborted).toBe(true);
    } finally {
      cluster.resume(nodeId);
    }
    hold.open();
    // The handler's answer still reaches the client (whether it could be stored or not).
    const r = await reply;
    expect(r.status).toBeGreaterThanOrEqual(200);
    expect(lost).toHaveLength(1);
  });
});
