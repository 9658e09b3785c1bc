import { Inject } from '@nestjs/common';
import { DedupeConfigError } from '@gridlink/dedupe';
import { cacheToken, isCacheName } from './tokens.js';

/**
 * Injects the `GridCache` named `name` (provided by `GridlinkModule.forRoot({ caches: [name] })`
 * or `GridlinkModule.forFeature([name])`). Type the parameter as `GridCache<K, V>`.
 */
export function InjectCache(name: string): PropertyDecorator & ParameterDecorator {
  if (!isCacheName(name)) throw new DedupeConfigError('InjectCache', `the cache name must be a string of 1 to 255 UTF-8 bytes, got ${typeof name === 'string' ? `${Buffer.byteLength(name, 'utf8')} bytes` : JSON.stringify(name)}`);
  return Inject(cacheToken(name));
}
