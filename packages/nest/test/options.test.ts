/**
 * GridlinkModule options and @Idempotent() options are checked where they are written (forRoot,
 * the async factory's result, the decorators), each error naming its field; forRootAsync with
 * useFactory + inject, useClass and useExisting on real Nest apps; @Idempotent() on a controller
 * and on its route (options merged, the interceptor run once per request); duplicates on
 * @Redirect() routes; the client's bookkeeping after many requests of every outcome.
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { ConflictException, Controller, HttpCode, Inject, Injectable, Module, Post, Redirect, Res, type INestApplication, type NestApplicationOptions, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient, type GridCache } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { GRID_CLIENT, GridlinkModule, Idempotent, InjectCache, type GridlinkModuleOptions, type GridlinkOptionsFactory } from '@gridlink/nest';
import { post, waitFor } from '../../express/test/helpers.js';

let cluster: LocalCluster;

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, partitions: 16 });
});

afterAll(async () => {
  await cluster?.stop();
});

const quiet = { logger: false as const, abortOnError: false };

/** Boots an application context for `module` and closes it; resolves to the bootstrap error, or 'started'. */
async function boot(module: object, use?: (app: Awaited<ReturnType<typeof NestFactory.createApplicationContext>>) => Promise<void> | void): Promise<string> {
  let app: Awaited<ReturnType<typeof NestFactory.createApplicationContext>>;
  try {
    app = await NestFactory.createApplicationContext(module, quiet);
  } catch (e) {
    return String(e);
  }
  try {
    await use?.(app);
  } finally {
    await app.close();
  }
  return 'started';
}

/** Runs `use` against an app listening on 127.0.0.1 with GridlinkModule.forRoot and `controllers`, then closes it. */
async function serve(controllers: Type[], use: (base: string, app: INestApplication) => Promise<void>, settings: NestApplicationOptions = quiet): Promise<void> {
  @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers })
  class App {}
  const app = await NestFactory.create(App, settings);
  try {
    await app.listen(0, '127.0.0.1');
    await use(`http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`, app);
  } finally {
    await app.close();
  }
}

describe('GridlinkModule.forRoot options', () => {
  it('names the field of a bad option before anything connects', () => {
    const endpoints = ['127.0.0.1:1'];
    expect(() => GridlinkModule.forRoot({ client: { endpoints }, cache: ['x'] } as never)).toThrow(/"cache": is not a GridlinkModule option/);
    expect(() => GridlinkModule.forRoot({ client: {} })).toThrow(/"client\.endpoints"/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints: ['grid-0:99999'] } })).toThrow(/^invalid dedupe option "client\.endpoints\[0\]": (?!invalid config)/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints }, idempotency: { leaseMs: -1 } })).toThrow(/"idempotency\.leaseMs"/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints }, idempotency: { failMode: 'sideways' } as never })).toThrow(/"idempotency\.failMode"/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints }, idempotency: { lease: 1 } as never })).toThrow(/"idempotency\.lease": is not a known option/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints }, idempotency: { client: {} } as never })).toThrow(/"idempotency\.client"/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints }, idempotency: 'on' as never })).toThrow(/"idempotency": must be an object/);
    // Module defaults may leave the fingerprint to the routes.
    expect(() => GridlinkModule.forRoot({ client: { endpoints }, idempotency: { header: false } })).not.toThrow();
  });

  it('names the field of a bad @Idempotent(), @InjectCache() or forFeature() argument where it is written', () => {
    expect(() => Idempotent({ leaseMs: 'long' } as never)).toThrow(/"leaseMs"/);
    expect(() => Idempotent({ methods: [] })).toThrow(/"methods"/);
    expect(() => Idempotent({ client: {} } as never)).toThrow(/"client": is not an option here/);
    expect(() => Idempotent({ header: false })).not.toThrow();
    expect(() => InjectCache('')).toThrow(/"InjectCache"/);
    expect(() => GridlinkModule.forFeature([''])).toThrow(/"caches"/);
    expect(() => GridlinkModule.forFeature('orders' as never)).toThrow(/"caches"/);
    // The grid's limit on a cache name, 255 UTF-8 bytes: refused here, not while the providers are built.
    const tooLong = 'é'.repeat(128);
    expect(() => InjectCache(tooLong)).toThrow(/"InjectCache": the cache name must be a string of 1 to 255 UTF-8 bytes, got 256 bytes/);
    expect(() => GridlinkModule.forFeature([tooLong])).toThrow(/"caches"/);
    expect(() => GridlinkModule.forRoot({ client: { endpoints: ['127.0.0.1:1'] }, caches: [tooLong] })).toThrow(/"caches"/);
    expect(() => GridlinkModule.forRootAsync({ useFactory: () => ({ client: {} }), caches: [tooLong] })).toThrow(/"caches"/);
    expect(() => InjectCache('é'.repeat(127))).not.toThrow();
  });
});

describe('GridlinkModule.forRootAsync', () => {
  it('checks its own options at once', () => {
    expect(() => GridlinkModule.forRootAsync({})).toThrow(/"useFactory": exactly one of useFactory, useClass or useExisting/);
    expect(() => GridlinkModule.forRootAsync({ useFactory: () => ({ client: {} }), useExisting: 'X' })).toThrow(/"useExisting": exactly one .*, got useFactory and useExisting/);
    class Factory {
      createGridlinkOptions(): { client: object } {
        return { client: {} };
      }
    }
    expect(() => GridlinkModule.forRootAsync({ useClass: Factory, useExisting: 'X' })).toThrow(/"useExisting": exactly one .*, got useClass and useExisting/);
    expect(() => GridlinkModule.forRootAsync({ useExisting: 'X', inject: ['Y'] })).toThrow(/"inject"/);
    expect(() => GridlinkModule.forRootAsync({ useFactory: () => ({ client: {} }), caches: [''] })).toThrow(/"caches"/);
    expect(() => GridlinkModule.forRootAsync({ useFactory: () => ({ client: {} }), inejct: [] } as never)).toThrow(/"inejct"/);
    // null is refused for useExisting as it is for useFactory and useClass (it was passed to Nest
    // as the token to inject, failing the bootstrap with "can't resolve dependencies").
    expect(() => GridlinkModule.forRootAsync({ useFactory: null as never })).toThrow(/"useFactory": must be a function/);
    expect(() => GridlinkModule.forRootAsync({ useClass: null as never })).toThrow(/"useClass"/);
    expect(() => GridlinkModule.forRootAsync({ useExisting: null as never })).toThrow(/"useExisting": must be an injection token .*got null/);
    expect(() => GridlinkModule.forRootAsync({ useExisting: '' })).toThrow(/"useExisting": must be an injection token .*got ""/);
    expect(() => GridlinkModule.forRootAsync({ useExisting: 42 as never })).toThrow(/"useExisting".*got 42/);
    expect(() => GridlinkModule.forRootAsync({ useExisting: 'OPTIONS' })).not.toThrow();
    expect(() => GridlinkModule.forRootAsync({ useExisting: Symbol('OPTIONS') })).not.toThrow();
  });

  it('stops the bootstrap with the field named when the factory returns bad options', async () => {
    const factoryModule = (useFactory: () => unknown): object => {
      @Module({ imports: [GridlinkModule.forRootAsync({ useFactory: useFactory as () => GridlinkModuleOptions })] })
      class M {}
      return M;
    };
    expect(await boot(factoryModule(() => 42))).toMatch(/"GridlinkModule options": must be an object \(what the async factory returned\), got number/);
    expect(await boot(factoryModule(() => null))).toMatch(/got null/);
    expect(await boot(factoryModule(() => ({ client: {} })))).toMatch(/"client\.endpoints"/);
    expect(await boot(factoryModule(() => ({ client: { endpoints: cluster.endpoints }, idempotency: { gridTimeoutMs: 0 } })))).toMatch(/"idempotency\.gridTimeoutMs"/);
    expect(await boot(factoryModule(() => Promise.reject(new Error('config service down'))))).toMatch(/config service down/);
    expect(await boot(factoryModule(() => {
      throw new Error('factory threw');
    }))).toMatch(/factory threw/);
  });

  it("refuses caches the factory returns that forRootAsync did not name (they could not be injected)", async () => {
    @Module({ imports: [GridlinkModule.forRootAsync({ useFactory: () => ({ client: { endpoints: cluster.endpoints }, caches: ['orders', 'late'] }), caches: ['orders'] })] })
    class M {}
    expect(await boot(M)).toMatch(/"caches": \["late"\] returned by the async factory: name them in forRootAsync\(\{ caches \}\)/);
  });

  it('useFactory with inject, useClass and useExisting give a connected client and the named caches', async () => {
    const ENDPOINTS = 'ENDPOINTS';
    @Module({ providers: [{ provide: ENDPOINTS, useValue: cluster.endpoints }], exports: [ENDPOINTS] })
    class ConfigModule {}

    @Injectable()
    class OptionsFromClass implements GridlinkOptionsFactory {
      constructor(@Inject(ENDPOINTS) private readonly endpoints: string[]) {}
      createGridlinkOptions(): Promise<GridlinkModuleOptions> {
        return Promise.resolve({ client: { endpoints: this.endpoints }, caches: ['orders'] });
      }
    }

    @Injectable()
    class Uses {
      constructor(@InjectCache('orders') readonly orders: GridCache<string, string>, @Inject(GridClient) readonly client: GridClient) {}
    }

    const variants = [
      GridlinkModule.forRootAsync({ imports: [ConfigModule], inject: [ENDPOINTS], useFactory: (endpoints: string[]) => ({ client: { endpoints } }), caches: ['orders'] }),
      GridlinkModule.forRootAsync({ imports: [ConfigModule], useClass: OptionsFromClass, caches: ['orders'] }),
    ];
    @Module({ imports: [ConfigModule], providers: [OptionsFromClass], exports: [OptionsFromClass] })
    class OptionsModule {}
    variants.push(GridlinkModule.forRootAsync({ imports: [OptionsModule], useExisting: OptionsFromClass, caches: ['orders'] }));

    for (const grid of variants) {
      @Module({ imports: [grid], providers: [Uses] })
      class App {}
      expect(
        await boot(App, async (app) => {
          const uses = app.get(Uses);
          expect(uses.client).toBe(app.get(GRID_CLIENT));
          expect(uses.client.topology().nodes.some((n) => n.connected)).toBe(true);
          await uses.orders.put('k', 'v');
          expect(await uses.client.cache<string, string>('orders').get('k')).toBe('v');
        }),
      ).toBe('started');
    }
  });

  it('useClass / useExisting that do not make options are named', async () => {
    @Injectable()
    class NotAFactory {}
    @Module({ imports: [GridlinkModule.forRootAsync({ useClass: NotAFactory as never })] })
    class M {}
    expect(await boot(M)).toMatch(/"useClass": must provide createGridlinkOptions\(\)/);
  });
});

describe('@Idempotent() on a controller and on its route', () => {
  it('runs the interceptor once per request, with the route options over the controller options', async () => {
    let runs = 0;
    @Controller('both')
    @Idempotent({ retryAfterSeconds: 7 })
    class Both {
      @Post()
      @Idempotent({ required: true })
      create(): { run: number } {
        return { run: ++runs };
      }

      @Post('controller-only')
      other(): { run: number } {
        return { run: ++runs };
      }
    }
    await serve([Both], async (base) => {
      const key = `both-${Date.now()}`;
      const a = await post(base, '/both', {}, { 'idempotency-key': key });
      expect(a.status).toBe(201);
      expect(JSON.parse(a.body.toString())).toEqual({ run: 1 });
      const b = await post(base, '/both', {}, { 'idempotency-key': key });
      expect(b.status).toBe(201);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(b.body.equals(a.body)).toBe(true);
      // required: true comes from the route, on top of the controller's options.
      expect((await post(base, '/both', {})).status).toBe(400);
      const c = await post(base, '/both/controller-only', {}, { 'idempotency-key': key });
      const d = await post(base, '/both/controller-only', {}, { 'idempotency-key': key });
      expect([c.status, d.status, d.headers.get('idempotent-replayed')]).toEqual([201, 201, 'true']);
      expect(runs).toBe(2);
    });
  });
});

describe('@Idempotent() on a handler that fails after its response started', () => {
  it('frees the key instead of storing the truncated answer: a retry runs the handler again', async () => {
    let runs = 0;
    @Controller('partial')
    class Partial {
      @Post()
      @Idempotent()
      async create(@Res() res: import('node:http').ServerResponse): Promise<void> {
        runs++;
        res.statusCode = 200;
        res.setHeader('content-type', 'text/plain');
        res.write('first half ');
        await new Promise((r) => setTimeout(r, 10));
        throw new Error('failed half way');
      }

      // An error before anything went out is answered by Nest's filter, and a 4xx stored as usual.
      @Post('early')
      @Idempotent()
      @HttpCode(200)
      early(): never {
        runs++;
        throw new ConflictException('taken');
      }
    }
    await serve([Partial], async (base) => {
      const key = { 'idempotency-key': 'partial-1' };
      const first = await post(base, '/partial', {}, key);
      expect(first.status).toBe(200);
      await waitFor(async () => {
        const again = await post(base, '/partial', {}, key);
        return again.status === 200 && again.headers.get('idempotent-replayed') === null;
      }, 5000, 'a retry that runs the handler again');
      expect(runs).toBeGreaterThanOrEqual(2);
      runs = 0;
      const a = await post(base, '/partial/early', {}, { 'idempotency-key': 'early-1' });
      const b = await post(base, '/partial/early', {}, { 'idempotency-key': 'early-1' });
      expect([a.status, b.status, b.headers.get('idempotent-replayed'), runs]).toEqual([409, 409, 'true', 1]);
    });
  });
});

describe('@Idempotent() on two controllers sharing an inherited route', () => {
  it('each controller de-duplicates its requests with its own options', async () => {
    let runs = 0;
    class Base {
      @Post()
      create(): { run: number } {
        return { run: ++runs };
      }
    }
    @Controller('strict')
    @Idempotent({ required: true })
    class Strict extends Base {}
    @Controller('lenient')
    @Idempotent({ required: false })
    class Lenient extends Base {}
    await serve([Strict, Lenient], async (base) => {
      // One handler function, two controllers: the first one's options must not become the second's.
      expect((await post(base, '/strict', {})).status).toBe(400);
      expect((await post(base, '/lenient', {})).status).toBe(201);
      expect((await post(base, '/strict', {})).status).toBe(400);
      const key = `inherited-${Date.now()}`;
      const a = await post(base, '/lenient', {}, { 'idempotency-key': key });
      const b = await post(base, '/lenient', {}, { 'idempotency-key': key });
      expect([a.status, b.status, b.headers.get('idempotent-replayed')]).toEqual([201, 201, 'true']);
    });
  });
});

describe('@Idempotent() on @Redirect() routes', () => {
  it('answers duplicates and missing keys without Nest setting headers on the sent response', async () => {
    let runs = 0;
    @Controller('redirect')
    class Redirecting {
      @Post()
      @Idempotent({ required: true, storeStatus: (s) => s < 500 })
      @Redirect('/orders', 303)
      create(): { url: string } {
        return { url: `/orders/${++runs}` };
      }
    }
    const errors: string[] = [];
    const logger = { log: () => undefined, warn: (m: unknown) => errors.push(String(m)), error: (...m: unknown[]) => errors.push(m.map(String).join(' ')) };
    await serve([Redirecting], async (base) => {
      const send = (headers: Record<string, string>): Promise<Response> => fetch(`${base}/redirect`, { method: 'POST', redirect: 'manual', headers });
      const key = `redirect-${Date.now()}`;
      const a = await send({ 'idempotency-key': key });
      expect([a.status, a.headers.get('location')]).toEqual([303, '/orders/1']);
      const b = await send({ 'idempotency-key': key });
      expect([b.status, b.headers.get('location'), b.headers.get('idempotent-replayed')]).toEqual([303, '/orders/1', 'true']);
      expect((await send({})).status).toBe(400);
      expect(runs).toBe(1);
      expect(errors).toEqual([]);
    }, { logger, abortOnError: false });
  });
});

describe('many requests', () => {
  it("leave the client's tables, timers and locks as they were (checked, already so)", async () => {
    @Controller('many')
    class Many {
      @Post()
      @Idempotent({ required: true })
      create(): { ok: true } {
        return { ok: true };
      }

      @Post('boom')
      @Idempotent({ required: true })
      boom(): never {
        throw new Error('handler failed');
      }
    }
    await serve([Many], async (base, app) => {
      const client = app.get<GridClient>(GRID_CLIENT);
      expect((await post(base, '/many', {}, { 'idempotency-key': 'warm-up' })).status).toBe(201);
      const idle = JSON.stringify(client.bookkeeping());
      const run = `many-${Date.now()}`;
      for (let i = 0; i < 20; i++) {
        await Promise.all(
          Array.from({ length: 10 }, async (_, j) => {
            const key = `${run}-${i}-${j}`;
            const first = post(base, '/many', {}, { 'idempotency-key': key });
            const dup = post(base, '/many', {}, { 'idempotency-key': key });
            expect([201, 409]).toContain((await dup).status);
            expect((await first).status).toBe(201);
            expect((await post(base, '/many', {}, { 'idempotency-key': key })).headers.get('idempotent-replayed')).toBe('true');
            expect((await post(base, '/many', {})).status).toBe(400);
            expect((await post(base, '/many/boom', {}, { 'idempotency-key': key })).status).toBe(500);
          }),
        );
      }
      await waitFor(() => JSON.stringify(client.bookkeeping()) === idle, 5000, 'the bookkeeping to return to idle');
    });
  });
});
