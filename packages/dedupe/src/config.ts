/**
 * Options of the de-duplication core, their defaults and their validation at construction. Every
 * error is a DedupeConfigError naming the option.
 */
import type { GridClient } from '@gridlink/client';
import { isCacheName } from '@gridlink/client/internal';
import { CircuitBreaker, resolveBreakerOptions, type BreakerOptions } from './breaker.js';
import { int, onlyKnownOptions } from './checks.js';
import { DedupeConfigError } from './errors.js';

export { onlyKnownOptions };

/** Structured logger; `console` fits. Silent when absent. */
export interface DedupeLogger {
  info?(message: string, fields?: Record<string, unknown>): void;
  warn?(message: string, fields?: Record<string, unknown>): void;
  error?(message: string, fields?: Record<string, unknown>): void;
}

/** The parts of prom-client the core uses (`import * as prom from 'prom-client'` fits). */
export interface PromClientLike {
  Counter: new (config: { name: string; help: string; labelNames: string[]; registers?: unknown[] }) => {
    inc(labels: Record<string, string>, value?: number): void;
  };
  register: RegistryLike;
}
export interface RegistryLike {
  getSingleMetric(name: string): unknown;
}

export type MetricsOption = 'auto' | false | { client: PromClientLike; registry?: RegistryLike; prefix?: string };

export type FailMode = 'open' | 'closed';

export interface DedupeOptions<Req = unknown> {
  /** The grid client, or a function returning it (undefined while not connected). Adapters fill this in. */
  client?: GridClient | ((req: Req) => GridClient | undefined);
  /** Request header carrying the key; false to use fingerprints only. Default "Idempotency-Key". */
  header?: string | false;
  /** Fingerprint of the fields that identify a request, used when the header is absent. */
  fingerprint?: (req: Req) => unknown;
  /** Answer 400 when a request has no key (neither header nor fingerprint). Default false (pass through). */
  required?: boolean;
  /**
   * What must be the same for a replay (else 422). Default: the body for header keys; nothing for
   * fingerprint keys (the fingerprint already is the identity). false disables the check.
   */
  payload?: ((req: Req) => unknown) | false;
  /** Tenant the key is scoped by (e.g. from the authenticated user). */
  tenant?: (req: Req) => string | undefined;
  /** Route the key is scoped by; default the matched route pattern (else the path). */
  route?: string | ((req: Req) => string);
  /** Methods de-duplicated; others pass through. Default POST, PUT, PATCH, DELETE. */
  methods?: string[];
  /** How long a completed response is kept for replay (ms), 1 to one year. Default 86 400 000 (24 h). */
  retentionMs?: number;
  /** Lease of the lock held while the handler runs (ms); renewed at a third of it. Default 10 000. */
  leaseMs?: number;
  /**
   * Which final statuses are stored for replay; the others free the key, so a retry runs the
   * handler again. Default: 2xx, 3xx and 4xx except 408, 425 and 429 — answers that are final
   * for this request are replayed (a redirect too: a POST-redirect-GET must not run twice), while
   * 408 Request Timeout, 425 Too Early and 429 Too Many Requests say "try again later" and would
   * otherwise be replayed for the whole retention window. 5xx are never stored by default
   * (ADR 0051).
   */
  storeStatus?: (status: number) => boolean;
  /**
   * Response headers stored and replayed (lower case). Content-Encoding is always stored with a
   * body, whatever this list says: it describes the stored bytes (ADR 0051). A replay to a request
   * whose Accept-Encoding does not take it is decoded (gzip, deflate, br) and adjusted.
   */
  replayHeaders?: string[];
  /** Header set on replayed responses. Default "Idempotent-Replayed" (value "true"). */
  replayedHeader?: string;
  /** Longest accepted header key. Default 255. */
  maxKeyLength?: number;
  /**
   * Largest response body stored for replay (bytes); larger ones are replayed without body. Also
   * the most a replay decodes an encoded body to, for a duplicate that does not accept its
   * Content-Encoding; beyond it that replay has no body either. Default 1 MiB; at most 4 MiB less
   * 256 KiB (one grid request holds the stored response).
   */
  maxStoredBodyBytes?: number;
  /** Retry-After (s) of the 409 for a request in progress. Default 1. */
  retryAfterSeconds?: number;
  /** When the grid is unreachable: "open" serves without de-duplication, "closed" answers 503. Default "closed". */
  failMode?: FailMode;
  /** Retry-After (s) of the 503 in failMode "closed". Default 5. */
  unavailableRetryAfterSeconds?: number;
  /** Deadline of each grid call the core makes (ms). Default 1000. */
  gridTimeoutMs?: number;
  /**
   * Send the response first and store it for replay right after (one grid operation that stores
   * and frees the key, off the latency path). Default false: the response is stored before it is
   * sent, so a client that has it and retries always gets the replay. With true, a retry arriving
   * in the few hundred microseconds between send and store gets 409 (never a second run). ADR 0036.
   */
  storeAfterSend?: boolean;
  /** Circuit breaker options, or a breaker shared with other routes. */
  breaker?: BreakerOptions | CircuitBreaker;
  /** Grid cache holding completed responses. Default "gridlink-idempotency". */
  cache?: string;
  /** Structured log lines for duplicates, fail-open and breaker changes. */
  logger?: DedupeLogger;
  /** prom-client counters: "auto" uses the app's prom-client when it has one. Default "auto". */
  metrics?: MetricsOption;
}

export const DEFAULT_REPLAY_HEADERS = [
  'content-type',
  'content-language',
  'content-location',
  'location',
  'etag',
  'last-modified',
  'cache-control',
  'content-encoding',
];

export interface ResolvedDedupeOptions<Req> {
  client: (req: Req) => GridClient | undefined;
  header: string | false;
  fingerprint: ((req: Req) => unknown) | undefined;
  required: boolean;
  payload: ((req: Req) => unknown) | false | undefined;
  tenant: ((req: Req) => string | undefined) | undefined;
  route: string | ((req: Req) => string) | undefined;
  methods: Set<string>;
  retentionMs: number;
  leaseMs: number;
  storeStatus: (status: number) => boolean;
  replayHeaders: Set<string>;
  replayedHeader: string;
  maxKeyLength: number;
  maxStoredBodyBytes: number;
  retryAfterSeconds: number;
  failMode: FailMode;
  unavailableRetryAfterSeconds: number;
  gridTimeoutMs: number;
  storeAfterSend: boolean;
  breaker: CircuitBreaker | Required<BreakerOptions>;
  cache: string;
  logger: DedupeLogger | undefined;
  metrics: MetricsOption;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * The largest `maxStoredBodyBytes`: the stored response goes to the grid in one request, and the
 * grid client's requests are at most 4 MiB (less if a node announces less). Beyond that every
 * store failed (frame too large), so such a response was never replayed: the earlier bound of
 * 64 MiB accepted bodies no store could hold. 256 KiB are left for the headers and the request.
 */
const MAX_STORED_BODY_BYTES = 4 * 1024 * 1024 - 256 * 1024;

/** The longest `retentionMs`: one year (365 days). */
const MAX_RETENTION_MS = 365 * 24 * 3600 * 1000;

function fn<T>(field: string, v: unknown): T | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw new DedupeConfigError(field, `must be a function, got ${typeof v}`);
  return v as T;
}

function headerName(field: string, v: unknown): string {
  if (typeof v !== 'string' || !TOKEN.test(v)) throw new DedupeConfigError(field, `must be an HTTP header name, got ${JSON.stringify(v)}`);
  return v.toLowerCase();
}

/** Statuses that ask the client to try again later: replaying them would refuse every retry. */
const TRANSIENT_4XX = new Set([408, 425, 429]);

/** The default `storeStatus`: 2xx, 3xx and 4xx except 408, 425 and 429 (ADR 0051). */
export const defaultStoreStatus = (s: number): boolean => s >= 200 && s < 500 && !TRANSIENT_4XX.has(s);

const OPTIONS = [
  'client', 'header', 'fingerprint', 'required', 'payload', 'tenant', 'route', 'methods', 'retentionMs', 'leaseMs',
  'storeStatus', 'replayHeaders', 'replayedHeader', 'maxKeyLength', 'maxStoredBodyBytes', 'retryAfterSeconds',
  'failMode', 'unavailableRetryAfterSeconds', 'gridTimeoutMs', 'breaker', 'cache', 'logger', 'metrics',
  'storeAfterSend',
];

export function resolveDedupeOptions<Req>(o: DedupeOptions<Req> = {}): ResolvedDedupeOptions<Req> {
  // An array is an object to typeof, but no options object (as `breaker` already says).
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new DedupeConfigError('options', 'must be an object');
  onlyKnownOptions(o, OPTIONS);

  let client: (req: Req) => GridClient | undefined;
  if (o.client === undefined) client = () => undefined;
  else if (typeof o.client === 'function') client = o.client;
  else if (typeof o.client === 'object' && o.client !== null && typeof (o.client as { lock?: unknown }).lock === 'function') {
    const c = o.client;
    client = () => c;
  } else throw new DedupeConfigError('client', 'must be a GridClient or a function returning one');

  const header = o.header === undefined ? 'idempotency-key' : o.header === false ? false : headerName('header', o.header);
  const fingerprint = fn<(req: Req) => unknown>('fingerprint', o.fingerprint);
  if (header === false && fingerprint === undefined) {
    throw new DedupeConfigError('fingerprint', 'is required when header is false (there would be no key)');
  }
  if (o.required !== undefined && typeof o.required !== 'boolean') throw new DedupeConfigError('required', 'must be a boolean');
  if (o.payload !== undefined && o.payload !== false && typeof o.payload !== 'function') {
    throw new DedupeConfigError('payload', 'must be a function or false');
  }
  if (o.route !== undefined && typeof o.route !== 'string' && typeof o.route !== 'function') {
    throw new DedupeConfigError('route', 'must be a string or a function');
  }
  let methods = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
  if (o.methods !== undefined) {
    if (!Array.isArray(o.methods) || o.methods.length === 0 || !o.methods.every((m) => typeof m === 'string' && TOKEN.test(m))) {
      throw new DedupeConfigError('methods', 'must be a non-empty array of HTTP method names');
    }
    methods = new Set(o.methods.map((m) => m.toUpperCase()));
  }
  let replayHeaders = new Set(DEFAULT_REPLAY_HEADERS);
  if (o.replayHeaders !== undefined) {
    if (!Array.isArray(o.replayHeaders)) throw new DedupeConfigError('replayHeaders', 'must be an array of header names');
    replayHeaders = new Set(o.replayHeaders.map((h, i) => headerName(`replayHeaders[${i}]`, h)));
  }
  if (o.failMode !== undefined && o.failMode !== 'open' && o.failMode !== 'closed') {
    throw new DedupeConfigError('failMode', `must be "open" or "closed", got ${JSON.stringify(o.failMode)}`);
  }
  let breaker: CircuitBreaker | Required<BreakerOptions>;
  if (o.breaker instanceof CircuitBreaker) breaker = o.breaker;
  else breaker = resolveBreakerOptions(o.breaker);
  if (o.cache !== undefined && !isCacheName(o.cache)) {
    // A name the grid refuses would fail every request at run time, and feed the breaker.
    throw new DedupeConfigError('cache', 'must be a grid cache name: a string of 1 to 255 UTF-8 bytes');
  }
  if (o.logger !== undefined) {
    if (typeof o.logger !== 'object' || o.logger === null || Array.isArray(o.logger)) throw new DedupeConfigError('logger', 'must be an object with info/warn/error methods');
    for (const level of ['info', 'warn', 'error'] as const) {
      const f = (o.logger as Record<string, unknown>)[level];
      if (f !== undefined && typeof f !== 'function') throw new DedupeConfigError(`logger.${level}`, `must be a function, got ${f === null ? 'null' : typeof f}`);
    }
  }
  const m = o.metrics;
  if (m !== undefined && m !== 'auto' && m !== false) {
    if (typeof m !== 'object' || m === null || typeof (m as { client?: { Counter?: unknown } }).client?.Counter !== 'function') {
      throw new DedupeConfigError('metrics', 'must be "auto", false or { client: prom-client module }');
    }
    onlyKnownOptions(m, ['client', 'registry', 'prefix'], 'metrics.');
    if (m.prefix !== undefined && (typeof m.prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(m.prefix))) {
      throw new DedupeConfigError('metrics.prefix', 'must be a Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)');
    }
    if (m.registry !== undefined && (typeof m.registry !== 'object' || m.registry === null || typeof m.registry.getSingleMetric !== 'function')) {
      throw new DedupeConfigError('metrics.registry', 'must be a prom-client Registry');
    }
  }
  if (o.storeAfterSend !== undefined && typeof o.storeAfterSend !== 'boolean') throw new DedupeConfigError('storeAfterSend', 'must be a boolean');
  const leaseMs = int('leaseMs', o.leaseMs, 10_000, 100, 3_600_000);
  return {
    client,
    header,
    fingerprint,
    required: o.required ?? false,
    payload: o.payload,
    tenant: fn('tenant', o.tenant),
    route: o.route,
    methods,
    // Bounded: the grid refuses a TTL whose expiry (now + TTL) is no safe integer, so a larger
    // value passed here failed every store at run time. A year is far beyond any retry.
    retentionMs: int('retentionMs', o.retentionMs, 86_400_000, 1, MAX_RETENTION_MS),
    leaseMs,
    storeStatus: fn<(s: number) => boolean>('storeStatus', o.storeStatus) ?? defaultStoreStatus,
    replayHeaders,
    replayedHeader: o.replayedHeader === undefined ? 'idempotent-replayed' : headerName('replayedHeader', o.replayedHeader),
    maxKeyLength: int('maxKeyLength', o.maxKeyLength, 255, 1, 8192),
    maxStoredBodyBytes: int('maxStoredBodyBytes', o.maxStoredBodyBytes, 1024 * 1024, 0, MAX_STORED_BODY_BYTES),
    retryAfterSeconds: int('retryAfterSeconds', o.retryAfterSeconds, 1, 0, 86_400),
    failMode: o.failMode ?? 'closed',
    unavailableRetryAfterSeconds: int('unavailableRetryAfterSeconds', o.unavailableRetryAfterSeconds, 5, 0, 86_400),
    gridTimeoutMs: int('gridTimeoutMs', o.gridTimeoutMs, 1000, 1, 600_000),
    storeAfterSend: o.storeAfterSend ?? false,
    breaker,
    cache: o.cache ?? 'gridlink-idempotency',
    logger: o.logger,
    metrics: m ?? 'auto',
  };
}
