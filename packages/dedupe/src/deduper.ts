/**
 * The de-duplication core shared by the Express and Nest adapters. Framework-free: an adapter
 * describes the request (`DedupeRequest`), asks `begin()` for a decision and, when told to
 * proceed, reports the outcome to the returned `Ticket` (complete or abandon).
 *
 * Per request, one grid operation before the handler: take the lock on the hashed key
 * (auto-renewed while held) and read the stored response under the same name, atomically on the
 * lock's primary (`lock.attemptGet`, ADR 0036); with `ifAbsent`, so a stored response is read
 * without taking the lock. Lock refused → 409 (or the replay, if the holder already stored one).
 * Stored response → replay (or 422 if the payload differs). Otherwise the
 * handler runs holding the lock; its response is stored (per `storeStatus`) and the lock released
 * in one more grid operation (`handle.putAndRelease`), before the response is sent or — with
 * `storeAfterSend` — right after.
 */
import { EventEmitter } from 'node:events';
import {
  bytesSerializer,
  ClusterMismatchError,
  GridConnectionError,
  GridSerializationError,
  GridServerError,
  GridTimeoutError,
  LockNotHeldError,
  type GridCache,
  type GridClient,
  type LockHandle,
  type LockStateAttempt,
} from '@gridlink/client';
import { stopRenewal } from '@gridlink/client/internal';
import { CircuitBreaker, type BreakerState } from './breaker.js';
import { resolveDedupeOptions, type DedupeOptions, type ResolvedDedupeOptions } from './config.js';
import { canonicalJson, checkHeaderKey, payloadHash, scopedKeyHash, type Scope } from './key.js';
import { DecodedTooLarge, canDecode, codingsToKeep, contentCodings, decode, parseAcceptEncoding } from './encoding.js';
import { createCounters, type DedupeCounters } from './metrics.js';

/** What an adapter knows about a request. */
export interface DedupeRequest<Req> {
  method: string;
  /** Matched route pattern (or path) the key is scoped by, unless the `route` option says otherwise. */
  route: string;
  /**
   * The `route` label of the metrics, when `route` is a concrete path (no route matched yet, e.g.
   * middleware mounted app-wide): one series per URL would grow without bound. Default `route`;
   * the `route` option, when set, names both.
   */
  routeLabel?: string;
  header(name: string): string | undefined;
  /**
   * How many times the header appears in the request (optional). An Idempotency-Key sent twice
   * is refused (400): its lines would otherwise be joined into one key ("a, b").
   */
  headerLines?(name: string): number;
  body: unknown;
  clientAddress: string | undefined;
  userAgent: string | undefined;
  /** The framework's request, handed to fingerprint/tenant/payload/route functions. */
  raw: Req;
}

/** A response to send as is (problem+json or a replay). */
export interface DirectResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array;
}

/** A handler's response as the adapter captured it. `body` null: larger than maxStoredBodyBytes. */
export interface CapturedResponse {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: Uint8Array | null;
}

export type Outcome =
  | 'proceed'
  | 'replayed'
  | 'in_progress'
  | 'payload_mismatch'
  | 'missing_key'
  | 'invalid_key'
  | 'fail_open'
  | 'fail_closed'
  | 'bypass';

export type Decision<Req> =
  | { action: 'proceed'; ticket: Ticket<Req> }
  | { action: 'bypass'; outcome: 'bypass' | 'fail_open' }
  | { action: 'respond'; outcome: Outcome; response: DirectResponse };

/** Fields of every event and log line about a request. */
export interface RequestInfo {
  keyHash: string | undefined;
  method: string;
  route: string;
  tenant: string | undefined;
  clientAddress: string | undefined;
  userAgent: string | undefined;
}

export interface DedupeEvents {
  /** A duplicate was rejected (in progress, payload mismatch) or answered with the stored response. */
  duplicate: [RequestInfo & { outcome: 'replayed' | 'in_progress' | 'payload_mismatch' }];
  /** A request was served without de-duplication because the grid was unavailable. */
  failOpen: [RequestInfo & { reason: string }];
  /** A request was refused with 503 because the grid was unavailable. */
  failClosed: [RequestInfo & { reason: string }];
  /** The circuit breaker changed state. */
  breaker: [{ state: BreakerState; previous: BreakerState }];
  /** The lock was lost while the handler ran (renewal failed): a duplicate may have run. */
  lockLost: [RequestInfo & { fencingToken: number; error: unknown }];
  /** A handler's response was stored for replay. */
  stored: [RequestInfo & { status: number; fencingToken: number; bodyOmitted: boolean }];
  /** The key was freed without storing (5xx, thrown, aborted, not stored by policy). */
  released: [RequestInfo & { reason: string; fencingToken: number }];
}

interface StoredRecord {
  v: 1;
  fp: string | null;
  status: number;
  headers: [string, string][];
  body: Uint8Array | null;
  at: number;
}

const PROBLEM_TYPE = 'urn:gridlink:problem:';

/** The breaker's clock: monotonic, so a wall-clock step (NTP, a VM resumed) cannot hold it open. */
const now = (): number => performance.now();

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (typeof (v as { then?: unknown })?.then === 'function') return 'a Promise';
  return typeof v;
}

function problem(status: number, type: string, title: string, detail: string, extraHeaders: [string, string][] = []): DirectResponse {
  const body = Buffer.from(JSON.stringify({ type: PROBLEM_TYPE + type, title, status, detail }));
  return { status, headers: [['content-type', 'application/problem+json'], ...extraHeaders], body };
}

/**
 * A replay whose body has a content coding depends on the request's Accept-Encoding (it may be
 * decoded): `Vary: Accept-Encoding` (RFC 9110 section 12.5.5), unless the stored Vary already
 * names it or is `*`.
 */
function withVaryAcceptEncoding(headers: [string, string][]): [string, string][] {
  const named = headers.some(([k, v]) => k === 'vary' && v.split(',').some((f) => ['*', 'accept-encoding'].includes(f.trim().toLowerCase())));
  return named ? headers : [...headers, ['vary', 'Accept-Encoding']];
}

/**
 * Digests of the bytes as sent (RFC 9530's Content-Digest and Repr-Digest, both over the coded
 * bytes; RFC 3230's Digest; Content-MD5), when replayHeaders lists them: a replay whose bytes are
 * not the stored ones (decoded, or omitted) must not carry them, a client checking them would
 * refuse a correct answer.
 */
const BYTE_DIGESTS = new Set(['content-digest', 'repr-digest', 'digest', 'content-md5']);

/**
 * Headers of a body decoded down to the codings `kept`: Content-Encoding says what is left, a
 * stored Content-Length (listed in replayHeaders) and digests of the bytes no longer hold, and a
 * strong ETag named the encoded bytes, so it becomes weak (the decoded body is the same content,
 * not the same bytes).
 */
function decodedHeaders(headers: [string, string][], kept: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (const [k, v] of headers) {
    if (k === 'content-encoding' || k === 'content-length' || BYTE_DIGESTS.has(k)) continue;
    out.push(k === 'etag' && !v.startsWith('W/') ? [k, `W/${v}`] : [k, v]);
  }
  if (kept.length > 0) out.push(['content-encoding', kept.join(', ')]);
  return out;
}

function isRecord(v: unknown): v is StoredRecord {
  return typeof v === 'object' && v !== null && (v as { v?: unknown }).v === 1 && typeof (v as { status?: unknown }).status === 'number';
}

/**
 * Answers a node gives about the request itself, not about the grid's health: the same request
 * would get them from a perfectly healthy grid.
 */
const REQUEST_FAULT_CODES = new Set(['GRID_BAD_REQUEST', 'GRID_UNKNOWN_OP', 'GRID_VALUE_TYPE', 'GRID_FRAME_TOO_LARGE', 'GRID_LOCK_NOT_HELD']);

/**
 * Whether an error of a grid call says the grid is unhealthy or unreachable, and so counts as a
 * failure for the circuit breaker: a connection error, a deadline passed, an answer from a node
 * that it cannot serve (not primary, partition moving or lost, overloaded, stopping, internal
 * failure...), a node of another cluster. Not: what the app did to its own client (closed it,
 * aborted the call, bad options) or what the request carried (a value that does not serialise or
 * deserialise, a frame too large, a bad request): a healthy grid gives those too, and opening the
 * breaker on them would refuse every other request for `openMs`.
 */
export function isGridFault(e: unknown): boolean {
  if (e instanceof GridConnectionError || e instanceof GridTimeoutError || e instanceof ClusterMismatchError) return true;
  if (e instanceof GridServerError) return !REQUEST_FAULT_CODES.has(e.code);
  return false;
}

export class Deduper<Req = unknown> extends EventEmitter<DedupeEvents> {
  readonly options: ResolvedDedupeOptions<Req>;
  readonly breaker: CircuitBreaker;
  private readonly counters: DedupeCounters;
  private readonly caches = new WeakMap<GridClient, GridCache<string, StoredRecord>>();
  /**
   * Tickets holding a key: a count, not a Set of them — per-request churn in a V8 Set slows the
   * collector down for good after the first full collection (ADR 0075).
   */
  private active = 0;
  /**
   * Prefix of the grid name of a key: the lock and the stored response share that name, so they
   * share one partition and one grid operation reads or writes both (ADR 0036).
   */
  private readonly namePrefix: string;
  private readonly unwatch: () => void;

  constructor(options: DedupeOptions<Req> = {}) {
    super();
    this.options = resolveDedupeOptions(options);
    this.namePrefix = `dedupe:${this.options.cache}:`;
    const b = this.options.breaker;
    // A breaker shared with other routes reports its changes to each deduper using it. It holds
    // this deduper weakly: one that is dropped (a middleware built per request, a router rebuilt)
    // leaves the breaker's listeners with it, without anyone having to call close().
    this.breaker = b instanceof CircuitBreaker ? b : new CircuitBreaker(b);
    this.unwatch = this.breaker.watch(this, (self, state, previous) => self.breakerChanged(state, previous));
    this.counters = createCounters(this.options.metrics);
  }

  private breakerChanged(state: BreakerState, previous: BreakerState): void {
    this.log('warn', 'gridlink dedupe circuit breaker changed state', { event: 'dedupe.breaker', state, previous });
    this.report('breaker', { state, previous });
  }

  /**
   * Detaches this deduper from its circuit breaker at once (its `breaker` events stop). Requests
   * it still decides keep working. Idempotent. Not needed for a deduper that is simply dropped:
   * the breaker holds it weakly.
   */
  close(): void {
    this.unwatch();
  }

  /** Requests currently holding a key through this deduper. */
  get inFlight(): number {
    return this.active;
  }

  /** The same cache read as raw bytes: for a record that does not decode. Rarely used: not cached. */
  private bytesCacheOf(client: GridClient): GridCache<string, Uint8Array> {
    return client.cache<string, Uint8Array>(this.options.cache, { serializer: bytesSerializer });
  }

  private cacheOf(client: GridClient): GridCache<string, StoredRecord> {
    let c = this.caches.get(client);
    if (c === undefined) {
      c = client.cache<string, StoredRecord>(this.options.cache);
      this.caches.set(client, c);
    }
    return c;
  }

  private count(route: string, outcome: Outcome): void {
    try {
      this.counters.inc(route, outcome);
    } catch {
      // A metrics failure must not decide a request.
    }
  }

  /**
   * Emits an event, and keeps a listener that throws from deciding the request: the response must
   * still go out and the key be freed (a throw on the response path used to leave the response
   * unsent and the lock held). The listener's error goes to the logger. Callers on the
   * per-request path build the event's fields only when someone listens (`listenerCount`): the
   * spread of the request's fields into a new object for every stored response showed in the
   * app's CPU profile with nobody listening.
   */
  private report<K extends keyof DedupeEvents>(event: K, ...args: DedupeEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: DedupeEvents[K]) => boolean)(event, ...args);
    } catch (e) {
      this.log('error', 'a dedupe event listener threw', { event: 'dedupe.listener_failed', listenerEvent: event, error: String(e) });
    }
  }

  /** Writes a log line; a logger that throws is ignored for the same reason. */
  log(level: 'info' | 'warn' | 'error', message: string, fields: Record<string, unknown>): void {
    try {
      this.options.logger?.[level]?.(message, fields);
    } catch {
      // nothing left to tell it to
    }
  }

  private routeOf(req: DedupeRequest<Req>): string {
    const r = this.options.route;
    if (r === undefined) return req.route;
    return typeof r === 'string' ? r : r(req.raw);
  }

  /** Decides what to do with a request. Never throws for bad input: that becomes a 4xx response. */
  async begin(req: DedupeRequest<Req>): Promise<Decision<Req>> {
    const o = this.options;
    const method = req.method.toUpperCase();
    if (!o.methods.has(method)) {
      return { action: 'bypass', outcome: 'bypass' };
    }
    let route = req.route;
    let label = req.routeLabel ?? route;
    const unidentifiable = (e: unknown): Decision<Req> => {
      this.count(label, 'invalid_key');
      const detail = `the request's identifying fields could not be read: ${e instanceof Error ? e.message : String(e)}`;
      return { action: 'respond', outcome: 'invalid_key', response: problem(400, 'unidentifiable-request', 'Request cannot be identified', detail) };
    };
    let tenant: string | undefined;
    try {
      route = this.routeOf(req);
      // A scope that is not a string (a Promise from an async function, an object) would be
      // hashed as "{}": every request would share one scope.
      if (typeof route !== 'string') throw new TypeError(`the route function must return a string, got ${describeValue(route)}`);
      if (o.route !== undefined) label = route;
      tenant = o.tenant?.(req.raw);
      if (tenant !== undefined && typeof tenant !== 'string') throw new TypeError(`the tenant function must return a string or undefined, got ${describeValue(tenant)}`);
    } catch (e) {
      return unidentifiable(e);
    }
    // The client's address is read only if an event or a log line names it: behind proxies,
    // finding it walks the forwarding chain.
    const info: RequestInfo = {
      keyHash: undefined,
      method,
      route,
      tenant,
      get clientAddress() {
        return req.clientAddress;
      },
      userAgent: req.userAgent,
    };
    const scope: Scope = { method, route, tenant };

    // The key: header first, else the fingerprint.
    let keyHash: string;
    let fp: string | null = null;
    let fields: unknown;
    const raw = o.header === false ? undefined : req.header(o.header);
    if (raw !== undefined) {
      const checked = o.header !== false && (req.headerLines?.(o.header) ?? 1) > 1 ? { error: `the ${o.header} header appears more than once` } : checkHeaderKey(raw, o.maxKeyLength);
      if ('error' in checked) {
        this.count(label, 'invalid_key');
        return { action: 'respond', outcome: 'invalid_key', response: problem(400, 'invalid-idempotency-key', 'Invalid Idempotency-Key', checked.error) };
      }
      keyHash = scopedKeyHash(scope, 'h', checked.key);
      try {
        if (o.payload !== false) fp = payloadHash(o.payload === undefined ? (req.body ?? null) : o.payload(req.raw));
      } catch (e) {
        return unidentifiable(e);
      }
    } else if (o.fingerprint !== undefined && (fields = this.fingerprintOf(req)) !== undefined) {
      if (fields instanceof Error) return unidentifiable(fields);
      let material: string;
      try {
        material = canonicalJson(fields);
        if (typeof o.payload === 'function') fp = payloadHash(o.payload(req.raw));
      } catch (e) {
        return unidentifiable(e);
      }
      keyHash = scopedKeyHash(scope, 'f', material);
    } else if (o.required) {
      this.count(label, 'missing_key');
      return {
        action: 'respond',
        outcome: 'missing_key',
        response: problem(400, 'missing-idempotency-key', 'Idempotency-Key required', `this endpoint requires an ${o.header === false ? 'identifiable request' : `${o.header} header`}`),
      };
    } else {
      this.count(label, 'bypass');
      return { action: 'bypass', outcome: 'bypass' };
    }
    info.keyHash = keyHash;

    let client: GridClient | undefined;
    try {
      client = o.client(req.raw);
    } catch (e) {
      return this.unavailable(info, label, `the client function threw: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (client === undefined) return this.unavailable(info, label, 'grid client not connected');
    // The breaker's token for this call: its reports count only for the state it was admitted in.
    const admitted = this.breaker.allow(now());
    if (admitted === 0) return this.unavailable(info, label, 'circuit breaker open');

    let cache: GridCache<string, StoredRecord>;
    let attempt: LockStateAttempt<StoredRecord>;
    try {
      // Inside the try: a closed client throws here, and an allowed half-open probe must report
      // an outcome, or the breaker would wait for it for ever.
      cache = this.cacheOf(client);
      const lock = client.lock(this.namePrefix + keyHash);
      const lockOptions = { leaseMs: o.leaseMs, autoRenew: true, timeoutMs: o.gridTimeoutMs };
      // ifAbsent: a stored response comes back as a plain read, without taking the lock (a replay
      // costs one unreplicated operation and no release).
      try {
        attempt = await lock.attemptGet(cache, { ...lockOptions, ifAbsent: true });
      } catch (e) {
        if (!(e instanceof GridSerializationError)) throw e;
        // What sits under the key does not even decode: it is no stored response either. Take the
        // lock reading it as bytes (the handler's response replaces it), rather than answer 503
        // to this key for the rest of the record's life.
        this.log('warn', 'an unreadable record sits under the key: it is replaced', { event: 'dedupe.record_unreadable', error: String(e), ...info });
        const raw = await lock.attemptGet(this.bytesCacheOf(client), lockOptions);
        attempt = raw.acquired ? { acquired: true, handle: raw.handle, value: undefined } : { acquired: false, heldForMs: raw.heldForMs, value: undefined };
      }
      if (!attempt.acquired && attempt.value !== undefined && !isRecord(attempt.value)) {
        // Something that is not a stored response sits under the key: take the lock regardless,
        // as without ifAbsent (the handler's response will replace it).
        attempt = await lock.attemptGet(cache, lockOptions);
      }
      this.breaker.success(admitted);
    } catch (e) {
      // Only what says the grid is unhealthy counts; anything else still leaves this request
      // without de-duplication, but must not refuse every other one for openMs.
      if (isGridFault(e)) this.breaker.failure(now(), admitted);
      else this.breaker.cancel(admitted);
      return this.unavailable(info, label, e instanceof Error ? `${(e as { code?: string }).code ?? e.name}: ${e.message}` : String(e));
    }
    const handle: LockHandle | null = attempt.acquired ? attempt.handle : null;
    const record = isRecord(attempt.value) ? attempt.value : undefined;

    if (record !== undefined) {
      if (handle !== null) this.releaseQuietly(handle);
      if (record.fp !== null && fp !== null && record.fp !== fp) {
        return this.duplicate(info, label, 'payload_mismatch', problem(422, 'idempotency-key-reused', 'Idempotency-Key reused with a different payload', 'this key was already used for a request with a different payload'));
      }
      return this.duplicate(info, label, 'replayed', await this.replay(record, req.header('accept-encoding'), info));
    }
    if (handle === null) {
      return this.duplicate(
        info,
        label,
        'in_progress',
        problem(409, 'request-in-progress', 'Request in progress', 'a request with this key is being processed; retry later', [['retry-after', String(o.retryAfterSeconds)]]),
      );
    }
    this.count(label, 'proceed');
    const ticket = new Ticket<Req>(this, cache, handle, info, fp, admitted);
    this.active++;
    return { action: 'proceed', ticket };
  }

  /**
   * The fingerprint's fields; undefined when the function returns undefined (this request has no
   * fingerprint: it is keyless), an Error when it throws or returns a Promise (fingerprints are
   * synchronous: a Promise would hash as "{}", one key for every request).
   */
  private fingerprintOf(req: DedupeRequest<Req>): unknown {
    try {
      const f = (this.options.fingerprint as (r: Req) => unknown)(req.raw);
      if (typeof (f as { then?: unknown } | null)?.then === 'function') {
        return new TypeError('the fingerprint function returned a Promise; it must return the fields synchronously');
      }
      return f;
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  }

  /**
   * The stored response as this request gets it. A body with a Content-Encoding the request does
   * not accept (its Accept-Encoding lacks it, gives it q=0, or is absent) is decoded as far as the
   * request needs (gzip, deflate, br), each layer bounded by `maxStoredBodyBytes`; a body that
   * cannot be decoded within that (another coding, corrupt bytes, larger decoded) is replayed
   * without it, as a body too large to store. Such a replay varies by Accept-Encoding: it says so.
   */
  private async replay(record: StoredRecord, acceptEncoding: string | undefined, info: RequestInfo): Promise<DirectResponse> {
    let headers: [string, string][] = record.headers;
    let body = record.body;
    const encoding = record.headers.filter(([k]) => k === 'content-encoding').map(([, v]) => v).join(', ');
    const codings = body === null ? [] : contentCodings(encoding);
    let omitted: string | null = null;
    if (codings.length > 0) {
      headers = withVaryAcceptEncoding(headers);
      const keep = codingsToKeep(codings, parseAcceptEncoding(acceptEncoding));
      // null: the request accepts no form of it, identity included; decoding would not help.
      if (keep !== null && keep < codings.length) {
        try {
          let bytes = Buffer.from((body as Uint8Array).buffer, (body as Uint8Array).byteOffset, (body as Uint8Array).byteLength);
          for (let i = codings.length - 1; i >= keep; i--) {
            const coding = codings[i] as string;
            if (!canDecode(coding)) throw new Error(`the "${coding}" coding cannot be decoded here`);
            bytes = await decode(coding, bytes, this.options.maxStoredBodyBytes);
          }
          body = bytes;
          headers = decodedHeaders(headers, codings.slice(0, keep));
        } catch (e) {
          omitted = e instanceof DecodedTooLarge ? `larger than maxStoredBodyBytes (${e.limit}) once decoded` : e instanceof Error ? e.message : String(e);
          body = null;
        }
        if (omitted !== null) {
          this.log('warn', 'the stored body is not in an encoding the request accepts and could not be decoded: replayed without it', {
            event: 'dedupe.replay_body_omitted',
            reason: omitted,
            contentEncoding: encoding,
            acceptEncoding: acceptEncoding ?? null,
            ...info,
          });
        }
      }
    }
    // Without its body, a replay has nothing for Content-Type, Content-Encoding or a digest to describe.
    if (body === null) headers = headers.filter(([k]) => k !== 'content-type' && k !== 'content-encoding' && k !== 'content-length' && !BYTE_DIGESTS.has(k));
    else if (headers === record.headers) headers = [...headers];
    headers.push([this.options.replayedHeader, 'true']);
    if (body === null) headers.push(['idempotent-body-omitted', 'true']);
    return { status: record.status, headers, body: body ?? new Uint8Array(0) };
  }

  private duplicate(info: RequestInfo, label: string, outcome: 'replayed' | 'in_progress' | 'payload_mismatch', response: DirectResponse): Decision<Req> {
    this.count(label, outcome);
    const fields = { event: 'dedupe.duplicate', outcome, ...info };
    if (outcome === 'replayed') this.log('info', 'duplicate request answered with the stored response', fields);
    else this.log('warn', 'duplicate request rejected', fields);
    if (this.listenerCount('duplicate') > 0) this.report('duplicate', { ...info, outcome });
    return { action: 'respond', outcome, response };
  }

  private unavailable(info: RequestInfo, label: string, reason: string): Decision<Req> {
    if (this.options.failMode === 'open') {
      this.count(label, 'fail_open');
      this.log('warn', 'grid unavailable: serving without de-duplication', { event: 'dedupe.fail_open', reason, ...info });
      this.report('failOpen', { ...info, reason });
      return { action: 'bypass', outcome: 'fail_open' };
    }
    this.count(label, 'fail_closed');
    this.log('warn', 'grid unavailable: request refused', { event: 'dedupe.fail_closed', reason, ...info });
    this.report('failClosed', { ...info, reason });
    return {
      action: 'respond',
      outcome: 'fail_closed',
      response: problem(503, 'deduplication-unavailable', 'Service unavailable', 'duplicate detection is unavailable; retry later', [
        ['retry-after', String(this.options.unavailableRetryAfterSeconds)],
      ]),
    };
  }

  private releaseQuietly(handle: LockHandle): void {
    // A failed release costs nothing but time: the lease frees the key.
    handle.release({ timeoutMs: this.options.gridTimeoutMs }).catch(() => undefined);
  }

  /**
   * @internal Stores the response when the policy says so and frees the key, in one grid
   * operation fenced by the lock's token; otherwise just frees the key. Never throws.
   */
  async finish(ticket: Ticket<Req>, handle: LockHandle, cache: GridCache<string, StoredRecord>, info: RequestInfo, fp: string | null, res: CapturedResponse): Promise<void> {
    const o = this.options;
    let store: boolean;
    try {
      store = Boolean(o.storeStatus(res.status));
    } catch (e) {
      this.log('error', 'storeStatus threw: the response is not stored', { event: 'dedupe.store_status_failed', error: String(e), ...info });
      store = false;
    }
    if (!store) {
      await this.release(ticket, handle, info, `status ${res.status} not stored`);
      return;
    }
    try {
      if (!handle.held) {
        stopRenewal(handle); // the lock was lost: nothing may be stored, nothing is left to free
        this.log('error', 'lock lost before the response was stored: not stored', { event: 'dedupe.store_refused', fencingToken: handle.fencingToken, ...info });
        return;
      }
      const headers: [string, string][] = [];
      const all = res.headers;
      for (const k in all) {
        const v = all[k];
        if (v === undefined) continue;
        const name = k.toLowerCase();
        // Content-Encoding describes the stored bytes: without it they replay as garbage.
        if (!o.replayHeaders.has(name) && name !== 'content-encoding') continue;
        if (Array.isArray(v)) for (const one of v) headers.push([name, one]);
        else headers.push([name, String(v)]);
      }
      const record: StoredRecord = { v: 1, fp, status: res.status, headers, body: res.body, at: Date.now() };
      try {
        await handle.putAndRelease(cache, record, { ttlMs: o.retentionMs, timeoutMs: o.gridTimeoutMs });
        if (this.listenerCount('stored') > 0) this.report('stored', { ...info, status: res.status, fencingToken: handle.fencingToken, bodyOmitted: res.body === null });
      } catch (e) {
        if (e instanceof LockNotHeldError) {
          this.log('error', 'lock lost before the response was stored: not stored', { event: 'dedupe.store_refused', fencingToken: handle.fencingToken, ...info });
        } else {
          this.log('error', 'could not store the response for replay; the key is freed', { event: 'dedupe.store_failed', error: String(e), ...info });
          // The grid failing here says as much about its health as a failed lock does. Counted
          // only in the closed period the request was admitted in (its token): in half-open the
          // breaker waits for its own probe's outcome, and a probe's request reported already.
          if (isGridFault(e)) this.breaker.failure(now(), ticket.breakerToken);
          this.releaseQuietly(handle);
        }
      }
    } finally {
      this.done(ticket);
    }
  }

  /** @internal Frees the key (releases the lock). Never throws. */
  async release(ticket: Ticket<Req>, handle: LockHandle, info: RequestInfo, reason: string | null): Promise<void> {
    const o = this.options;
    try {
      if (reason !== null && this.listenerCount('released') > 0) this.report('released', { ...info, reason, fencingToken: handle.fencingToken });
      if (handle.held) {
        await handle.release({ timeoutMs: o.gridTimeoutMs }).catch((e: unknown) => {
          this.log('warn', 'could not release the lock; its lease will free it', { event: 'dedupe.release_failed', error: String(e), ...info });
        });
      } else {
        stopRenewal(handle);
      }
    } finally {
      this.done(ticket);
    }
  }

  /** The ticket no longer holds its key (counted once, whichever way it ended). */
  private done(ticket: Ticket<Req>): void {
    if (!ticket.holding) return;
    ticket.holding = false;
    this.active--;
  }

  /** @internal */
  lockLost(info: RequestInfo, handle: LockHandle, error: unknown): void {
    this.log('error', 'lock lost while the handler ran: a duplicate may run', { event: 'dedupe.lock_lost', fencingToken: handle.fencingToken, error: String(error), ...info });
    this.report('lockLost', { ...info, fencingToken: handle.fencingToken, error });
  }
}

/** The right to run the handler for one key; report exactly one outcome. */
export class Ticket<Req = unknown> {
  /** @internal Counted in its deduper's `inFlight` until stored or released. */
  holding = true;
  private stored: Promise<void> | null = null;
  private freed: Promise<void> | null = null;

  constructor(
    private readonly deduper: Deduper<Req>,
    private readonly cache: GridCache<string, StoredRecord>,
    private readonly handle: LockHandle,
    readonly info: RequestInfo,
    private readonly fp: string | null,
    /** @internal The circuit breaker's token of the call that took the key. */
    readonly breakerToken: number,
  ) {
    // onLost rather than the handle's signal: reading the signal makes an AbortController per
    // request, a large share of the client's CPU per request on Node 20.
    handle.onLost((err) => {
      if (this.stored === null) deduper.lockLost(info, handle, err);
    });
  }

  /** Strictly increasing per key: hand it to what the handler protects. */
  get fencingToken(): number {
    return this.handle.fencingToken;
  }

  get keyHash(): string {
    return this.info.keyHash as string;
  }

  /** Aborts if the lock is lost while the handler runs. */
  get signal(): AbortSignal {
    return this.handle.signal;
  }

  /**
   * What a handler is shown (`req.idempotency` in the adapters): the key hash, the fencing token
   * and the lock's signal, made only if the handler reads it (an AbortController per request is a
   * measurable share of the client's CPU per request).
   */
  context(): { readonly keyHash: string; readonly fencingToken: number; readonly signal: AbortSignal } {
    const handle = this.handle;
    return {
      keyHash: this.keyHash,
      fencingToken: handle.fencingToken,
      get signal() {
        return handle.signal;
      },
    };
  }

  get settled(): boolean {
    return this.stored !== null;
  }

  /** Resolves once the key is freed (after complete or abandon). */
  get released(): Promise<void> {
    return this.freed ?? Promise.resolve();
  }

  /** Whether the adapter sends the response before completing (`storeAfterSend`). */
  get storeAfterSend(): boolean {
    return this.deduper.options.storeAfterSend;
  }

  /**
   * The handler answered. Resolves once the response is stored (per `storeStatus`) and the key
   * freed, one grid operation. By default send the response only then, so a client that got it
   * and retries gets the replay; with `storeAfterSend` send it first. Idempotent; never rejects.
   */
  complete(res: CapturedResponse): Promise<void> {
    if (this.stored === null) {
      this.stored = this.deduper.finish(this, this.handle, this.cache, this.info, this.fp, res);
      this.freed = this.stored;
    }
    return this.stored;
  }

  /** The handler threw or the client went away: free the key without storing. Idempotent. */
  abandon(reason: string): Promise<void> {
    if (this.stored === null) {
      this.stored = Promise.resolve();
      this.freed = this.deduper.release(this, this.handle, this.info, reason);
    }
    return this.freed ?? Promise.resolve();
  }
}
