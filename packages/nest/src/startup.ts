/**
 * Closes GridlinkModule's client when the application's startup fails after it connected (ADR
 * 0052). Nest runs no hook of ours then: a provider that fails to build (with `abortOnError:
 * false`) makes `NestFactory.create()` reject before any hook ran, and a failing `onModuleInit()`
 * / `onApplicationBootstrap()` makes `init()` (so `createApplicationContext()` and `listen()`)
 * reject without a shutdown hook — Nest 11's `close()` even rethrows the init error instead of
 * running them. The open client's sockets then keep the process alive after the error.
 *
 * So the Nest entry points that build or initialise an application are wrapped:
 * `NestFactory.create*()` and `@nestjs/testing`'s `TestingModuleBuilder.compile()` (when it can be
 * loaded) run in an AsyncLocalStorage scope in which the client provider registers what it
 * connected, closed if the call rejects; `init()` of an application (context) closes the
 * application's client if it rejects, and so does a microservice's `listen()` that is its startup
 * (no init() before it). Successful calls are untouched.
 *
 * The scope storage and the record of what is wrapped live on `globalThis` under a registered
 * symbol, shared by every copy of this module in the process (the ESM and the CJS build, a copy
 * re-evaluated by hot reload, two installed versions): each entry point is wrapped once per
 * process, and a client registers with the scope whichever copy wrapped the call.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { NestApplication, NestApplicationContext, NestFactory } from '@nestjs/core';
import { GRID_CLIENT } from './tokens.js';

interface Closable {
  close(): Promise<void>;
}

/** One bootstrap in progress. Shape shared between copies: change the registry key with it. */
interface Startup {
  readonly clients: Set<Closable>;
  failed: boolean;
}

interface Registry {
  readonly scopes: AsyncLocalStorage<Startup>;
  /** Per target object, the names of its methods wrapped (by any copy). */
  readonly wrapped: WeakMap<object, Set<string>>;
}

const REGISTRY = Symbol.for('gridlink.nest.startupGuard.v1');
/** On every wrapper: the function it wraps (to unwrap, or to patch beneath it). */
export const ORIGINAL = Symbol.for('gridlink.nest.startupGuard.original');

type Fn = ((this: unknown, ...args: unknown[]) => Promise<unknown>) & { [ORIGINAL]?: Fn };

function registry(): Registry {
  const g = globalThis as { [REGISTRY]?: Registry };
  return (g[REGISTRY] ??= { scopes: new AsyncLocalStorage<Startup>(), wrapped: new WeakMap() });
}

async function closeQuietly(client: Closable): Promise<void> {
  await client.close().catch(() => undefined);
}

/** Replaces `target[name]` by `make(original)`, once per target and name in the process. */
function wrap(target: object, name: string, make: (original: Fn) => Fn): void {
  const r = registry();
  const names = r.wrapped.get(target) ?? new Set<string>();
  const original = (target as Record<string, Fn | undefined>)[name];
  if (names.has(name) || typeof original !== 'function') return;
  const wrapped = make(original);
  Object.defineProperty(wrapped, 'name', { value: original.name, configurable: true });
  wrapped[ORIGINAL] = original;
  Object.defineProperty(target, name, { value: wrapped, writable: true, configurable: true, enumerable: false });
  names.add(name);
  r.wrapped.set(target, names);
}

/**
 * Runs a bootstrap call in its own scope; closes what connected in it if the call rejects. `then`
 * sees what a successful call returned.
 */
function scoped(original: Fn, then?: (app: unknown) => void): Fn {
  return function (this: unknown, ...args: unknown[]) {
    const startup: Startup = { clients: new Set(), failed: false };
    return Promise.resolve(registry().scopes.run(startup, () => original.apply(this, args))).then(
      (app) => {
        startup.clients.clear();
        then?.(app);
        return app;
      },
      async (e: unknown) => {
        startup.failed = true;
        await Promise.all([...startup.clients].map(closeQuietly));
        throw e;
      },
    );
  };
}

/** Closes the client of an application (its GRID_CLIENT), if it has one. */
async function closeClientOf(app: unknown): Promise<void> {
  let client: Closable | undefined;
  try {
    client = (app as { get(token: symbol, o: { strict: boolean }): Closable }).get(GRID_CLIENT, { strict: false });
  } catch {
    // no GridlinkModule in this application
  }
  if (client !== undefined) await closeQuietly(client);
}

/**
 * Applications whose init() resolved. Module-local: the wrappers that read and fill it are made
 * by the same copy of this module (the first to load).
 */
const initialized = new WeakSet<object>();

/** init() that closes the application's client if it rejects. */
function closingInit(original: Fn): Fn {
  return async function (this: unknown, ...args: unknown[]) {
    try {
      const r = await original.apply(this, args);
      initialized.add(this as object);
      return r;
    } catch (e) {
      await closeClientOf(this);
      throw e;
    }
  };
}

/**
 * A microservice's listen(): without an init() before it, it is the startup itself — Nest's
 * NestMicroservice.listen() runs the lifecycle hooks (registerModules), then starts the transport,
 * and init() is never called. If it rejects then, the application's client is closed, whatever
 * failed (a hook, the transport). After a successful init() it is left alone, like an HTTP
 * listen() that fails to bind: the caller holds a started application, and close() closes it.
 * So is the listen() of a hybrid application's microservice (`connectMicroservice()`), which Nest
 * marks initialised at once (`isInitialized`, a field of NestApplicationContext in 11 and 12): the
 * HTTP application's init() ran the hooks.
 */
function closingListen(original: Fn): Fn {
  return async function (this: unknown, ...args: unknown[]) {
    const isStartup = !initialized.has(this as object) && (this as { isInitialized?: unknown }).isInitialized !== true;
    try {
      return await original.apply(this, args);
    } catch (e) {
      if (isStartup) await closeClientOf(this);
      throw e;
    }
  };
}

/**
 * Wraps listen() of the microservice class, found on the first application createMicroservice()
 * returns (a Proxy around a NestMicroservice: its prototype is the class's), so
 * `@nestjs/microservices` need not resolve from here. Once per process, before that first
 * application reaches its caller.
 */
function guardMicroservice(app: unknown): void {
  if (typeof app !== 'object' || app === null) return;
  const proto = Object.getPrototypeOf(app) as object | null;
  if (proto !== null && proto !== Object.prototype) wrap(proto, 'listen', closingListen);
}

/**
 * `@nestjs/testing`, if installed where this copy can resolve it: an optional peer, never a
 * dependency of apps. Loaded synchronously (Nest 12's ESM build through require(esm), Node
 * 20.19+ / 22.12+) so it is wrapped before any test compiles; elsewhere not covered.
 */
function loadTesting(): { TestingModuleBuilder?: unknown } | undefined {
  try {
    return createRequire(import.meta.url)('@nestjs/testing') as { TestingModuleBuilder?: unknown };
  } catch {
    return undefined;
  }
}

let installed = false;

/** Wraps the entry points, once per process (idempotent). Runs when this module loads. */
export function installStartupGuard(): void {
  if (installed) return;
  installed = true;
  const factoryProto = Object.getPrototypeOf(NestFactory) as object;
  for (const name of ['create', 'createApplicationContext', 'createMicroservice']) {
    const make = (original: Fn): Fn => (name === 'createMicroservice' ? scoped(original, guardMicroservice) : scoped(original));
    wrap(factoryProto, name, make);
    // A patch of the NestFactory instance itself, made before this module loaded, calls the
    // original it captured and would pass by the prototype's wrapper: wrap it too.
    if (Object.prototype.hasOwnProperty.call(NestFactory, name)) wrap(NestFactory, name, make);
  }
  for (const proto of [NestApplicationContext.prototype, NestApplication.prototype]) wrap(proto, 'init', closingInit);
  const builder = loadTesting()?.TestingModuleBuilder;
  if (typeof builder === 'function') wrap(builder.prototype as object, 'compile', scoped);
}

/**
 * Registers a client the provider just connected with the startup in progress. If that startup
 * already failed (another provider failed while this one connected), closes it and throws.
 */
export async function trackStartupClient(client: Closable): Promise<void> {
  const startup = registry().scopes.getStore();
  if (startup === undefined) return;
  if (startup.failed) {
    await closeQuietly(client);
    throw new Error('the application failed to start while the grid client connected; it was closed');
  }
  startup.clients.add(client);
}
