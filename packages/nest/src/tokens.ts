/** Injection tokens. Explicit tokens everywhere, so nothing depends on emitted decorator metadata. */
export const GRID_CLIENT = Symbol.for('gridlink.nest.GridClient');
export const GRIDLINK_OPTIONS = Symbol.for('gridlink.nest.options');
export const IDEMPOTENT_METADATA = 'gridlink:idempotent';

/** Token of the `GridCache` named `name` (see `@InjectCache`). */
export function cacheToken(name: string): string {
  return `gridlink:cache:${name}`;
}

/**
 * A grid cache name: a string of 1 to 255 UTF-8 bytes. The client's rule (`GridClient.cache()`,
 * with @gridlink/protocol's MAX_CACHE_NAME_BYTES), restated: neither package exports it as a
 * function. test/cache-name-rule.test.ts holds this copy (and dedupe's `cache` check) to it.
 */
export function isCacheName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && Buffer.byteLength(name, 'utf8') <= 255;
}
