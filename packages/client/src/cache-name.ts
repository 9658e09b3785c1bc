import { MAX_CACHE_NAME_BYTES, utf8Length } from '@gridlink/protocol';

/**
 * A grid cache name: a string of 1 to MAX_CACHE_NAME_BYTES (255) UTF-8 bytes, what
 * `GridClient.cache()` and the nodes accept. The adapters check names with it before any client
 * exists (Nest's `@InjectCache()`, `forFeature()`, dedupe's `cache` option).
 */
export function isCacheName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && utf8Length(name) <= MAX_CACHE_NAME_BYTES;
}
