import { Inject } from '@nestjs/common';
import { DedupeConfigError } from '@gridlink/dedupe';
import { cacheToken } from './tokens.js';

/**
 * Injects the `GridCache` named `name` (provided by `GridlinkModule.forRoot({ caches: [name] })`
 * or `GridlinkModule.forFeature([name])`). Type the parameter as `GridCache<K, V>`.
 */
export function InjectCache(name: string): PropertyDecorator & ParameterDecorator {
  if (typeof name !== 'string' || name.length === 0) throw new DedupeConfigError('InjectCache', `the cache name must be a non-empty string, got ${JSON.stringify(name)}`);
  return Inject(cacheToken(name));
}
