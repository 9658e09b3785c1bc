/**
 * Checks of what reaches the store: request payloads (after the protocol's shape check), cache
 * configs, and the helpers records and snapshots from peers are checked with. Bad input is a
 * StoreError (or a TypeError for the store's own options), thrown before any state changed.
 */
import { ErrorCode, type CacheConfig } from '@gridlink/protocol';
import type { Clock, StoreOptions } from './types.js';
import { isBytes, type Bytes } from './bytes.js';
import { StoreError, badRequest } from './errors.js';

export type Payload = Record<string, unknown>;

export const MAX_CACHE_NAME = 256;
/** Longest lock owner id (characters). */
export const MAX_OWNER = 64;

export function obj(v: unknown, what: string): Payload {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || isBytes(v)) {
    throw badRequest(`${what} must be an object`);
  }
  return v as Payload;
}

export function cacheName(p: Payload): string {
  const c = p['cache'];
  if (typeof c !== 'string' || c.length === 0 || c.length > MAX_CACHE_NAME) {
    throw badRequest(`cache must be a non-empty string of at most ${MAX_CACHE_NAME} characters`);
  }
  return c;
}

export function bytesField(p: Payload, field: string): Bytes {
  const v = p[field];
  if (!isBytes(v)) throw badRequest(`${field} must be bytes`);
  return v;
}

export function safeInt(p: Payload, field: string, min = Number.MIN_SAFE_INTEGER): number {
  const v = p[field];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw badRequest(`${field} must be an integer >= ${min}`);
  }
  return v;
}

export function optSafeInt(p: Payload, field: string, min = Number.MIN_SAFE_INTEGER): number | undefined {
  const v = p[field];
  if (v === undefined || v === null) return undefined;
  return safeInt(p, field, min);
}

/** The optional lock `owner` of a payload. */
export function optOwner(p: Payload): string | undefined {
  const v = p['owner'];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_OWNER) {
    throw badRequest(`owner must be a non-empty string of at most ${MAX_OWNER} characters`);
  }
  return v;
}

/** An optional boolean field (absent or nil: false). */
export function optFlag(p: Payload, field: string): boolean {
  const v = p[field];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badRequest(`${field} must be a boolean`);
  return v;
}

export function isSafeNonNegative(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * What is wrong with a cache config, by field (`''`: the config itself), or null: the store's
 * check (validateCacheConfig) and the node options' (caches, cacheDefaults) alike.
 */
export function cacheConfigProblem(config: unknown): { field: string; message: string } | null {
  if (typeof config !== 'object' || config === null || Array.isArray(config) || isBytes(config)) return { field: '', message: 'must be an object' };
  const c = config as Payload;
  if (c['ttlMs'] !== undefined && c['ttlMs'] !== null && !isSafeNonNegative(c['ttlMs'])) return { field: 'ttlMs', message: 'must be a non-negative integer' };
  if (c['backups'] !== undefined && c['backups'] !== null && !isSafeNonNegative(c['backups'])) return { field: 'backups', message: 'must be a non-negative integer' };
  const policy = c['partitionLossPolicy'];
  if (policy !== undefined && policy !== null && policy !== 'READ_WRITE_SAFE' && policy !== 'READ_ONLY_SAFE' && policy !== 'IGNORE') {
    return { field: 'partitionLossPolicy', message: 'must be READ_WRITE_SAFE, READ_ONLY_SAFE or IGNORE' };
  }
  return null;
}

export function validateCacheConfig(config: unknown, what: string): CacheConfig {
  const bad = cacheConfigProblem(config);
  if (bad !== null) throw badRequest(`${what}${bad.field === '' ? '' : '.' + bad.field} ${bad.message}`);
  const c = config as Payload;
  const out: CacheConfig = {};
  if (c['ttlMs'] !== undefined && c['ttlMs'] !== null) out.ttlMs = c['ttlMs'] as number;
  if (c['backups'] !== undefined && c['backups'] !== null) out.backups = c['backups'] as number;
  const policy = c['partitionLossPolicy'];
  if (policy !== undefined && policy !== null) out.partitionLossPolicy = policy as CacheConfig['partitionLossPolicy'];
  return out;
}

export function validPartition(partition: number): void {
  if (!Number.isSafeInteger(partition) || partition < 0) {
    throw badRequest(`partition must be a non-negative integer, got ${String(partition)}`);
  }
}

export function valueTypeError(message: string): StoreError {
  return new StoreError(ErrorCode.VALUE_TYPE, 'value-type', message);
}

/** Copies the byte fields of a recorded outcome so it does not keep a peer's frame buffer alive. */
export function ownResult(result: unknown): unknown {
  if (isBytes(result)) return new Uint8Array(result);
  if (Array.isArray(result)) return result.map(ownResult);
  if (typeof result === 'object' && result !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(result)) out[k] = ownResult(v);
    return out;
  }
  return result;
}

const DEFAULT_DEDUP_WINDOW_MS = 120_000;

/** StoreOptions checked, with defaults; a TypeError names the bad field. */
export function resolveStoreOptions(opts: StoreOptions): {
  clock: Clock;
  maxEntries: number;
  maxBytes: number;
  dedupWindowMs: number;
  cacheDefaults: CacheConfig;
} {
  const o = obj(opts, 'StoreOptions');
  const positive = (field: string): number => {
    const v = o[field];
    if (v === undefined) return Infinity;
    if (typeof v !== 'number' || !(v > 0) || (!Number.isSafeInteger(v) && v !== Infinity)) {
      throw new TypeError(`StoreOptions.${field} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const maxEntries = positive('maxEntries');
  const maxBytes = positive('maxBytes');
  const w = o['dedupWindowMs'];
  if (w !== undefined && !isSafeNonNegative(w)) {
    throw new TypeError(`StoreOptions.dedupWindowMs must be a non-negative integer, got ${JSON.stringify(w)}`);
  }
  const clock = o['clock'];
  if (clock !== undefined && (typeof clock !== 'object' || clock === null || typeof (clock as Clock).now !== 'function')) {
    throw new TypeError('StoreOptions.clock must have a now() method');
  }
  let cacheDefaults: CacheConfig;
  try {
    cacheDefaults = o['cacheDefaults'] === undefined ? {} : validateCacheConfig(o['cacheDefaults'], 'cacheDefaults');
  } catch (err) {
    throw new TypeError(`StoreOptions.${(err as Error).message}`);
  }
  return { clock: (clock as Clock | undefined) ?? Date, maxEntries, maxBytes, dedupWindowMs: w ?? DEFAULT_DEDUP_WINDOW_MS, cacheDefaults };
}
