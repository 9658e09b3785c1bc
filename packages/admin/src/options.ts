/** Checks of the options the package's functions take (the CLI checks its command line in run.ts). */
import { MAX_DURATION_MS } from './duration.js';
import { AdminUsageError } from './errors.js';
import { parseHost, type HostValue } from './dashboard/hosts.js';

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

const HOST_FORMS = 'a host name, an IPv4 address or a bracketed IPv6 address, each with an optional :port';

/** One host a dashboard answers to: `name`, `name:port`, an IPv4 address or `[IPv6]`, with an optional port. */
export function hostOption(name: string, v: unknown): HostValue {
  const parsed = typeof v === 'string' ? parseHost(v) : null;
  if (parsed === null) throw new AdminUsageError(name, `must be ${HOST_FORMS}, got ${shown(v)}`);
  return parsed;
}

/** A list of hosts (see hostOption); left out (undefined), none given. */
export function hostListOption(name: string, v: unknown): HostValue[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new AdminUsageError(name, `must be an array of hosts (${HOST_FORMS}), got ${shown(v)}`);
  return v.map((h: unknown) => hostOption(name, h));
}
