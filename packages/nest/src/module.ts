/**
 * GridlinkModule: a global module providing a connected GridClient (injectable by the GRID_CLIENT
 * token or the GridClient class), named caches for `@InjectCache`, the idempotency interceptor
 * and the health indicator. The client connects while the module initialises and closes on
 * application shutdown.
 */
import { Inject, Injectable, type DynamicModule, type InjectionToken, type ModuleMetadata, type OnApplicationShutdown, type OnModuleInit, type Provider, type Type } from '@nestjs/common';
import { ApplicationConfig, DiscoveryModule, DiscoveryService } from '@nestjs/core';
import { GridClient } from '@gridlink/client';
import { DedupeConfigError, checkClientConfig } from '@gridlink/dedupe';
import { GridHealthIndicator } from './health.js';
import { IdempotencyInterceptor, checkIdempotentOptions, routeOptions, type IdempotentOptions } from './interceptor.js';
import { checkRoute } from './route-check.js';
import { installStartupGuard, trackStartupClient } from './startup.js';
import { GRID_CLIENT, GRIDLINK_OPTIONS, IDEMPOTENT_METADATA, cacheToken, isCacheName } from './tokens.js';
import type { GridlinkModuleOptions } from './options.js';

export type { GridlinkModuleOptions } from './options.js';

// When this module loads, not when a GridlinkModule is first defined: in
// `NestFactory.create(AppModule.register())` the callee is read before the arguments run, so a
// guard installed by `GridlinkModule.forRoot()` inside register() would miss that very call.
installStartupGuard();

/** What `forRootAsync({ useClass })` or `forRootAsync({ useExisting })` names: a provider making the options. */
export interface GridlinkOptionsFactory {
  createGridlinkOptions(): GridlinkModuleOptions | Promise<GridlinkModuleOptions>;
}

/** Exactly one of `useFactory` (with `inject`), `useClass` or `useExisting`. */
export interface GridlinkModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  useFactory?: (...args: never[]) => GridlinkModuleOptions | Promise<GridlinkModuleOptions>;
  inject?: InjectionToken[];
  /** A class implementing `GridlinkOptionsFactory`, instantiated by the module. */
  useClass?: Type<GridlinkOptionsFactory>;
  /** A provider (from `imports` or a global module) implementing `GridlinkOptionsFactory`. */
  useExisting?: InjectionToken<GridlinkOptionsFactory>;
  /** Named caches to provide for `@InjectCache(name)` (known before the factory runs). */
  caches?: string[];
}

const MODULE_FIELDS = new Set(['client', 'idempotency', 'caches']);
const ASYNC_FIELDS = new Set(['imports', 'useFactory', 'inject', 'useClass', 'useExisting', 'caches']);

function checkCacheNames(field: string, v: unknown): string[] {
  // The grid's limit (1 to 255 UTF-8 bytes): a longer name passed here used to fail only while
  // the module's providers were built, with the client's error naming "name".
  if (!Array.isArray(v) || !v.every(isCacheName)) throw new DedupeConfigError(field, 'must be an array of cache names (strings of 1 to 255 UTF-8 bytes)');
  return v;
}

/**
 * Checks the module options where they are given (forRoot) or made (the async factory), so a bad
 * one stops the bootstrap with the field named instead of failing requests later. `asyncCaches`:
 * the caches `forRootAsync` provides (a factory's `caches` cannot add providers any more).
 */
function validate(o: unknown, asyncCaches?: readonly string[]): GridlinkModuleOptions {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) {
    throw new DedupeConfigError('GridlinkModule options', `must be an object${asyncCaches === undefined ? '' : ' (what the async factory returned)'}, got ${o === null ? 'null' : Array.isArray(o) ? 'an array' : typeof o}`);
  }
  for (const k of Object.keys(o)) if (!MODULE_FIELDS.has(k)) throw new DedupeConfigError(k, 'is not a GridlinkModule option (client, idempotency, caches)');
  const opts = o as GridlinkModuleOptions;
  if (typeof opts.client !== 'object' || opts.client === null) throw new DedupeConfigError('client', 'must be a GridClientConfig object');
  checkClientConfig(opts.client, 'client'); // the client's own checks, before connecting
  if (opts.caches !== undefined) {
    const names = checkCacheNames('caches', opts.caches);
    const missing = asyncCaches === undefined ? [] : names.filter((n) => !asyncCaches.includes(n));
    if (missing.length > 0) {
      throw new DedupeConfigError('caches', `${JSON.stringify(missing)} returned by the async factory: name them in forRootAsync({ caches }) — providers exist before the factory runs`);
    }
  }
  if (opts.idempotency !== undefined) checkIdempotentOptions(opts.idempotency, 'idempotency.');
  return opts;
}

/** Closes the client when the application shuts down. */
class GridlinkLifecycle implements OnApplicationShutdown {
  constructor(private readonly client: GridClient) {}

  async onApplicationShutdown(): Promise<void> {
    await this.client.close();
  }
}
Injectable()(GridlinkLifecycle);
Inject(GRID_CLIENT)(GridlinkLifecycle, undefined, 0);

function cacheProviders(names: readonly string[]): Provider[] {
  return names.map((name) => ({
    provide: cacheToken(name),
    useFactory: (client: GridClient) => client.cache(name),
    inject: [GRID_CLIENT],
  }));
}

/** A route handler of a controller, with what the route check reads of it. */
interface Route {
  readonly handler: object;
  readonly controller: string;
  readonly name: string;
  readonly classOpts: IdempotentOptions | undefined;
  readonly routeOpts: IdempotentOptions | undefined;
}

/** Per application (its DiscoveryService), its routes, walked once: both route checks read them. */
const walked = new WeakMap<DiscoveryService, readonly Route[]>();

/**
 * Every route handler of the application's controllers (Nest's @Get/@Post... set the 'method'
 * metadata on the function), inherited ones included. The controllers are walked once per
 * application, while the client provider is built (the controllers are known by then); the check
 * in init() reads what that walk found.
 */
function routesOf(discovery: DiscoveryService): readonly Route[] {
  const known = walked.get(discovery);
  if (known !== undefined) return known;
  const routes: Route[] = [];
  for (const wrapper of discovery.getControllers()) {
    const cls = wrapper.metatype as (abstract new (...a: never[]) => unknown) | null | undefined;
    if (typeof cls !== 'function') continue;
    const classOpts = Reflect.getMetadata(IDEMPOTENT_METADATA, cls) as IdempotentOptions | undefined;
    const seen = new Set<string>();
    for (let proto = cls.prototype as object | null; proto !== null && proto !== Object.prototype; proto = Object.getPrototypeOf(proto) as object | null) {
      for (const name of Object.getOwnPropertyNames(proto)) {
        if (name === 'constructor' || seen.has(name)) continue;
        seen.add(name);
        const handler = Object.getOwnPropertyDescriptor(proto, name)?.value as unknown;
        if (typeof handler !== 'function' || !Reflect.hasMetadata('method', handler)) continue;
        routes.push({ handler, controller: cls.name, name, classOpts, routeOpts: Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotentOptions | undefined });
      }
    }
  }
  walked.set(discovery, routes);
  return routes;
}

/**
 * Checks the options every `@Idempotent()` route will run with (module defaults, controller,
 * route merged), before the client connects: each part alone may be incomplete (`header: false`
 * here, `fingerprint` there), but a route whose merged options are not (no key could ever be
 * derived) must stop the bootstrap, not answer its first request with a 500. So does one on an
 * `@Sse()` route (`checkRoute`, route-check.ts). `global`: an IdempotencyInterceptor runs on every route (see
 * `GlobalInterceptorCheck`), so the routes without `@Idempotent()` are checked too (those with it
 * were, before connecting); otherwise only those with it.
 */
function checkRoutes(o: GridlinkModuleOptions, routes: readonly Route[], global = false): void {
  for (const { handler, controller, name, classOpts, routeOpts } of routes) {
    const marked = classOpts !== undefined || routeOpts !== undefined;
    if (marked === global) continue;
    checkRoute(routeOptions(o, classOpts, routeOpts), handler, classOpts, routeOpts, controller, name);
  }
}

/**
 * An IdempotencyInterceptor registered globally — `{ provide: APP_INTERCEPTOR, useClass (or
 * useExisting): IdempotencyInterceptor }`, or `app.useGlobalInterceptors(app.get(IdempotencyInterceptor))`
 * — runs on every route, `@Idempotent()` or not, so `checkRoutes` must see every route. Nest
 * knows global interceptors only after the providers are built (APP_INTERCEPTOR ones are added to
 * its ApplicationConfig then) or once the caller has the application (useGlobalInterceptors), so
 * they cannot be seen where the client provider checks: they are read from ApplicationConfig
 * (public, injectable in every module, the same in Nest 11 and 12) when the application
 * initialises, before it listens — the latest point at which Nest applies them to routes. A
 * refusal fails init() (listen()); the client is connected by then, and the startup guard closes
 * it (ADR 0052).
 */
class GlobalInterceptorCheck implements OnModuleInit {
  constructor(
    private readonly config: ApplicationConfig,
    private readonly options: GridlinkModuleOptions,
    private readonly discovery: DiscoveryService,
  ) {}

  onModuleInit(): void {
    const ours = (c: unknown): boolean => c === IdempotencyInterceptor || (typeof c === 'function' && c.prototype instanceof IdempotencyInterceptor);
    const global =
      this.config.getGlobalInterceptors().some((i) => i instanceof IdempotencyInterceptor) ||
      // Request-scoped or transient registrations: Nest keeps their wrappers, instances come per request.
      this.config.getGlobalRequestInterceptors().some((w) => ours(w.metatype));
    if (global) checkRoutes(this.options, routesOf(this.discovery), true);
  }
}
Injectable()(GlobalInterceptorCheck);
Inject(ApplicationConfig)(GlobalInterceptorCheck, undefined, 0);
Inject(GRIDLINK_OPTIONS)(GlobalInterceptorCheck, undefined, 1);
Inject(DiscoveryService)(GlobalInterceptorCheck, undefined, 2);

function common(optionsProvider: Provider, caches: readonly string[], imports: ModuleMetadata['imports'] = [], extra: Provider[] = []): DynamicModule {
  const clientProvider: Provider = {
    provide: GRID_CLIENT,
    useFactory: async (o: GridlinkModuleOptions, discovery: DiscoveryService) => {
      checkRoutes(o, routesOf(discovery));
      const client = await GridClient.connect(o.client);
      await trackStartupClient(client);
      return client;
    },
    inject: [GRIDLINK_OPTIONS, DiscoveryService],
  };
  const cacheP = cacheProviders(caches);
  const exported = [GRID_CLIENT, GridClient, GRIDLINK_OPTIONS, IdempotencyInterceptor, GridHealthIndicator, ...cacheP.map((p) => (p as { provide: string }).provide)];
  return {
    module: GridlinkModule,
    global: true,
    imports: [DiscoveryModule, ...(imports ?? [])],
    providers: [
      ...extra,
      optionsProvider,
      clientProvider,
      { provide: GridClient, useExisting: GRID_CLIENT },
      GridlinkLifecycle,
      GlobalInterceptorCheck,
      IdempotencyInterceptor,
      GridHealthIndicator,
      ...cacheP,
    ],
    exports: exported,
  };
}

export class GridlinkModule {
  /** Connects with a static configuration. */
  static forRoot(options: GridlinkModuleOptions): DynamicModule {
    const o = validate(options);
    return common({ provide: GRIDLINK_OPTIONS, useValue: o }, o.caches ?? []);
  }

  /** Connects with a configuration from a factory (e.g. from ConfigService). */
  static forRootAsync(options: GridlinkModuleAsyncOptions): DynamicModule {
    if (typeof options !== 'object' || options === null) throw new DedupeConfigError('GridlinkModule async options', 'must be an object');
    for (const k of Object.keys(options)) if (!ASYNC_FIELDS.has(k)) throw new DedupeConfigError(k, 'is not a forRootAsync option (imports, useFactory, inject, useClass, useExisting, caches)');
    const ways = (['useFactory', 'useClass', 'useExisting'] as const).filter((k) => options[k] !== undefined);
    // Named for the option that is one too many (the second given), or useFactory when none is.
    if (ways.length !== 1) throw new DedupeConfigError(ways[1] ?? 'useFactory', `exactly one of useFactory, useClass or useExisting is required${ways.length > 1 ? `, got ${ways.join(' and ')}` : ''}`);
    if (options.useFactory !== undefined && typeof options.useFactory !== 'function') throw new DedupeConfigError('useFactory', 'must be a function');
    if (options.useClass !== undefined && typeof options.useClass !== 'function') throw new DedupeConfigError('useClass', 'must be a class implementing createGridlinkOptions()');
    const existing: unknown = options.useExisting;
    if (existing !== undefined && !(typeof existing === 'function' || typeof existing === 'symbol' || (typeof existing === 'string' && existing !== ''))) {
      throw new DedupeConfigError('useExisting', `must be an injection token (a class, a non-empty string or a symbol) of a provider implementing createGridlinkOptions(), got ${existing === null ? 'null' : JSON.stringify(existing) ?? typeof existing}`);
    }
    if (options.inject !== undefined && (!Array.isArray(options.inject) || options.useFactory === undefined)) throw new DedupeConfigError('inject', 'must be an array of tokens, with useFactory');
    if (options.imports !== undefined && !Array.isArray(options.imports)) throw new DedupeConfigError('imports', 'must be an array of modules');
    const caches = options.caches === undefined ? [] : checkCacheNames('caches', options.caches);
    const extra: Provider[] = [];
    let provider: Provider;
    if (options.useFactory !== undefined) {
      const factory = options.useFactory as (...args: unknown[]) => GridlinkModuleOptions | Promise<GridlinkModuleOptions>;
      provider = { provide: GRIDLINK_OPTIONS, useFactory: async (...args: unknown[]) => validate(await factory(...args), caches), inject: options.inject ?? [] };
    } else {
      const token = (options.useClass ?? options.useExisting) as InjectionToken<GridlinkOptionsFactory>;
      if (options.useClass !== undefined) extra.push(options.useClass);
      provider = {
        provide: GRIDLINK_OPTIONS,
        useFactory: async (f: GridlinkOptionsFactory) => {
          if (typeof f?.createGridlinkOptions !== 'function') throw new DedupeConfigError(options.useClass !== undefined ? 'useClass' : 'useExisting', 'must provide createGridlinkOptions()');
          return validate(await f.createGridlinkOptions(), caches);
        },
        inject: [token],
      };
    }
    return common(provider, caches, options.imports, extra);
  }

  /** Provides more named caches for `@InjectCache` in a feature module. */
  static forFeature(caches: string[]): DynamicModule {
    const providers = cacheProviders(checkCacheNames('caches', caches));
    return { module: GridlinkModule, providers, exports: providers.map((p) => (p as { provide: string }).provide) };
  }
}
