/**
 * @Idempotent() and the health indicator on Nest's Fastify platform (@nestjs/platform-fastify), a
 * real app listening on 127.0.0.1 with an embedded grid: a fresh request, a concurrent duplicate
 * (409), the replay byte for byte, 422, 400, a handler that throws frees the key, a client that
 * aborts frees the key, the terminus health check, and a gzipped answer replayed to a retry
 * without gzip.
 */
import 'reflect-metadata';
import { gzipSync } from 'node:zlib';
import { Body, Controller, Header, Post, Req, StreamableFile } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GridClient } from '@gridlink/client';
import { GRID_CLIENT, Idempotent, type IdempotentRequest } from '@gridlink/nest';
import { HandlerHold, HealthController, expectAbortFreesKey, expectEncodedReplays, post, startTestApp, waitFor, type TestApp } from './helpers.js';

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

  /** Gzipped by the handler, as a compressor mounted around it would. */
  @Post('gz')
  @Idempotent({ required: true })
  @Header('content-type', 'application/json')
  @Header('content-encoding', 'gzip')
  gz(): StreamableFile {
    return new StreamableFile(gzipSync(JSON.stringify({ n: ++runs, text: 'compressible '.repeat(30) })));
  }

  @Post('boom')
  @Idempotent({ required: true })
  boom(): never {
    boomRuns++;
    throw new Error('handler failed');
  }
}

beforeAll(async () => {
  t = await startTestApp<NestFastifyApplication>([OrdersController, HealthController], { adapter: new FastifyAdapter() });
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
