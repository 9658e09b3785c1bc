/** Validation helpers: every bad option is reported with the field's name. */
import { describe } from '@gridlink/client/internal';
import { MessagingConfigError } from './errors.js';

/** A value named in an error message, as the client's configuration errors name it. */
export { describe };

/** The longest delay a Node.js timer takes: a larger one fires at once (with a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function int(field: string, v: unknown, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new MessagingConfigError(field, `must be an integer in [${min}, ${max}], got ${describe(v)}`);
  }
  return v;
}

export function num(field: string, v: unknown, def: number, min: number, max = Number.MAX_VALUE): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new MessagingConfigError(field, `must be a number in [${min}, ${max}], got ${describe(v)}`);
  }
  return v;
}

const NAME = /^[A-Za-z0-9_-]+$/;

/** A name that can be one token of a NATS subject and part of a cache name. */
export function token(field: string, v: unknown, def?: string): string {
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'string' || v.length === 0 || v.length > 64 || !NAME.test(v)) {
    throw new MessagingConfigError(field, `must be 1..64 characters from A-Z a-z 0-9 _ -, got ${describe(v)}`);
  }
  return v;
}

/** A dotted NATS subject prefix without wildcards. */
export function subjectPrefix(field: string, v: unknown, def: string): string {
  if (v === undefined) return def;
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v)) {
    throw new MessagingConfigError(field, `must be a dotted subject without wildcards, got ${describe(v)}`);
  }
  return v;
}

export function required<T>(field: string, v: T | undefined | null, check: (v: T) => boolean, what: string): T {
  if (v === undefined || v === null || !check(v)) throw new MessagingConfigError(field, `must be ${what}`);
  return v;
}

/**
 * An options object: undefined or null mean none ({}); anything else must be a plain object whose
 * keys are all known (a misspelt option is an error naming it, not silently ignored).
 */
export function options<T extends object>(field: string, v: T | null | undefined, known: readonly string[], prefix = ''): Partial<T> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new MessagingConfigError(field, `must be an object, got ${describe(v)}`);
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) throw new MessagingConfigError(`${prefix}${k}`, 'unknown option');
  }
  return v;
}

/** A function option (undefined when absent). */
export function fn<F>(field: string, v: F | undefined): F | undefined {
  if (v !== undefined && typeof v !== 'function') throw new MessagingConfigError(field, `must be a function, got ${describe(v)}`);
  return v;
}
