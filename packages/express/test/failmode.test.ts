/**
 * Grid unavailable: failOpen serves without de-duplication, failClosed answers 503 with
 * Retry-After; once the circuit breaker is open no request reaches the grid client; a half-open
 * probe closes it again when the grid returns.
 */
import type { Server } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import type { BreakerState } from '@gridlink/dedupe';
import { listen, post, teardown, waitFor } from './helpers.js';

let cluster: LocalCluster;
let server: Server;
let base: string;
let grid: GridlinkHandle;
let runs = 0;
const reasons: string[] = [];
const states: BreakerState[] = [];
const openMw = dedupe({ failMode: 'open', gridTimeoutMs: 300, breaker: { failureThreshold: 2, openMs: 200 } });
const closedMw = dedupe({ failMode: 'closed', gridTimeoutMs: 300, breaker: { failureThreshold: 2, openMs: 200 }, unavailableRetryAfterSeconds: 7 });
// One failure opens it, for longer than the test: only the store of the response can fail here.
const storeMw = dedupe({ failMode: 'closed', gridTimeoutMs: 300, breaker: { failureThreshold: 1, openMs: 600_000 } });

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  const app = express();
  app.use(express.json());
  grid = gridlink(app, {
    endpoints: cluster.endpoints,
    connectTimeout: 300,
    operationTimeout: 300,
    requestTimeout: 300,
    heartbeatInterval: 100,
    heartbeatTimeout: 500,
    reconnect: { minDelay: 20, maxDelay: 100 },
  });
  await grid.ready;
  for (const mw of [openMw, closedMw]) {
    mw.deduper.on('failOpen', (e) => reasons.push(e.reason));
    mw.deduper.on('failClosed', (e) => reasons.push(e.reason));
  }
  closedMw.deduper.on('breaker', (e) => states.push(e.state));
  const handler = (req: express.Request, res: express.Response): void => {
    runs++;
    res.status(201).json({ deduped: req.idempotency !== undefined });
  };
  app.post('/open', openMw, handler);
  app.post('/closed', closedMw, handler);
  // The grid stops answering while the handler runs: the lock was taken, the store of the answer fails.
  app.post('/store-fails', storeMw, (_req: express.Request, res: express.Response): void => {
    cluster.hang(cluster.nodeIds[0]!);
    res.status(201).json({ ok: true });
  });
  ({ server, base } = await listen(app));
});

afterAll(() => teardown(server, grid, cluster));

describe('grid unavailable', () => {
  it('failOpen serves, failClosed answers 503; with the breaker open no call reaches the grid; a probe recovers', async () => {
    const id = cluster.nodeIds[0]!;
    // Healthy: de-duplicated.
    const ok = await post(base, '/closed', {}, { 'idempotency-key': 'healthy-1' });
    expect(ok.status).toBe(201);
    expect(JSON.parse(ok.body.toString())).toEqual({ deduped: true });

    // The grid stops answering (a hung node: connections stay open, nothing comes back).
    cluster.hang(id);
    // Trip both breakers (each route has its own).
    await waitFor(async () => {
      await post(base, '/open', {}, { 'idempotency-key': `trip-${Math.random()}` });
      await post(base, '/closed', {}, { 'idempotency-key': `trip-${Math.random()}` });
      return openMw.deduper.breaker.state === 'open' && closedMw.deduper.breaker.state === 'open';
    }, 10_000, 'both breakers to open');

    const client = grid.client!;
    const opsBefore = client.stats().operations;
    const runsBefore = runs;
    reasons.length = 0;
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post(base, i % 2 === 0 ? '/open' : '/closed', {}, { 'idempotency-key': `down-${i}` })),
    );
    // While open (openMs 200 may pass on a slow machine: then one probe per route goes through).
    const byBreaker = reasons.filter((r) => r === 'circuit breaker open').length;
    expect(byBreaker).toBeGreaterThanOrEqual(18);
    expect(client.stats().operations - opsBefore).toBeLessThanOrEqual(2 * 2);
    for (const [i, r] of replies.entries()) {
      if (i % 2 === 0) {
        expect(r.status).toBe(201);
        expect(JSON.parse(r.body.toString())).toEqual({ deduped: false });
      } else {
        expect(r.status).toBe(503);
        expect(r.headers.get('retry-after')).toBe('7');
        expect(r.headers.get('content-type')).toContain('application/problem+json');
        expect(JSON.parse(r.body.toString())).toMatchObject({ status: 503, type: 'urn:gridlink:problem:deduplication-unavailable' });
      }
    }
    expect(runs - runsBefore).toBe(10);
    expect((await fetch(`${base}/health/ready`)).status).toBe(503);

    // The grid returns: a half-open probe succeeds and closes the breaker.
    cluster.resume(id);
    await waitFor(async () => {
      const r = await post(base, '/closed', {}, { 'idempotency-key': `back-${Math.random()}` });
      return r.status === 201 && closedMw.deduper.breaker.state === 'closed';
    }, 15_000, 'recovery');
    expect(states).toContain('open');
    expect(states).toContain('half-open');
    expect(states[states.length - 1]).toBe('closed');
    const again = await post(base, '/closed', {}, { 'idempotency-key': 'healthy-2' });
    expect(JSON.parse(again.body.toString())).toEqual({ deduped: true });
    expect((await post(base, '/closed', {}, { 'idempotency-key': 'healthy-2' })).headers.get('idempotent-replayed')).toBe('true');
  });

  it('a store of the response that fails on the grid counts as a grid failure for the breaker', async () => {
    const id = cluster.nodeIds[0]!;
    try {
      expect(storeMw.deduper.breaker.state).toBe('closed');
      const r = await post(base, '/store-fails', {}, { 'idempotency-key': 'store-fails-1' });
      // The answer still goes out; it is not stored, and the breaker learnt that the grid failed.
      expect(r.status).toBe(201);
      expect(storeMw.deduper.breaker.state).toBe('open');
    } finally {
      cluster.resume(id);
    }
    await waitFor(async () => {
      const r = await post(base, '/closed', {}, { 'idempotency-key': `after-store-${Math.random()}` });
      return r.status === 201;
    }, 15_000, 'the grid to answer again');
  });

  it('a stopped grid (node killed, connections refused) trips the breakers too: failOpen serves, failClosed answers 503', async () => {
    const id = cluster.nodeIds[0]!;
    await cluster.kill(id);
    await waitFor(async () => {
      await post(base, '/open', {}, { 'idempotency-key': `stop-${Math.random()}` });
      await post(base, '/closed', {}, { 'idempotency-key': `stop-${Math.random()}` });
      return openMw.deduper.breaker.state === 'open' && closedMw.deduper.breaker.state === 'open';
    }, 10_000, 'both breakers to open');
    const served = await post(base, '/open', {}, { 'idempotency-key': 'stopped-1' });
    expect(served.status).toBe(201);
    expect(JSON.parse(served.body.toString())).toEqual({ deduped: false });
    const refused = await post(base, '/closed', {}, { 'idempotency-key': 'stopped-2' });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('7');
  });
});
