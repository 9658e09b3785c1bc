/**
 * Closes GridlinkModule's client when the application's startup fails after it connected (ADR
 * 0052). Nest runs no hook of ours then: a provider that fails to build (with `abortOnError:
 * false`) makes `NestFactory.create()` reject before any hook ran, and a failing `onModuleInit()`
 * / `onApplicationBootstrap()` makes `init()` (so `createApplicationContext()` and `listen()`)
 * reject without a shutdown hook — Nest 11's `close()` even rethrows the init error instead of
 * running them. The open client's sockets then keep the process alive after the error.
 *
 * So the Nest entry points that build or initialise an application are wrapped, once per copy of
 * this module: `NestFactory.create*()` runs in an AsyncLocalStorage scope in which the client
 * provider registers what it connected, closed if the call rejects; `init()` of an application
 * (context) closes the application's client if it rejects. Successful calls are untouched.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { NestApplication, NestApplicationContext, NestFactory } from '@nestjs/core';
import type { GridClient } from '@gridlink/client';
import { GRID_CLIENT } from './tokens.js';

interface Startup {
  readonly clients: Set<GridClient>;
  failed: boolean;
}

const startups = new AsyncLocalStorage<Startup>();
/** Local symbol: each loaded copy of this module (ESM and CJS builds) wraps with its own scope. */
const WRAPPED = Symbol('gridlink.nest.startupGuard');
type Fn = ((this: unknown, ...args: unknown[]) => Promise<unknown>) & { [WRAPPED]?: true };
let installed = false;

async function closeQuietly(client: GridClient): Promise<void> {
  await client.close().catch(() => undefined);
}

function wrap(target: object, name: string, make: (original: Fn) => Fn): void {
  const t = target as Record<string, Fn | undefined>;
  const original = t[name];
  if (typeof original !== 'function' || original[WRAPPED] === true) return;
  const wrapped = make(original);
  wrapped[WRAPPED] = true;
  Object.defineProperty(target, name, { value: wrapped, writable: true, configurable: true, enumerable: false });
}

/** Wraps the entry points (idempotent). Called when a GridlinkModule is defined, before any bootstrap. */
export function installStartupGuard(): void {
  if (installed) return;
  installed = true;
  const factory = Object.getPrototypeOf(NestFactory) as object;
  for (const name of ['create', 'createApplicationContext', 'createMicroservice']) {
    wrap(factory, name, (original) =>
      function (this: unknown, ...args: unknown[]) {
        const startup: Startup = { clients: new Set(), failed: false };
        return startups.run(startup, () => original.apply(this, args)).then(
          (app) => {
            startup.clients.clear();
            return app;
          },
          async (e: unknown) => {
            startup.failed = true;
            await Promise.all([...startup.clients].map(closeQuietly));
            throw e;
          },
        );
      },
    );
  }
  for (const proto of [NestApplicationContext.prototype, NestApplication.prototype]) {
    wrap(proto, 'init', (original) =>
      async function (this: unknown, ...args: unknown[]) {
        try {
          return await original.apply(this, args);
        } catch (e) {
          let client: GridClient | undefined;
          try {
            client = (this as { get(token: symbol, o: { strict: boolean }): GridClient }).get(GRID_CLIENT, { strict: false });
          } catch {
            // no GridlinkModule in this application
          }
          if (client !== undefined) await closeQuietly(client);
          throw e;
        }
      },
    );
  }
}

/**
 * Registers a client the provider just connected with the startup in progress. If that startup
 * already failed (another provider failed while this one connected), closes it and throws.
 */
export async function trackStartupClient(client: GridClient): Promise<void> {
  const startup = startups.getStore();
  if (startup === undefined) return;
  if (startup.failed) {
    await closeQuietly(client);
    throw new Error('the application failed to start while the grid client connected; it was closed');
  }
  startup.clients.add(client);
}
