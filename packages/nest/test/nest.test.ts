/**
 * GridlinkModule on a real Nest application (platform-express) listening on 127.0.0.1, with an
 * embedded grid: the injectable client and caches, @Idempotent() (replay, 409, 422, 400, freed
 * keys), the terminus health indicator, and the client closed on application shutdown.
 */
import 'reflect-metadata';
import { Body, Controller, HttpCode, Inject, Module, Post, Req, StreamableFile, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient, type GridCache } from '@gridlink/client';
import { GRID_CLIENT, GridlinkModule, Idempotent, InjectCache, type IdempotentRequest } from '@gridlink/nest';
import { GzippedRoute, HandlerHold, HealthController, expectAbortFreesKey, expectAbortWhileTakingKeyRunsNothing, expectEncodedReplays, gzippedAnswer, post, startTestApp, waitFor, type TestApp } from './helpers.js';

let t: TestApp<INestApplication>;
let app: INestApplication;
let base: string;
let runs = 0;
const hold = new HandlerHold();
let lastKeyHash = '';
let afterSendRuns = 0;

@Controller('orders')
class OrdersController {
  constructor(
    @InjectCache('orders') private readonly orders: GridCache<string, { item: string; token: number }>,
    @Inject(GridClient) readonly client: GridClient,
  ) {}

  @Post()
  @Idempotent({ required: true })
  async create(@Body() body: { item: string }, @Req() req: IdempotentRequest): Promise<{ id: number; item: string; token: number }> {
    const id = ++runs;
    const token = req.idempotency!.fencingToken;
    lastKeyHash = req.idempotency!.keyHash;
    await this.orders.put(`order-${id}`, { item: body.item, token });
    await hold.pass();
    return { id, item: body.item, token };
  }

  @Post('boom')
  @Idempotent()
  boom(): never {
    runs++;
    throw new Error('handler failed');
  }

  @Post('after-send')
  @Idempotent({ required: true, storeAfterSend: true })
  afterSend(@Body() body: { item: string }): { n: number; item: string } {
    afterSendRuns++;
    return { n: afterSendRuns, item: body.item };
  }

  @GzippedRoute('gz')
  gz(): StreamableFile {
    return gzippedAnswer(++runs);
  }

  @Post('plain')
  @HttpCode(200)
  plain(@Req() req: IdempotentRequest): { deduped: boolean } {
    return { deduped: req.idempotency !== undefined };
  }
}

beforeAll(async () => {
  t = await startTestApp([OrdersController, HealthController], { caches: ['orders'] });
  app = t.app;
  base = t.base;
});

afterAll(async () => {
  await t?.close();
});

describe('GridlinkModule on Nest', () => {
  it('injects a connected GridClient and typed caches', async () => {
    const client = app.get<GridClient>(GRID_CLIENT);
    expect(client).toBeInstanceOf(GridClient);
    expect(app.get(GridClient)).toBe(client);
    expect(client.topology().nodes.some((n) => n.connected)).toBe(true);
  });

  it('runs the handler once and replays the stored response byte for byte, marked', async () => {
    const key = `nest-replay-${Date.now()}`;
    const before = runs;
    const a = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': key });
    expect(a.status).toBe(201);
    const b = await post(base, '/orders', { item: 'book' }, { 'idempotency-key': key });
    expect(b.status).toBe(201);
    expect(b.headers.get('idempotent-replayed')).toBe('true');
    expect(Buffer.compare(a.body, b.body)).toBe(0);
    expect(runs).toBe(before + 1);
    const { id, token } = JSON.parse(a.body.toString()) as { id: number; token: number };
    const cache = app.get(GridClient).cache<string, { item: string; token: number }>('orders');
    expect(await cache.get(`order-${id}`)).toEqual({ item: 'book', token });
  });

  it('storeAfterSend: the response goes out first; duplicates get 409 until it is stored, then the replay; one run', async () => {
    const key = `after-send-${Date.now()}`;
    const first = await post(base, '/orders/after-send', { item: 'cup' }, { 'idempotency-key': key });
    expect(first.status).toBe(201);
    let replay: Awaited<ReturnType<typeof post>> | undefined;
    await waitFor(async () => {
      const r = await post(base, '/orders/after-send', { item: 'cup' }, { 'idempotency-key': key });
      if (r.status === 409) return false;
      replay = r;
      return true;
    }, 5000, 'the replay');
    expect(replay!.status).toBe(201);
    expect(replay!.headers.get('idempotent-replayed')).toBe('true');
    expect(replay!.body.equals(first.body)).toBe(true);
    expect(afterSendRuns).toBe(1);
  });

  it('answers 422 for a different payload and 400 when the key is missing', async () => {
    const key = `nest-mismatch-${Date.now()}`;
    expect((await post(base, '/orders', { item: 'a' }, { 'idempotency-key': key })).status).toBe(201);
    const r = await post(base, '/orders', { item: 'b' }, { 'idempotency-key': key });
    expect(r.status).toBe(422);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    const missing = await post(base, '/orders', { item: 'a' });
    expect(missing.status).toBe(400);
    expect(JSON.parse(missing.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:missing-idempotency-key' });
    const plain = await post(base, '/orders/plain', {});
    expect(JSON.parse(plain.body.toString())).toEqual({ deduped: false });
    // Nest's own reply after the interceptor answered finds the response sent, and says nothing.
    expect(t.logged.filter((l) => /header|ERR_/i.test(l))).toEqual([]);
  });

  it('rejects a concurrent duplicate with 409 while the first runs', async () => {
    const key = `nest-concurrent-${Date.now()}`;
    hold.arm();
    const first = post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
    try {
      await hold.started;
      // Needs locks to exclude each other within one GridClient (per-handle ownership).
      const dup = await post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
      expect(dup.status).toBe(409);
      expect(dup.headers.get('retry-after')).toBe('1');
    } finally {
      hold.release();
    }
    expect((await first).status).toBe(201);
  });

  it('frees the key when the handler throws, so a retry runs again', async () => {
    const key = `nest-boom-${Date.now()}`;
    const before = runs;
    expect((await post(base, '/orders/boom', {}, { 'idempotency-key': key })).status).toBe(500);
    await waitFor(async () => {
      const r = await post(base, '/orders/boom', {}, { 'idempotency-key': key });
      return r.status === 500 && runs >= before + 2;
    }, 5000, 'retry to run again');
  });

  it('frees the key when the client aborts the connection', async () => {
    await expectAbortFreesKey({ base, endpoints: t.cluster.endpoints, hold, keyHash: () => lastKeyHash, key: `nest-abort-${Date.now()}` });
  });

  it('a client that aborts while the key is being taken: the handler does not run, and the key is free', async () => {
    await expectAbortWhileTakingKeyRunsNothing({ server: t.app.getHttpServer(), base, cluster: t.cluster, runs: () => runs, key: `nest-abort-early-${Date.now()}` });
  });

  it('replays a gzipped answer decoded to a retry that does not accept gzip, as stored to one that does', async () => {
    await expectEncodedReplays(base, '/orders/gz', `nest-gz-${Date.now()}`);
  });

  it('reports grid health through terminus', async () => {
    const r = await fetch(`${base}/health`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ok', info: { grid: { status: 'up' } } });
  });

  it('validates module options with field-named errors', () => {
    expect(() => GridlinkModule.forRoot({} as never)).toThrow(/"client"/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints: ['127.0.0.1:1'] }, caches: [''] })).toThrow(/"caches"/);
    expect(() => GridlinkModule.forRootAsync({})).toThrow(/"useFactory"/);
  });
});

describe('application shutdown', () => {
  it('closes the client', async () => {
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: t.cluster.endpoints } })] })
    class SmallModule {}
    const small = await NestFactory.createApplicationContext(SmallModule, { logger: false });
    const client = small.get(GridClient);
    expect(client.topology().nodes.length).toBeGreaterThan(0);
    await small.close();
    expect(() => client.cache('x')).toThrow();
  });
});
