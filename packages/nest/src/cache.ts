import { Inject } from '@nestjs/common';
import { cacheToken } from './tokens.js';

/**
 * Injects the `GridCache` named `name` (provided by `GridlinkModule.forRoot({ caches: [name] })`
 * or `GridlinkModule.forFeature([name])`). Type the parameter as `GridCache<K, V>`.
 */
export function InjectCache(name: string): PropertyDecorator & ParameterDecorator {
  return Inject(cacheToken(name));
}
