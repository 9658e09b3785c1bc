/** Checks of the options the package's functions take (the CLI checks its command line in run.ts). */
import { MAX_DURATION_MS } from './duration.js';
import { AdminUsageError } from './errors.js';

/** A value as an error message shows it: strings quoted (an empty one is visible), objects by kind. */
export function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object' && v !== null) return 'an object';
  if (typeof v === 'function') return 'a function';
  return String(v);
}

/** An integer option in [min, max]; left out (undefined), its default, or refused when it has none (null). */
export function integerOption(name: string, v: unknown, dflt: number | null, min: number, max: number, what: string): number {
  if (v === undefined && dflt !== null) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new AdminUsageError(name, `must be ${what}, got ${shown(v)}`);
  return v;
}

/** A duration option in milliseconds: an integer in [min, MAX_DURATION_MS] (a longer timer fires at once). */
export function durationOption(name: string, v: unknown, dflt: number | null, min = 0): number {
  return integerOption(name, v, dflt, min, MAX_DURATION_MS, `an integer number of milliseconds in [${min}, ${MAX_DURATION_MS}]`);
}
