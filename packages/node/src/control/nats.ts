/**
 * The production control plane: a NATS JetStream KV bucket (nats.js v3 packages), adapted to the
 * node's `ControlPlane` interface. Designed against nats-server 2.9 (Debian's 2.9.10); what that
 * version refuses and how watches survive reconnects and stream-leader changes is in
 * docs/adr/0006-nats-control-plane.md.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { connect, credsAuthenticator, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import { CasConflictError, NodeConfigError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import type { ControlPlane, KvEntry, KvEvent } from './kv.js';
import { isBucketName } from './keys.js';

const UNAVAILABLE_BRAND = Symbol.for('gridlink.ControlPlaneUnavailableError');

/** The control plane did not answer (NATS down, JetStream electing a leader, timeout). Retryable. */
export class ControlPlaneUnavailableError extends Error {
  readonly code = 'GRID_CONTROL_PLANE_UNAVAILABLE';
  readonly retryable = true;
  constructor(operation: string, cause: unknown) {
    super(`control plane ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'ControlPlaneUnavailableError';
    Object.defineProperty(this, UNAVAILABLE_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && UNAVAILABLE_BRAND in value;
  }
}

const BUCKET_MISSING_BRAND = Symbol.for('gridlink.ControlPlaneBucketMissingError');

/**
 * `NatsControlPlane.connect({ create: false })` found no such bucket on the servers: no node has
 * used it (a mistyped bucket name, or no node has started yet). Not retryable.
 */
export class ControlPlaneBucketMissingError extends Error {
  readonly code = 'GRID_CONTROL_PLANE_BUCKET_MISSING';
  readonly retryable = false;
  /** The bucket asked for. */
  readonly bucket: string;
  /** The servers asked. */
  readonly servers: string[];
  constructor(bucket: string, servers: string[]) {
    super(`bucket "${bucket}" does not exist on ${servers.join(',')}`);
    this.name = 'ControlPlaneBucketMissingError';
    this.bucket = bucket;
    this.servers = servers;
    Object.defineProperty(this, BUCKET_MISSING_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && BUCKET_MISSING_BRAND in value;
  }
}

const RESET_BRAND = Symbol.for('gridlink.ControlPlaneResetError');

/** Stream checks in a row (about a second apart) that must find the bucket missing (ADR 0028). */
const MISSING_CHECKS = 5;

/**
 * The bucket this plane was opened on is gone or was created anew (NATS lost its JetStream store,
 * or someone deleted the bucket): every record this node's view came from — the cluster, the
 * topology, the leases — is gone with it, so nothing this plane reads or writes any more may be
 * trusted or acted on. Not retryable: a node stops, and rejoins by starting again (ADR 0028).
 */
export class ControlPlaneResetError extends Error {
  readonly code = 'GRID_CONTROL_PLANE_RESET';
  readonly retryable = false;
  constructor(readonly reason: string) {
    super(`the control plane lost its state: ${reason}`);
    this.name = 'ControlPlaneResetError';
    Object.defineProperty(this, RESET_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && RESET_BRAND in value;
  }
}

export interface NatsTlsOptions {
  /** CA bundle (PEM file) used to verify the servers. */
  caFile?: string;
  /** Client certificate and key (PEM files) for mutual TLS. */
  certFile?: string;
  keyFile?: string;
}

export interface NatsControlPlaneOptions {
  /** NATS server URLs (`nats://host:4222`), or one comma-separated string. */
  servers: string | string[];
  /** KV bucket name. Default `gridlink`. */
  bucket?: string;
  /**
   * Create the bucket when it does not exist (with `replicas` and `maxAgeMs`). Default true: the
   * first node of a new cluster creates it. false only opens an existing bucket, and `connect()`
   * fails at once with ControlPlaneBucketMissingError when there is none: for tools (the admin
   * CLI) that must neither leave a stray bucket behind a mistyped name nor create the cluster's
   * bucket with their own replica count before the first node starts.
   */
  create?: boolean;
  /** Replicas of a bucket this process creates (1, or 3 on a 3-server cluster). Default 1. */
  replicas?: number;
  /** Bucket max_age in ms, garbage collection only (nothing relies on expiry). Default 0 = none. */
  maxAgeMs?: number;
  /** Credentials: a token, user + password, or a `.creds` file (JWT + nkey). At most one kind. */
  token?: string;
  user?: string;
  pass?: string;
  credsFile?: string;
  tls?: NatsTlsOptions;
  /** Connection name shown by the server (monitoring). */
  name?: string;
  /** Timeout of one KV write. Default 2000 ms. */
  requestTimeoutMs?: number;
  /** How long `connect()` keeps trying to reach NATS and open the bucket. Default 30 000 ms. */
  connectTimeoutMs?: number;
  /** Reads (get, list) are retried for this long before failing (leader elections take seconds). Default 10 000 ms. */
  readRetryMs?: number;
  /** Pause between attempts to re-establish a broken watch. Default 250 ms. */
  watchRetryMs?: number;
  /**
   * A watch whose consumer delivered nothing while the stream was ahead of it for this long is
   * re-created and the gap read message by message (a consumer can go silent after a server loss
   * without any error). Default 500 ms: half a lease, so the coordinator's view of renewals
   * recovers before it judges leases again after an outage.
   */
  watchStallMs?: number;
  /** Timeout of one read request (get, gap read). Default 1000 ms. */
  readTimeoutMs?: number;
  /**
   * A request (read or write) unanswered for this long makes the plane ping its server; a server
   * that does not answer the ping within `probeTimeoutMs` is taken for hung and the plane
   * reconnects, to another server of the cluster when there is one (ADR 0061). NATS's own pings
   * notice a hung server only after seconds, longer than a lease. Default 150 ms.
   */
  stuckProbeMs?: number;
  /** See `stuckProbeMs`. Default 250 ms. */
  probeTimeoutMs?: number;
  logger?: Logger;
}

interface Watch {
  prefix: string;
  listener: (event: KvEvent<unknown>) => void;
  /** Last revision delivered (or the stream's last sequence when the watch started). */
  last: number;
  closed: boolean;
  /** Stops the current consumer so the loop re-creates it from `last + 1`. */
  restart: (() => void) | null;
  /** When the watchdog first saw the stream ahead of `last` with no progress since (undefined: fine). */
  behindSince: number | undefined;
  /** `last` at the watchdog's previous check. */
  lastChecked: number;
  ready: Promise<void>;
}

const DEFAULT_BUCKET = 'gridlink';

/** How long a server left for not answering is dialled after the others. */
const AVOID_MS = 10_000;

/** The server a plane left because it did not answer a probe (ADR 0061): avoided until `until`. */
export interface AvoidedServer {
  listen: string;
  until: number;
}

/**
 * nats.js's choice of the next server to dial (`reconnectToServer`): its own (null), unless that
 * is the server just left for not answering, while another is known. nats.js would dial that
 * same server first after a forced reconnect, and a hung server accepts the connection and then
 * says nothing until the connect timeout.
 */
export function nextServer<S extends { readonly listen: string }>(pool: readonly S[], avoided: AvoidedServer, now: number): S | null {
  if (now >= avoided.until || pool[0]?.listen !== avoided.listen) return null;
  return pool.find((s) => s.listen !== avoided.listen) ?? null;
}

function positiveInt(field: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new NodeConfigError(field, `must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

/** Splits `nats://a:4222,nats://b:4222` (or an array) into a validated server list. */
export function parseNatsServers(servers: string | string[]): string[] {
  const list = (Array.isArray(servers) ? servers : servers.split(','))
    .flatMap((s) => s.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (list.length === 0) throw new NodeConfigError('servers', 'at least one NATS server URL is required');
  for (const s of list) {
    if (!/^(nats|tls):\/\/[^\s/]+$/.test(s)) throw new NodeConfigError('servers', `not a nats:// or tls:// URL: ${s}`);
  }
  return list;
}

/** A stored record's value: gzip (magic 1f 8b, which no JSON text starts with) of JSON, or JSON. Throws when neither. */
export function decodeValue(data: Uint8Array): unknown {
  const bytes = data[0] === 0x1f && data[1] === 0x8b ? gunzipSync(data) : data;
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
}

function isWrongLastSequence(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // 10071 wrong last sequence, 10164 wrong last sequence unknown (JetStream API error codes).
  return code === 10071 || code === 10164;
}

/**
 * `ControlPlane` on a JetStream KV bucket. Create it with `NatsControlPlane.connect(options)`;
 * `close()` ends its watches and the connection.
 */
export class NatsControlPlane implements ControlPlane {
  /** `delete(key, revision)` is a KV delete with `previousSeq`. */
  readonly conditionalDelete = true;
  private readonly watches = new Set<Watch>();
  private closed = false;
  private readonly log: Logger;

  private constructor(
    readonly connection: NatsConnection,
    private readonly kv: KV,
    readonly bucket: string,
    private readonly opts: { requestTimeoutMs: number; watchRetryMs: number; watchStallMs: number; readRetryMs: number; readTimeoutMs: number; stuckProbeMs: number; probeTimeoutMs: number },
    logger: Logger,
    /** Shared with the connection's `reconnectToServer`. */
    private readonly avoided: AvoidedServer,
  ) {
    this.log = logger;
    void this.followStatus();
    this.watchdog = setInterval(() => void this.checkWatches(), Math.max(100, Math.floor(opts.watchStallMs / 2)));
    this.watchdog.unref();
  }

  private readonly watchdog: NodeJS.Timeout;
  private checking = false;
  private lastStatusAt = 0;
  /** When the bucket's stream was created, as JetStream first told this plane. */
  private streamCreated: string | undefined;
  /** Consecutive stream checks that JetStream answered "no such stream". */
  private streamMissing = 0;
  /** Set once the bucket is found gone or re-created; every operation then fails. */
  private resetReason: string | undefined;
  private readonly resetListeners = new Set<(err: ControlPlaneResetError) => void>();

  /**
   * Called once if the bucket this plane opened disappears or is created anew (checked about
   * once a second): the state every node acted on is gone, and a node must stop (ADR 0028).
   * Returns an unsubscribe function.
   */
  onReset(listener: (err: ControlPlaneResetError) => void): () => void {
    if (this.resetReason !== undefined) {
      const err = new ControlPlaneResetError(this.resetReason);
      queueMicrotask(() => listener(err));
      return () => undefined;
    }
    this.resetListeners.add(listener);
    return () => this.resetListeners.delete(listener);
  }

  /** The reason this plane was found reset, if it was. */
  get reset(): string | undefined {
    return this.resetReason;
  }

  private streamInfo(): Promise<StreamInfo | 'missing'> {
    return bucketStream(this.connection, this.bucket, this.opts.readTimeoutMs);
  }

  /**
   * Compares the stream with the one this plane opened; false when it is found reset. Missing
   * must be said on MISSING_CHECKS checks in a row (a second apart), so that odd answers during
   * a JetStream cluster's recovery are not taken for a loss. Waiting costs no safety: while the
   * bucket is missing nothing can be committed, and a bucket created anew meanwhile is seen by
   * its creation time.
   */
  private judgeStream(info: StreamInfo | 'missing'): boolean {
    if (info === 'missing') {
      this.streamMissing++;
      if (this.streamMissing >= MISSING_CHECKS) this.declareReset(`the bucket ${this.bucket} no longer exists`);
      return this.resetReason === undefined;
    }
    this.streamMissing = 0;
    if (this.streamCreated === undefined) {
      this.streamCreated = info.created;
      return true;
    }
    if (info.created !== this.streamCreated) {
      this.declareReset(`the bucket ${this.bucket} was created anew (at ${info.created}; this node opened the one created at ${this.streamCreated})`);
      return false;
    }
    return true;
  }

  /** Learns the stream's creation time now, if JetStream answers. */
  private async noteStream(): Promise<void> {
    try {
      this.judgeStream(await this.streamInfo());
    } catch {
      // Unavailable for now, or a reply without the creation time: the watchdog's first check learns it.
    }
  }

  private declareReset(reason: string): void {
    if (this.resetReason !== undefined) return;
    this.resetReason = reason;
    this.log.error('control plane lost its state', { reason });
    for (const w of this.watches) {
      w.closed = true;
      w.restart?.();
    }
    this.watches.clear();
    const err = new ControlPlaneResetError(reason);
    for (const l of [...this.resetListeners]) l(err);
    this.resetListeners.clear();
  }

  /**
   * A record's bytes: its JSON, or gzip of it when the JSON would not fit comfortably in one NATS
   * message (over 90 % of the server's max_payload; a topology of tens of thousands of partitions,
   * ADR 0050). Below that size records stay plain JSON, as every earlier version wrote them, so a
   * node of an earlier version never meets a compressed record it could have written itself.
   */
  private encode(value: unknown): string | Uint8Array {
    const text = JSON.stringify(value);
    const above = this.compressAbove;
    if (text.length * 3 <= above || Buffer.byteLength(text) <= above) return text;
    return gzipSync(text);
  }

  /** Bytes of JSON above which a record is stored gzipped: 90 % of the server's max_payload. */
  private get compressAbove(): number {
    const max = this.connection.info?.max_payload;
    return Math.floor(0.9 * (typeof max === 'number' && max > 0 ? max : 1024 * 1024));
  }

  private refuseIfReset(): void {
    if (this.resetReason !== undefined) throw new ControlPlaneResetError(this.resetReason);
  }

  /**
   * Every watch follows the whole bucket (one consumer on '>', filtered here), so its last
   * revision can be compared with the stream's: a watch that stays behind for watchStallMs is
   * re-created from its last revision.
   */
  private async checkWatches(): Promise<void> {
    if (this.checking || this.closed || this.resetReason !== undefined) return;
    this.checking = true;
    try {
      const now = Date.now();
      // The stream's last sequence, asked at most once a second; in between, the revisions this
      // plane wrote or read itself (a node renews its lease every 250 ms) show whether a watch lags.
      // The same answer tells whether the bucket is still the one this plane opened.
      if (now - this.lastStatusAt >= 1000) {
        this.lastStatusAt = now;
        // A plane that only watches has no other request to notice that its server hung, and
        // NATS's pings take seconds: then this one is watched (ADR 0061). A plane that sent
        // requests within the last second (a node renews every 250 ms) notices through them, and
        // keeps its one forced reconnect a second for them.
        const info = await (now - this.requestedAt >= 1000 ? this.watched(this.streamInfo(), false) : this.streamInfo());
        if (this.judgeStream(info) && info !== 'missing') this.noteRevision(info.lastSeq);
      }
      if (this.watches.size === 0 || this.resetReason !== undefined) return;
      const last = this.knownRevision;
      for (const w of this.watches) {
        const progressed = w.last !== w.lastChecked;
        w.lastChecked = w.last;
        if (w.last < 0 || last <= w.last || progressed) {
          // Caught up, or delivering: a consumer under steady load is always a little behind.
          w.behindSince = undefined;
          if (w.last >= 0 && last > w.last) w.behindSince = now;
          continue;
        }
        w.behindSince ??= now;
        if (now - w.behindSince >= this.opts.watchStallMs) {
          this.log.info('watch stalled behind the stream; reading the gap and re-creating its consumer', { prefix: w.prefix, last: w.last, streamLast: last });
          w.behindSince = undefined;
          w.restart?.();
          // Creating a consumer needs the JetStream meta leader, which may be the server that
          // just died; reading messages by sequence needs only the stream leader.
          await this.readGap(w, last);
        }
      }
    } catch {
      // The control plane is unavailable: nothing to compare with; the watch loop retries itself.
    } finally {
      this.checking = false;
    }
  }

  /**
   * Connects (retrying until `connectTimeoutMs`) and opens the bucket, creating it if absent
   * (unless `create: false`: then a missing bucket is a ControlPlaneBucketMissingError).
   */
  static async connect(options: NatsControlPlaneOptions): Promise<NatsControlPlane> {
    if (typeof options !== 'object' || options === null) throw new NodeConfigError('options', 'must be an object');
    const servers = parseNatsServers(options.servers);
    const bucket = options.bucket ?? DEFAULT_BUCKET;
    if (!isBucketName(bucket)) {
      throw new NodeConfigError('bucket', 'must be 1-64 characters of [A-Za-z0-9_-]');
    }
    if (options.create !== undefined && typeof options.create !== 'boolean') throw new NodeConfigError('create', `must be a boolean, got ${String(options.create)}`);
    const create = options.create ?? true;
    const replicas = options.replicas === undefined ? 1 : positiveInt('replicas', options.replicas, 1);
    if (replicas > 5) throw new NodeConfigError('replicas', 'must be at most 5');
    const maxAgeMs = options.maxAgeMs === undefined ? 0 : positiveInt('maxAgeMs', options.maxAgeMs, 0);
    const requestTimeoutMs = options.requestTimeoutMs === undefined ? 2000 : positiveInt('requestTimeoutMs', options.requestTimeoutMs, 1);
    const connectTimeoutMs = options.connectTimeoutMs === undefined ? 30_000 : positiveInt('connectTimeoutMs', options.connectTimeoutMs, 1);
    const watchRetryMs = options.watchRetryMs === undefined ? 250 : positiveInt('watchRetryMs', options.watchRetryMs, 1);
    const readRetryMs = options.readRetryMs === undefined ? 10_000 : positiveInt('readRetryMs', options.readRetryMs, 0);
    const readTimeoutMs = options.readTimeoutMs === undefined ? 1000 : positiveInt('readTimeoutMs', options.readTimeoutMs, 1);
    const watchStallMs = options.watchStallMs === undefined ? 500 : positiveInt('watchStallMs', options.watchStallMs, 100);
    const stuckProbeMs = options.stuckProbeMs === undefined ? 150 : positiveInt('stuckProbeMs', options.stuckProbeMs, 1);
    const probeTimeoutMs = options.probeTimeoutMs === undefined ? 250 : positiveInt('probeTimeoutMs', options.probeTimeoutMs, 1);
    const kinds = [options.token !== undefined, options.user !== undefined || options.pass !== undefined, options.credsFile !== undefined];
    if (kinds.filter(Boolean).length > 1) throw new NodeConfigError('credentials', 'give one of token, user+pass, credsFile');
    if ((options.user === undefined) !== (options.pass === undefined)) throw new NodeConfigError('user', 'user and pass go together');
    const log = options.logger ?? silentLogger;
    const avoided: AvoidedServer = { listen: '', until: 0 };

    const co: ConnectionOptions = {
      servers,
      name: options.name ?? 'gridlink',
      // Never give up: the node keeps working on its last view and reconnects when NATS is back.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      reconnectJitter: 100,
      pingInterval: 2000,
      maxPingOut: 2,
      timeout: Math.min(connectTimeoutMs, 5000),
      ignoreClusterUpdates: false,
      reconnectToServer: (pool) => nextServer(pool, avoided, Date.now()),
    };
    if (options.token !== undefined) co.token = options.token;
    if (options.user !== undefined) co.user = options.user;
    if (options.pass !== undefined) co.pass = options.pass;
    if (options.credsFile !== undefined) {
      const file = options.credsFile;
      co.authenticator = credsAuthenticator(() => readFileSync(file));
    }
    if (options.tls !== undefined) {
      const tls: NonNullable<ConnectionOptions['tls']> = {};
      if (options.tls.caFile !== undefined) tls.caFile = options.tls.caFile;
      if (options.tls.certFile !== undefined) tls.certFile = options.tls.certFile;
      if (options.tls.keyFile !== undefined) tls.keyFile = options.tls.keyFile;
      co.tls = tls;
    }

    const deadline = Date.now() + connectTimeoutMs;
    let nc: NatsConnection | undefined;
    let lastErr: unknown;
    while (nc === undefined) {
      try {
        nc = await connect(co);
      } catch (err) {
        lastErr = err;
        if (Date.now() >= deadline || isAuthError(err)) throw new ControlPlaneUnavailableError(`connect to ${servers.join(',')}`, err);
        await pause(250);
      }
    }
    try {
      const kvm = new Kvm(nc);
      for (;;) {
        try {
          // One stream info says whether the bucket exists and, if it does, which stream this
          // plane opens (its creation time), known before anyone acts on what it reads. A failed
          // one (JetStream not ready, a reply without the creation time) is retried.
          const found = await bucketStream(nc, bucket, requestTimeoutMs);
          if (found === 'missing' && !create) throw new ControlPlaneBucketMissingError(bucket, servers);
          const kv = found === 'missing' ? await createBucket(kvm, bucket, { replicas, maxAgeMs, requestTimeoutMs }) : await openBucket(kvm, bucket, requestTimeoutMs);
          const plane = new NatsControlPlane(nc, kv, bucket, { requestTimeoutMs, watchRetryMs, watchStallMs, readRetryMs, readTimeoutMs, stuckProbeMs, probeTimeoutMs }, log, avoided);
          // A bucket created just now (by this plane or another one meanwhile) is asked about
          // again (else the watchdog's first check learns which stream it is).
          if (found === 'missing') await plane.noteStream();
          else plane.judgeStream(found);
          return plane;
        } catch (err) {
          if (err instanceof ControlPlaneBucketMissingError) throw err;
          lastErr = err;
          // JetStream is not ready right after a cluster starts (no meta leader yet): retry.
          if (Date.now() >= deadline) throw new ControlPlaneUnavailableError(`open bucket ${bucket}`, lastErr);
          log.debug('bucket not ready, retrying', { bucket, err: String(err) });
          await pause(250);
        }
      }
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw err;
    }
  }

  async get<T>(key: string): Promise<KvEntry<T> | null> {
    this.refuseIfReset();
    const m = await this.read('get', () => this.msgGet({ last_by_subj: `$KV.${this.bucket}.${key}` }));
    if (m === null || m.op !== 'PUT') return null;
    this.noteRevision(m.seq);
    return { key, value: decodeValue(m.data) as T, revision: m.seq };
  }

  /**
   * The JetStream API's message get (answered by the stream leader), with this plane's own short
   * timeout so that reads notice the end of a leader election quickly. null: no such message.
   */
  private async msgGet(q: { seq: number } | { last_by_subj: string }): Promise<{ key: string; seq: number; op: 'PUT' | 'DEL'; data: Uint8Array } | null> {
    const m = await this.connection.request(`$JS.API.STREAM.MSG.GET.KV_${this.bucket}`, JSON.stringify(q), { timeout: this.opts.readTimeoutMs });
    const reply = JSON.parse(new TextDecoder().decode(m.data)) as {
      message?: { subject: string; seq: number; data?: string; hdrs?: string };
      error?: { err_code?: number; description?: string };
    };
    if (reply.error) {
      if (reply.error.err_code === 10037) return null;
      throw new Error(reply.error.description ?? `JetStream error ${String(reply.error.err_code)}`);
    }
    const msg = reply.message;
    const prefix = `$KV.${this.bucket}.`;
    if (!msg || !msg.subject.startsWith(prefix)) throw new Error('unexpected message get reply');
    const hdrs = msg.hdrs ? Buffer.from(msg.hdrs, 'base64').toString('utf8') : '';
    return {
      key: msg.subject.slice(prefix.length),
      seq: msg.seq,
      op: /KV-Operation:\s*(DEL|PURGE)/i.test(hdrs) ? 'DEL' : 'PUT',
      data: msg.data ? Buffer.from(msg.data, 'base64') : new Uint8Array(0),
    };
  }

  /** Highest revision this plane knows to exist (its own writes and reads); watches must reach it. */
  private knownRevision = 0;

  private noteRevision(rev: number): void {
    if (rev > this.knownRevision) this.knownRevision = rev;
  }

  async list<T>(prefix: string): Promise<KvEntry<T>[]> {
    this.refuseIfReset();
    // Watches registered before this call are established first, so watch + list together miss
    // nothing that happened after the watch was asked for.
    await Promise.all([...this.watches].map((w) => w.ready));
    const filter = /^[A-Za-z0-9_=/-]+(\.[A-Za-z0-9_=/-]+)*\.$/.test(prefix) ? prefix + '>' : '>';
    const keys: string[] = [];
    await this.read('list', async () => {
      keys.length = 0;
      for await (const k of await this.kv.keys(filter)) if (k.startsWith(prefix)) keys.push(k);
    });
    const entries = await Promise.all(keys.map((k) => this.get<T>(k)));
    return entries.filter((e): e is KvEntry<T> => e !== null);
  }

  async put<T>(key: string, value: T): Promise<number> {
    this.refuseIfReset();
    const rev = await this.call('put', () => this.kv.put(key, this.encode(value), { timeout: this.opts.requestTimeoutMs }));
    this.noteRevision(rev);
    return rev;
  }

  async create<T>(key: string, value: T): Promise<number> {
    this.refuseIfReset();
    try {
      const rev = await this.watched(this.kv.create(key, this.encode(value)));
      this.noteRevision(rev);
      return rev;
    } catch (err) {
      if (isWrongLastSequence(err)) throw new CasConflictError(key);
      throw new ControlPlaneUnavailableError('create', err);
    }
  }

  async update<T>(key: string, value: T, revision: number): Promise<number> {
    this.refuseIfReset();
    if (!Number.isInteger(revision) || revision <= 0) throw new CasConflictError(key);
    try {
      const rev = await this.watched(this.kv.update(key, this.encode(value), revision, this.opts.requestTimeoutMs));
      this.noteRevision(rev);
      return rev;
    } catch (err) {
      if (isWrongLastSequence(err)) throw new CasConflictError(key);
      throw new ControlPlaneUnavailableError('update', err);
    }
  }

  async delete(key: string, revision?: number): Promise<void> {
    if (revision !== undefined) {
      // Conditional: the server refuses it unless the key's last revision is `revision`.
      this.refuseIfReset();
      if (!Number.isInteger(revision) || revision <= 0) throw new CasConflictError(key);
      try {
        await this.watched(this.kv.delete(key, { previousSeq: revision }));
        return;
      } catch (err) {
        if (isWrongLastSequence(err)) throw new CasConflictError(key);
        throw new ControlPlaneUnavailableError('delete', err);
      }
    }
    // A KV delete writes a marker even for an absent key; skip it, as the in-memory plane does.
    // (The get refuses a reset plane first.)
    if ((await this.get(key)) === null) return;
    await this.call('delete', () => this.kv.delete(key));
  }

  watch<T>(prefix: string, listener: (event: KvEvent<T>) => void): () => void {
    // After a reset nothing is delivered: the records of the new bucket are not this view's.
    if (this.resetReason !== undefined) return () => undefined;
    let resolveReady!: () => void;
    const w: Watch = {
      prefix,
      listener: listener as (event: KvEvent<unknown>) => void,
      last: -1,
      closed: false,
      restart: null,
      behindSince: undefined,
      lastChecked: -1,
      ready: new Promise<void>((r) => (resolveReady = r)),
    };
    this.watches.add(w);
    void this.runWatch(w, resolveReady);
    return () => {
      w.closed = true;
      this.watches.delete(w);
      w.restart?.();
    };
  }

  /** The bucket's stream: its current leader (server name), replica count and last revision. */
  /**
   * The bucket's stream: its leader (clustered), replica count, last revision, and its followers
   * (`current`: caught up with the leader; `offline`: not reachable) — a follower restarted a
   * moment ago is not current yet, and killing the leader then can leave the stream without a
   * quorum for long (tests and benchmarks wait for `followers` to be current first).
   */
  async bucketStatus(): Promise<{ leader: string | undefined; replicas: number; lastRevision: number; followers: { name: string; current: boolean; offline: boolean }[] }> {
    const st = await this.call('status', () => this.kv.status());
    const followers = (st.streamInfo.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current, offline: r.offline === true }));
    return { leader: st.streamInfo.cluster?.leader, replicas: st.replicas, lastRevision: st.streamInfo.state.last_seq, followers };
  }

  /** Highest revision delivered to each open watch (diagnostics and tests). */
  watchRevisions(): number[] {
    return [...this.watches].map((w) => w.last);
  }

  /**
   * Ends every watch and closes the NATS connection: drains it (what was published is flushed)
   * for at most `requestTimeoutMs`, then closes it. A drain waits for the server's answer to a
   * ping, which a hung server never gives: without the bound, close took the ~11 s nats.js needs
   * to give up on it.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watchdog);
    for (const w of this.watches) {
      w.closed = true;
      w.restart?.();
    }
    this.watches.clear();
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.connection.drain().then(
        () => true,
        () => false,
      ),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), this.opts.requestTimeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!drained) {
      this.log.debug('control plane connection not drained in time: closed', { timeoutMs: this.opts.requestTimeoutMs });
      await this.connection.close().catch(() => undefined);
    }
  }

  /**
   * One watch: a consumer on the whole bucket from `last + 1`, filtered by prefix here. Whenever
   * it breaks (the iterator ends or throws, or the watchdog finds it stalled), a new consumer
   * starts again from the last revision delivered; events at or below it are dropped, so the
   * listener sees every revision once and in order.
   */
  private async runWatch(w: Watch, ready: () => void): Promise<void> {
    while (w.last < 0 && !w.closed && !this.closed) {
      try {
        const status = await this.kv.status();
        w.last = status.streamInfo.state.last_seq;
      } catch (err) {
        this.log.debug('watch start: bucket status failed', { err: String(err) });
        await pause(this.opts.watchRetryMs);
      }
    }
    let first = true;
    while (!w.closed && !this.closed) {
      try {
        const iter = await this.kv.watch({ key: '>', resumeFromRevision: w.last + 1 });
        this.log.debug('watch consumer started', { prefix: w.prefix, from: w.last + 1 });
        w.restart = () => iter.stop();
        if (first) {
          first = false;
          ready();
        }
        if (w.closed) iter.stop();
        for await (const e of iter) {
          if (w.closed) break;
          this.deliver(w, e);
        }
        this.log.debug('watch consumer ended', { prefix: w.prefix, last: w.last });
      } catch (err) {
        if (!w.closed && !this.closed) this.log.debug('watch broken, resuming', { prefix: w.prefix, last: w.last, err: String(err) });
      }
      w.restart = null;
      if (!w.closed && !this.closed) await pause(this.opts.watchRetryMs);
    }
    ready();
  }

  /**
   * Delivers revisions `w.last + 1 … upTo` read one by one with the JetStream API's message get
   * (served by the stream leader, no consumer needed). A sequence the stream no longer holds was
   * superseded by a later revision of its key (or purged) and is skipped; any other failure stops
   * the read so that nothing is skipped by mistake.
   */
  private async readGap(w: Watch, upTo: number): Promise<void> {
    while (!w.closed && !this.closed && w.last < upTo) {
      const seq = w.last + 1;
      let m: Awaited<ReturnType<NatsControlPlane['msgGet']>>;
      try {
        m = await this.msgGet({ seq });
      } catch {
        return;
      }
      if (m === null) {
        if (w.last < seq) w.last = seq; // no such message: superseded by a later revision, or purged
        continue;
      }
      if (m.seq !== seq) return;
      this.deliverRaw(w, m.key, seq, m.op, m.data);
    }
  }

  private deliver(w: Watch, e: KvWatchEntry): void {
    this.deliverRaw(w, e.key, e.revision, e.operation === 'PUT' ? 'PUT' : 'DEL', e.operation === 'PUT' ? e.value : new Uint8Array(0));
  }

  private deliverRaw(w: Watch, key: string, revision: number, op: 'PUT' | 'DEL', data: Uint8Array): void {
    if (revision <= w.last) return;
    w.last = revision;
    if (!key.startsWith(w.prefix)) return;
    let event: KvEvent<unknown>;
    if (op === 'PUT') {
      let value: unknown;
      try {
        value = decodeValue(data);
      } catch {
        // Delivered as unreadable (undefined), not skipped: a node must learn that the newest
        // topology revision is one it cannot read, to write the last good one over it (ADR 0048).
        this.log.warn('a value that is not JSON', { key, revision });
        value = undefined;
      }
      event = { type: 'put', key, value, revision };
    } else {
      event = { type: 'delete', key, revision };
    }
    try {
      w.listener(event);
    } catch (err) {
      this.log.error('watch listener threw', { key, err: String(err) });
    }
  }

  /** A probe of the server is under way (one at a time). */
  private probing = false;
  /**
   * The callers' side of every request under way: failed at once when the plane leaves a server
   * that does not answer (nats.js would keep them until their own timeouts, seconds).
   */
  private readonly unanswered = new Set<(err: Error) => void>();
  /** Set while the plane leaves a server that did not answer: why its requests failed. */
  private leaving: Error | undefined;

  /** Fails the requests under way on the server just left (whether they reached it is unknown, as after a timeout). */
  private failUnanswered(): void {
    const why = this.leaving;
    if (why === undefined) return;
    this.leaving = undefined;
    for (const fail of [...this.unanswered]) fail(why);
    this.unanswered.clear();
  }
  /** When the plane last reconnected because its server did not answer a probe. */
  private forcedAt = 0;
  /** When the plane last sent a request of its own (not the watchdog's stream check). */
  private requestedAt = 0;

  /**
   * `request`, with a probe of the server if it is not answered within `stuckProbeMs` (ADR 0061).
   * A JetStream leader election also leaves requests unanswered for seconds, but its servers
   * answer pings, so only a server that is hung (or cut off) makes the plane move. `counts`:
   * false for the watchdog's stream check, which is not a request of the plane's own.
   */
  private watched<R>(request: Promise<R>, counts = true): Promise<R> {
    if (counts) this.requestedAt = Date.now();
    return new Promise<R>((resolve, reject) => {
      this.unanswered.add(reject);
      const timer = setTimeout(() => void this.probe(), this.opts.stuckProbeMs);
      request
        .then(resolve, reject)
        .finally(() => {
          clearTimeout(timer);
          this.unanswered.delete(reject);
        })
        .catch(() => undefined);
    });
  }

  /**
   * Pings the server; when no answer comes within `probeTimeoutMs`, reconnects (nats.js dials
   * the next server of its pool, this one last). At most one forced reconnect a second, so that
   * a machine too loaded to answer in time does not make the plane thrash between servers.
   */
  private async probe(): Promise<void> {
    const nc = this.connection;
    if (this.probing || this.closed || nc.isClosed() || Date.now() - this.forcedAt < 1000) return;
    this.probing = true;
    const server = nc.getServer();
    const startedAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      const answered = await Promise.race([
        // A rejected flush means the connection dropped already: nats.js is reconnecting.
        nc.flush().then(
          () => true,
          () => true,
        ),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.opts.probeTimeoutMs))),
      ]);
      if (answered || this.closed || nc.isClosed()) return;
      this.forcedAt = Date.now();
      // Dial the others first for a while; back to normal once it had time to recover.
      this.avoided.listen = server;
      this.avoided.until = this.forcedAt + AVOID_MS;
      this.log.warn('control plane server not answering; reconnecting to another', { server, waitedMs: this.forcedAt - startedAt });
      // The requests under way fail once the connection is down (status 'disconnect'): a retry
      // made before that would be written to the socket being closed, and lost.
      this.leaving = new Error(`server ${server} did not answer a ping within ${this.opts.probeTimeoutMs} ms; left it`);
      await nc.reconnect();
    } catch (err) {
      this.log.debug('control plane probe failed', { err: String(err) });
    } finally {
      clearTimeout(timer);
      this.probing = false;
    }
  }

  /** After a reconnect every consumer may have lost messages: restart each from its last revision. */
  private async followStatus(): Promise<void> {
    for await (const s of this.connection.status()) {
      if (s.type === 'reconnect') {
        // The consumers usually survive a client reconnect; the watchdog catches those that did not.
        this.log.info('control plane reconnected', { server: s.server });
        void this.checkWatches();
      } else if (s.type === 'disconnect') {
        this.failUnanswered();
        this.log.warn('control plane disconnected');
      }
    }
  }

  /**
   * A read, retried with backoff for up to `readRetryMs`: reads are idempotent, and a JetStream
   * leader election makes them fail for several seconds, which callers should not have to handle
   * as an outage.
   */
  private async read<R>(operation: string, fn: () => Promise<R>): Promise<R> {
    const deadline = Date.now() + this.opts.readRetryMs;
    for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
      try {
        return await this.watched(fn());
      } catch (err) {
        if (this.closed || Date.now() + delay >= deadline) throw new ControlPlaneUnavailableError(operation, err);
        await pause(delay);
      }
    }
  }

  private async call<R>(operation: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await this.watched(fn());
    } catch (err) {
      throw new ControlPlaneUnavailableError(operation, err);
    }
  }
}

function isAuthError(err: unknown): boolean {
  const text = String((err as { message?: unknown } | null)?.message ?? err).toLowerCase();
  return text.includes('authorization') || text.includes('authentication');
}

function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Creates the bucket (`connect` found none; one created meanwhile by another node is used as it
 * is). Direct get is switched off: on 2.9 any replica answers a direct get, so a read right after
 * a write could be stale, and the CAS loops of the coordinator want the leader's view. The fields
 * 2.9 does not know (compression, metadata, per-message TTL markers) are never set.
 */
async function createBucket(kvm: Kvm, bucket: string, o: { replicas: number; maxAgeMs: number; requestTimeoutMs: number }): Promise<KV> {
  return kvm.create(bucket, { history: 64, replicas: o.replicas, ttl: o.maxAgeMs, timeout: o.requestTimeoutMs, allow_direct: false });
}

/**
 * Binds the bucket `connect` found (its stream info already read), as it is: no request of its
 * own. Direct get off, as `createBucket` sets it.
 */
async function openBucket(kvm: Kvm, bucket: string, requestTimeoutMs: number): Promise<KV> {
  return kvm.open(bucket, { allow_direct: false, timeout: requestTimeoutMs });
}

/** What this plane reads of the bucket's stream. */
export interface StreamInfo {
  created: string;
  lastSeq: number;
}

/** The bucket's stream as JetStream describes it now (see `readStreamInfo`). */
async function bucketStream(nc: NatsConnection, bucket: string, timeoutMs: number): Promise<StreamInfo | 'missing'> {
  const m = await nc.request(`$JS.API.STREAM.INFO.KV_${bucket}`, '', { timeout: timeoutMs });
  return readStreamInfo(bucket, m.data);
}

/**
 * A `$JS.API.STREAM.INFO` reply about the bucket's stream: its creation time and last sequence,
 * or 'missing' when JetStream answers that there is no such stream (API error 10059: a definite
 * answer; an election or an outage times out or says "unavailable" instead, which throws). A reply
 * without the creation time throws too: that time is what tells one bucket from another created
 * anew (ADR 0028), so such a check says nothing, as a timeout says nothing. The client's NATS
 * address finder reads the same reply the same way (ADR 0054).
 */
export function readStreamInfo(bucket: string, data: Uint8Array): StreamInfo | 'missing' {
  const reply = JSON.parse(new TextDecoder().decode(data)) as {
    created?: unknown;
    state?: { last_seq?: unknown };
    error?: { err_code?: number; description?: string };
  };
  if (reply.error) {
    if (reply.error.err_code === 10059) return 'missing';
    throw new Error(reply.error.description ?? `JetStream error ${String(reply.error.err_code)}`);
  }
  if (typeof reply.created !== 'string' || reply.created === '') throw new Error(`JetStream described stream KV_${bucket} without its creation time`);
  const lastSeq = typeof reply.state?.last_seq === 'number' ? reply.state.last_seq : 0;
  return { created: reply.created, lastSeq };
}
