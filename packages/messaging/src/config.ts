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

/**
 * nats-server's longest protocol line by default (`max_control_line`): a SUB whose arguments
 * (subject, queue group, subscription id) are longer closes the connection.
 */
const MAX_CONTROL_LINE = 4096;
/** Room kept for nats.js's subscription id (a counter: at most 16 digits). */
const SID_ROOM = 16;
/**
 * The longest subject (bytes) a SUB without a queue group, or a PUB without a reply subject
 * (whose size takes no more room than a subscription id), can carry within `max_control_line`.
 */
const MAX_SUBJECT_BYTES = MAX_CONTROL_LINE - SID_ROOM - 1;

/**
 * A dotted NATS subject prefix without wildcards, short enough that the longest subject made of
 * it, `<prefix><suffix>` (a job queue's `<prefix>.<queue>.submitted`), fits a protocol line:
 * nats-server closes the connection on a longer SUB or PUB line, and nats.js reconnects and
 * subscribes again, so one too long a prefix kept the application's whole connection cycling
 * (every other subscription on it lost meanwhile) while the queue's notices never arrived.
 */
export function subjectPrefix(field: string, v: unknown, def: string, suffix: string): string {
  if (v === undefined) return def;
  if (typeof v !== 'string' || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(v)) {
    throw new MessagingConfigError(field, `must be a dotted subject without wildcards, got ${describe(v)}`);
  }
  // ASCII only (checked above): characters are bytes.
  const max = MAX_SUBJECT_BYTES - utf8.encode(suffix).length;
  if (v.length > max) {
    throw new MessagingConfigError(field, `must be at most ${max} characters here, for its longest subject (<prefix>${suffix}) to fit nats-server's ${MAX_CONTROL_LINE}-byte protocol line, got ${v.length}`);
  }
  return v;
}

/**
 * Letters, marks, numbers, punctuation and symbols: the characters nats-server's error text quotes
 * as they are (Go's %q), and no whitespace, control or format character, nor a lone surrogate.
 */
const QUOTED_AS_IS = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]+$/u;
const QUOTED_AS_IS_RULE = 'letters, marks, numbers, punctuation or symbols (Unicode), without whitespace, control or format characters, lone surrogates, " or \\';
const utf8 = new TextEncoder();

/**
 * Refuses a subject or queue group name that nats-server would quote with escapes in its
 * permission error (`Permissions Violation for Subscription to "<subject>" using queue
 * "<queue>"`, Go's %q): nats.js matches that text to a subscription by the name it sent, so it
 * gives the error to none, and the refused subscription stays open, silently receiving nothing.
 * That is every character but letters, marks, numbers, punctuation and symbols (whitespace,
 * control characters C0, C1 and DEL, format characters, private-use and unassigned code points),
 * and `"` and `\`. A lone surrogate is also refused: nats.js sends it as U+FFFD, so two different
 * names would be one.
 */
function quotedAsIs(field: string, v: string): void {
  if (!QUOTED_AS_IS.test(v) || v.includes('"') || v.includes('\\')) {
    throw new MessagingConfigError(field, `must be ${QUOTED_AS_IS_RULE}, got ${describe(v)}`);
  }
}

/**
 * A core NATS subject `subscribe` can send (docs/messaging.md, *Subjects*). nats.js 3 checks only
 * that it is not empty and has no space, tab, CR or LF (throwing its own InvalidSubjectError), so
 * without this check: an empty token (a leading, trailing or doubled dot) or a `>` before the last
 * token is answered by nats-server with -ERR 'Invalid Subject', and nats.js leaves the
 * subscription open, receiving nothing, the error only a connection status; a SUB line longer
 * than `max_control_line` makes the server close the connection (nats.js reconnects, sends the
 * SUB again and is closed again), with every other subscription on it; a character the server
 * escapes in its permission error (a control or format character, `"`, `\`, ...) leaves a refused
 * subscription open, silently receiving nothing, as for queue group names (`quotedAsIs`).
 * `queued`: a queue group is given, whose space and at least one byte the line must hold too.
 */
export function subscribeSubject(field: string, v: unknown, queued: boolean): string {
  if (typeof v !== 'string' || v === '') throw new MessagingConfigError(field, `must be a non-empty string, got ${describe(v)}`);
  if (/[ \t\n\v\f\r]/.test(v)) throw new MessagingConfigError(field, `must not contain whitespace (space, tab, CR, LF, vertical tab, form feed), got ${describe(v)}`);
  quotedAsIs(field, v);
  const tokens = v.split('.');
  if (tokens.includes('')) throw new MessagingConfigError(field, `must not have an empty token (a leading, trailing or doubled dot), got ${describe(v)}`);
  if (tokens.slice(0, -1).includes('>')) throw new MessagingConfigError(field, `may have ">" only as its last token, got ${describe(v)}`);
  const room = MAX_CONTROL_LINE - SID_ROOM - 1 - (queued ? 2 : 0);
  const bytes = utf8.encode(v).length;
  if (bytes > room) {
    throw new MessagingConfigError(field, `must be at most ${room} bytes (UTF-8)${queued ? ' with a queue group' : ''}, for the SUB line to fit nats-server's ${MAX_CONTROL_LINE} bytes, got ${bytes}`);
  }
  return v;
}

/**
 * A core NATS queue group name that reaches nats-server as given and whose refusal, if the server
 * refuses it, reaches the subscription (docs/messaging.md, *Queue group names*). nats.js 3 checks
 * nothing of it (it writes `SUB <subject> <queue> <sid>` as is), so without this check:
 * whitespace splits the line (the server closes the connection; a line feed even sends the rest
 * as another command); a lone surrogate is sent as U+FFFD (two different names, one group); a
 * control or format character, `"` or `\` is escaped in the server's permission error, which
 * nats.js then cannot match to the subscription (it stays open, silently receiving nothing);
 * `_sys_` is refused by the server; a line longer than `max_control_line` closes the connection.
 */
export function queueGroup(field: string, v: unknown, subject: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new MessagingConfigError(field, `must be a non-empty string, got ${describe(v)}`);
  quotedAsIs(field, v);
  if (v === '_sys_') throw new MessagingConfigError(field, 'must not be "_sys_", which nats-server reserves (it refuses the subscription)');
  const room = MAX_CONTROL_LINE - SID_ROOM - 2 - utf8.encode(subject).length;
  const bytes = utf8.encode(v).length;
  if (bytes > room) {
    throw new MessagingConfigError(field, `must be at most ${Math.max(room, 0)} bytes (UTF-8) with this subject, for the SUB line to fit nats-server's ${MAX_CONTROL_LINE} bytes, got ${bytes}`);
  }
  return v;
}

export function required<T>(field: string, v: T | undefined | null, check: (v: T) => boolean, what: string): T {
  if (v === undefined || v === null || !check(v)) throw new MessagingConfigError(field, `must be ${what}`);
  return v;
}

/**
 * An options argument (per call, or a constructor's already checked): undefined or null mean
 * none ({}); anything else must be a plain object whose keys are all known (a misspelt option is
 * an error naming it, not silently ignored). An option whose value is an object: `nestedOptions`.
 */
export function options<T extends object>(field: string, v: T | null | undefined, known: readonly string[], prefix = ''): Partial<T> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new MessagingConfigError(field, `must be an object, got ${describe(v)}`);
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) throw new MessagingConfigError(`${prefix}${k}`, 'unknown option');
  }
  return v;
}

/**
 * An option whose value is an options object (`retry`, `direct`): checked as `options` (unknown
 * names are refused as `<field>.<name>`), but only undefined means "left out". Null is refused
 * naming the option, like a null for any other option (it used to mean the defaults here, unlike
 * everywhere else, and `retry` was not even typed to take it).
 */
export function nestedOptions<T extends object>(field: string, v: T | null | undefined, known: readonly string[]): Partial<T> {
  if (v === null) throw new MessagingConfigError(field, `must be an object, got ${describe(v)}`);
  return options(field, v, known, `${field}.`);
}

/** A function option (undefined when absent). */
export function fn<F>(field: string, v: F | undefined): F | undefined {
  if (v !== undefined && typeof v !== 'function') throw new MessagingConfigError(field, `must be a function, got ${describe(v)}`);
  return v;
}
