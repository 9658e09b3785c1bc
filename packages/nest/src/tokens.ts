/** Injection tokens. Explicit tokens everywhere, so nothing depends on emitted decorator metadata. */
export const GRID_CLIENT = Symbol.for('gridlink.nest.GridClient');
export const GRIDLINK_OPTIONS = Symbol.for('gridlink.nest.options');
export const IDEMPOTENT_METADATA = 'gridlink:idempotent';

/** Token of the `GridCache` named `name` (see `@InjectCache`). */
export function cacheToken(name: string): string {
  return `gridlink:cache:${name}`;
}

/** A grid cache name: a string of 1 to 255 UTF-8 bytes. */
export function isCacheName(name: unknown): name is string {
  return typeof name === 'string' && name.length > 0 && Buffer.byteLength(name, 'utf8') <= 255;
}
