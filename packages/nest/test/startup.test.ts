/**
 * A Nest application whose startup fails after GridlinkModule's client connected (or while it
 * connects) closes that client: Nest runs no shutdown hook then, and the open client's sockets
 * would keep the process alive after the error (ADR 0052). Also: a route whose merged
 * @Idempotent() options can never derive a key stops the bootstrap before anything connects.
 */
import 'reflect-metadata';
import { Controller, Inject, Injectable, Module, Post, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { GridClient, GridClosedError } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { GRID_CLIENT, GridlinkModule, Idempotent } from '@gridlink/nest';

let cluster: LocalCluster;
let connected: GridClient[] = [];

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, partitions: 16 });
});

afterAll(async () => {
  await cluster?.stop();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(connected.map((c) => c.close()));
  connected = [];
});

/** Records every client GridClient.connect makes (the ones a failed startup cannot hand back). */
function recordClients(): void {
  const connect = GridClient.connect.bind(GridClient);
  vi.spyOn(GridClient, 'connect').mockImplementation(async (config) => {
    const c = await connect(config);
    connected.push(c);
    return c;
  });
}

function isClosed(c: GridClient): boolean {
  try {
    c.cache('probe');
    return false;
  } catch (e) {
    return e instanceof GridClosedError && !c.topology().nodes.some((n) => n.connected);
  }
}

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
    @Injectable()
    class Failing {
      constructor(@Inject(GRID_CLIENT) client: GridClient) {
        if (client !== undefined) throw new Error('constructor failed');
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [Failing] })
    class App {}
    await expect(NestFactory.create(App, quiet)).rejects.toThrow('constructor failed');
    expect(connected).toHaveLength(1);
    expect(isClosed(connected[0]!)).toBe(true);
  });

  it('NestFactory.create: another provider fails while the client is still connecting', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const connect = GridClient.connect.bind(GridClient);
    const made: Promise<GridClient>[] = [];
    vi.spyOn(GridClient, 'connect').mockImplementation((config) => {
      // The client connects only once the other provider has failed the bootstrap.
      const p = held.then(() => connect(config));
      made.push(p);
      return p;
    });
    @Module({
      imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })],
      providers: [{ provide: 'BROKEN', useFactory: () => Promise.reject(new Error('config missing')) }],
    })
    class App {}
    await expect(NestFactory.create(App, quiet)).rejects.toThrow('config missing');
    release();
    expect(made).toHaveLength(1);
    const client = await made[0]!;
    connected.push(client);
    // The provider closes what it connected once it sees the startup failed.
    await vi.waitFor(() => expect(isClosed(client)).toBe(true), { timeout: 5000 });
  });

  it('listen(): an onApplicationBootstrap that throws', async () => {
    recordClients();
    @Injectable()
    class Failing implements OnApplicationBootstrap {
      onApplicationBootstrap(): Promise<void> {
        return Promise.reject(new Error('bootstrap failed'));
      }
    }
    @Module({ imports: [GridlinkModule.forRoot({ client: { endpoints: cluster.endpoints } })], providers: [Failing] })
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
