/** Validation helpers: every bad option is reported with the field's name. */
import { MessagingConfigError } from './errors.js';

/** The longest delay a Node.js timer takes: a larger one fires at once (with a warning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export function int(field: string, v: unknown, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new MessagingConfigError(field, `must be an integer in [${min}, ${max}], got ${typeof v === 'number' ? String(v) : typeof v}`);
  }
  return v;
}

export function num(field: string, v: unknown, def: number, min: number, max = Number.MAX_VALUE): number {
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new MessagingConfigError(field, `must be a number in [${min}, ${max}], got ${typeof v === 'number' ? String(v) : typeof v}`);
  }
  return v;
}

const NAME = /^[A-Za-z0-9_-]+$/;

/** A name that can be one token of a NATS subject and part of a cache name. */
export function token(field: string, v: unknown, def?: string): string {
  if (v === undefined && def !== undefined) return def;
  if (typeof v !== 'string' || v.length === 0 || v.length > 64 || !NAME.test(v)) {
    throw new MessagingConfigError(field, `must be 1..64 characters from A-Z a-z 0-9 _ -, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A dotted NATS subject prefix without wildcards. */
export function subjectPrefix(field: string, v: unknown, def: string): string {
  if (v === undefined) return def;
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v)) {
    throw new MessagingConfigError(field, `must be a dotted subject without wildcards, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function required<T>(field: string, v: T | undefined | null, check: (v: T) => boolean, what: string): T {
  if (v === undefined || v === null || !check(v)) throw new MessagingConfigError(field, `must be ${what}`);
  return v;
}
