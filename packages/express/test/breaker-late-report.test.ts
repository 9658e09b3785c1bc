/**
 * A request admitted while the circuit breaker was closed, whose grid call ends only after the
 * breaker opened and let its half-open probe through: its outcome (success or grid failure) must
 * not settle the probe's state. A real Express app on 127.0.0.1, a LocalCluster whose node hangs
 * while the request waits, and a shared breaker whose probe the test holds.
 */
import type { Server } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { CircuitBreaker, dedupe, gridlink, type GridlinkHandle } from '@gridlink/express';
import { listen, post, teardown, waitFor, type Reply } from './helpers.js';

let cluster: LocalCluster;
let server: Server;
let base: string;
let grid: GridlinkHandle;
let runs = 0;
const shared = new CircuitBreaker({ failureThreshold: 1, openMs: 50 });

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, backups: 0, partitions: 16 });
  const app = express();
  app.use(express.json());
  grid = gridlink(app, { endpoints: cluster.endpoints, operationTimeout: 10_000, heartbeatTimeout: 10_000 });
  await grid.ready;
  const handler = (_req: express.Request, res: express.Response): void => {
    runs++;
    res.status(201).json({ ok: true });
  };
  app.post('/slow', dedupe({ breaker: shared, gridTimeoutMs: 10_000 }), handler);
  // A deadline the hung grid outlasts: the request's grid call fails (a grid fault) late.
  app.post('/times-out', dedupe({ breaker: shared, gridTimeoutMs: 1500 }), handler);
  ({ server, base } = await listen(app));
});

afterAll(() => teardown(server, grid, cluster));

const inFlight = (): number => grid.client!.stats().nodes.reduce((n, s) => n + s.inFlight, 0);

/**
 * Sends a request while the grid hangs, waits until its grid call is out (it was admitted while
 * closed), opens the breaker with a failure of the same closed period, takes the half-open probe
 * once openMs has passed, and returns the request's reply promise and the probe's token.
 */
async function lateRequest(path: string, key: string): Promise<{ reply: Promise<Reply>; probe: number }> {
  expect(shared.state).toBe('closed');
  const id = cluster.nodeIds[0]!;
  cluster.hang(id);
  const reply = post(base, path, {}, { 'idempotency-key': key });
  await waitFor(() => inFlight() > 0, 5000, 'the request to reach the grid');
  const t = performance.now();
  shared.failure(t, shared.allow(t));
  expect(shared.state).toBe('open');
  let probe = 0;
  await waitFor(() => Boolean((probe = shared.allow(performance.now()))), 5000, 'the breaker to let a probe through');
  expect(shared.state).toBe('half-open');
  return { reply, probe };
}

describe('a late outcome of a request admitted while closed', () => {
  it('a late success neither closes the half-open breaker nor lets a second probe through', async () => {
    const { reply, probe } = await lateRequest('/slow', `late-ok-${Date.now()}`);
    const before = runs;
    cluster.resume(cluster.nodeIds[0]!);
    const r = await reply;
    expect(r.status).toBe(201);
    expect(runs).toBe(before + 1);
    // Without tokens, its success closed the breaker (and freed the probe's slot).
    expect(shared.state).toBe('half-open');
    expect(shared.allow(performance.now())).toBe(0);
    const refused = await post(base, '/slow', {}, { 'idempotency-key': `late-ok-refused-${Date.now()}` });
    expect(refused.status).toBe(503);
    shared.success(probe);
    expect(shared.state).toBe('closed');
    expect((await post(base, '/slow', {}, { 'idempotency-key': `late-ok-after-${Date.now()}` })).status).toBe(201);
  });

  it('a late grid failure does not open the half-open breaker again', async () => {
    const { reply, probe } = await lateRequest('/times-out', `late-fail-${Date.now()}`);
    try {
      const r = await reply;
      expect(r.status).toBe(503); // its own grid call failed: unavailable, as failMode says
      // Without tokens, its failure opened the breaker again for another openMs.
      expect(shared.state).toBe('half-open');
      expect(shared.allow(performance.now())).toBe(0);
    } finally {
      cluster.resume(cluster.nodeIds[0]!);
    }
    shared.success(probe);
    expect(shared.state).toBe('closed');
    expect((await post(base, '/slow', {}, { 'idempotency-key': `late-fail-after-${Date.now()}` })).status).toBe(201);
  });
});
