/**
 * GridlinkModule: a global module providing a connected GridClient (injectable by the GRID_CLIENT
 * token or the GridClient class), named caches for `@InjectCache`, the idempotency interceptor
 * and the health indicator. The client connects while the module initialises and closes on
 * application shutdown.
 */
import { Inject, Injectable, type DynamicModule, type InjectionToken, type ModuleMetadata, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { GridClient } from '@gridlink/client';
import { DedupeConfigError } from '@gridlink/dedupe';
import { GridHealthIndicator } from './health.js';
import { IdempotencyInterceptor } from './interceptor.js';
import { GRID_CLIENT, GRIDLINK_OPTIONS, cacheToken } from './tokens.js';
import type { GridlinkModuleOptions } from './options.js';

export type { GridlinkModuleOptions } from './options.js';

export interface GridlinkModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  useFactory: (...args: never[]) => GridlinkModuleOptions | Promise<GridlinkModuleOptions>;
  inject?: InjectionToken[];
  /** Named caches to provide for `@InjectCache(name)` (known before the factory runs). */
  caches?: string[];
}

function validate(o: unknown): GridlinkModuleOptions {
  if (typeof o !== 'object' || o === null) throw new DedupeConfigError('GridlinkModule options', 'must be an object');
  const opts = o as GridlinkModuleOptions;
  if (typeof opts.client !== 'object' || opts.client === null) throw new DedupeConfigError('client', 'must be a GridClientConfig object');
  if (opts.caches !== undefined && (!Array.isArray(opts.caches) || !opts.caches.every((c) => typeof c === 'string' && c.length > 0))) {
    throw new DedupeConfigError('caches', 'must be an array of non-empty cache names');
  }
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

function common(optionsProvider: Provider, caches: readonly string[], imports: ModuleMetadata['imports'] = []): DynamicModule {
  const clientProvider: Provider = {
    provide: GRID_CLIENT,
    useFactory: (o: GridlinkModuleOptions) => GridClient.connect(o.client),
    inject: [GRIDLINK_OPTIONS],
  };
  const cacheP = cacheProviders(caches);
  const exported = [GRID_CLIENT, GridClient, GRIDLINK_OPTIONS, IdempotencyInterceptor, GridHealthIndicator, ...cacheP.map((p) => (p as { provide: string }).provide)];
  return {
    module: GridlinkModule,
    global: true,
    imports,
    providers: [
      optionsProvider,
      clientProvider,
      { provide: GridClient, useExisting: GRID_CLIENT },
      GridlinkLifecycle,
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
    if (typeof options?.useFactory !== 'function') throw new DedupeConfigError('useFactory', 'must be a function');
    const factory = options.useFactory as (...args: unknown[]) => GridlinkModuleOptions | Promise<GridlinkModuleOptions>;
    const provider: Provider = {
      provide: GRIDLINK_OPTIONS,
      useFactory: async (...args: unknown[]) => validate(await factory(...args)),
      inject: options.inject ?? [],
    };
    return common(provider, options.caches ?? [], options.imports);
  }

  /** Provides more named caches for `@InjectCache` in a feature module. */
  static forFeature(caches: string[]): DynamicModule {
    const providers = cacheProviders(caches);
    return { module: GridlinkModule, providers, exports: providers.map((p) => (p as { provide: string }).provide) };
  }
}
