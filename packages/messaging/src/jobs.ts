/**
 * Single jobs that survive their worker.
 *
 * A job lives in a grid cache under its id (created if absent, so a submit is exactly-once per
 * id). Workers learn about jobs over NATS (core subjects, no JetStream needed) and claim one by
 * taking its grid lock; the lock's fencing token is written into the record with a
 * compare-and-set, and every later write of that owner (checkpoint, completion, failure) is a
 * compare-and-set that requires the record to still carry that token. A superseded owner's writes
 * are therefore refused.
 *
 * Takeover without polling a table: an owner publishes a heartbeat listing the jobs it holds at a
 * third of the lock lease. Other workers remember, per job, when its lease must have run out if
 * the heartbeats stop, and only then try the lock (a few tries ~100 ms apart until the grid frees
 * it). With the default 1.5 s lease a job resumes elsewhere about 1.5–1.7 s after its worker dies.
 * A scan of the unfinished jobs (an index kept beside the records, ADR 0055; at start, once, of
 * every record) runs only when a worker starts, when its NATS connection comes back, and as a
 * slow backstop (default every 30 s).
 *
 * The notices are unauthenticated hints (ADR 0053): one that would make a worker forget or
 * postpone a job is checked against the job's record first; a finished run's outcome that the
 * grid did not take is announced and written again until it applies or a newer owner refuses it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'eventemitter3';
import { GridClosedError, GridError, bytesSerializer, type GridCache, type GridClient } from '@gridlink/client';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { MAX_TIMER_MS, describe, fn, int, nestedOptions, num, options, required, subjectPrefix, token } from './config.js';
import {
  JobFailedError,
  JobNotFoundError,
  JobOutcomeNotRecordedError,
  MessagingError,
  MessagingClosedError,
  MessagingConfigError,
  JobTimeoutError,
  OwnershipLostError,
  ResultTimeoutError,
  StaleOwnerError,
  type JobErrorInfo,
} from './errors.js';
import { Ownership } from './ownership.js';
import {
  DEFAULT_MAX_LOST_RUNS,
  checkJobId,
  checkValue,
  checkpoint as checkpointTransition,
  claim,
  complete,
  decodeRecord,
  encodeRecord,
  errorInfo,
  fail,
  isJobId,
  isTerminal,
  jobIdOfKey,
  newRecord,
  unclaim,
  type BackoffPolicy,
  type JobRecord,
  type JobState,
  type Refusal,
  type Transition,
} from './record.js';

export interface JobQueueOptions {
  /** A connected grid client (one per process is the intended use). */
  grid: GridClient;
  /** A NATS connection. */
  nats: NatsConnection;
  /** Queue name: one token of [A-Za-z0-9_-]. Default "default". */
  queue?: string;
  /**
   * Subject prefix of the queue's notifications: dotted tokens of [A-Za-z0-9_-], at most 4068
   * characters less the queue name's (so that `<prefix>.<queue>.submitted` fits nats-server's
   * protocol line). Default "gridlink.jobs".
   */
  subjectPrefix?: string;
  /** Largest encoded payload / checkpoint / result (bytes), 1 to 786432 (768 KiB). Default 65536. */
  maxPayloadBytes?: number;
  /** Handler failures after which a job is marked failed, unless given per submit. Default 3. */
  maxAttempts?: number;
  /**
   * Runs that ended without an outcome (the worker died, hung past its lease or lost the job)
   * after which a job is marked failed, unless given per submit; counted apart from maxAttempts
   * (ADR 0064). Default 5.
   */
  maxLostRuns?: number;
  /**
   * How long one run of the handler may take (ms), unless given per submit: then its signal
   * aborts (JobTimeoutError), the run counts as a failed attempt and the job's slot and lock are
   * freed; what the handler does later is ignored. 1 to 2147483647. Default: no limit.
   */
  jobTimeoutMs?: number;
  /**
   * How long a completed or failed job's record stays readable (ms), from the moment it finished.
   * After that the grid drops it (`status` throws JobNotFoundError) and the same id may be
   * submitted again as a new job. Default 86400000 (one day).
   */
  retainFinishedMs?: number;
}

export interface SubmitOptions {
  /** Failures after which the job is marked failed (≥ 1). Default: the queue's maxAttempts. */
  maxAttempts?: number;
  /** Lost runs after which the job is marked failed (≥ 1). Default: the queue's maxLostRuns. */
  maxLostRuns?: number;
  /** Time limit of one run (ms); null: none. Default: the queue's jobTimeoutMs. */
  jobTimeoutMs?: number | null;
  /** Do not start the job before this delay (ms). Default 0. */
  delayMs?: number;
}

export interface JobStatus<R = unknown> {
  id: string;
  state: JobState;
  attempt: number;
  failures: number;
  maxAttempts: number;
  /** Runs that ended without an outcome (taken over from a worker that died or lost the job). */
  lostRuns: number;
  maxLostRuns: number;
  /** Time limit of one run (ms), null when none. */
  jobTimeoutMs: number | null;
  fencingToken: number;
  owner: string | null;
  hasCheckpoint: boolean;
  checkpoint: unknown;
  result: R | undefined;
  error: JobErrorInfo | null;
  createdAt: number;
  updatedAt: number;
  notBefore: number;
}

export interface SubmitResult<R = unknown> {
  /** False when a job with this id already existed: `status` is that job's. */
  created: boolean;
  status: JobStatus<R>;
}

export interface JobContext<P = unknown> {
  jobId: string;
  payload: P;
  /** 1 for the first run; grows with each claim (retries and takeovers). */
  attempt: number;
  /** Fencing token of this claim: strictly greater than every earlier claim's. Pass it to the resources you change. */
  fencingToken: number;
  /** Whether an earlier run stored a checkpoint. */
  hasCheckpoint: boolean;
  /** The last checkpoint an earlier run stored (undefined when none). */
  lastCheckpoint: unknown;
  /** Stores a checkpoint in the grid, fenced: throws StaleOwnerError / OwnershipLostError once this run was superseded. */
  checkpoint(state: unknown): Promise<void>;
  /**
   * Aborts when this worker can no longer be sure it owns the job, when the run exceeds the job's
   * jobTimeoutMs (reason: a JobTimeoutError), and once the run is over.
   */
  signal: AbortSignal;
  /** Id of the worker that held the job before, when this run takes over a running job. */
  takenOverFrom: string | null;
}

export type JobHandler<P = unknown, R = unknown> = (ctx: JobContext<P>) => Promise<R> | R;

export interface RetryOptions {
  /** Delay before the first retry (ms). Default 200. */
  initialDelayMs?: number;
  /** Largest retry delay (ms). Default 30000. */
  maxDelayMs?: number;
  /** Growth of the delay per failure. Default 2. */
  factor?: number;
  /** Randomise each delay down to half of it. Default true. */
  jitter?: boolean;
}

export interface WorkerOptions {
  /** Jobs run at once by this worker. Default 4. */
  concurrency?: number;
  /** Lease of a job's lock (ms): a dead worker's job resumes elsewhere about this long after its death. Default 1500. */
  leaseMs?: number;
  /** The owner stops trusting its lease this long before it could expire (ms). Default leaseMs/5. */
  leaseMarginMs?: number;
  /** Backoff between failed runs; each field defaults on its own. Not null (a MessagingConfigError). */
  retry?: RetryOptions;
  /**
   * Called once for a job that failed for the last time. The job does not wait for it; close()
   * does (within closeTimeoutMs). A rejection is an `error` event.
   */
  onDeadLetter?: (job: JobStatus) => Promise<void> | void;
  /** Scan of the unfinished jobs as a backstop (ms); 0 = only at start and on NATS reconnect. Default 30000. */
  sweepIntervalMs?: number;
  /** Graceful close waits this long for claims under way, running handlers and dead-letter hooks (ms). Default 10000. */
  closeTimeoutMs?: number;
  /** This worker's id (in heartbeats and job records). Default: random. */
  workerId?: string;
}

export interface WorkerEvents {
  /** This worker claimed a job. */
  claimed: (e: { jobId: string; fencingToken: number; attempt: number; takenOverFrom: string | null; at: number }) => void;
  completed: (e: { jobId: string; fencingToken: number }) => void;
  /**
   * The handler threw or timed out; `final` when the job is now marked failed. Also (`final`,
   * error code JOB_RUN_LOST) when this worker's takeover found the job's last allowed run lost
   * and marked it failed without running it.
   */
  failed: (e: { jobId: string; error: JobErrorInfo; final: boolean }) => void;
  /** Ownership was lost while the handler ran (its signal aborted). */
  lost: (e: { jobId: string; fencingToken: number; reason: string }) => void;
  /** A write of this worker was refused because another owner superseded it. */
  stale: (e: { jobId: string; fencingToken: number }) => void;
  /**
   * The outcome of a finished run (its completion or failure) could not be written to the grid.
   * `willRetry`: the write is tried again (fenced, with backoff) until it applies or a newer owner
   * refuses it; false only when the worker's `close()` gave up on it — the job then stays `running`
   * in the grid and is run again by the worker that takes it over. The error is also emitted as `error`.
   */
  unrecorded: (e: { jobId: string; fencingToken: number; outcome: 'completed' | 'failed'; attempt: number; willRetry: boolean; error: JobOutcomeNotRecordedError }) => void;
  /** Something went wrong in the background (grid or NATS error, dead-letter hook threw). */
  error: (e: Error) => void;
}

type Notice =
  | { t: 'submitted'; id: string; notBefore: number }
  | { t: 'released'; id: string; notBefore: number }
  | { t: 'done'; id: string; state: JobState }
  | { t: 'alive'; w: string; jobs: [string, number][] };

const enc = new TextEncoder();
/** nats-server's default max_payload (1 MiB). */
const DEFAULT_NATS_MAX_PAYLOAD = 1024 * 1024;

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** What a run's time limit resolves with when it passes first. */
const TIMED_OUT = Symbol('timed out');

/**
 * The dead-letter hook (its key in JobWorker's `hooks`) whose call the running code is part of:
 * close() tells by it a hook closing its own worker. Entered once per hook call only.
 */
const inHook = new AsyncLocalStorage<object>();

/** Awaits `p`, keeping it in `set` until it settles (for close() to wait on). */
async function during<T>(set: Set<Promise<unknown>>, p: Promise<T>): Promise<T> {
  set.add(p);
  try {
    return await p;
  } finally {
    set.delete(p);
  }
}

const dec = new TextDecoder();

/** `defaultMaxLostRuns`: the queue's, for a record written before it carried its own. */
function toStatus<R>(r: JobRecord, defaultMaxLostRuns: number): JobStatus<R> {
  return {
    id: r.id,
    state: r.state,
    attempt: r.attempt,
    failures: r.failures,
    maxAttempts: r.maxAttempts,
    lostRuns: r.lostRuns ?? 0,
    maxLostRuns: r.maxLostRuns ?? defaultMaxLostRuns,
    jobTimeoutMs: r.timeoutMs ?? null,
    fencingToken: r.token,
    owner: r.owner,
    hasCheckpoint: r.hasCheckpoint,
    checkpoint: r.hasCheckpoint ? r.checkpoint : undefined,
    result: r.state === 'completed' ? (r.result as R) : undefined,
    error: r.error,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    notBefore: r.notBefore,
  };
}

/** A refusal carries the stored record it was decided on. */
type UpdateResult = { ok: true; next: JobRecord } | (Refusal & { current: JobRecord }) | { ok: false; reason: 'missing' };

/**
 * How old (by its own timestamp) an entry of the unfinished-jobs index must be before a sweep
 * removes it when it does not match its record (the record is missing, or finished but written by
 * another submit): a submit writes the entry just before it creates the record, and an entry
 * younger than this may belong to a submit between those two writes. A submit that took more than
 * half of this between its two writes writes the entry again (see submit()).
 */
export const INDEX_GRACE_MS = 5 * 60_000;

/**
 * Raw access to the job records: get and compare-and-set on the exact stored bytes; and the
 * index of unfinished jobs (ADR 0055): id → the `createdAt` of the submit that wrote it. Every
 * unfinished record has an entry (a submit writes it before the record); an entry whose record
 * finished is removed by the worker that finished it, and one left over (a lost removal, a second
 * submit of the same id) by a later sweep.
 */
class JobStore {
  constructor(
    readonly cache: GridCache<string, Uint8Array>,
    readonly index: GridCache<string, number>,
    private readonly retainFinishedMs: number,
  ) {}

  /**
   * Removes the index entry of a job whose record finished, if it is still the one the record's
   * submit wrote (a newer submit of the same id, once the record expired, wrote another value).
   */
  forget(id: string, createdAt: number): Promise<boolean> {
    return this.index.removeIfEquals(id, createdAt);
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const raw = await this.cache.get(id);
    return raw === undefined ? undefined : this.decode(id, raw);
  }

  /**
   * The stored record of job `id`. One that is no job record this version can read (garbage, or
   * written by a newer version) is a MessagingError with code JOB_UNREADABLE_RECORD, as a sweep
   * reports it: `status`, `result` and `submit` of its id used to throw MessagePack's DecodeError
   * or a plain Error.
   */
  decode(id: string, raw: Uint8Array): JobRecord {
    try {
      return decodeRecord(raw);
    } catch (cause) {
      const why = cause instanceof Error ? cause.message : describe(cause);
      throw new MessagingError(`job ${id}: its record in ${this.cache.name} is no job record this version can read (${why})`, 'JOB_UNREADABLE_RECORD', false, { cause });
    }
  }

  /**
   * Reads, transforms and writes back with compare-and-set until the write applies or `f` refuses.
   * `known` (the bytes this caller last wrote) saves the first read: when the record is still
   * exactly that, the compare-and-set applies at once; otherwise the loop reads and retries.
   */
  async update(id: string, f: (r: JobRecord) => Transition, known?: { raw: Uint8Array | null }): Promise<UpdateResult> {
    let raw: Uint8Array | undefined = known?.raw ?? undefined;
    for (;;) {
      if (raw === undefined) raw = await this.cache.get(id);
      if (raw === undefined) return { ok: false, reason: 'missing' };
      const current = this.decode(id, raw);
      const t = f(current);
      if (!t.ok) {
        if (known?.raw === raw) {
          // The cached bytes may be out of date: decide on the stored record.
          known.raw = null;
          raw = undefined;
          continue;
        }
        return { ...t, current };
      }
      const next = encodeRecord(t.next);
      // A finished record is kept for the retention window only; unfinished ones never expire.
      const ttl = isTerminal(t.next.state) ? { ttlMs: this.retainFinishedMs } : undefined;
      if (await this.cache.replaceIfEquals(id, raw, next, ttl)) {
        if (known) known.raw = next;
        return t;
      }
      if (known) known.raw = null;
      raw = undefined;
    }
  }
}

interface Resolved {
  grid: GridClient;
  nats: NatsConnection;
  queue: string;
  subject: string;
  cacheName: string;
  indexName: string;
  maxPayloadBytes: number;
  maxAttempts: number;
  maxLostRuns: number;
  jobTimeoutMs: number | null;
  retainFinishedMs: number;
}

/**
 * The largest `maxPayloadBytes`. A job record holds the payload, a checkpoint and (once completed)
 * a result, each up to `maxPayloadBytes`, and every owner's write is a compare-and-set that sends
 * the stored record and the new one in one request: up to five times the bound, which must fit
 * the grid client's frames (4 MiB, less if a node announces less). With the earlier bound of
 * 3 MiB a payload over about 2 MiB was accepted by submit() and could never be claimed (each
 * claim refused before it left the client: frame too large), the job pending for ever. 768 KiB
 * leaves 256 KiB of the frame for the rest of the record and the request.
 */
export const MAX_PAYLOAD_BYTES = 768 * 1024;

const QUEUE_OPTIONS = ['grid', 'nats', 'queue', 'subjectPrefix', 'maxPayloadBytes', 'maxAttempts', 'maxLostRuns', 'jobTimeoutMs', 'retainFinishedMs'] as const;
const SUBMIT_OPTIONS = ['maxAttempts', 'maxLostRuns', 'jobTimeoutMs', 'delayMs'] as const;

/** A run's time limit: 1 ms to the longest timer Node.js takes; `undefined` is `def`. */
function jobTimeout(field: string, v: unknown, def: number | null): number | null {
  return v === undefined ? def : int(field, v, 0, 1, MAX_TIMER_MS);
}
const WORKER_OPTIONS = ['concurrency', 'leaseMs', 'leaseMarginMs', 'retry', 'onDeadLetter', 'sweepIntervalMs', 'closeTimeoutMs', 'workerId'] as const;
const RETRY_OPTIONS = ['initialDelayMs', 'maxDelayMs', 'factor', 'jitter'] as const;

function resolve(o: JobQueueOptions): Resolved {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new MessagingConfigError('options', `must be an object, got ${describe(o)}`);
  options('options', o, QUEUE_OPTIONS);
  const grid = required('grid', o.grid, (g) => typeof g.cache === 'function' && typeof g.lock === 'function', 'a GridClient');
  const nats = required('nats', o.nats, (n) => typeof n.publish === 'function' && typeof n.subscribe === 'function', 'a NatsConnection');
  const queue = token('queue', o.queue, 'default');
  // The queue's longest subject is `<prefix>.<queue>.submitted` (`released`, `done` and `alive`
  // are shorter): it must fit nats-server's protocol line.
  const prefix = subjectPrefix('subjectPrefix', o.subjectPrefix, 'gridlink.jobs', `.${queue}.submitted`);
  return {
    grid,
    nats,
    queue,
    subject: `${prefix}.${queue}`,
    cacheName: `gridlink.jobs.${queue}`,
    indexName: `gridlink.jobs.${queue}.unfinished`,
    maxPayloadBytes: int('maxPayloadBytes', o.maxPayloadBytes, 65536, 1, MAX_PAYLOAD_BYTES),
    maxAttempts: int('maxAttempts', o.maxAttempts, 3, 1, 1_000_000),
    maxLostRuns: int('maxLostRuns', o.maxLostRuns, DEFAULT_MAX_LOST_RUNS, 1, 1_000_000),
    jobTimeoutMs: jobTimeout('jobTimeoutMs', o.jobTimeoutMs, null),
    retainFinishedMs: int('retainFinishedMs', o.retainFinishedMs, 86_400_000, 1, 365 * 24 * 3600 * 1000),
  };
}

/** Submit jobs, read their status and wait for their results; create workers. */
export class JobQueue {
  private readonly cfg: Resolved;
  private readonly store: JobStore;
  private readonly waiters = new Map<string, Set<() => void>>();
  private doneSub: Subscription | null = null;
  private closed = false;

  constructor(options: JobQueueOptions) {
    this.cfg = resolve(options);
    this.store = new JobStore(
      this.cfg.grid.cache<string, Uint8Array>(this.cfg.cacheName, { serializer: bytesSerializer }),
      this.cfg.grid.cache<string, number>(this.cfg.indexName),
      this.cfg.retainFinishedMs,
    );
  }

  get name(): string {
    return this.cfg.queue;
  }

  private checkOpen(): void {
    if (this.closed) throw new MessagingClosedError('job queue');
  }

  /** @internal The NATS server's max_payload; its default (1 MiB) before the connection has the server's INFO. */
  maxPayload(): number {
    const m = this.cfg.nats.info?.max_payload;
    return typeof m === 'number' && m > 0 ? m : DEFAULT_NATS_MAX_PAYLOAD;
  }

  /**
   * @internal Publishes one heartbeat message (JSON text). Returns the error when it could not be
   * sent for another reason than a closed or draining connection (which the worker's reconnect
   * sweep covers), null otherwise.
   */
  publishAlive(json: string): Error | null {
    try {
      this.cfg.nats.publish(`${this.cfg.subject}.alive`, enc.encode(json));
      return null;
    } catch (e) {
      if (this.cfg.nats.isClosed() || this.cfg.nats.isDraining()) return null;
      return e instanceof Error ? e : new Error(String(e));
    }
  }

  /** @internal */
  publish(n: Notice): void {
    const subj = n.t === 'alive' ? `${this.cfg.subject}.alive` : `${this.cfg.subject}.${n.t}`;
    try {
      this.cfg.nats.publish(subj, enc.encode(JSON.stringify(n)));
    } catch {
      // Connection closed or draining: workers re-check pending jobs when they (re)connect.
    }
  }

  /**
   * Stores the job (exactly once per id) and tells the workers. Submitting an existing id returns
   * that job unchanged with `created: false`.
   */
  async submit<R = unknown>(jobId: string, payload: unknown, opts: SubmitOptions | null = {}): Promise<SubmitResult<R>> {
    this.checkOpen();
    checkJobId(jobId);
    const o = options('options', opts, SUBMIT_OPTIONS);
    checkValue('payload', payload, this.cfg.maxPayloadBytes);
    const maxAttempts = int('maxAttempts', o.maxAttempts, this.cfg.maxAttempts, 1, 1_000_000);
    const maxLostRuns = int('maxLostRuns', o.maxLostRuns, this.cfg.maxLostRuns, 1, 1_000_000);
    // null: no time limit for this job, whatever the queue's.
    const timeoutMs = o.jobTimeoutMs === null ? null : jobTimeout('jobTimeoutMs', o.jobTimeoutMs, this.cfg.jobTimeoutMs);
    const delayMs = int('delayMs', o.delayMs, 0, 0, 365 * 24 * 3600 * 1000);
    const rec = newRecord(jobId, payload, maxAttempts, Date.now(), delayMs, { maxLostRuns, timeoutMs });
    // The index entry first: an unfinished record never exists without one (the sweep reads only
    // the index). If the job exists already, the entry is left as written; a sweep removes it
    // once it no longer matches an unfinished record (INDEX_GRACE_MS).
    await this.store.index.put(jobId, rec.createdAt);
    const created = await this.store.cache.putIfAbsent(jobId, encodeRecord(rec));
    if (created && Date.now() - rec.createdAt > INDEX_GRACE_MS / 2) {
      // So long between the two writes that a sweep may have found the entry without a record,
      // old enough to be a leftover, and removed it: written again, with a value no sweep has
      // read (a sweep's removal applies only to the value it read). The finishing worker's
      // removal no longer matches it; a sweep removes it once it is INDEX_GRACE_MS old.
      await this.store.index.put(jobId, Date.now());
    }
    const current = created ? rec : await this.store.get(jobId);
    if (current === undefined) throw new JobNotFoundError(jobId); // removed in between: not expected
    if (!isTerminal(current.state)) this.publish({ t: 'submitted', id: jobId, notBefore: current.notBefore });
    return { created, status: toStatus<R>(current, this.cfg.maxLostRuns) };
  }

  /** The job's current status; JobNotFoundError for an unknown id. */
  async status<R = unknown>(jobId: string): Promise<JobStatus<R>> {
    this.checkOpen();
    checkJobId(jobId);
    const r = await this.store.get(jobId);
    if (r === undefined) throw new JobNotFoundError(jobId);
    return toStatus<R>(r, this.cfg.maxLostRuns);
  }

  /**
   * The job's result: waits up to `waitMs` (default 0: answer now) for it to finish. Throws
   * JobFailedError when it failed, ResultTimeoutError when it has not finished in time. The grid
   * answers: the `done` notice only wakes the wait early. Without a NATS subscription (the
   * connection is closed, or refused it) the record is read again with backoff, 50 ms doubling
   * to 1 s; with one, at least every second.
   */
  async result<R = unknown>(jobId: string, opts: { waitMs?: number } | null = {}): Promise<R> {
    this.checkOpen();
    checkJobId(jobId);
    const waitMs = int('waitMs', options('options', opts, ['waitMs']).waitMs, 0, 0, 24 * 3600 * 1000);
    const deadline = Date.now() + waitMs;
    let pollMs = 50;
    for (;;) {
      const notified = waitMs > 0 && this.ensureDoneSub();
      // Register before reading so a completion between the read and the wait is not missed.
      let wake: () => void = () => undefined;
      const woken = new Promise<void>((r) => (wake = r));
      let set = this.waiters.get(jobId);
      if (set === undefined) this.waiters.set(jobId, (set = new Set()));
      set.add(wake);
      try {
        const st = await this.status<R>(jobId);
        if (st.state === 'completed') return st.result as R;
        if (st.state === 'failed') throw new JobFailedError(jobId, st.error ?? { name: 'Error', message: 'failed' });
        const left = deadline - Date.now();
        if (left <= 0) throw new ResultTimeoutError(jobId, waitMs);
        // The notification is the fast path; re-reading at most every second covers a missed one.
        // Without it, the grid is polled with backoff.
        const pause = notified ? 1000 : pollMs;
        pollMs = Math.min(pollMs * 2, 1000);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([woken, new Promise<void>((r) => (timer = setTimeout(r, Math.min(left, pause))))]);
        clearTimeout(timer);
      } finally {
        set.delete(wake);
        if (set.size === 0 && this.waiters.get(jobId) === set) this.waiters.delete(jobId);
      }
    }
  }

  /**
   * Subscribes to `done` notices (once); false when NATS refuses (a closed or draining
   * connection): `result()` then polls the grid. Tried again at the next wait.
   */
  private ensureDoneSub(): boolean {
    if (this.doneSub !== null) return true;
    if (this.closed) return false;
    let sub: Subscription;
    try {
      sub = this.cfg.nats.subscribe(`${this.cfg.subject}.done`, {
        callback: (err, msg) => {
          if (err) return;
          try {
            const n = JSON.parse(dec.decode(msg.data)) as { id?: unknown };
            if (typeof n.id === 'string') for (const w of this.waiters.get(n.id) ?? []) w();
          } catch {
            // not ours
          }
        },
      });
    } catch {
      return false;
    }
    this.doneSub = sub;
    // The connection closed later: forget the subscription, so waits poll (and a later wait
    // subscribes again should the connection object be usable).
    const forget = (): void => {
      if (this.doneSub === sub) this.doneSub = null;
    };
    void sub.closed.then(forget, forget);
    return true;
  }

  /** A worker running `handler` for this queue's jobs; call `start()` on it. */
  worker<P = unknown, R = unknown>(handler: JobHandler<P, R>, opts: WorkerOptions | null = {}): JobWorker<P, R> {
    this.checkOpen();
    return new JobWorker<P, R>(this, this.cfg, this.store, handler, options('options', opts, WORKER_OPTIONS));
  }

  /** Stops the result subscription; workers must be closed separately. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.doneSub?.unsubscribe();
    this.doneSub = null;
    for (const set of this.waiters.values()) for (const w of set) w();
  }
}

interface Running {
  own: Ownership;
  /** Set when close() came before the handler started: the claim being given back (claimAndRun). */
  givingBack?: Promise<void>;
}

/** A job held by another worker: when to try its lock unless a heartbeat pushes this back. */
interface Held {
  at: number;
  /** The owner named by the heartbeats, once the job's record confirmed it (null: not confirmed). */
  owner: string | null;
}

/** A notice about a job that is checked against its record before this worker acts on it. */
interface Check {
  /** A heartbeat's claim: `w` runs the job and its lease runs out at `at`. */
  alive?: { w: string; at: number };
}

/** The most job records read in one check of notices. */
const CHECK_BATCH = 512;
/** The most notices waiting for a check; more are dropped (the sweep finds their jobs). */
const MAX_CHECKS = 100_000;
/**
 * The most jobs a worker remembers as claimable. A notice or sweep naming a job it does not know
 * yet finds the rest ignored (the next sweep offers it again, once the known ones have run):
 * anyone who can publish on the queue's subjects could otherwise grow every busy worker's
 * memory without bound with `submitted` notices of ids no job has.
 */
const MAX_CANDIDATES = 100_000;

/** Runs jobs of one queue. One GridClient per worker process; a worker never claims one job twice at once. */
export class JobWorker<P = unknown, R = unknown> extends EventEmitter<WorkerEvents> {
  readonly workerId: string;
  private readonly concurrency: number;
  private readonly pickWindow: number;
  private readonly leaseMs: number;
  private readonly marginMs: number;
  private readonly policy: BackoffPolicy;
  private readonly jitter: boolean;
  private readonly sweepIntervalMs: number;
  private readonly closeTimeoutMs: number;
  private readonly onDeadLetter: ((job: JobStatus) => Promise<void> | void) | undefined;
  /** Jobs this worker may claim: id → not before (ms). */
  private readonly candidates = new Map<string, number>();
  /** Jobs whose owner went silent: tried before any other candidate so they resume first. */
  private readonly orphans = new Set<string>();
  /** Jobs held elsewhere: id → when to try the lock again unless a heartbeat says the owner lives. */
  private readonly held = new Map<string, Held>();
  /**
   * Notices that would make this worker forget or postpone a job (done, a first heartbeat, a
   * notBefore in the future), waiting to be checked against the job's record; such a job is not
   * picked meanwhile. `checksInFlight`: the ones being read now.
   */
  private readonly checks = new Map<string, Check>();
  private checksInFlight = new Map<string, Check>();
  private checking = false;
  /** Aborted when close() stops waiting for running jobs: outcome writes stop retrying. */
  private readonly givenUp = new AbortController();
  /**
   * Aborted as close() begins: the reads of a sweep or of a notices check under way stop (they
   * went on after close() resolved: a sweep read the index and every unfinished record through a
   * client the application may be closing), and close() waits until they have.
   */
  private readonly stopReads = new AbortController();
  /** The notices check under way, if any (see runChecks). */
  private checkRun: Promise<void> | null = null;
  /** Outcome writes under way (close() waits for the try in flight once it gave up on them). */
  private readonly recording = new Set<Promise<unknown>>();
  /**
   * Dead-letter hooks under way, each settled once its rejection (if any) was emitted: close()
   * waits for them within closeTimeoutMs. It used to resolve while one still ran: a process that
   * exited after close() cut the job's only dead-letter call off, and its rejection, emitted after
   * the listeners were removed, was reported to no one.
   */
  private readonly hooks = new Map<object, Promise<void>>();
  /**
   * Hooks (their keys in `hooks`) that called this worker's close() themselves: close() does not
   * wait for them (a hook that awaits the close it asked for would wait for close() as close()
   * waited for it, until closeTimeoutMs). `selfClosed` wakes the wait when one is added.
   */
  private readonly selfClosing = new Set<object>();
  private selfClosed: (() => void) | null = null;
  private readonly running = new Map<string, Running>();
  private readonly claiming = new Set<string>();
  /** Claims under way (lock taken or being taken, record not yet written): close() waits for them. */
  private readonly claims = new Set<Promise<unknown>>();
  private readonly tasks = new Set<Promise<void>>();
  private closing: Promise<void> | null = null;
  private sub: Subscription | null = null;
  private tick: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private sweepAgain = false;
  /** The sweep asked for meanwhile reads every record (see sweep()). */
  private sweepFull = false;
  private state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  private stopStatus: () => void = () => undefined;
  private idleWaiters: (() => void)[] = [];

  /** @internal use JobQueue.worker() */
  constructor(
    private readonly queue: JobQueue,
    private readonly cfg: Resolved,
    private readonly store: JobStore,
    private readonly handler: JobHandler<P, R>,
    o: WorkerOptions,
  ) {
    super();
    if (typeof handler !== 'function') throw new MessagingConfigError('handler', `must be a function, got ${describe(handler)}`);
    this.concurrency = int('concurrency', o.concurrency, 4, 1, 10_000);
    // Several workers pick from the same oldest jobs: a window well above everyone's concurrency
    // keeps them from racing for the same locks.
    this.pickWindow = Math.max(64, this.concurrency * 16);
    this.leaseMs = int('leaseMs', o.leaseMs, 1500, 100, 3_600_000);
    this.marginMs = int('leaseMarginMs', o.leaseMarginMs, Math.floor(this.leaseMs / 5), 0, Math.floor(this.leaseMs / 2));
    const r = nestedOptions('retry', o.retry, RETRY_OPTIONS);
    this.policy = {
      initialDelayMs: int('retry.initialDelayMs', r.initialDelayMs, 200, 0),
      maxDelayMs: int('retry.maxDelayMs', r.maxDelayMs, 30_000, 0),
      factor: num('retry.factor', r.factor, 2, 1, 100),
    };
    if (r.jitter !== undefined && typeof r.jitter !== 'boolean') throw new MessagingConfigError('retry.jitter', `must be a boolean, got ${describe(r.jitter)}`);
    this.jitter = r.jitter ?? true;
    this.sweepIntervalMs = int('sweepIntervalMs', o.sweepIntervalMs, 30_000, 0, MAX_TIMER_MS);
    this.closeTimeoutMs = int('closeTimeoutMs', o.closeTimeoutMs, 10_000, 0, MAX_TIMER_MS);
    this.onDeadLetter = fn('onDeadLetter', o.onDeadLetter);
    this.workerId = o.workerId === undefined ? randomUUID() : token('workerId', o.workerId);
  }

  /** Jobs this worker is running now. */
  get active(): string[] {
    return [...this.running.keys()];
  }

  /**
   * Subscribes, scans for pending jobs and starts taking them. If the subscription cannot be made
   * (the NATS connection is closed or draining, say), the error is thrown and the worker is left
   * as it was: nothing started, `start()` may be called again. If the first sweep cannot read the
   * queue, the worker is closed (what it started is stopped) and the grid's error thrown.
   */
  async start(): Promise<void> {
    if (this.state === 'running') throw new MessagingError('worker already started', 'WORKER_STARTED');
    if (this.state !== 'new') throw new MessagingClosedError('worker');
    // Subscribed before anything else starts: if it throws, the worker stays `new` (startable).
    // Nothing is delivered before `state` is set below (same tick).
    this.sub = this.cfg.nats.subscribe(`${this.cfg.subject}.*`, {
      callback: (err, msg) => {
        if (err) return;
        this.onNotice(msg.data);
      },
    });
    this.state = 'running';
    this.tick = setInterval(() => this.onTick(), 50);
    this.tick.unref();
    this.heartbeat = setInterval(() => this.beat(), Math.max(20, Math.floor(this.leaseMs / 3)));
    this.heartbeat.unref();
    if (this.sweepIntervalMs > 0) {
      this.sweeper = setInterval(() => this.track(this.sweep()), this.sweepIntervalMs);
      this.sweeper.unref();
    }
    this.track(this.watchNats());
    try {
      await this.sweepAs(true);
    } catch (e) {
      // Could not read the queue's jobs at all: do not leave a half-started worker behind.
      await this.close();
      throw e;
    }
  }

  private track(p: Promise<void>): void {
    void this.reported(p);
  }

  /** Runs `p` in the background (as `track`), its rejection an `error` event; the promise returned settles after that. */
  private reported(p: Promise<void>): Promise<void> {
    const t = p.catch((e: unknown) => {
      this.emit('error', e instanceof Error ? e : new Error(String(e)));
    });
    this.tasks.add(t);
    void t.finally(() => this.tasks.delete(t));
    return t;
  }

  /** Re-checks pending jobs whenever the NATS connection comes back. */
  private async watchNats(): Promise<void> {
    const it = this.cfg.nats.status() as AsyncIterable<{ type: string }> & { stop?: () => void };
    this.stopStatus = () => it.stop?.();
    for await (const s of it) {
      if (this.state !== 'running') return;
      if (s.type === 'reconnect') this.track(this.sweep());
    }
  }

  /**
   * Drops a finished job from the index of unfinished jobs (not awaited: the job's slot and lock
   * do not wait for it; if it fails, a sweep removes the entry).
   */
  private forget(id: string, createdAt: number): void {
    this.store.forget(id, createdAt).catch(() => undefined);
  }

  /**
   * Looks for unfinished jobs (NATS reconnect, slow backstop): reads the index of unfinished jobs
   * and their records — finished records kept for `retainFinishedMs` are not read. The first
   * sweep of `start()` reads every record of the queue instead, and adds the index entries an
   * unfinished record lacks (records written by a version without the index).
   */
  sweep(): Promise<void> {
    return this.sweepAs(false);
  }

  private sweepAs(full: boolean): Promise<void> {
    if (this.state !== 'running') return Promise.resolve();
    if (this.sweeping !== null) {
      if (full) this.sweepFull = true;
      this.sweepAgain = true;
      return this.sweeping;
    }
    this.sweepFull = full;
    this.sweeping = (async () => {
      try {
        do {
          this.sweepAgain = false;
          const f = this.sweepFull;
          this.sweepFull = false;
          await this.sweepOnce(f);
        } while (this.sweepAgain && this.state === 'running');
      } catch (e) {
        // close() cut its reads off: nothing went wrong.
        if (this.stopReads.signal.aborted) return;
        throw e;
      }
    })().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async sweepOnce(full: boolean): Promise<void> {
    const signal = this.stopReads.signal;
    const ids: string[] = [];
    for await (const key of (full ? this.store.cache : this.store.index).scan({ batchSize: 512, signal })) {
      if (this.state !== 'running') return;
      const id = jobIdOfKey(key);
      if (id !== undefined) ids.push(id);
    }
    const unreadable: string[] = [];
    /** Unfinished jobs (full sweep): their index entries are checked. */
    const unfinished: string[] = [];
    /** Index entries whose record is missing or finished: id → the record's createdAt (or null). */
    const leftover = new Map<string, number | null>();
    for (let i = 0; i < ids.length; i += 256) {
      if (this.state !== 'running') return;
      const batch = ids.slice(i, i + 256);
      const raws = await this.store.cache.getAll(batch, { signal });
      batch.forEach((id, j) => {
        const raw = raws[j];
        if (raw === undefined) {
          if (!full) leftover.set(id, null);
          return;
        }
        let r: JobRecord;
        try {
          r = decodeRecord(raw);
        } catch {
          // Not a record this version can read: skipped (and reported), not a reason to stop.
          unreadable.push(id);
          return;
        }
        if (isTerminal(r.state)) {
          if (!full) leftover.set(id, r.createdAt);
          return;
        }
        if (full) unfinished.push(id);
        if (this.running.has(id) || this.claiming.has(id)) return;
        if (!this.candidates.has(id) && this.candidates.size >= MAX_CANDIDATES) return;
        if (r.state === 'pending') {
          // Whatever notices said about it: the record says it is free.
          this.held.delete(id);
          this.candidates.set(id, r.notBefore);
        } else {
          // Running elsewhere: one try of its lock, even if heartbeats say its owner lives (they
          // may be replayed by someone else); a refused try keeps it held.
          this.candidates.set(id, 0);
        }
      });
    }
    if (this.state !== 'running') return;
    this.pump();
    if (unreadable.length > 0) {
      const shown = unreadable.slice(0, 10).join(', ');
      this.emit('error', new MessagingError(`${unreadable.length} record(s) in ${this.cfg.cacheName} are no job records this version can read, skipped: ${shown}${unreadable.length > 10 ? ', …' : ''}`, 'JOB_UNREADABLE_RECORD'));
    }
    if (full) await this.addMissingEntries(unfinished);
    else await this.removeLeftovers(leftover);
  }

  /** Index entries for unfinished records that have none (written before the index existed). */
  private async addMissingEntries(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length && this.state === 'running'; i += 256) {
      const batch = ids.slice(i, i + 256);
      const entries = await this.store.index.getAll(batch, { signal: this.stopReads.signal });
      const missing = batch.filter((_, j) => entries[j] === undefined);
      if (missing.length === 0 || this.state !== 'running') continue;
      const raws = await this.store.cache.getAll(missing, { signal: this.stopReads.signal });
      await Promise.all(
        missing.map(async (id, j) => {
          const raw = raws[j];
          if (raw === undefined) return;
          let r: JobRecord;
          try {
            r = decodeRecord(raw);
          } catch {
            return;
          }
          if (isTerminal(r.state)) return;
          await this.store.index.putIfAbsent(id, r.createdAt);
          // Finished meanwhile (its worker's removal may have come first): the next sweep removes it.
        }),
      );
    }
  }

  /**
   * Removes index entries that no longer stand for an unfinished job: one written by the submit of
   * a record that has finished (its worker's removal was lost), at once; any other (the record is
   * gone, or finished but created by another submit of the id) once it is INDEX_GRACE_MS old. Each
   * removal applies only if the entry is still the one read (a new submit writes a new value).
   */
  private async removeLeftovers(leftover: Map<string, number | null>): Promise<void> {
    const ids = [...leftover.keys()];
    for (let i = 0; i < ids.length && this.state === 'running'; i += 256) {
      const batch = ids.slice(i, i + 256);
      const entries = await this.store.index.getAll(batch, { signal: this.stopReads.signal });
      if (this.state !== 'running') return;
      const now = Date.now();
      await Promise.all(
        batch.map(async (id, j) => {
          const v = entries[j];
          if (typeof v !== 'number') return;
          if (v === leftover.get(id) || now - v > INDEX_GRACE_MS) await this.store.index.removeIfEquals(id, v);
        }),
      );
    }
  }

  /** Whether this worker tracks the job (a candidate, held elsewhere, or a notice being checked). */
  private knows(id: string): boolean {
    return this.candidates.has(id) || this.held.has(id) || this.orphans.has(id) || this.checks.has(id) || this.checksInFlight.has(id);
  }

  /**
   * Notices are unauthenticated hints. One that makes this worker try a job sooner is acted on at
   * once: the claim itself (lock, then a compare-and-set on the record) decides. One that would
   * make it forget a job (`done`), or postpone it (a heartbeat from an owner not yet confirmed, a
   * notBefore in the future) is first checked against the job's record in the grid (batched reads,
   * see check()); ids this worker does not track cost nothing.
   */
  private onNotice(data: Uint8Array): void {
    let n: Notice;
    try {
      n = JSON.parse(dec.decode(data)) as Notice;
    } catch {
      return;
    }
    if (typeof n !== 'object' || n === null) return;
    const now = Date.now();
    switch (n.t) {
      // Ids that no job can have are ignored: claiming them would try the grid again and again.
      case 'submitted':
      case 'released': {
        if (!isJobId(n.id) || this.running.has(n.id)) return;
        if (!this.knows(n.id) && this.candidates.size >= MAX_CANDIDATES) return;
        const notBefore = typeof n.notBefore === 'number' && Number.isFinite(n.notBefore) ? n.notBefore : 0;
        if (notBefore > now) {
          // Later than now: the record says when (a forged notBefore must not postpone a job).
          this.check(n.id);
          return;
        }
        // Tried now, and (its lock may be given back just after the notice) again every 100 ms
        // until a heartbeat says who holds it.
        this.held.delete(n.id);
        this.candidates.set(n.id, 0);
        this.pump();
        return;
      }
      case 'done':
        if (!isJobId(n.id) || this.running.has(n.id) || this.claiming.has(n.id) || !this.knows(n.id)) return;
        this.check(n.id);
        return;
      case 'alive': {
        if (typeof n.w !== 'string' || n.w === this.workerId || !Array.isArray(n.jobs)) return;
        for (const entry of n.jobs) {
          if (!Array.isArray(entry)) continue;
          const [id, remaining] = entry;
          if (!isJobId(id) || typeof remaining !== 'number' || !Number.isFinite(remaining) || this.running.has(id) || this.claiming.has(id)) continue;
          // The owner's lease runs out `remaining` ms from now unless renewed; the next heartbeat
          // pushes this back while the owner lives.
          const at = now + Math.min(Math.max(0, remaining), 3_600_000) + 50;
          const h = this.held.get(id);
          if (h !== undefined && h.owner === n.w) {
            h.at = at; // the record named this owner: its heartbeats are trusted
            continue;
          }
          if (this.knows(id)) this.check(id, { w: n.w, at });
        }
        return;
      }
      default:
        return;
    }
  }

  /** Queues a check of the job's record (see onNotice); one batch of reads runs at a time. */
  private check(id: string, alive?: { w: string; at: number }): void {
    const c = this.checks.get(id);
    if (c === undefined) {
      if (this.checks.size >= MAX_CHECKS) return;
      this.checks.set(id, alive ? { alive } : {});
    } else if (alive) {
      c.alive = alive;
    }
    if (!this.checking && this.state === 'running') {
      this.checking = true;
      const run = this.runChecks();
      this.checkRun = run;
      this.track(
        run.finally(() => {
          if (this.checkRun === run) this.checkRun = null;
        }),
      );
    }
  }

  private async runChecks(): Promise<void> {
    try {
      while (this.checks.size > 0 && this.state === 'running') {
        const batch = new Map<string, Check>();
        for (const [id, c] of this.checks) {
          batch.set(id, c);
          this.checks.delete(id);
          if (batch.size >= CHECK_BATCH) break;
        }
        this.checksInFlight = batch;
        const ids = [...batch.keys()];
        let raws: (Uint8Array | undefined)[];
        try {
          raws = await this.store.cache.getAll(ids, { signal: this.stopReads.signal });
        } catch (e) {
          // The grid did not answer: these notices, and those queued meanwhile, are dropped and
          // their jobs stay as they were (claimable: the claim reads the record anyway). Kept
          // queued, they would stay unpickable until some later notice restarted the checks.
          this.checks.clear();
          if (this.stopReads.signal.aborted) return; // close() cut the read off
          throw e;
        } finally {
          this.checksInFlight = new Map();
        }
        if (this.state !== 'running') return;
        ids.forEach((id, i) => this.settle(id, raws[i], batch.get(id) as Check));
        this.pump();
      }
    } finally {
      this.checking = false;
    }
  }

  /** Applies a checked notice: the job's record decides what this worker does about it. */
  private settle(id: string, raw: Uint8Array | undefined, c: Check): void {
    if (this.running.has(id) || this.claiming.has(id)) return;
    let r: JobRecord | undefined;
    try {
      r = raw === undefined ? undefined : decodeRecord(raw);
    } catch {
      return; // not a job record: leave the job as it was
    }
    if (r === undefined || isTerminal(r.state)) {
      this.candidates.delete(id);
      this.orphans.delete(id);
      this.held.delete(id);
      return;
    }
    if (r.state === 'pending') {
      this.held.delete(id);
      this.candidates.set(id, r.notBefore);
      return;
    }
    if (c.alive !== undefined && r.owner === c.alive.w) {
      this.candidates.delete(id);
      this.orphans.delete(id);
      this.held.set(id, { at: c.alive.at, owner: c.alive.w });
      return;
    }
    // Running, but not confirmed by this notice: held as before, or (nobody known to hold it)
    // tried now — the lock decides.
    if (!this.held.has(id) && !this.candidates.has(id)) this.candidates.set(id, 0);
  }

  private onTick(): void {
    if (this.state !== 'running') return;
    const now = Date.now();
    for (const [id, { at }] of this.held) {
      if (at <= now) {
        this.held.delete(id);
        if (!this.running.has(id)) {
          this.candidates.set(id, 0);
          this.orphans.add(id);
        }
      }
    }
    this.pump();
  }

  private beat(): void {
    if (this.state === 'closed') return;
    const jobs = [...this.running].filter(([, r]) => r.own.certain).map(([id, r]): [string, number] => [id, r.own.remainingMs]);
    if (jobs.length > 0) this.sendAlive(jobs);
  }

  /**
   * Publishes the heartbeat in as many `alive` messages as the NATS server's max_payload needs,
   * each a complete notice naming some of the jobs (the others take each message on its own). One
   * message for every job used to pass max_payload from about 7,500 running jobs (1 MiB, the
   * default): nats.js refused it, nothing was sent and nothing said so, and every other worker
   * tried each job's lock every 100 ms as if its owner were dead. A job whose entry alone cannot
   * fit (a server max_payload of a few hundred bytes), or a message NATS refuses for another reason
   * than a closed connection, is an `error` event (HEARTBEAT_NOT_SENT).
   */
  private sendAlive(jobs: [string, number][]): void {
    // Ids and worker ids are ASCII (record.ts, config.ts): a character is a byte.
    const head = `{"t":"alive","w":${JSON.stringify(this.workerId)},"jobs":[`;
    const room = this.queue.maxPayload() - head.length - 2;
    let part = '';
    let failed: Error | undefined;
    const unsent: string[] = [];
    const flush = (): void => {
      if (part === '') return;
      failed ??= this.queue.publishAlive(`${head}${part}]}`) ?? undefined;
      part = '';
    };
    for (const [id, ms] of jobs) {
      const entry = JSON.stringify([id, ms]);
      if (entry.length > room) {
        unsent.push(id);
        continue;
      }
      if (part !== '' && part.length + 1 + entry.length > room) flush();
      part = part === '' ? entry : `${part},${entry}`;
    }
    flush();
    if (unsent.length > 0) {
      const shown = unsent.slice(0, 10).join(', ');
      const error = new MessagingError(
        `heartbeat not sent for ${unsent.length} job(s): an entry does not fit the NATS server's max_payload (${this.queue.maxPayload()} bytes) with this worker's id: ${shown}${unsent.length > 10 ? ', …' : ''}; other workers will try their locks every 100 ms`,
        'HEARTBEAT_NOT_SENT',
      );
      this.emit('error', error);
    }
    if (failed !== undefined) this.emit('error', new MessagingError(`heartbeat not sent: ${failed.message}`, 'HEARTBEAT_NOT_SENT', true, { cause: failed }));
  }

  private pick(now: number): string | undefined {
    for (const id of this.orphans) {
      if (this.checks.has(id) || this.checksInFlight.has(id)) continue;
      this.orphans.delete(id);
      if (this.candidates.has(id) && !this.running.has(id) && !this.claiming.has(id)) return id;
    }
    const ready: string[] = [];
    for (const [id, nb] of this.candidates) {
      if (nb > now || this.running.has(id) || this.claiming.has(id) || this.checks.has(id) || this.checksInFlight.has(id)) continue;
      ready.push(id);
      if (ready.length >= this.pickWindow) break;
    }
    if (ready.length === 0) return undefined;
    // A random one of the oldest few, so that workers do not all race for the same job.
    return ready[Math.floor(Math.random() * ready.length)];
  }

  private pump(): void {
    if (this.state !== 'running') return;
    const now = Date.now();
    while (this.running.size + this.claiming.size < this.concurrency) {
      const id = this.pick(now);
      if (id === undefined) return;
      this.candidates.delete(id);
      this.claiming.add(id);
      this.track(
        this.claimAndRun(id).finally(() => {
          this.claiming.delete(id);
          this.pump();
        }),
      );
    }
  }

  private lockKey(id: string): string {
    return `gridlink.job/${this.cfg.queue}/${id}`;
  }

  private async claimAndRun(id: string): Promise<void> {
    const claimed = await during(this.claims, this.claim(id));
    if (claimed === null) return;
    const { own, rec, takenOverFrom, known } = claimed;
    this.claiming.delete(id);
    try {
      if (this.state === 'running') {
        // Tell the others at once so they stop trying this job's lock.
        this.queue.publish({ t: 'alive', w: this.workerId, jobs: [[id, own.remainingMs]] });
        this.emit('claimed', { jobId: id, fencingToken: own.token, attempt: rec.attempt, takenOverFrom, at: Date.now() });
      }
      if (this.state !== 'running') {
        // close() was called after the claim was written (in the microtasks before this, or by a
        // 'claimed' listener): the handler is not started, and the claim is given back as one
        // written while closing is (claim()): the record first, then the lock. close() waits for
        // it (the job is in `running`), and its release loop leaves the job to this: releasing
        // the lock before the record is pending again would let another worker's claim count a
        // lost run that never started.
        const giveBack = (async () => {
          await this.unclaim(id, own, known);
          await own.release();
          this.queue.publish({ t: 'released', id, notBefore: 0 });
        })();
        const entry = this.running.get(id);
        if (entry !== undefined) entry.givingBack = giveBack;
        await giveBack;
        return;
      }
      await this.run(rec, own, takenOverFrom, known);
    } finally {
      this.running.delete(id);
      await own.release();
      if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  /**
   * Takes the job's lock and writes the claim into its record; null when the job is not this
   * worker's to run now (held elsewhere, not due, finished, or the worker is closing: then the
   * lock is given back before this resolves).
   */
  private async claim(id: string): Promise<{ own: Ownership; rec: JobRecord; takenOverFrom: string | null; known: { raw: Uint8Array | null } } | null> {
    const sentAt = Date.now();
    let handle;
    try {
      handle = await this.cfg.grid.lock(this.lockKey(id)).tryAcquire({ leaseMs: this.leaseMs, timeoutMs: this.leaseMs });
    } catch (e) {
      this.held.set(id, { at: Date.now() + 250, owner: this.held.get(id)?.owner ?? null });
      throw e;
    }
    if (handle === null) {
      // Held by a live owner (its heartbeats will keep pushing this back) or by a dead one whose
      // lease has not quite run out: try again shortly.
      if (!this.held.has(id)) this.held.set(id, { at: Date.now() + 100, owner: null });
      return null;
    }
    this.held.delete(id);
    const own = new Ownership(handle, this.leaseMs, this.marginMs, sentAt);
    if (this.state !== 'running') {
      await own.release();
      return null;
    }
    let previous: JobRecord | undefined;
    let t: UpdateResult;
    const known: { raw: Uint8Array | null } = { raw: null };
    try {
      t = await this.store.update(
        id,
        (r) => {
          previous = r;
          return claim(r, own.token, this.workerId, Date.now(), this.cfg.maxLostRuns);
        },
        known,
      );
    } catch (e) {
      await own.release();
      // The grid failed: try again soon. A record that cannot be read is not tried again (a
      // notice naming it would otherwise make this worker lock and read it every 250 ms).
      if (e instanceof GridError) this.held.set(id, { at: Date.now() + 250, owner: null });
      throw e;
    }
    if (!t.ok) {
      await own.release();
      if (t.reason === 'not-due') this.candidates.set(id, t.notBefore);
      else if (t.reason === 'terminal') this.queue.publish({ t: 'done', id, state: previous?.state ?? 'completed' });
      return null;
    }
    if (t.next.state === 'failed') {
      // A takeover that counted the job's last allowed lost run (ADR 0064): failed without
      // running it. Only the claim whose write applied gets here: dead-lettered once.
      await own.release();
      this.finishFailed(t.next);
      return null;
    }
    if (this.state !== 'running') {
      // Closed while the claim was being written: the handler is not started. The claim is given
      // back (pending again, not counted as a run); another worker claims the job at once.
      await this.unclaim(id, own, known);
      await own.release();
      this.queue.publish({ t: 'released', id, notBefore: 0 });
      return null;
    }
    // In `running` from the same step as the check above: a close() from now on waits for the job
    // (its claim stays in `claims` until this resolves, so there is no moment close() sees
    // neither; set in claimAndRun instead, a close() in between returned with the handler
    // starting after it).
    this.running.set(id, { own });
    return { own, rec: t.next, takenOverFrom: previous?.state === 'running' ? previous.owner : null, known };
  }

  /**
   * Gives back a claim whose handler was not started (fenced by its token): otherwise the next
   * claim would find the job running and count a lost run it never had. If the write does not
   * apply (the grid did not answer, or someone claimed the job since), the next claim decides.
   */
  private async unclaim(id: string, own: Ownership, known: { raw: Uint8Array | null }): Promise<void> {
    await this.store.update(id, (r) => unclaim(r, own.token, Date.now()), known).catch(() => undefined);
  }

  /** A job this worker just marked failed: announced, out of the index, and dead-lettered (once). */
  private finishFailed(next: JobRecord): void {
    const id = next.id;
    this.emit('failed', { jobId: id, error: next.error ?? { name: 'Error', message: 'failed' }, final: true });
    this.forget(id, next.createdAt);
    this.queue.publish({ t: 'done', id, state: 'failed' });
    // Not awaited here: a slow or hanging hook must not keep the finished job's slot and its
    // (renewed) lock. Its rejection is reported as `error`. close() waits for it (within
    // closeTimeoutMs): the hook is called once, by this worker only.
    const hook = this.onDeadLetter;
    if (hook) {
      // Run in its own context (inHook), so that a close() it calls is known to come from it.
      const key = {};
      const reported = this.reported(inHook.run(key, () => Promise.resolve().then(() => hook(toStatus(next, this.cfg.maxLostRuns)))));
      this.hooks.set(key, reported);
      const done = (): void => {
        this.hooks.delete(key);
        this.selfClosing.delete(key);
      };
      reported.then(done, done);
    }
  }

  private async run(rec: JobRecord, own: Ownership, takenOverFrom: string | null, known: { raw: Uint8Array | null }): Promise<void> {
    const id = rec.id;
    const tok = own.token;
    let lostReason: string | null = null;
    const onAbort = (): void => {
      const reason = own.signal.reason instanceof Error ? own.signal.reason.message : 'lost';
      if (reason === 'released') return;
      lostReason = reason;
      this.emit('lost', { jobId: id, fencingToken: tok, reason });
    };
    // Ownership may already be lost (the claim's writes took longer than the lease margin): the
    // handler is not started, and the claim is given back (fenced) so it is not counted as a run.
    if (own.signal.aborted) {
      onAbort();
      await this.unclaim(id, own, known);
      this.queue.publish({ t: 'released', id, notBefore: 0 });
      return;
    }
    own.signal.addEventListener('abort', onAbort, { once: true });
    // The handler's signal: the ownership's, and the run's time limit.
    const runAbort = new AbortController();
    own.signal.addEventListener('abort', () => runAbort.abort(own.signal.reason), { once: true });
    /** Set when the run exceeded its time limit: its later checkpoints are refused with it. */
    let timedOutWith: JobTimeoutError | null = null;
    const ctx: JobContext<P> = {
      jobId: id,
      payload: rec.payload as P,
      attempt: rec.attempt,
      fencingToken: tok,
      hasCheckpoint: rec.hasCheckpoint,
      lastCheckpoint: rec.hasCheckpoint ? rec.checkpoint : undefined,
      signal: runAbort.signal,
      takenOverFrom,
      checkpoint: async (state: unknown): Promise<void> => {
        checkValue('checkpoint', state, this.cfg.maxPayloadBytes);
        if (timedOutWith !== null) throw timedOutWith;
        if (!own.certain) throw new OwnershipLostError(id, lostReason ?? 'lease not certainly valid');
        const u = await this.store.update(id, (r) => checkpointTransition(r, tok, state, Date.now()), known);
        if (!u.ok) {
          this.emit('stale', { jobId: id, fencingToken: tok });
          throw new StaleOwnerError(id, tok, u.reason === 'stale' ? u.currentToken : tok);
        }
      },
    };
    let result: R | undefined;
    let error: unknown = null;
    let threw = false;
    let timedOut = false;
    const outcome = (async (): Promise<R> => {
      const r = await this.handler(ctx);
      checkValue('result', r, this.cfg.maxPayloadBytes);
      return r;
    })();
    const timeoutMs = rec.timeoutMs ?? null;
    let timer: NodeJS.Timeout | undefined;
    try {
      if (timeoutMs === null) {
        result = await outcome;
      } else {
        const expired = new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(TIMED_OUT), timeoutMs)));
        const first = await Promise.race([outcome, expired]);
        if (first === TIMED_OUT) timedOut = true;
        else result = first;
      }
    } catch (e) {
      threw = true;
      error = e;
    } finally {
      clearTimeout(timer);
      own.signal.removeEventListener('abort', onAbort);
    }
    if (timedOut) {
      // What the handler does from now on is ignored (its late outcome is not written; its
      // checkpoints are refused once the failure below is recorded: they are fenced).
      outcome.catch(() => undefined);
      threw = true;
      if (lostReason === null && !own.signal.aborted) {
        timedOutWith = new JobTimeoutError(id, timeoutMs as number);
        error = timedOutWith;
        runAbort.abort(timedOutWith);
      }
      // Otherwise ownership was lost first: released below, like any run that lost its job.
    }
    // The write is fenced by the token in the record: it applies only if nobody claimed the job
    // since this run did, whatever this worker believes about its lease.
    if (!threw) {
      const u = await during(this.recording, this.recordOutcome(id, tok, 'completed', (r) => complete(r, tok, result ?? null, Date.now()), known));
      if (u === null) return;
      if (u.ok) {
        this.forget(id, u.next.createdAt);
        this.queue.publish({ t: 'done', id, state: 'completed' });
        this.emit('completed', { jobId: id, fencingToken: tok });
      } else {
        this.emit('stale', { jobId: id, fencingToken: tok });
      }
      return;
    }
    if (error instanceof StaleOwnerError) return; // a checkpoint was refused: the job is someone else's
    // This run's checkpoint() refused because the lease was no longer certain: the watchdog may
    // not have aborted the signal yet (its timer runs after the handler's promise settles).
    const lostInCheckpoint = error instanceof OwnershipLostError && error.jobId === id;
    if (lostReason !== null || own.signal.aborted || lostInCheckpoint) {
      // The handler stopped because ownership was lost: not a handler failure. Free it at once;
      // the record stays running, so the next claim counts this run as lost (ADR 0064).
      if (lostReason === null && !own.signal.aborted) this.emit('lost', { jobId: id, fencingToken: tok, reason: 'lease not certainly valid' });
      this.queue.publish({ t: 'released', id, notBefore: 0 });
      return;
    }
    const info = errorInfo(error);
    const jitter = this.jitter ? 0.5 + Math.random() / 2 : 1;
    const u = await during(this.recording, this.recordOutcome(id, tok, 'failed', (r) => fail(r, tok, info, Date.now(), this.policy, jitter), known));
    if (u === null) return;
    if (!u.ok) {
      this.emit('stale', { jobId: id, fencingToken: tok });
      return;
    }
    const next = u.next;
    if (next.state === 'failed') {
      this.finishFailed(next);
    } else {
      this.emit('failed', { jobId: id, error: info, final: false });
      this.candidates.set(id, next.notBefore);
      this.queue.publish({ t: 'released', id, notBefore: next.notBefore });
    }
  }

  /**
   * Writes a finished run's outcome (fenced by its token). A write the grid does not answer (it
   * is unavailable, the operation timed out) is announced (`unrecorded`, `error`) and tried again
   * with backoff — 100 ms doubling to 5 s — for as long as this worker lives: until it applies, or
   * the record refuses it because a newer owner claimed the job (that owner runs it again). Only
   * close(), once it stops waiting for running jobs, gives up (null): the record stays `running`
   * with this run's token, and the job is run again by whoever takes it over. A write that applied
   * although its answer was lost is recognised on the next try (the record carries this run's
   * token and is no longer running: only this run can have written that).
   */
  private async recordOutcome(
    id: string,
    tok: number,
    outcome: 'completed' | 'failed',
    f: (r: JobRecord) => Transition,
    known: { raw: Uint8Array | null },
  ): Promise<UpdateResult | null> {
    let delay = 100;
    const announce = (attempt: number, willRetry: boolean, cause: unknown): void => {
      const error = new JobOutcomeNotRecordedError(id, tok, outcome, willRetry, { cause });
      this.emit('unrecorded', { jobId: id, fencingToken: tok, outcome, attempt, willRetry, error });
      this.emit('error', error);
    };
    for (let attempt = 1; ; attempt++) {
      let cause: unknown;
      try {
        const u = await this.store.update(id, f, known);
        if (!u.ok && u.reason !== 'missing' && u.current.token === tok && u.current.state !== 'running') return { ok: true, next: u.current };
        return u;
      } catch (e) {
        cause = e;
      }
      // A closed grid client never answers again: nothing to wait for.
      const willRetry = !this.givenUp.signal.aborted && !(cause instanceof GridClosedError);
      announce(attempt, willRetry, cause);
      if (!willRetry) return null;
      await sleep(delay, this.givenUp.signal);
      delay = Math.min(delay * 2, 5_000);
      if (this.givenUp.signal.aborted) {
        // close() stopped waiting while this write was between tries: not tried again.
        announce(attempt, false, cause);
        return null;
      }
    }
  }

  /**
   * Stops taking jobs, waits up to closeTimeoutMs for claims under way and running handlers, then
   * releases the locks of those still running (announcing them so another worker resumes them at
   * once), and waits for dead-letter hooks under way within the same closeTimeoutMs. No handler
   * starts once close() was called. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    // Called by one of this worker's dead-letter hooks: the shutdown does not wait for that hook.
    const fromHook = inHook.getStore();
    if (fromHook !== undefined && this.hooks.has(fromHook)) {
      this.selfClosing.add(fromHook);
      this.selfClosed?.();
    }
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const wasRunning = this.state === 'running';
    this.state = 'closing';
    this.stopReads.abort();
    for (const t of [this.tick, this.heartbeat]) if (t !== null) clearInterval(t);
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sub?.unsubscribe();
    this.sub = null;
    this.stopStatus();
    if (wasRunning) {
      // Keep heartbeats going while draining so nobody takes the running jobs over meanwhile.
      this.heartbeat = setInterval(() => this.beat(), Math.max(20, Math.floor(this.leaseMs / 3)));
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((r) => (timer = setTimeout(r, this.closeTimeoutMs)));
      // Claims under way end soon (one or two grid operations): a claim written meanwhile gives
      // its lock back instead of starting the handler.
      if (this.claims.size > 0) await Promise.race([Promise.allSettled([...this.claims]), timeout]);
      if (this.running.size > 0) await Promise.race([new Promise<void>((r) => this.idleWaiters.push(r)), timeout]);
      // Outcome writes still being retried stop now (their jobs are released below).
      this.givenUp.abort();
      clearInterval(this.heartbeat);
      this.heartbeat = null;
      // Released together: each release the grid does not answer takes up to the client's
      // operation timeout, and one after another they made close() take that once per job.
      await Promise.all(
        [...this.running.entries()].map(async ([id, r]) => {
          // A claim being given back releases its lock itself, after its record (claimAndRun).
          if (r.givingBack !== undefined) return r.givingBack.catch(() => undefined);
          await r.own.release();
          this.queue.publish({ t: 'released', id, notBefore: 0 });
        }),
      );
      // A write in flight ends within the grid client's operation timeout; its result (recorded,
      // or `unrecorded` with willRetry false) is reported before the listeners go.
      if (this.recording.size > 0) await Promise.allSettled([...this.recording]);
      // Dead-letter hooks under way (of jobs that failed before or during close()): waited for
      // within the same closeTimeoutMs, so that each ran to its end and its rejection is an
      // `error` event before the listeners go. A hook still running then is left to itself.
      // Not those that called close() themselves (they may be awaiting it): the wait starts over
      // when one does.
      let timedOut = false;
      void timeout.then(() => (timedOut = true));
      for (;;) {
        const others = [...this.hooks].filter(([key]) => !this.selfClosing.has(key)).map(([, p]) => p);
        if (others.length === 0 || timedOut) break;
        const selfClosed = new Promise<void>((r) => (this.selfClosed = r));
        await Promise.race([Promise.allSettled(others), timeout, selfClosed]);
      }
      this.selfClosed = null;
      clearTimeout(timer);
    }
    // The sweep and the notices check under way stop at their next step (their reads aborted
    // above): once close() resolves, they read nothing more and start no claim.
    await Promise.allSettled([this.sweeping, this.checkRun]);
    this.state = 'closed';
    this.removeAllListeners();
  }
}
