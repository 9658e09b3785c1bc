/**
 * What the Nest app tests share (nest.test.ts on platform-express, fastify.test.ts on
 * platform-fastify): the terminus health controller, an embedded grid with a listening app around
 * the test's controllers, a gate that holds a handler run, the check that a client's abort
 * frees the key, and a route answering gzip with the checks of its answer replayed to a retry that
 * does not accept gzip.
 */
import 'reflect-metadata';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Controller, Get, Header, Inject, Injectable, Module, Post, StreamableFile, applyDecorators, type INestApplication, type LoggerService, type OnApplicationBootstrap, type OnModuleInit, type Type } from '@nestjs/common';
import { NestFactory, type AbstractHttpAdapter } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { expect, vi } from 'vitest';
import { GridClient, GridClosedError } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { GRID_CLIENT, GridHealthIndicator, GridlinkModule, Idempotent } from '@gridlink/nest';
import { gate, rawPost, waitFor } from '../../express/test/helpers.js';

export { expectAbortWhileTakingKeyRunsNothing, gate, post, rawPost, waitFor } from '../../express/test/helpers.js';

/** GET /health: terminus' HealthCheckService over GridHealthIndicator. */
@Controller('health')
export class HealthController {
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

/**
 * Holds the next handler run that passes through it until the test releases it. `arm()` before
 * sending the request, `await started` to know the handler runs (and holds the key), `release()`.
 */
export class HandlerHold {
  private held = gate();
  private entered = gate();
  private armed = false;

  arm(): void {
    this.held = gate();
    this.entered = gate();
    this.armed = true;
  }

  /** Called by the handler: waits for release() if armed. */
  async pass(): Promise<void> {
    if (!this.armed) return;
    this.armed = false;
    this.entered.open();
    await this.held.promise;
  }

  get started(): Promise<void> {
    return this.entered.promise;
  }

  release(): void {
    this.held.open();
  }
}

export interface TestApp<A extends INestApplication> {
  cluster: LocalCluster;
  app: A;
  base: string;
  /** What Nest (and the platform) logged as warnings and errors. */
  logged: string[];
  close(): Promise<void>;
}

/**
 * A two-node embedded grid and a Nest app listening on 127.0.0.1 with `controllers`, GridlinkModule
 * (forRootAsync, lease 2 s, `caches`) and TerminusModule, on `adapter` (platform-express without).
 */
export async function startTestApp<A extends INestApplication>(controllers: Type[], options: { caches?: string[]; adapter?: AbstractHttpAdapter } = {}): Promise<TestApp<A>> {
  const cluster = await LocalCluster.start({ nodes: 2, partitions: 64 });
  const logged: string[] = [];
  const logger: LoggerService = {
    log: () => undefined,
    warn: (m: unknown) => logged.push(String(m)),
    error: (m: unknown, ...rest: unknown[]) => logged.push([m, ...rest].map(String).join(' ')),
  };
  const endpoints = cluster.endpoints;
  @Module({
    imports: [GridlinkModule.forRootAsync({ useFactory: () => ({ client: { endpoints }, idempotency: { leaseMs: 2000 } }), caches: options.caches ?? [] }), TerminusModule],
    controllers,
  })
  class AppModule {}
  let app: A | undefined;
  try {
    const settings = { logger, abortOnError: false };
    app = options.adapter === undefined ? await NestFactory.create<A>(AppModule, settings) : await NestFactory.create<A>(AppModule, options.adapter, settings);
    await app.listen(0, '127.0.0.1');
  } catch (e) {
    await app?.close().catch(() => undefined);
    await cluster.stop();
    throw e;
  }
  const { port } = app.getHttpServer().address() as { port: number };
  const started = app;
  return {
    cluster,
    app: started,
    base: `http://127.0.0.1:${port}`,
    logged,
    close: async () => {
      await started.close();
      await cluster.stop();
    },
  };
}

/**
 * A client aborts its request while the handler runs (held by `hold`): the lock of the key
 * (`keyHash()` once the handler runs) is held until then and freed after, seen from a second client.
 */
export async function expectAbortFreesKey(t: { base: string; endpoints: string[]; hold: HandlerHold; keyHash: () => string; key: string }): Promise<void> {
  const probe = await GridClient.connect({ endpoints: t.endpoints });
  try {
    t.hold.arm();
    const ac = new AbortController();
    const pending = fetch(`${t.base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': t.key },
      body: JSON.stringify({ item: 'abandoned' }),
      signal: ac.signal,
    }).catch((e: unknown) => e);
    await t.hold.started;
    const hash = t.keyHash();
    const lockFree = async (): Promise<boolean> => {
      const h = await probe.lock(`dedupe:gridlink-idempotency:${hash}`).tryAcquire({ leaseMs: 1000 });
      if (h === null) return false;
      await h.release();
      return true;
    };
    expect(await lockFree()).toBe(false);
    ac.abort();
    await pending;
    await waitFor(lockFree, 5000, 'the lock to be freed after the abort');
  } finally {
    t.hold.release();
    await probe.close();
  }
}

/**
 * Records every client GridClient.connect makes while started (the ones a failed startup cannot
 * hand back); `closeAll()` after each test closes them and ends the recording.
 */
export function clientRecorder(): { connected: GridClient[]; start(): void; closeAll(): Promise<void> } {
  const connected: GridClient[] = [];
  return {
    connected,
    start() {
      const connect = GridClient.connect.bind(GridClient);
      vi.spyOn(GridClient, 'connect').mockImplementation(async (config) => {
        const c = await connect(config);
        connected.push(c);
        return c;
      });
    },
    async closeAll() {
      vi.restoreAllMocks();
      await Promise.all(connected.map((c) => c.close()));
      connected.length = 0;
    },
  };
}

/** Whether the client was closed: it refuses use and holds no connection. */
export function isClosed(c: GridClient): boolean {
  try {
    c.cache('probe');
    return false;
  } catch (e) {
    return e instanceof GridClosedError && !c.topology().nodes.some((n) => n.connected);
  }
}

/** A provider that fails to build once it got the (connected) client. */
@Injectable()
export class FailsToBuild {
  constructor(@Inject(GRID_CLIENT) client: GridClient) {
    if (client !== undefined) throw new Error('constructor failed');
  }
}

/** A provider whose onModuleInit throws ('init failed'). */
@Injectable()
export class FailsOnInit implements OnModuleInit {
  onModuleInit(): void {
    throw new Error('init failed');
  }
}

/** A provider whose onApplicationBootstrap rejects ('bootstrap failed'). */
@Injectable()
export class FailsOnBootstrap implements OnApplicationBootstrap {
  onApplicationBootstrap(): Promise<void> {
    return Promise.reject(new Error('bootstrap failed'));
  }
}

/**
 * Makes GridClient.connect wait for `release()` before it connects: `made` holds what each call
 * returns, `called` resolves at the first call. Restored by `vi.restoreAllMocks()` (`closeAll()`).
 */
export function holdConnect(): { made: Promise<GridClient>[]; called: Promise<void>; release(): void } {
  const held = gate();
  const called = gate();
  const made: Promise<GridClient>[] = [];
  const connect = GridClient.connect.bind(GridClient);
  vi.spyOn(GridClient, 'connect').mockImplementation((config) => {
    const p = held.promise.then(() => connect(config));
    made.push(p);
    called.open();
    return p;
  });
  return { made, called: called.promise, release: held.open };
}

/**
 * The route `expectEncodedReplays` checks: POST `path`, @Idempotent({ required: true }), answering
 * JSON the handler gzipped itself (`gzippedAnswer()`), as a compressor mounted around it would,
 * with Content-Encoding: gzip and its own Vary: Origin set by @Header. (Listed bottom first: the
 * order in which stacked decorators apply.)
 */
export function GzippedRoute(path: string): MethodDecorator {
  return applyDecorators(Header('vary', 'Origin'), Header('content-encoding', 'gzip'), Header('content-type', 'application/json'), Idempotent({ required: true }), Post(path));
}

/** The body of a `GzippedRoute`: `{ n, text }` gzipped, the text long enough to compress. */
export function gzippedAnswer(n: number): StreamableFile {
  return new StreamableFile(gzipSync(JSON.stringify({ n, text: 'compressible '.repeat(30) })));
}

/**
 * `path` answers gzipped JSON (Content-Encoding: gzip set by the handler, as a compressor would):
 * the replay to a retry without Accept-Encoding, or refusing gzip, is the decoded body without
 * Content-Encoding; to one accepting gzip, the stored bytes; both say Vary: Accept-Encoding, beside
 * the route's own Vary: Origin.
 */
export async function expectEncodedReplays(base: string, path: string, key: string): Promise<void> {
  const first = await rawPost(base, path, { 'idempotency-key': key, 'accept-encoding': 'gzip' });
  expect(first.status).toBe(201);
  expect(first.headers['content-encoding']).toBe('gzip');
  for (const ae of [undefined, 'gzip;q=0, identity']) {
    const r = await rawPost(base, path, { 'idempotency-key': key, ...(ae === undefined ? {} : { 'accept-encoding': ae }) });
    expect([r.status, r.headers['idempotent-replayed'], r.headers['content-encoding']], String(ae)).toEqual([201, 'true', undefined]);
    // The route's own Vary (@Header, set before the interceptor runs) is kept beside it.
    expect(r.headers.vary).toBe('Origin, Accept-Encoding');
    expect(r.headers['content-length']).toBe(String(r.body.byteLength));
    expect(r.body.equals(gunzipSync(first.body))).toBe(true);
  }
  const same = await rawPost(base, path, { 'idempotency-key': key, 'accept-encoding': 'br, gzip' });
  expect([same.status, same.headers['idempotent-replayed'], same.headers['content-encoding']]).toEqual([201, 'true', 'gzip']);
  expect(same.headers.vary).toBe('Origin, Accept-Encoding');
  expect(same.body.equals(first.body)).toBe(true);
}
