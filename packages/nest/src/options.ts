import type { GridClientConfig } from '@gridlink/client';
import type { DedupeOptions } from '@gridlink/dedupe';

/** Options of `GridlinkModule.forRoot` (own module, so the interceptor reads them without importing the module). */
export interface GridlinkModuleOptions {
  /** Grid client configuration (endpoints, timeouts, ...). */
  client: GridClientConfig;
  /** Defaults for every `@Idempotent()` route (each route's options override them). */
  idempotency?: Omit<DedupeOptions<unknown>, 'client'>;
  /** Named caches to provide for `@InjectCache(name)`. */
  caches?: string[];
}

