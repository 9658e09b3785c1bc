/** Injection tokens. Explicit tokens everywhere, so nothing depends on emitted decorator metadata. */
export const GRID_CLIENT = Symbol.for('gridlink.nest.GridClient');
export const GRIDLINK_OPTIONS = Symbol.for('gridlink.nest.options');
export const IDEMPOTENT_METADATA = 'gridlink:idempotent';

/** Token of the `GridCache` named `name` (see `@InjectCache`). */
export function cacheToken(name: string): string {
  return `gridlink:cache:${name}`;
}

/** A grid cache name (1 to 255 UTF-8 bytes): the client's own rule. */
export { isCacheName } from '@gridlink/client/internal';
