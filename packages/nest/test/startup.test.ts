/**
 * A Nest application (HTTP, application context, TCP microservice, testing module) whose startup
 * fails after GridlinkModule's client connected (or while it connects) closes that client: Nest
 * runs no shutdown hook then, and the open client's sockets would keep the process alive after
 * the error (ADR 0052). Also: a route whose merged
 * @Idempotent() options can never derive a key, or that would de-duplicate an @Sse() stream,
 * stops the bootstrap before anything connects; under a global IdempotencyInterceptor (every
 * route), when the application initialises, the client then closed.
 */
import 'reflect-metadata';
import { Controller, Inject, Injectable, Module, Post, RequestMethod, Scope, Sse, type INestApplication, type MessageEvent, type OnModuleInit, type Provider } from '@nestjs/common';
import { firstValueFrom, interval, map, type Observable } from 'rxjs';
import { APP_INTERCEPTOR, DiscoveryService, NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, Transport, type MicroserviceOptions } from '@nestjs/microservices';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { GRID_CLIENT, GridlinkModule, Idempotent, IdempotencyInterceptor } from '@gridlink/nest';
import { FailsOnBootstrap, FailsOnInit, FailsToBuild, clientRecorder, holdConnect, isClosed } from './helpers.js';

/**
 * Listens, reads `/<route>/stream` past its first two events (a stream the interceptor lets
 * through), then POSTs `/<route>` twice with one Idempotency-Key: the handler runs once
 * (`posts()`), the second answer is its replay. Closes the app.
 */
async function streamsThenReplays(app: INestApplication, route: string, posts: () => number): Promise<void> {
  const ac = new AbortController();
  try {
    await app.listen(0, '127.0.0.1');
    const base = `http://127.0.0.1:${(app.getHttpServer().address() as { port: number }).port}`;
    const events = await fetch(`${base}/${route}/stream`, { signal: ac.signal });
    expect(events.headers.get('content-type')).toContain('text/event-stream');
    const reader = events.body!.getReader();
    let text = '';
    while (!text.includes('data: {"n":1}')) {
      const { value, done } = await reader.read();
      expect(done).toBe(false);
      text += Buffer.from(value).toString();
    }
    expect(text).toContain('data: {"n":0}');
    ac.abort();
    const send = (): Promise<Response> => fetch(`${base}/${route}`, { method: 'POST', headers: { 'idempotency-key': `${route}-1` } });
    expect((await send()).status).toBe(201);
    const again = await send();
    expect([again.status, again.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(posts()).toBe(1);
  } finally {
    ac.abort();
    await app.close();
  }
}

let cluster: LocalCluster;
const clients = clientRecorder();
const connected = clients.connected;
const recordClients = (): void => clients.start();

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, partitions: 16 });
});

afterAll(async () => {
  await cluster?.stop();
});

afterEach(async () => {
  await clients.closeAll();
});

const quiet = { logger: false as const, abortOnError: false };

describe('startup fails after the client connected', () => {
  it('createApplicationContext: a provider whose onModuleInit throws', async () => {
    recordClients();
    @Injectable()
    class Failing implements OnModuleInit {
      constructor(@Inject(GRID_CLIENT) readonly client: GridClient) {}
      onModuleInit(): void {
        throw new Error('init failed');
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [Failing] })
    class App {}
    await expect(NestFactory.createApplicationContext(App, quiet)).rejects.toThrow('init failed');
    expect(connected).toHaveLength(1);
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('NestFactory.create with abortOnError false: a provider that fails to build after the client connected', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsToBuild] })
    class App {}
    await expect(NestFactory.create(App, quiet)).rejects.toThrow('constructor failed');
    expect(connected).toHaveLength(1);
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('NestFactory.create: another provider fails while the client is still connecting', async () => {
    // The client connects only once the other provider has failed the bootstrap.
    const connecting = holdConnect();
    @Module({
      imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })],
      providers: [{ provide: 'BROKEN', useFactory: () => Promise.reject(new Error('config missing')) }],
    })
    class App {}
    await expect(NestFactory.create(App, quiet)).rejects.toThrow('config missing');
    connecting.release();
    expect(connecting.made).toHaveLength(1);
    const client = await connecting.made[0]!;
    connected.push(client);
    // The provider closes what it connected once it sees the startup failed.
    await vi.waitFor(() => expect(isClosed(client)).toBe(true), { timeout: 5000 });
  });

  it('listen(): an onApplicationBootstrap that throws', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsOnBootstrap] })
    class App {}
    const app = await NestFactory.create(App, quiet);
    await expect(app.listen(0, '127.0.0.1')).rejects.toThrow('bootstrap failed');
    expect(connected).toHaveLength(1);
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('a successful startup keeps its client open until close()', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })] })
    class App {}
    const app = await NestFactory.create(App, quiet);
    await app.listen(0, '127.0.0.1');
    expect(isClosed(connected[0]!)).toBe(false);
    await app.close();
    expect(isClosed(connected[0]!)).toBe(true);
  });
});

describe('two applications bootstrapping at once', () => {
  it('the one that fails closes its own client; the other keeps its client', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsToBuild] })
    class Bad {}
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })] })
    class Good {}
    const [bad, good] = await Promise.allSettled([NestFactory.createApplicationContext(Bad, quiet), NestFactory.createApplicationContext(Good, quiet)]);
    expect(bad.status).toBe('rejected');
    expect(good.status).toBe('fulfilled');
    const app = (good as PromiseFulfilledResult<Awaited<ReturnType<typeof NestFactory.createApplicationContext>>>).value;
    const goodClient = app.get<GridClient>(GRID_CLIENT);
    expect(connected).toHaveLength(2);
    expect(isClosed(goodClient)).toBe(false);
    expect(connected.filter((c) => c !== goodClient).map(isClosed)).toEqual([true]);
    await app.close();
    expect(isClosed(goodClient)).toBe(true);
  });
});

/**
 * NestFactory.createMicroservice() with Nest's own TCP transport on 127.0.0.1. A microservice has
 * no separate init step in the usual bootstrap: `listen()` runs the lifecycle hooks itself (in
 * NestMicroservice.registerModules), then starts the transport.
 */
describe('NestFactory.createMicroservice (TCP on 127.0.0.1)', () => {
  const tcp = (port = 0): MicroserviceOptions & typeof quiet => ({ ...quiet, transport: Transport.TCP, options: { host: '127.0.0.1', port } });

  it('a provider that fails to build after the client connected: createMicroservice() rejects with the client closed', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsToBuild] })
    class App {}
    await expect(NestFactory.createMicroservice<MicroserviceOptions>(App, tcp())).rejects.toThrow('constructor failed');
    expect(connected).toHaveLength(1);
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('listen() without init(): an onModuleInit that throws rejects it with the client closed', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsOnInit] })
    class App {}
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(App, tcp());
    expect(isClosed(connected[0]!)).toBe(false);
    await expect(app.listen()).rejects.toThrow('init failed');
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('init() then listen(): an onApplicationBootstrap that throws rejects init() with the client closed', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsOnBootstrap] })
    class App {}
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(App, tcp());
    await expect(app.init()).rejects.toThrow('bootstrap failed');
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('a successful microservice answers over TCP with its client open, until close()', async () => {
    recordClients();
    @Controller()
    class Ping {
      constructor(@Inject(GRID_CLIENT) private readonly client: GridClient) {}
      @MessagePattern('ping')
      ping(): { connected: boolean } {
        return { connected: this.client.topology().nodes.some((n) => n.connected) };
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [Ping] })
    class App {}
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(App, tcp());
    await app.listen();
    const { port } = app.unwrap<NetServer>().address() as AddressInfo;
    const proxy = ClientProxyFactory.create({ transport: Transport.TCP, options: { host: '127.0.0.1', port } });
    try {
      expect(await firstValueFrom(proxy.send<{ connected: boolean }>('ping', {}))).toEqual({ connected: true });
    } finally {
      await proxy.close();
    }
    expect(isClosed(connected[0]!)).toBe(false);
    await app.close();
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('listen() after a successful init() that fails to bind (port taken) leaves the application to the caller: close() closes the client', async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })] })
    class App {}
    const first = await NestFactory.createMicroservice<MicroserviceOptions>(App, tcp());
    await first.listen();
    const { port } = first.unwrap<NetServer>().address() as AddressInfo;
    const second = await NestFactory.createMicroservice<MicroserviceOptions>(App, tcp(port));
    try {
      await second.init();
      await expect(second.listen()).rejects.toThrow(/EADDRINUSE/);
      expect(isClosed(connected[1]!)).toBe(false);
    } finally {
      await second.close();
      await first.close();
    }
    expect(connected.map(isClosed)).toEqual([true, true]);
  });

  it("a hybrid application's startAllMicroservices() failing to bind leaves the application to the caller: its hooks ran in init()", async () => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })] })
    class App {}
    const taken = await NestFactory.createMicroservice<MicroserviceOptions>(App, tcp());
    await taken.listen();
    const { port } = taken.unwrap<NetServer>().address() as AddressInfo;
    const hybrid = await NestFactory.create(App, quiet);
    try {
      hybrid.connectMicroservice<MicroserviceOptions>(tcp(port));
      await hybrid.init();
      await expect(hybrid.startAllMicroservices()).rejects.toThrow(/EADDRINUSE/);
      expect(isClosed(connected[1]!)).toBe(false);
    } finally {
      await hybrid.close();
      await taken.close();
    }
    expect(connected.map(isClosed)).toEqual([true, true]);
  });
});

/**
 * @nestjs/testing builds the module through its own loader, not NestFactory: the guard wraps
 * TestingModuleBuilder.compile() too (@nestjs/testing loaded, if installed, when @gridlink/nest loads).
 */
describe('@nestjs/testing: Test.createTestingModule(...).compile()', () => {
  it('a provider that fails to build after the client connected: compile() rejects with the client closed', async () => {
    recordClients();
    const builder = Test.createTestingModule({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsToBuild] }).setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined });
    await expect(builder.compile()).rejects.toThrow('constructor failed');
    expect(connected).toHaveLength(1);
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('another provider fails while the client is still connecting: the client closes once connected', async () => {
    // The client connects only once the other provider has failed the compile.
    const connecting = holdConnect();
    const builder = Test.createTestingModule({
      imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })],
      // Fails once the client provider is connecting (the testing loader may build it first or after).
      providers: [{ provide: 'BROKEN', useFactory: () => connecting.called.then(() => Promise.reject(new Error('config missing'))) }],
    }).setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined });
    await expect(builder.compile()).rejects.toThrow('config missing');
    connecting.release();
    expect(connecting.made).toHaveLength(1);
    const client = await connecting.made[0]!;
    connected.push(client);
    await vi.waitFor(() => expect(isClosed(client)).toBe(true), { timeout: 5000 });
  });

  it('compile() succeeds, init() of the testing app fails (onModuleInit throws): the client is closed', async () => {
    recordClients();
    const moduleRef = await Test.createTestingModule({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [FailsOnInit] })
      .setLogger({ log: () => undefined, error: () => undefined, warn: () => undefined })
      .compile();
    expect(isClosed(connected[0]!)).toBe(false);
    const app = moduleRef.createNestApplication({ logger: false });
    await expect(app.init()).rejects.toThrow('init failed');
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('a successful compile() keeps the client open until the testing module closes', async () => {
    recordClients();
    const moduleRef = await Test.createTestingModule({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })] }).compile();
    await moduleRef.init();
    expect(moduleRef.get(GridClient)).toBe(connected[0]);
    expect(isClosed(connected[0]!)).toBe(false);
    await moduleRef.close();
    expect(isClosed(connected[0]!)).toBe(true);
  });
});

describe('@Idempotent() routes that could never derive a key', () => {
  it('header: false with no fingerprint anywhere stops the bootstrap, naming the field and the route, before connecting', async () => {
    recordClients();
    @Controller('nokey')
    class NoKey {
      @Post()
      @Idempotent({ header: false })
      create(): { ok: true } {
        return { ok: true };
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [NoKey] })
    class App {}
    await expect(NestFactory.create(App, quiet)).rejects.toThrow(/"fingerprint": is required when header is false.*NoKey\.create/);
    expect(connected).toHaveLength(0);
  });

  it('module defaults header: false, controller without fingerprint: refused; a fingerprint on the controller is enough', async () => {
    recordClients();
    @Controller('a')
    @Idempotent({ required: true })
    class Missing {
      @Post()
      create(): { ok: true } {
        return { ok: true };
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints }, idempotency: { header: false } })], controllers: [Missing] })
    class Refused {}
    await expect(NestFactory.createApplicationContext(Refused, quiet)).rejects.toThrow(/"fingerprint".*Missing\.create/);

    @Controller('b')
    @Idempotent({ fingerprint: () => ['same'] })
    class WithFingerprint {
      @Post()
      @Idempotent({ required: true })
      create(): { ok: true } {
        return { ok: true };
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints }, idempotency: { header: false } })], controllers: [WithFingerprint] })
    class Accepted {}
    const app = await NestFactory.createApplicationContext(Accepted, quiet);
    await app.close();
    expect(connected).toHaveLength(1);
  });
});

describe('@Idempotent() on an @Sse() route', () => {
  const ticks = (): Observable<MessageEvent> => interval(10).pipe(map((n) => ({ data: { n } })));

  it('on the route: stops the bootstrap naming the route, before connecting', async () => {
    recordClients();
    @Controller('events')
    class Events {
      @Sse('stream')
      @Idempotent()
      stream(): Observable<MessageEvent> {
        return ticks();
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [Events] })
    class App {}
    await expect(NestFactory.create(App, quiet)).rejects.toThrow(/"@Idempotent\(\)": cannot apply to an @Sse\(\) route .* — @Idempotent\(\) route Events\.stream/);
    expect(connected).toHaveLength(0);
  });

  it("on the controller: refused when its methods take the stream's method (GET listed, or @Sse with method POST)", async () => {
    recordClients();
    @Controller('get-events')
    @Idempotent({ methods: ['GET', 'POST'] })
    class GetEvents {
      @Sse('stream')
      stream(): Observable<MessageEvent> {
        return ticks();
      }
    }
    @Controller('post-events')
    @Idempotent()
    class PostEvents {
      @Sse('stream', { method: RequestMethod.POST })
      stream(): Observable<MessageEvent> {
        return ticks();
      }
    }
    for (const [controller, method] of [[GetEvents, 'GET'], [PostEvents, 'POST']] as const) {
      @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [controller] })
      class App {}
      await expect(NestFactory.create(App, quiet)).rejects.toThrow(new RegExp(`"methods": includes ${method}, the method of this @Sse\\(\\) route.* — @Idempotent\\(\\) route ${controller.name}\\.stream`));
    }
    expect(connected).toHaveLength(0);
  });

  it('on a controller whose methods leave the stream out: the app starts, the stream passes through, its POST route is de-duplicated', async () => {
    recordClients();
    let posts = 0;
    @Controller('mixed')
    @Idempotent({ required: true })
    class Mixed {
      @Sse('stream')
      stream(): Observable<MessageEvent> {
        return ticks();
      }

      @Post()
      create(): { n: number } {
        return { n: ++posts };
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [Mixed] })
    class App {}
    await streamsThenReplays(await NestFactory.create(App, quiet), 'mixed', () => posts);
  });
});

describe('a global IdempotencyInterceptor and @Sse() routes', () => {
  const ticks = (): Observable<MessageEvent> => interval(10).pipe(map((n) => ({ data: { n } })));

  @Controller('global-events')
  class PostStream {
    @Sse('stream', { method: RequestMethod.POST })
    stream(): Observable<MessageEvent> {
      return ticks();
    }
  }

  const global: [string, Provider][] = [
    ['APP_INTERCEPTOR useClass', { provide: APP_INTERCEPTOR, useClass: IdempotencyInterceptor }],
    ['APP_INTERCEPTOR useExisting', { provide: APP_INTERCEPTOR, useExisting: IdempotencyInterceptor }],
    ['APP_INTERCEPTOR request-scoped', { provide: APP_INTERCEPTOR, useClass: IdempotencyInterceptor, scope: Scope.REQUEST }],
  ];

  it.each(global)("%s: a stream whose method the module's methods take stops init(), naming the route; the client is closed", async (_name, provider) => {
    recordClients();
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [PostStream], providers: [provider] })
    class App {}
    const app = await NestFactory.create(App, quiet);
    await expect(app.init()).rejects.toThrow(
      /"methods": includes POST, the method of this @Sse\(\) route, so the global IdempotencyInterceptor would de-duplicate it .*: leave POST out of GridlinkModule's idempotency\.methods — route PostStream\.stream \(global IdempotencyInterceptor\)/,
    );
    expect(connected).toHaveLength(1);
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('app.useGlobalInterceptors(): a GET stream under methods that take GET stops listen(); so do merged options that derive no key', async () => {
    recordClients();
    @Controller('get-stream')
    class GetStream {
      @Sse('stream')
      stream(): Observable<MessageEvent> {
        return ticks();
      }
    }
    @Controller('keyless')
    class Keyless {
      @Post()
      create(): string {
        return 'created';
      }
    }
    const cases: [ReturnType<typeof GridlinkModule.forRoot>, abstract new () => unknown, RegExp][] = [
      [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints }, idempotency: { methods: ['GET', 'POST'] } }), GetStream, /"methods": includes GET, .* — route GetStream\.stream \(global IdempotencyInterceptor\)/],
      [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints }, idempotency: { header: false } }), Keyless, /"fingerprint": is required when header is false .* — route Keyless\.create \(global IdempotencyInterceptor\)/],
    ];
    for (const [gridlink, controller, refusal] of cases) {
      @Module({ imports: [gridlink], controllers: [controller as never] })
      class App {}
      const app = await NestFactory.create(App, quiet);
      app.useGlobalInterceptors(app.get(IdempotencyInterceptor));
      await expect(app.listen(0, '127.0.0.1')).rejects.toThrow(refusal);
    }
    expect(connected).toHaveLength(2);
    expect(connected.map(isClosed)).toEqual([true, true]);
  });

  it('app.useGlobalInterceptors() after init() is not checked: the interceptor never runs on a singleton controller, and runs unchecked on a request-scoped one', async () => {
    recordClients();
    let n = 0;
    @Controller('late-singleton')
    class Singleton {
      @Post()
      create(): { n: number } {
        return { n: ++n };
      }
    }
    @Controller({ path: 'late-scoped', scope: Scope.REQUEST })
    class Scoped {
      @Post()
      create(): { n: number } {
        return { n: ++n };
      }
    }
    // header: false with no fingerprint derives no key: refused if the interceptor were seen.
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints }, idempotency: { header: false } })], controllers: [Singleton, Scoped] })
    class App {}
    const app = await NestFactory.create(App, quiet);
    try {
      await app.init();
      app.useGlobalInterceptors(app.get(IdempotencyInterceptor));
      await app.listen(0, '127.0.0.1');
      const base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
      // Nest built the singleton's handler in init(), with the global interceptors it knew then.
      expect((await fetch(`${base}/late-singleton`, { method: 'POST' })).status).toBe(201);
      // A request-scoped controller's handler is built per request: the interceptor runs there,
      // with the options the check would have refused (no key can be derived: 500).
      expect((await fetch(`${base}/late-scoped`, { method: 'POST' })).status).toBe(500);
    } finally {
      await app.close();
    }
  });

  it.each(['express', 'fastify'] as const)('app.useGlobalInterceptors() after init(), a request-scoped @Sse() route whose method it takes (platform-%s): a 500 problem+json naming the route, logged once, no lock, the stream never runs; other streams pass through', async (platform) => {
    recordClients();
    let streams = 0;
    let posts = 0;
    @Controller({ path: 'late-sse', scope: Scope.REQUEST })
    class LateSse {
      @Sse('post', { method: RequestMethod.POST })
      post(): Observable<MessageEvent> {
        streams++;
        return ticks();
      }

      @Sse('stream')
      stream(): Observable<MessageEvent> {
        return ticks();
      }

      @Post()
      create(): { n: number } {
        return { n: ++posts };
      }
    }
    const errors: string[] = [];
    const logger = { log: () => undefined, warn: () => undefined, error: (m: unknown, ...rest: unknown[]) => errors.push([m, ...rest].map(String).join(' ')) };
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [LateSse] })
    class App {}
    let app: INestApplication;
    if (platform === 'express') app = await NestFactory.create(App, { logger, abortOnError: false });
    else {
      const adapter = new FastifyAdapter();
      // An async onSend hook that takes a while, as many apps have: it must not let Nest's SSE
      // stream write its headers before the refusal.
      adapter.getInstance().addHook('onSend', async (_req, _reply, payload) => {
        await new Promise((r) => setTimeout(r, 30));
        return payload;
      });
      app = await NestFactory.create(App, adapter, { logger, abortOnError: false });
    }
    try {
      await app.init();
      app.useGlobalInterceptors(app.get(IdempotencyInterceptor));
      await app.listen(0, '127.0.0.1');
      const base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
      const refusal = /"methods": includes POST, the method of this @Sse\(\) route, so the global IdempotencyInterceptor would de-duplicate it .* — route LateSse\.post \(global IdempotencyInterceptor\).*IdempotencyInterceptor cannot apply to an @Sse\(\) route/;
      for (let i = 0; i < 2; i++) {
        // The same key twice: a lock taken by the first would answer the second 409.
        const ac = new AbortController();
        try {
          const r = await fetch(`${base}/late-sse/post`, { method: 'POST', headers: { 'idempotency-key': `late-sse-1-${platform}` }, signal: ac.signal });
          expect(r.status).toBe(500);
          expect(r.headers.get('content-type')).toBe('application/problem+json');
          const problem = (await r.json()) as { status: number; detail: string };
          expect(problem.status).toBe(500);
          expect(problem.detail).toMatch(refusal);
        } finally {
          ac.abort();
        }
      }
      expect(streams).toBe(0);
      expect(errors.filter((e) => refusal.test(e))).toHaveLength(1);
      // A GET stream (not in the default methods) passes through; the POST route is de-duplicated.
      const ac = new AbortController();
      try {
        const events = await fetch(`${base}/late-sse/stream`, { signal: ac.signal });
        expect([events.status, events.headers.get('content-type')]).toEqual([200, 'text/event-stream']);
        const reader = events.body!.getReader();
        let text = '';
        while (!text.includes('data: {"n":0}')) {
          const { value, done } = await reader.read();
          expect(done).toBe(false);
          text += Buffer.from(value).toString();
        }
      } finally {
        ac.abort();
      }
      const send = (): Promise<Response> => fetch(`${base}/late-sse`, { method: 'POST', headers: { 'idempotency-key': `late-sse-2-${platform}` } });
      expect((await send()).status).toBe(201);
      const again = await send();
      expect([again.status, again.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
      expect(posts).toBe(1);
      // Logged once, and nothing else (no headers written twice, no write after end).
      expect(errors).toHaveLength(1);
    } finally {
      await app.close();
    }
  });

  it("the controllers' routes are walked once at startup, also with a global interceptor (the check before connecting and the one in init() share that walk)", async () => {
    @Controller('walked')
    class Walked {
      @Idempotent()
      @Post()
      create(): string {
        return 'created';
      }

      @Sse('stream')
      stream(): Observable<MessageEvent> {
        return ticks();
      }
    }
    const walks = vi.spyOn(DiscoveryService.prototype, 'getControllers');
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [Walked], providers: [{ provide: APP_INTERCEPTOR, useExisting: IdempotencyInterceptor }] })
    class App {}
    const app = await NestFactory.create(App, quiet);
    try {
      await app.init();
      expect(walks).toHaveBeenCalledTimes(1);
    } finally {
      walks.mockRestore();
      await app.close();
    }
  });

  it('a GET stream under the default methods: the app starts, the stream passes through, a POST route is de-duplicated by the global interceptor', async () => {
    recordClients();
    let posts = 0;
    @Controller('plain')
    class Plain {
      @Sse('stream')
      stream(): Observable<MessageEvent> {
        return ticks();
      }

      @Post()
      create(): { n: number } {
        return { n: ++posts };
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], controllers: [Plain], providers: [{ provide: APP_INTERCEPTOR, useExisting: IdempotencyInterceptor }] })
    class App {}
    await streamsThenReplays(await NestFactory.create(App, quiet), 'plain', () => posts);
  });
});
