import { ErrorCode, Feature, Op, WireClient, payloadForFeatures, type ErrorPayload, type WireCloseReason } from '@gridlink/protocol';
import { GridNodeError } from '../errors.js';
import { unpackSnapshot } from '../store/snapshot.js';
import type { PartitionSnapshot } from '../store/types.js';
import type { TlsOptions } from '../config.js';
import type { Scheduler } from '../scheduler.js';
import type { Logger } from '../logger.js';
import { OWN_WIRE_RANGE, commonVersion, refusedRange, type WireRange } from './wire-version.js';

/** Client name peers announce in their handshake (followed by `/<wire version>`). */
export const PEER_CLIENT_NAME = 'gridlink-peer';

export { MIN_PEER_WIRE_VERSION, PEER_WIRE_VERSION } from './wire-version.js';

/**
 * The peer wire version a hello's client name announces: 1 for the unversioned name, NaN for a
 * malformed version, null when the name is not a peer's.
 */
export function peerWireVersion(clientName: string): number | null {
  if (clientName === PEER_CLIENT_NAME) return 1;
  if (!clientName.startsWith(`${PEER_CLIENT_NAME}/`)) return null;
  const v = clientName.slice(PEER_CLIENT_NAME.length + 1);
  return /^[1-9][0-9]{0,5}$/.test(v) ? Number(v) : Number.NaN;
}

/** A PEER_FORWARD message whose request fits the primary's `features` (payloadForFeatures): a copy when a field was dropped. */
function forwardForFeatures(msg: unknown, features: number): unknown {
  const m = msg as { op?: unknown; payload?: unknown } | null;
  if (m === null || typeof m !== 'object' || typeof m.op !== 'number') return msg;
  const payload = payloadForFeatures(m.op, m.payload, features);
  return payload === m.payload ? msg : { ...m, payload };
}

/**
 * A PEER_REPLICATE message as a peer without Feature.PACKED_SNAPSHOTS installs it: its snapshot
 * (whole or a part) with the packed entries as plain ones (ADR 0080) — an older node would install
 * the caches without them. A copy when something was unpacked.
 */
function replicateForFeatures(msg: unknown, features: number): unknown {
  if ((features & Feature.PACKED_SNAPSHOTS) !== 0 || msg === null || typeof msg !== 'object') return msg;
  const m = msg as { snap?: PartitionSnapshot; part?: { snap?: PartitionSnapshot } };
  if (m.snap !== undefined) return { ...m, snap: unpackSnapshot(m.snap) };
  if (m.part?.snap !== undefined) return { ...m, part: { ...m.part, snap: unpackSnapshot(m.part.snap) } };
  return msg;
}

const PEER_UNAVAILABLE_BRAND = Symbol.for('gridlink.PeerUnavailableError');

/** The peer could not be reached or its connection dropped before it answered. */
export class PeerUnavailableError extends Error {
  readonly code = 'GRID_PEER_UNAVAILABLE';
  readonly retryable = true;
  constructor(message: string) {
    super(message);
    this.name = 'PeerUnavailableError';
    Object.defineProperty(this, PEER_UNAVAILABLE_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && PEER_UNAVAILABLE_BRAND in value;
  }
}

export interface PeerClientOptions {
  selfId: string;
  peerId: string;
  host: string;
  port: number;
  /** Local address to dial from (see peerLocalAddress); undefined lets the OS choose. */
  localAddress?: string | undefined;
  clusterId: string;
  authToken: string | undefined;
  tls: TlsOptions | undefined;
  maxFrameSize: number;
  scheduler: Scheduler;
  connectTimeoutMs: number;
  /** Node-to-node wire versions this node speaks, the newest announced first (ADR 0060). Default: this release's. */
  wireRange?: WireRange | undefined;
  /** Where a link that settles on an older version says so (once per version). */
  logger?: Logger | undefined;
}

/** A request waiting for the end of the tick to be written. */
interface Queued {
  op: Op;
  payload: unknown;
  timeoutMs: number;
  /** May share one frame with adjacent batchable requests of the same op. */
  batchable: boolean;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** Payload of a frame carrying several requests of one op; the reply is `{ batch: replies[] }`. */
export interface BatchPayload {
  batch: unknown[];
}

export function isBatch(payload: unknown): payload is BatchPayload {
  return typeof payload === 'object' && payload !== null && Array.isArray((payload as BatchPayload).batch);
}

type BatchReply = { batch: unknown[] };

/** One connection from this node to another, used for forwarding, replication and state transfer. */
export class PeerClient {
  /** The current connection (a new one after each close), null before the first request. */
  private wire: WireClient | null = null;
  private ready: Promise<WireClient> | null = null;
  private closed = false;
  private paused = false;
  private connected = false;
  private version = 0;
  private loggedVersion = 0;
  private loggedDisjoint = false;

  private readonly wireRange: WireRange;

  constructor(readonly opts: PeerClientOptions) {
    this.wireRange = opts.wireRange ?? OWN_WIRE_RANGE;
  }

  /** Node-to-node wire version of the current connection (ADR 0060); 0 while not connected. */
  get wireVersion(): number {
    return this.version;
  }

  get address(): string {
    return `${this.opts.host}:${this.opts.port}`;
  }

  /**
   * Sends a request; requests made in the same tick are written together, in call order, at the
   * end of the tick. With `batchable`, adjacent batchable requests of the same op share one frame
   * (payload `{ batch }`, answered with `{ batch }` in the same order; the receiver handles them
   * as if they had arrived as separate frames back to back) and one timer (the shortest timeout).
   */
  request(op: Op, payload: unknown, timeoutMs: number, batchable = false): Promise<unknown> {
    if (this.closed) return Promise.reject(new PeerUnavailableError(`peer ${this.opts.peerId} client closed`));
    return new Promise<unknown>((resolve, reject) => this.send(op, payload, timeoutMs, resolve, reject, batchable));
  }

  /**
   * `request` without a promise: exactly one of `resolve` / `reject` is called later (or
   * `reject` at once when this client is closed).
   */
  send(op: Op, payload: unknown, timeoutMs: number, resolve: (v: unknown) => void, reject: (e: Error) => void, batchable = false): void {
    if (this.closed) {
      reject(new PeerUnavailableError(`peer ${this.opts.peerId} client closed`));
      return;
    }
    this.queue.push({ op, payload, timeoutMs, batchable, resolve, reject });
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    }
  }

  private queue: Queued[] = [];
  private flushScheduled = false;

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.queue.length === 0) return;
    if (this.closed) {
      this.failQueued(new PeerUnavailableError(`peer ${this.opts.peerId} client closed`));
      return;
    }
    const wire = this.wire;
    if (!wire || this.ready === null || !this.connected) {
      // Not connected yet: send everything queued, in order, once the handshake is done.
      this.connect().then(
        () => this.flush(),
        (err: unknown) => this.failQueued(err instanceof Error ? err : new Error(String(err))),
      );
      return;
    }
    const queued = this.queue;
    this.queue = [];
    const features = wire.handshake?.features ?? 0;
    wire.cork();
    for (let i = 0; i < queued.length; ) {
      const q = queued[i]!;
      // A forwarded request carrying a field of a feature this peer did not grant (an older
      // node refuses fields it does not know) goes without it: decided here, once the peer's
      // handshake is known, so that a link still connecting does not lose the field.
      if (q.op === Op.PEER_FORWARD) q.payload = forwardForFeatures(q.payload, features);
      else if (q.op === Op.PEER_REPLICATE && !q.batchable) q.payload = replicateForFeatures(q.payload, features);
      let j = i + 1;
      if (q.batchable) while (j < queued.length && queued[j]!.batchable && queued[j]!.op === q.op) j++;
      if (j - i === 1) wire.send(q.op, q.payload, q.timeoutMs, q.resolve, q.reject);
      else this.sendBatch(wire, queued.slice(i, j));
      i = j;
    }
    process.nextTick(() => wire.uncork());
  };

  private failQueued(err: Error): void {
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) q.reject(err);
  }

  private sendBatch(wire: WireClient, items: Queued[]): void {
    let timeoutMs = items[0]!.timeoutMs;
    for (const q of items) if (q.timeoutMs < timeoutMs) timeoutMs = q.timeoutMs;
    const resolve = (v: unknown): void => {
      const replies = (v as BatchReply | null)?.batch;
      if (!Array.isArray(replies) || replies.length !== items.length) {
        reject(new GridNodeError(ErrorCode.INTERNAL, `peer ${this.opts.peerId} answered a batch of ${items.length} with a malformed reply`));
        return;
      }
      items.forEach((q, k) => q.resolve(replies[k]));
    };
    const reject = (e: Error): void => {
      for (const q of items) q.reject(e);
    };
    wire.send(items[0]!.op, { batch: items.map((q) => q.payload) } satisfies BatchPayload, timeoutMs, resolve, reject);
  }

  pause(): void {
    this.paused = true;
    this.wire?.pause();
  }

  resume(): void {
    this.paused = false;
    this.wire?.resume();
  }

  /** Abrupt close: pending requests fail. */
  destroy(): void {
    this.closed = true;
    const err = new PeerUnavailableError(`peer ${this.opts.peerId} client closed`);
    this.wire?.close(err);
    this.failQueued(err);
  }

  private connect(): Promise<WireClient> {
    if (this.ready) return this.ready;
    const attempt = this.dial(this.wireRange.max);
    this.ready = attempt;
    attempt.catch(() => {
      if (this.ready === attempt) this.ready = null;
    });
    return attempt;
  }

  /**
   * Connects announcing wire `version`. A peer of an older release refuses a version it does not
   * speak and names its range (ADR 0060): dialed again at once with the newest version both speak,
   * so the requests waiting for this connection do not notice.
   */
  private dial(version: number): Promise<WireClient> {
    const o = this.opts;
    const peer = o.peerId;
    let refusal = '';
    let opened = false;
    const closed = (reason: WireCloseReason, detail: string): Error => {
      switch (reason) {
        case 'unreachable':
          return new PeerUnavailableError(`peer ${peer} unreachable at ${this.address}`);
        case 'refused':
          refusal = detail;
          return new PeerUnavailableError(`peer ${peer} refused the handshake: ${detail}`);
        case 'handshake-timeout':
          return new PeerUnavailableError(`peer ${peer} handshake timed out`);
        case 'closed':
          return new PeerUnavailableError(`connection to peer ${peer} closed`);
      }
    };
    const wire = new WireClient({
      host: o.host,
      port: o.port,
      ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
      ...(o.tls ? { tls: { ca: o.tls.ca, rejectUnauthorized: o.tls.rejectUnauthorized ?? true } } : {}),
      sessionId: `peer:${o.selfId}`,
      clientName: `${PEER_CLIENT_NAME}/${version}`,
      clusterId: o.clusterId,
      ...(o.authToken !== undefined ? { authToken: o.authToken } : {}),
      maxFrameSize: o.maxFrameSize,
      handshakeTimeoutMs: o.connectTimeoutMs,
      setTimer: (fn, ms) => o.scheduler.setTimeout(fn, ms),
      errors: {
        closed,
        timeout: (op, ms) => new GridNodeError(ErrorCode.TIMEOUT, `peer ${peer} did not answer op ${op} within ${ms} ms`),
        response: (e: ErrorPayload) => new GridNodeError(e.code as ErrorCode, e.message, e.partition),
      },
      onClose: () => {
        if (this.wire === wire) {
          this.wire = null;
          this.connected = false;
          this.version = 0;
          // A connection that never opened leaves `ready` to the attempt, which may dial again.
          if (opened) this.ready = null;
        }
      },
    });
    this.wire = wire;
    if (this.paused) wire.pause();
    return wire.ready.then(
      () => {
        opened = true;
        if (this.wire === wire) {
          this.connected = true;
          this.version = version;
        }
        return wire;
      },
      (err: unknown) => {
        const theirs = refusedRange(refusal);
        if (theirs === null || this.closed) throw err;
        const own = this.wireRange;
        const v = commonVersion(own, theirs);
        if (v === null) {
          const e = new PeerUnavailableError(
            `peer ${peer} speaks node-to-node wire versions ${theirs.min}..${theirs.max} and this node ${own.min}..${own.max}: none in common, so these two releases cannot run in one cluster`,
          );
          // Every request to that peer fails this way: said once per link, where operators look.
          if (!this.loggedDisjoint) {
            this.loggedDisjoint = true;
            o.logger?.error(e.message, { peer, peerVersions: `${theirs.min}..${theirs.max}`, versions: `${own.min}..${own.max}` });
          }
          throw e;
        }
        // A refusal of a version inside the range it names is not about versions: no retry.
        if (v >= version) throw err;
        if (this.loggedVersion !== v) {
          this.loggedVersion = v;
          o.logger?.info('peer speaks an older node-to-node wire: using its version', { peer, version: v, peerVersions: `${theirs.min}..${theirs.max}` });
        }
        return this.dial(v);
      },
    );
  }
}
