/**
 * The job record kept in the grid and the pure transitions between its states. No I/O here: the
 * worker reads a record, asks one of these functions for the next record, and writes it with a
 * compare-and-set against the bytes it read. Every write by an owner is fenced: it names the
 * fencing token of its claim and is refused once a newer claim exists.
 */
import { decode, encode } from '@msgpack/msgpack';
import { InvalidKeyError, decodeKey, type GridKey } from '@gridlink/affinity';
import { whyUndecodable } from '@gridlink/client/internal';
import { InvalidJobIdError, InvalidPayloadError, PayloadTooLargeError, type JobErrorInfo } from './errors.js';

export type JobState = 'pending' | 'running' | 'completed' | 'failed';

export interface JobRecord {
  v: 1;
  id: string;
  state: JobState;
  payload: unknown;
  /** Runs started so far (claims). */
  attempt: number;
  /** Handler failures so far. */
  failures: number;
  /** Failures after which the job is marked failed. */
  maxAttempts: number;
  /** Fencing token of the latest claim (0 before the first). */
  token: number;
  /** Worker id of the latest claim. */
  owner: string | null;
  hasCheckpoint: boolean;
  checkpoint: unknown;
  result: unknown;
  error: JobErrorInfo | null;
  createdAt: number;
  updatedAt: number;
  /** Not to be claimed before this time (ms since epoch): retry backoff or a delayed submit. */
  notBefore: number;
  /**
   * Runs that ended without an outcome (their owner died, hung past its lease or lost the job),
   * counted when another claim takes the running job over (ADR 0064). Absent in records written
   * before it was kept: 0.
   */
  lostRuns?: number;
  /**
   * Lost runs after which the job is marked failed (by the claim that counts the last one, which
   * does not run it). Absent in records written before it was kept: the claiming queue's
   * `maxLostRuns`.
   */
  maxLostRuns?: number;
  /** How long a run of the handler may take (ms) before it counts as failed; null (or absent): no limit. */
  timeoutMs?: number | null;
}

export const MAX_JOB_ID_LENGTH = 128;
const JOB_ID = /^[A-Za-z0-9._:-]+$/;

/** Throws InvalidJobIdError unless `id` is 1..128 characters from [A-Za-z0-9._:-]. */
export function checkJobId(id: unknown): asserts id is string {
  if (typeof id !== 'string') throw new InvalidJobIdError(`must be a string, got ${typeof id}`);
  if (id.length === 0) throw new InvalidJobIdError('must not be empty');
  if (id.length > MAX_JOB_ID_LENGTH) throw new InvalidJobIdError(`must be at most ${MAX_JOB_ID_LENGTH} characters, got ${id.length}`);
  if (!JOB_ID.test(id)) throw new InvalidJobIdError('may contain only A-Z a-z 0-9 . _ : -');
}

/**
 * The job id of a scanned job-cache key (its canonical key bytes), or undefined for a key that is
 * not a job id.
 */
export function jobIdOfKey(bytes: Uint8Array): string | undefined {
  let key: GridKey;
  try {
    key = decodeKey(bytes);
  } catch (e) {
    if (e instanceof InvalidKeyError) return undefined; // not a canonical key: no job id made it
    throw e;
  }
  return typeof key === 'string' && key.length <= MAX_JOB_ID_LENGTH && JOB_ID.test(key) ? key : undefined;
}

/** Encodes a user value (payload, checkpoint, result) and checks its size. */
export function checkValue(what: string, value: unknown, maxBytes: number): number {
  if (typeof value === 'function' || typeof value === 'symbol') throw new InvalidPayloadError(what, `a ${typeof value} cannot be stored`);
  let bytes: Uint8Array;
  try {
    bytes = encode(value, { ignoreUndefined: false });
  } catch (e) {
    throw new InvalidPayloadError(what, e instanceof Error ? e.message : String(e), { cause: e });
  }
  if (bytes.length > maxBytes) throw new PayloadTooLargeError(what, bytes.length, maxBytes);
  // What encodes must also decode, or the job's record could never be read again: MessagePack
  // refuses to decode some keys that it encodes (an own "__proto__" key, as JSON.parse makes).
  const why = whyUndecodable(bytes);
  if (why !== null) throw new InvalidPayloadError(what, why.message, { cause: why });
  return bytes.length;
}

export function encodeRecord(r: JobRecord): Uint8Array {
  return encode(r);
}

export function decodeRecord(bytes: Uint8Array): JobRecord {
  const r = decode(bytes) as JobRecord;
  if (typeof r !== 'object' || r === null || r.v !== 1 || typeof r.id !== 'string') throw new Error('not a job record');
  return r;
}

/** Lost runs after which a job is failed when neither its submit nor its queue said (ADR 0064). */
export const DEFAULT_MAX_LOST_RUNS = 5;

export interface RecordLimits {
  /** See JobRecord.maxLostRuns. Default DEFAULT_MAX_LOST_RUNS. */
  maxLostRuns?: number;
  /** See JobRecord.timeoutMs. Default null (no limit). */
  timeoutMs?: number | null;
}

export function newRecord(id: string, payload: unknown, maxAttempts: number, now: number, delayMs = 0, limits: RecordLimits = {}): JobRecord {
  return {
    v: 1,
    id,
    state: 'pending',
    payload,
    attempt: 0,
    failures: 0,
    maxAttempts,
    token: 0,
    owner: null,
    hasCheckpoint: false,
    checkpoint: null,
    result: null,
    error: null,
    createdAt: now,
    updatedAt: now,
    notBefore: now + delayMs,
    lostRuns: 0,
    maxLostRuns: limits.maxLostRuns ?? DEFAULT_MAX_LOST_RUNS,
    timeoutMs: limits.timeoutMs ?? null,
  };
}

/** The error stored for a run that ended without an outcome (its owner died or lost the job). */
export function lostRunError(owner: string | null): JobErrorInfo {
  return { name: 'JobRunLostError', message: `worker lost while running (owner ${owner ?? 'unknown'})`, code: 'JOB_RUN_LOST' };
}

export function isTerminal(s: JobState): boolean {
  return s === 'completed' || s === 'failed';
}

export type Refusal =
  | { ok: false; reason: 'terminal' }
  | { ok: false; reason: 'not-due'; notBefore: number }
  | { ok: false; reason: 'stale'; currentToken: number };
export type Transition = { ok: true; next: JobRecord } | Refusal;

/**
 * A new owner holding the job's lock with `token` claims it. Refused for a finished job, a job
 * whose retry time has not come, or a token not newer than the record's (tokens only grow).
 *
 * A job still `running` is taken over: its last run ended without an outcome (ADR 0064). That
 * lost run is counted (`lostRuns`, its `error` says whose run it was); the claim that counts the
 * `maxLostRuns`-th marks the job `failed` instead of running it again (the state the caller must
 * check: `running` means run it, `failed` means dead-letter it). `defaultMaxLostRuns` stands for a
 * record written before it carried its own.
 */
export function claim(r: JobRecord, token: number, owner: string, now: number, defaultMaxLostRuns = DEFAULT_MAX_LOST_RUNS): Transition {
  if (isTerminal(r.state)) return { ok: false, reason: 'terminal' };
  if (token <= r.token) return { ok: false, reason: 'stale', currentToken: r.token };
  if (r.state === 'pending' && r.notBefore > now) return { ok: false, reason: 'not-due', notBefore: r.notBefore };
  if (r.state === 'running') {
    const lostRuns = (r.lostRuns ?? 0) + 1;
    const error = lostRunError(r.owner);
    if (lostRuns >= (r.maxLostRuns ?? defaultMaxLostRuns)) return { ok: true, next: { ...r, state: 'failed', token, owner, lostRuns, error, updatedAt: now } };
    return { ok: true, next: { ...r, state: 'running', token, owner, attempt: r.attempt + 1, lostRuns, error, updatedAt: now } };
  }
  return { ok: true, next: { ...r, state: 'running', token, owner, attempt: r.attempt + 1, updatedAt: now } };
}

/**
 * The owner with `token` gives back a claim whose handler it did not start (the worker closed, or
 * its lease was already uncertain, while the claim was written): the job is pending again, due
 * now, and the claim is not counted as a run — neither as an attempt nor, at the next claim, as a
 * lost run.
 */
export function unclaim(r: JobRecord, token: number, now: number): Transition {
  return fenced(r, token) ?? { ok: true, next: { ...r, state: 'pending', attempt: Math.max(0, r.attempt - 1), notBefore: now, updatedAt: now } };
}

function fenced(r: JobRecord, token: number): Refusal | null {
  if (r.token !== token) return { ok: false, reason: 'stale', currentToken: r.token };
  if (r.state !== 'running') return isTerminal(r.state) ? { ok: false, reason: 'terminal' } : { ok: false, reason: 'stale', currentToken: r.token };
  return null;
}

/** The owner with `token` stores a checkpoint. */
export function checkpoint(r: JobRecord, token: number, state: unknown, now: number): Transition {
  return fenced(r, token) ?? { ok: true, next: { ...r, hasCheckpoint: true, checkpoint: state, updatedAt: now } };
}

/** The owner with `token` records success. */
export function complete(r: JobRecord, token: number, result: unknown, now: number): Transition {
  return fenced(r, token) ?? { ok: true, next: { ...r, state: 'completed', result, error: null, updatedAt: now } };
}

export interface BackoffPolicy {
  /** Delay before the first retry (ms). */
  initialDelayMs: number;
  /** Largest delay (ms). */
  maxDelayMs: number;
  /** Growth per failure. */
  factor: number;
}

/**
 * Delay before retrying after the n-th failure (n ≥ 1): initial · factor^(n-1), capped at the
 * maximum, then scaled by `jitter` in [0.5, 1] (a random draw by the caller; 1 = no jitter).
 */
export function retryDelay(policy: BackoffPolicy, failures: number, jitter = 1): number {
  const raw = policy.initialDelayMs * Math.pow(policy.factor, Math.max(0, failures - 1));
  const capped = Math.min(policy.maxDelayMs, Number.isFinite(raw) ? raw : policy.maxDelayMs);
  const j = Math.min(1, Math.max(0.5, jitter));
  return Math.floor(capped * j);
}

/**
 * The owner with `token` records a handler failure: the job goes back to pending after a backoff,
 * or is marked failed once it has failed `maxAttempts` times.
 */
export function fail(r: JobRecord, token: number, error: JobErrorInfo, now: number, policy: BackoffPolicy, jitter = 1): Transition {
  const refused = fenced(r, token);
  if (refused) return refused;
  const failures = r.failures + 1;
  if (failures >= r.maxAttempts) return { ok: true, next: { ...r, state: 'failed', failures, error, updatedAt: now } };
  return {
    ok: true,
    next: { ...r, state: 'pending', failures, error, updatedAt: now, notBefore: now + retryDelay(policy, failures, jitter) },
  };
}

/** The longest error message kept in a job record (characters); a longer one is cut. */
export const MAX_ERROR_MESSAGE_LENGTH = 4096;
/** The longest error name or code kept in a job record (characters). */
const MAX_ERROR_NAME_LENGTH = 256;

function cut(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length} characters)`;
}

/**
 * Normalises a thrown value for storage: any value at all (a thrown object without a string
 * form, one whose properties throw when read, a message of megabytes) gives a record the grid
 * takes, with the message cut at MAX_ERROR_MESSAGE_LENGTH characters.
 */
export function errorInfo(e: unknown): JobErrorInfo {
  let name = 'Error';
  let message: string;
  let code: unknown;
  try {
    if (typeof e === 'object' && e !== null) {
      const o = e as { name?: unknown; message?: unknown; code?: unknown };
      if (typeof o.name === 'string' && o.name !== '' && (e instanceof Error || typeof o.message === 'string')) name = o.name;
      code = o.code;
      if (typeof o.message === 'string') message = o.message;
      else if (e instanceof Error) message = '';
      else {
        // Its own toString, if it has one that works (an object made with no prototype has none).
        let str: unknown;
        try {
          const toString = (e as { toString?: unknown }).toString;
          str = typeof toString === 'function' ? (toString as () => unknown).call(e) : undefined;
        } catch {
          str = undefined;
        }
        message = typeof str === 'string' && str !== '[object Object]' ? str : `${Array.isArray(e) ? 'an array' : 'an object that is not an Error'} was thrown`;
      }
    } else if (typeof e === 'symbol') {
      message = e.toString();
    } else if (typeof e === 'function') {
      message = 'a function was thrown';
    } else {
      message = String(e);
    }
  } catch {
    // A getter or proxy that throws on reading.
    return { name: 'Error', message: 'a value whose properties cannot be read was thrown' };
  }
  const info: JobErrorInfo = { name: cut(name, MAX_ERROR_NAME_LENGTH), message: cut(message, MAX_ERROR_MESSAGE_LENGTH) };
  if (typeof code === 'string') info.code = cut(code, MAX_ERROR_NAME_LENGTH);
  return info;
}

/** Whether `id` is a job id (see checkJobId), without throwing. */
export function isJobId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_JOB_ID_LENGTH && JOB_ID.test(id);
}
