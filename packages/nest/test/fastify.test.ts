/**
 * @Idempotent() and the health indicator on Nest's Fastify platform (@nestjs/platform-fastify), a
 * real app listening on 127.0.0.1 with an embedded grid: a fresh request, a concurrent duplicate
 * (409), the replay byte for byte, 422, 400, a handler that throws frees the key, a client that
 * aborts frees the key, and the terminus health check.
 */
import 'reflect-metadata';
import { Body, Controller, Get, Header, Inject, Module, Post, Req } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { GRID_CLIENT, GridHealthIndicator, GridlinkModule, Idempotent, type IdempotentRequest } from '@gridlink/nest';
import { gate, post, waitFor } from '../../express/test/helpers.js';

let cluster: LocalCluster;
let app: NestFastifyApplication;
let base: string;
let runs = 0;
let boomRuns = 0;
let hold = gate();
let started = gate();
let holdNext = false;
let lastKeyHash = '';
const logged: string[] = [];

@Controller('orders')
class OrdersController {
  @Post()
  @Idempotent({ required: true })
  @Header('x-order-source', 'fastify')
  async create(@Body() body: { item: string }, @Req() req: IdempotentRequest): Promise<{ id: number; item: string; token: number }> {
    const id = ++runs;
    lastKeyHash = req.idempotency!.keyHash;
    const token = req.idempotency!.fencingToken;
    if (holdNext) {
      holdNext = false;
      started.open();
      await hold.promise;
    }
    return { id, item: body.item, token };
  }

  @Post('boom')
  @Idempotent({ required: true })
  boom(): never {
    boomRuns++;
    throw new Error('handler failed');
  }
}

@Controller('health')
class HealthController {
  constructor(
    @Inject(HealthCheckService) private readonly health: HealthCheckService,
    @Inject(GridHealthIndicator) private readonly grid: GridHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check(): Promise<unknown> {
    return this.health.check([() => this.grid.isHealthy('grid')]);
  }
}

let endpoints: string[] = [];

@Module({
  imports: [GridlinkModule.forRootAsync({ useFactory: () => ({ client: { endpoints }, idempotency: { leaseMs: 2000 } }) }), TerminusModule],
  controllers: [OrdersController, HealthController],
})
class AppModule {}

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 2, partitions: 64 });
  endpoints = cluster.endpoints;
  const logger = { log: () => undefined, warn: (m: unknown) => logged.push(String(m)), error: (...m: unknown[]) => logged.push(m.map(String).join(' ')) };
  app = await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter(), { logger, abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  base = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await app?.close();
  await cluster?.stop();
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
    hold = gate();
    started = gate();
    holdNext = true;
    const before = runs;
    const first = post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
    try {
      await started.promise;
      const dup = await post(base, '/orders', { item: 'slow' }, { 'idempotency-key': key });
      expect(dup.status).toBe(409);
      expect(dup.headers.get('retry-after')).toBe('1');
      expect(dup.headers.get('content-type')).toContain('application/problem+json');
      expect(JSON.parse(dup.body.toString())).toMatchObject({ type: 'urn:gridlink:problem:request-in-progress', status: 409 });
    } finally {
      hold.open();
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
    const probe = await GridClient.connect({ endpoints: cluster.endpoints });
    try {
      const key = `fastify-abort-${Date.now()}`;
      hold = gate();
      started = gate();
      holdNext = true;
      const ac = new AbortController();
      const pending = fetch(`${base}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify({ item: 'abandoned' }),
        signal: ac.signal,
      }).catch((e: unknown) => e);
      await started.promise;
      const lockFree = async (): Promise<boolean> => {
        const h = await probe.lock(`dedupe:gridlink-idempotency:${lastKeyHash}`).tryAcquire({ leaseMs: 1000 });
        if (h === null) return false;
        await h.release();
        return true;
      };
      expect(await lockFree()).toBe(false);
      ac.abort();
      await pending;
      await waitFor(lockFree, 5000, 'the lock to be freed after the abort');
    } finally {
      hold.open();
      await probe.close();
    }
  });

  it('leaves no error logged by Nest or Fastify for the direct answers', () => {
    expect(logged.filter((l) => /header|sent|ERR_/i.test(l))).toEqual([]);
  });

  it('reports grid health through terminus', async () => {
    const r = await fetch(`${base}/health`);
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ok', info: { grid: { status: 'up' } } });
    expect(app.get<GridClient>(GRID_CLIENT).topology().nodes.some((n) => n.connected)).toBe(true);
  });
});
