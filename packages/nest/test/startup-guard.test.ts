/**
 * How the startup guard of ADR 0052 (wrapped NestFactory / init / TestingModuleBuilder.compile)
 * behaves in a real process: installed when @gridlink/nest loads, so even the bootstrap call that
 * defines the GridlinkModule in its own arguments is covered; shared by every copy of the module in
 * the process (ESM + CJS builds, hot reload), so nothing is wrapped twice; and a patch of the
 * NestFactory instance made before it loaded is wrapped too. Each test file runs in its own
 * process, so the first test here sees the state right after @gridlink/nest loaded.
 */
import 'reflect-metadata';
import { Module, type DynamicModule } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TestingModuleBuilder } from '@nestjs/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridlinkModule } from '@gridlink/nest';
import { ORIGINAL } from '../src/startup.js';
import { FailsToBuild, clientRecorder, isClosed } from './helpers.js';

type StartupModule = typeof import('../src/startup.js');

let cluster: LocalCluster;
const clients = clientRecorder();
const quiet = { logger: false as const, abortOnError: false };

beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, partitions: 16 });
});

afterAll(async () => {
  await cluster?.stop();
});

afterEach(async () => {
  await clients.closeAll();
});

/** A module whose register() defines the GridlinkModule: only when the bootstrap's arguments run. */
class AppModule {
  static register(endpoints: string[]): DynamicModule {
    return { module: AppModule, imports: [GridlinkModule.forRoot({ client: { endpoints } })], providers: [FailsToBuild] };
  }
}
Module({})(AppModule);

/** Another evaluation of startup.ts, as a second build (ESM/CJS) or a hot reload loads it. */
async function anotherCopy(tag: string): Promise<StartupModule> {
  return (await import(/* @vite-ignore */ `${new URL('../src/startup.ts', import.meta.url).href}?copy=${tag}`)) as StartupModule;
}

const protoOf = (): Record<string, unknown> => Object.getPrototypeOf(NestFactory) as Record<string, unknown>;

describe('the startup guard in a process', () => {
  it('covers NestFactory.createApplicationContext(AppModule.register()), whose callee is read before register() defines the GridlinkModule', async () => {
    clients.start();
    await expect(NestFactory.createApplicationContext(AppModule.register(cluster.endpoints), quiet)).rejects.toThrow('constructor failed');
    expect(clients.connected).toHaveLength(1);
    expect(isClosed(clients.connected[0]!)).toBe(true);
  });

  it('another copy of the module (second build, hot reload) wraps nothing again, and its clients register with the scope the first copy opened', async () => {
    const compile = (): unknown => Object.getOwnPropertyDescriptor(TestingModuleBuilder.prototype, 'compile')?.value;
    const before = { create: protoOf().create, context: protoOf().createApplicationContext, compile: compile() };
    const copy = await anotherCopy('reload');
    copy.installStartupGuard();
    expect(protoOf().create).toBe(before.create);
    expect(protoOf().createApplicationContext).toBe(before.context);
    expect(compile()).toBe(before.compile);
    expect((before.compile as { [ORIGINAL]?: unknown })[ORIGINAL]).toBeTypeOf('function');
    expect((before.context as { [ORIGINAL]?: unknown })[ORIGINAL]).toBeTypeOf('function');

    // A client provider of the other copy, in a bootstrap that fails after it connected.
    let closed = 0;
    const fake = { close: async () => void closed++ };
    @Module({
      providers: [
        { provide: 'CLIENT', useFactory: async () => (await copy.trackStartupClient(fake), fake) },
        { provide: 'BROKEN', useFactory: (c: unknown) => Promise.reject(new Error(`failed after ${c === fake ? 'the client' : '?'}`)), inject: ['CLIENT'] },
      ],
    })
    class App {}
    await expect(NestFactory.createApplicationContext(App, quiet)).rejects.toThrow('failed after the client');
    expect(closed).toBe(1);
  });

  it('wraps a patch of the NestFactory instance made before @gridlink/nest loaded (it calls the original it captured)', async () => {
    clients.start();
    const original = (protoOf().createApplicationContext as { [ORIGINAL]: (...a: unknown[]) => Promise<unknown> })[ORIGINAL];
    let patchCalls = 0;
    Object.defineProperty(NestFactory, 'createApplicationContext', {
      value: function (this: unknown, ...args: unknown[]) {
        patchCalls++;
        return original.apply(this, args);
      },
      configurable: true,
      writable: true,
    });
    try {
      (await anotherCopy('patched')).installStartupGuard();
      await expect(NestFactory.createApplicationContext(AppModule.register(cluster.endpoints), quiet)).rejects.toThrow('constructor failed');
      expect(patchCalls).toBe(1);
      expect(clients.connected).toHaveLength(1);
      expect(isClosed(clients.connected[0]!)).toBe(true);
    } finally {
      delete (NestFactory as unknown as Record<string, unknown>).createApplicationContext;
    }
  });
});
