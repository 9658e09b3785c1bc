/**
 * @Idempotent() and the health indicator on Nest's Fastify platform (@nestjs/platform-fastify), a
 * real app listening on 127.0.0.1 with an embedded grid: a fresh request, a concurrent duplicate
 * (409), the replay byte for byte, 422, 400, a handler that throws frees the key, a client that
 * aborts frees the key, the terminus health check, a gzipped answer replayed to a retry without
 * gzip, and a user's onSend hook failing on a direct answer.
 */
import 'reflect-metadata';
import { Body, Controller, Header, Post, Req, StreamableFile } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GridClient } from '@gridlink/client';
import { GRID_CLIENT, Idempotent, type IdempotentRequest } from '@gridlink/nest';
import { GzippedRoute, HandlerHold, HealthController, expectAbortFreesKey, expectAbortWhileTakingKeyRunsNothing, expectEncodedReplays, gzippedAnswer, post, startTestApp, waitFor, type TestApp } from './helpers.js';

let t: TestApp<NestFastifyApplication>;
let base: string;
let runs = 0;
let boomRuns = 0;
const hold = new HandlerHold();
let lastKeyHash = '';

@Controller('orders')
class OrdersController {
  @Post()
  @Idempotent({ required: true })
  @Header('x-order-source', 'fastify')
  async create(@Body() body: { item: string }, @Req() req: IdempotentRequest): Promise<{ id: number; item: string; token: number }> {
    const id = ++runs;
    lastKeyHash = req.idempotency!.keyHash;
    const token = req.idempotency!.fencingToken;
    await hold.pass();
    return { id, item: body.item, token };
  }

  @GzippedRoute('gz')
  gz(): StreamableFile {
    return gzippedAnswer(++runs);
  }

  @Post('boom')
  @Idempotent({ required: true })
  boom(): never {
    boomRuns++;
    throw new Error('handler failed');
  }
}

beforeAll(async () => {
  const adapter = new FastifyAdapter();
  // A user's onSend hook that fails for requests carrying x-fail-on-send (async: it fails after
  // reply.send() returned, as any hook that awaits something does).
  adapter.getInstance().addHook('onSend', async (req, _reply, payload) => {
    if (req.headers['x-fail-on-send'] !== undefined) throw new Error('the onSend hook failed');
    return payload;
  });
  t = await startTestApp<NestFastifyApplication>([OrdersController, HealthController], { adapter });
  base = t.base;
});

afterAll(async () => {
  await t?.close();
});

describe('@Idempotent() on Nest with Fastify', () => {
  it('runs the handler once and replays the stored response byte for byte, with its headers, marked', async () => {
    const key = `fastify-replay-${Date.now()}`;
    const before = runs;
    const a = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': key });
    expect(a.status).toBe(201);
    expect(a.headers.get('idempotent-replayed')).toBeNull();
    expect(JSON.parse(a.body.toString())).toMatchObject({ id: before + 1, item: 'book' });
    const b = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': key });
    expect(b.status).toBe(201);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect(b.headers.get('content-type')).toBe(a.headers.get('content-type'));
    expect(Buffer.compare(a.body, b.body)).toBe(0);
    expect(runs).toBe(before + 1);
  });

  it('rejects a concurrent duplicate with 409 problem+json while the first runs, then replays', async () => {
    const key = `fastify-concurrent-${Date.now()}`;
    hold.arm();
    const before = runs;
    const first = post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
    try {
      await hold.started;
      const dup = await post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
      expect(dup.status).toBe(409);
      expect(dup.headers.get('retry-after')).toBe('1');
      expect(dup.headers.get('content-type')).toContain('application/problem+json');
      expect(JSON.parse(dup.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:request-in-progress', status: 409 });
    } finally {
      hold.release();
    }
    const a = await first;
    expect(a.status).toBe(201);
    const replay = await post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(replay.body.equals(a.body)).toBe(true);
    expect(runs).toBe(before + 1);
  });

  it('answers 422 for the same key with another payload and 400 without a key', async () => {
    const key = `fastify-mismatch-${Date.now()}`;
    expect((await post(base, '/orders', { item: 'a' }, { 'idempotency-key': key })).status).toBe(201);
    const r = await post(base, '/orders', { item: 'b' }, { 'idempotency-key': key });
    expect(r.status).toBe(422);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(JSON.parse(r.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:idempotency-key-reused', status: 422 });
    const missing = await post(base, '/orders', { item: 'a' });
    expect(missing.status).toBe(400);
    expect(JSON.parse(missing.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:missing-idempotency-key' });
  });

  it('frees the key when the handler throws, so a retry runs again', async () => {
    const key = `fastify-boom-${Date.now()}`;
    const before = boomRuns;
    expect((await post(base, '/orders/boom', {}, { 'idempotency-key': key })).status).toBe(500);
    await waitFor(async () => (await post(base, '/orders/boom', {}, { 'idempotency-key': key })).status === 500 && boomRuns >= before + 2, 5000, 'the retry to run again');
  });

  it('frees the key when the client aborts while the handler runs', async () => {
    await expectAbortFreesKey({ base, endpoints: t.cluster.endpoints, hold, keyHash: () => lastKeyHash, key: `fastify-abort-${Date.now()}` });
  });

  it('a client that aborts while the key is being taken: the handler does not run, and the key is free', async () => {
    await expectAbortWhileTakingKeyRunsNothing({ server: t.app.getHttpServer(), base, cluster: t.cluster, runs: () => runs, key: `fastify-abort-early-${Date.now()}` });
  });

  it('replays a gzipped answer decoded to a retry that does not accept gzip, as stored to one that does', async () => {
    await expectEncodedReplays(base, '/orders/gz', `fastify-gz-${Date.now()}`);
  });

  it('leaves no error logged by Nest or Fastify for the direct answers', () => {
    expect(t.logged.filter((l) => /header|sent|ERR_/i.test(l))).toEqual([]);
  });

  it('reports grid health through terminus', async () => {
    const r = await fetch(`${base}/health`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ok', info: { grid: { status: 'up' } } });
    expect(t.app.get<GridClient>(GRID_CLIENT).topology().nodes.some((n) => n.connected)).toBe(true);
  });
});

describe('an onSend hook that fails on a direct answer', () => {
  /** A POST that fails instead of waiting for ever if no answer comes. */
  const failingOnSend = (headers: Record<string, string>): Promise<Awaited<ReturnType<typeof post>> | string> =>
    fetch(`${base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-fail-on-send': '1', ...headers },
      body: JSON.stringify({ item: 'hooked' }),
      signal: AbortSignal.timeout(5000),
    }).then(
      async (r) => ({ status: r.status, headers: r.headers, body: Buffer.from(await r.arrayBuffer()) }),
      (e: unknown) => `no answer: ${String(e)}`,
    );

  it("reaches the client as the error handler's answer (a replay, a 409, a 400), as on any route, instead of hanging the request", async () => {
    const key = `fastify-onsend-${Date.now()}`;
    const first = await post(base, '/orders', { item: 'hooked' }, { 'idempotency-key': key });
    expect(first.status).toBe(201);
    const expect500 = (r: Awaited<ReturnType<typeof failingOnSend>>, what: string): void => {
      expect(typeof r === 'string' ? r : r.status, what).toBe(500);
      expect(JSON.parse((r as Awaited<ReturnType<typeof post>>).body.toString()), what).toMatchObject({ statusCode: 500 });
    };
    expect500(await failingOnSend({ 'idempotency-key': key }), 'replay');
    expect500(await failingOnSend({}), 'missing key');
    hold.arm();
    const running = post(base, '/orders', { item: 'held' }, { 'idempotency-key': `${key}-held` });
    try {
      await hold.started;
      expect500(await failingOnSend({ 'idempotency-key': `${key}-held` }), 'in progress');
    } finally {
      hold.release();
    }
    expect((await running).status).toBe(201);
    // The stored answer is untouched: the replay without the failing hook.
    const replay = await post(base, '/orders', { item: 'hooked' }, { 'idempotency-key': key });
    expect([replay.status, replay.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(replay.body.equals(first.body)).toBe(true);
    // Nest's completion of the route after the error answer is still ignored: nothing resent.
    expect(t.logged.filter((l) => /already sent|ERR_HTTP_HEADERS_SENT/i.test(l))).toEqual([]);
  });
});
