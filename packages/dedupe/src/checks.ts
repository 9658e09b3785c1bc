/**
 * Option checks shared by the de-duplication options (config.ts) and the circuit breaker, which
 * checks its own options when built on its own (and config.ts imports the breaker).
 */
import { GridConfigError, resolveConfig } from '@gridlink/client';
import { DedupeConfigError } from './errors.js';

/** An integer option in [min, max]; `def` when undefined; a DedupeConfigError naming `field` otherwise. */
export function int(field: string, v: unknown, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new DedupeConfigError(field, `must be an integer in [${min}, ${max}], got ${typeof v === 'number' ? v : typeof v}`);
  }
  return v;
}

/** Refuses a key of `o` that is not in `known` (a misspelt option would be ignored), naming it with `prefix`. */
export function onlyKnownOptions(o: object, known: readonly string[], prefix = ''): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) throw new DedupeConfigError(`${prefix}${k}`, 'is not a known option');
}

/**
 * A grid client config checked with the client's own rules before the adapter connects with it
 * (a bad one would fail every connection attempt, retried for ever): a DedupeConfigError naming
 * `<prefix>.<field>` with the client's reason.
 */
export function checkClientConfig(config: unknown, prefix: string): void {
  try {
    resolveConfig(config);
  } catch (e) {
    if (e instanceof GridConfigError) throw new DedupeConfigError(`${prefix}.${e.field}`, e.reason);
    throw e;
  }
}
