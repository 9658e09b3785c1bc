/**
 * An address finder fed by the grid's own announcements: every grid node keeps a lease record
 * with its client endpoint (`host`, `port`) under `lease.<id>` in the NATS JetStream KV bucket of
 * the control plane, renews it several times a second and deletes it when it stops. This finder
 * watches those records, so a client given only the NATS servers learns every node and picks up
 * new ones (on its next re-resolution: periodic, on connection loss, on topology change).
 *
 * The bucket can be created anew under it (NATS lost its JetStream store, or someone deleted the
 * bucket; ADR 0028): the nodes stop and start again into a new cluster on the new bucket, whose
 * revisions count from 1 again. The finder notices by the bucket stream's creation time (asked
 * every `checkIntervalMs`, and whenever its watch starts again) and then forgets every
 * announcement and reads the new bucket from scratch (ADR 0054).
 *
 * Import it from `@gridlink/client/nats` (the main entry never loads NATS); `@nats-io/kv` and
 * `@nats-io/transport-node` are optional peer dependencies.
 */
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV, type KvEntry } from '@nats-io/kv';
import { formatEndpoint } from './endpoints.js';
import { checkKnown, isObject, num } from './config.js';
import { GridConfigError } from './errors.js';
import { describe } from './describe.js';
import { readStreamCreated } from './stream-info.js';
import type { AddressFinder } from './address-finder.js';
import { DeletedIds } from './deleted-ids.js';

const LEASE_PREFIX = 'lease.';

export interface NatsAddressFinderOptions {
  /**
   * NATS server URLs (or one comma-separated string): required unless `connection` is given
   * (then ignored).
   */
  servers?: string | string[];
  /** KV bucket of the grid's control plane. Default `gridlink`. */
  bucket?: string;
  /** Authentication of the connection it opens (not used with a shared `connection`). */
  token?: string;
  user?: string;
  pass?: string;
  /** TLS to NATS: CA, client certificate and key files (PEM), for the connection it opens. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /**
   * An announcement not renewed for this long is left out (a killed node's record stays in the
   * bucket until the node returns or the bucket's max_age removes it). Default 30 000 ms.
   */
  staleAfterMs?: number;
  /** Bound on connecting and on the first snapshot. Default 5000 ms. */
  timeoutMs?: number;
  /**
   * How often to ask JetStream whether the bucket is still the one read (its stream's creation
   * time): a bucket created anew is read again from scratch. Default 1000 ms.
   */
  checkIntervalMs?: number;
  /** Use this NATS connection instead of opening one (it is not closed by `close()`). */
  connection?: NatsConnection;
}

const KNOWN_OPTIONS = ['servers', 'connection', 'bucket', 'token', 'user', 'pass', 'tls', 'staleAfterMs', 'timeoutMs', 'checkIntervalMs'];
const KNOWN_TLS_OPTIONS = ['caFile', 'certFile', 'keyFile'];

/** An optional string option: absent, or a non-empty string (null included in what is refused). */
function checkString(v: unknown, field: string): void {
  if (v !== undefined && (typeof v !== 'string' || v === '')) throw new GridConfigError(field, `must be a non-empty string, got ${describe(v)}`);
}

/** The server URLs of `servers` (a comma-separated string or an array of strings), checked. */
function checkServers(v: unknown, required: boolean): string[] {
  if (v === undefined) {
    if (required) throw new GridConfigError('servers', 'at least one NATS server URL is required (or a connection)');
    return [];
  }
  let entries: { url: string; field: string }[];
  if (typeof v === 'string') {
    entries = v.split(',').map((url) => ({ url: url.trim(), field: 'servers' }));
  } else if (Array.isArray(v)) {
    entries = v.map((url: unknown, i) => {
      if (typeof url !== 'string') throw new GridConfigError(`servers[${i}]`, `must be a nats:// or tls:// URL string, got ${describe(url)}`);
      return { url: url.trim(), field: `servers[${i}]` };
    });
  } else {
    throw new GridConfigError('servers', `must be a string or an array of strings, got ${describe(v)}`);
  }
  entries = entries.filter((e) => e.url !== '');
  // With a shared connection the URLs are not used: only their types are checked.
  if (!required) return entries.map((e) => e.url);
  if (entries.length === 0) throw new GridConfigError('servers', 'at least one NATS server URL is required');
  for (const e of entries) if (!/^(nats|tls):\/\/[^\s/]+$/.test(e.url)) throw new GridConfigError(e.field, `not a nats:// URL: ${e.url}`);
  return entries.map((e) => e.url);
}

export interface NatsAddressFinder extends AddressFinder {
  /** Ids and endpoints currently announced (fresh ones only), sorted by id. */
  announced(): { id: string; endpoint: string }[];
  /** Stops watching and closes the connection it opened. */
  close(): Promise<void>;
  /** Times the bucket was found created anew since the finder started (each time it was read again from scratch). */
  readonly resets: number;
}

interface Announcement {
  host: string;
  port: number;
  seenAt: number;
  revision: number;
}

function parseAnnouncement(e: KvEntry): { host: string; port: number } | null {
  try {
    const v = e.json<{ host?: unknown; port?: unknown }>();
    if (typeof v.host !== 'string' || v.host === '' || typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 1 || v.port > 65535) return null;
    return { host: v.host, port: v.port };
  } catch {
    return null;
  }
}

/** When the bucket's stream was created, as JetStream says now (see `readStreamCreated`). */
async function bucketCreated(nc: NatsConnection, bucket: string, timeoutMs: number): Promise<string | null> {
  const m = await nc.request(`$JS.API.STREAM.INFO.KV_${bucket}`, '', { timeout: timeoutMs });
  return readStreamCreated(bucket, m.data);
}

/** Watches the grid's announced endpoints in a NATS KV bucket. */
export function natsAddressFinder(options: NatsAddressFinderOptions): NatsAddressFinder {
  // Checked as the client checks its own configuration: every wrong value is a GridConfigError
  // naming the option (`servers[0]`, `tls.caFile`), and only an absent option takes its default.
  const o: unknown = options;
  if (!isObject(o)) throw new GridConfigError('addressFinder', 'options must be an object');
  checkKnown(o, KNOWN_OPTIONS, '');
  const shared = o.connection;
  if (shared !== undefined) {
    if (!isObject(shared) || typeof shared.request !== 'function' || typeof shared.status !== 'function' || typeof shared.close !== 'function') {
      throw new GridConfigError('connection', `must be a NATS connection (connect() of @nats-io/transport-node), got ${describe(shared)}`);
    }
  }
  const servers = checkServers(o.servers, shared === undefined);
  const bucket = o.bucket === undefined ? 'gridlink' : o.bucket;
  if (typeof bucket !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(bucket)) throw new GridConfigError('bucket', `must be 1-64 characters of [A-Za-z0-9_-], got ${describe(bucket)}`);
  const staleAfterMs = num(o, 'staleAfterMs', 'staleAfterMs', 30_000, 1, Number.MAX_SAFE_INTEGER);
  // Both arm timers, so num's default bound applies: a Node timer longer than MAX_TIMER_MS fires at
  // once (every millisecond for an interval).
  const timeoutMs = num(o, 'timeoutMs', 'timeoutMs', 5000, 1);
  const checkIntervalMs = num(o, 'checkIntervalMs', 'checkIntervalMs', 1000, 1);
  checkString(o.token, 'token');
  checkString(o.user, 'user');
  checkString(o.pass, 'pass');
  if ((o.user === undefined) !== (o.pass === undefined)) throw new GridConfigError('user', 'user and pass go together');
  if (o.tls !== undefined) {
    if (!isObject(o.tls)) throw new GridConfigError('tls', `must be an object { caFile?, certFile?, keyFile? } (PEM file paths), got ${describe(o.tls)}`);
    checkKnown(o.tls, KNOWN_TLS_OPTIONS, 'tls.');
    for (const k of KNOWN_TLS_OPTIONS) checkString(o.tls[k], `tls.${k}`);
  }

  const nodes = new Map<string, Announcement>();
  let started: Promise<void> | null = null;
  /** The start has succeeded (`started` resolved): resolve() need not wait for anything. */
  let startedOk = false;
  let nc: NatsConnection | undefined;
  let closed = false;
  /**
   * resolve() calls waiting for the start: close() rejects them at once. Each removes itself once
   * the start settles, so nothing is kept per call (a race against one promise settled only by
   * close() kept a reaction per call for as long as the finder lived).
   */
  const waitingForStart = new Set<(err: Error) => void>();
  let stopWatch: (() => void) | null = null;
  /** Ends the status iterator watching the connection for reconnects. */
  let stopStatus: (() => void) | null = null;
  /** Bumped when a start fails, ending the watch loop that start began. */
  let generation = 0;

  /** Deleted ids with the revision of their delete, so an older snapshot read cannot revive them. */
  const gone = new DeletedIds();

  /**
   * The creation time of the bucket stream `nodes` and `gone` come from (revisions are comparable
   * only within one stream), and a count bumped whenever another one is found: a watch or a
   * snapshot begun under an earlier count applies nothing more.
   */
  let created: string | undefined;
  let bucketEpoch = 0;
  let resets = 0;
  let checkTimer: ReturnType<typeof setInterval> | undefined;
  let checking: Promise<void> | null = null;

  /**
   * Asks which stream the bucket is now. Another one than the announcements were read from (the
   * bucket was created anew; its revisions start again from 1, below those held): forget them
   * all and restart the watch, which reads the new bucket from scratch. A missing bucket changes
   * nothing (the nodes stop on their own; the client keeps what it knew until a bucket appears).
   */
  const checkBucket = (conn: NatsConnection): Promise<void> =>
    (checking ??= (async () => {
      try {
        const now = await bucketCreated(conn, bucket, timeoutMs);
        if (now === null || now === created) return;
        if (created !== undefined) {
          nodes.clear();
          gone.clear();
          bucketEpoch++;
          resets++;
          stopWatch?.();
        }
        created = now;
      } finally {
        checking = null;
      }
    })());

  const apply = (e: KvEntry, fromSnapshot: boolean): void => {
    const id = e.key.slice(LEASE_PREFIX.length);
    const known = Math.max(nodes.get(id)?.revision ?? 0, gone.revision(id));
    if (e.revision <= known) return;
    if (e.operation !== 'PUT') {
      nodes.delete(id);
      gone.note(id, e.revision);
      return;
    }
    const a = parseAnnouncement(e);
    if (a === null) return;
    gone.forget(id);
    // Snapshot entries are judged by when the server stored them; updates by when they arrived.
    const seenAt = fromSnapshot ? Math.min(Date.now(), e.created.getTime()) : Date.now();
    nodes.set(id, { ...a, seenAt, revision: e.revision });
  };

  /** Current announcements, read key by key (applied only if the bucket is still the one of `epoch`). */
  const snapshot = async (kv: KV, epoch: number): Promise<void> => {
    const keys: string[] = [];
    for await (const k of await kv.keys(LEASE_PREFIX + '>')) keys.push(k);
    const entries = await Promise.all(keys.map((k) => kv.get(k)));
    if (epoch !== bucketEpoch) return;
    for (const e of entries) if (e !== null) apply(e, true);
  };

  /**
   * Watches updates (started before each snapshot, so nothing falls between the two); whenever
   * the watch breaks or the connection reconnects, it starts again with a fresh snapshot.
   */
  const run = async (conn: NatsConnection, kv: KV, ready: () => void, fail: (err: unknown) => void): Promise<void> => {
    let first = true;
    const gen = generation;
    while (!closed && gen === generation) {
      try {
        // Which bucket this watch and snapshot read: a new one is read from scratch. The first
        // start must know it; a later one goes on without an answer (the timer asks again).
        if (first) await checkBucket(conn);
        else await checkBucket(conn).catch(() => undefined);
        const epoch = bucketEpoch;
        const iter = await kv.watch({ key: LEASE_PREFIX + '>', include: 'updates' });
        if (closed || gen !== generation) {
          // Ended while the watch was being set up: close() found nothing to stop.
          iter.stop();
          break;
        }
        stopWatch = () => iter.stop();
        if (epoch !== bucketEpoch) iter.stop();
        await snapshot(kv, epoch);
        if (first) ready();
        first = false;
        for await (const e of iter) {
          // Events still queued from a bucket since found replaced: their revisions mean nothing now.
          if (epoch !== bucketEpoch) break;
          apply(e, false);
        }
      } catch (err) {
        if (first) {
          fail(err);
          return;
        }
      }
      stopWatch = null;
      if (!closed && gen === generation) await new Promise((r) => setTimeout(r, 250));
    }
    // Ended before the first snapshot (closed meanwhile): the start fails now, not at its timeout.
    if (first) fail(new Error('address finder closed'));
  };

  const start = async (): Promise<void> => {
    if (options.connection !== undefined) nc = options.connection;
    else {
      const co: ConnectionOptions = { servers, name: 'gridlink-client address finder', timeout: timeoutMs, maxReconnectAttempts: -1, reconnectTimeWait: 250 };
      if (options.token !== undefined) co.token = options.token;
      if (options.user !== undefined) co.user = options.user;
      if (options.pass !== undefined) co.pass = options.pass;
      if (options.tls !== undefined) co.tls = { ...options.tls };
      nc = await connect(co);
      // Closed while connecting (close() found no connection to close): the start fails, and
      // closes the connection it has just opened, now rather than after opening the bucket.
      if (closed) throw new Error('address finder closed');
    }
    const conn = nc;
    const kv = await new Kvm(conn).open(bucket);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no snapshot of ${bucket} announcements within ${timeoutMs} ms`)), timeoutMs);
      void run(
        conn,
        kv,
        () => {
          clearTimeout(timer);
          resolve();
        },
        (err) => {
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
    if (closed) return;
    // Which bucket it is, asked on a timer: a watch on a bucket deleted and created anew may go on
    // without an error (its ordered consumer resumes after the last revision it saw, past every
    // revision of the new bucket).
    checkTimer = setInterval(() => void checkBucket(conn).catch(() => undefined), checkIntervalMs);
    checkTimer.unref();
    // A reconnect may have lost updates: start the watch again (it re-reads the snapshot). On a
    // shared connection the iterator must end with close(), not at the connection's next status
    // event: nats.js's status iterator has stop() (a QueuedIterator), though typed as a plain
    // AsyncIterable; breaking out of the loop would end it only at the next event.
    const status = conn.status();
    const stoppable = status as AsyncIterable<unknown> & { stop?: unknown };
    stopStatus = typeof stoppable.stop === 'function' ? () => (stoppable.stop as () => void).call(status) : null;
    void (async () => {
      try {
        for await (const s of status) {
          if (closed) break;
          if (s.type === 'reconnect') stopWatch?.();
        }
      } catch {
        // The connection closed under the iterator: nothing left to watch.
      }
    })();
  };

  const announced = (): { id: string; endpoint: string }[] => {
    const now = Date.now();
    return [...nodes.entries()]
      .filter(([, a]) => now - a.seenAt <= staleAfterMs)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([id, a]) => ({ id, endpoint: formatEndpoint({ host: a.host, port: a.port }) }));
  };

  return {
    async resolve() {
      if (closed) throw new Error('address finder closed');
      started ??= start().then(
        () => {
          startedOk = true;
        },
        async (err: unknown) => {
          started = null;
          generation++;
          stopWatch?.();
          if (options.connection === undefined) await nc?.close().catch(() => undefined);
          throw err;
        },
      );
      // Not only the start's outcome: close() ends the wait at once (a connect of its own, or the
      // first snapshot on a shared connection, may still be under way and end without an error).
      // Once started, periodic re-resolution waits for nothing.
      if (!startedOk) {
        const start = started;
        await new Promise<void>((resolve, reject) => {
          waitingForStart.add(reject);
          void start.then(resolve, reject).finally(() => waitingForStart.delete(reject));
        });
      }
      if (closed) throw new Error('address finder closed');
      const list = announced().map((a) => a.endpoint);
      if (list.length === 0) throw new Error(`no grid node announced in NATS bucket ${bucket}`);
      return list;
    },
    announced,
    get resets() {
      return resets;
    },
    async close() {
      closed = true;
      for (const reject of waitingForStart) reject(new Error('address finder closed'));
      waitingForStart.clear();
      if (checkTimer !== undefined) clearInterval(checkTimer);
      checkTimer = undefined;
      stopWatch?.();
      stopStatus?.();
      stopStatus = null;
      if (options.connection === undefined) await nc?.close().catch(() => undefined);
    },
  };
}
