/**
 * A Nest 11 app on @gridlink/nest, run as a child process from this folder so that @nestjs/* and
 * the injected copy of @gridlink/nest (built dist) resolve to Nest 11.x. Env: GRID_ENDPOINTS,
 * PLATFORM = 'express' (default) or 'fastify' (@nestjs/platform-fastify 11).
 * Prints one line `READY {"port":…,"nestCore":…,…}` once listening (versions and builds it loaded).
 * A POST /orders with header `x-hold: 1` waits, after counting its run, until POST /release;
 * POST /orders/boom throws (counted in /runs too). An IdempotencyInterceptor is given to
 * useGlobalInterceptors() after init(): it runs on the request-scoped LateSseController only, whose
 * POST @Sse() route it must refuse (a 500 problem+json) without running it (/runs counts `streams`).
 */
import 'reflect-metadata';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { Body, Controller, Get, HttpCode, Inject, Module, Post, Req, RequestMethod, Scope, Sse, type MessageEvent } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { interval, map, type Observable } from 'rxjs';
import { GridHealthIndicator, GridlinkModule, Idempotent, IdempotencyInterceptor, type IdempotentRequest } from '@gridlink/nest';

const require = createRequire(import.meta.url);
let runs = 0;
let streams = 0;
let release: () => void = () => undefined;
let held: Promise<void> = Promise.resolve();

@Controller('orders')
class OrdersController {
  @Post()
  @Idempotent({ required: true })
  async create(@Body() body: { item: string }, @Req() req: IdempotentRequest & { headers: Record<string, string | undefined> }): Promise<{ run: number; item: string; token: number }> {
    const run = ++runs;
    if (req.headers['x-hold'] === '1') await held;
    return { run, item: body.item, token: req.idempotency!.fencingToken };
  }

  @Post('boom')
  @Idempotent({ required: true })
  boom(): never {
    runs++;
    throw new Error('handler failed');
  }
}

@Controller({ path: 'late-sse', scope: Scope.REQUEST })
class LateSseController {
  @Sse('post', { method: RequestMethod.POST })
  post(): Observable<MessageEvent> {
    streams++;
    return interval(10).pipe(map((n) => ({ data: { n } })));
  }
}

@Controller()
class ControlController {
  constructor(@Inject(GridHealthIndicator) private readonly grid: GridHealthIndicator) {}

  @Get('runs')
  count(): { runs: number; streams: number } {
    return { runs, streams };
  }

  @Post('hold')
  @HttpCode(200)
  hold(): { ok: true } {
    held = new Promise<void>((resolve) => (release = resolve));
    return { ok: true };
  }

  @Post('release')
  @HttpCode(200)
  free(): { ok: true } {
    release();
    return { ok: true };
  }

  @Get('health')
  health(): unknown {
    return this.grid.isHealthy('grid');
  }
}

@Module({
  imports: [GridlinkModule.forRoot({ client: { endpoints: (process.env.GRID_ENDPOINTS ?? '').split(',').filter(Boolean) }, idempotency: { leaseMs: 2000 } })],
  controllers: [OrdersController, ControlController, LateSseController],
})
class AppModule {}

const platform = process.env.PLATFORM ?? 'express';
if (platform !== 'express' && platform !== 'fastify') throw new Error(`PLATFORM must be express or fastify, got ${platform}`);
const app = platform === 'fastify' ? await NestFactory.create(AppModule, new FastifyAdapter(), { logger: ['error'] }) : await NestFactory.create(AppModule, { logger: ['error'] });
app.enableShutdownHooks();
await app.init();
app.useGlobalInterceptors(app.get(IdempotencyInterceptor));
await app.listen(0, '127.0.0.1');
const version = (id: string): string => (require(id) as { version: string }).version;
const info = {
  port: (app.getHttpServer().address() as AddressInfo).port,
  platform,
  // The HTTP platform the app really runs on (@nestjs/platform-express or -fastify), and its version.
  adapter: app.getHttpAdapter().constructor.name,
  platformVersion: version(`@nestjs/platform-${platform}/package.json`),
  nestCore: version('@nestjs/core/package.json'),
  nestCommon: version('@nestjs/common/package.json'),
  // Where @gridlink/nest loaded Nest from: its own (injected) location, not this folder.
  nestCoreSeenByAdapter: (createRequire(require.resolve('@gridlink/nest'))('@nestjs/core/package.json') as { version: string }).version,
  gridlinkNest: require.resolve('@gridlink/nest'),
  // The app runs the ESM build; the CommonJS build (what a CommonJS Nest 11 app requires) loads too.
  cjsBuildLoads: typeof (require('@gridlink/nest') as { GridlinkModule?: unknown }).GridlinkModule === 'function',
};
// With both builds loaded, NestFactory.create is wrapped once (the guard is shared per process).
let layers = 0;
for (let f = (Object.getPrototypeOf(NestFactory) as Record<string, unknown>).create as Record<symbol, unknown> | undefined; f !== undefined; f = f[Symbol.for('gridlink.nest.startupGuard.original')] as Record<symbol, unknown> | undefined) layers++;
Object.assign(info, { createWrappers: layers - 1 });
process.stdout.write(`READY ${JSON.stringify(info)}\n`);
