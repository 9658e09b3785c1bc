import { ErrorCode, Op, WireClient, payloadForFeatures, type ErrorPayload, type WireCloseReason } from '@gridlink/protocol';
import { GridNodeError } from '../errors.js';
import type { TlsOptions } from '../config.js';
import type { Scheduler } from '../scheduler.js';

/** Client name peers announce in their handshake (followed by `/<wire version>`). */
export const PEER_CLIENT_NAME = 'gridlink-peer';

/**
 * Version of the node-to-node wire (peer ops, their message forms and replies), announced in the
 * peer hello as `gridlink-peer/<version>`; the plain `gridlink-peer` of older nodes is version 1.
 * 2: batched records may ask for the compact all-OK ack (ADR 0035).
 */
export const PEER_WIRE_VERSION = 2;
/** Oldest peer wire version this node still answers correctly. */
export const MIN_PEER_WIRE_VERSION = 1;

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

  constructor(readonly opts: PeerClientOptions) {}

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
    const o = this.opts;
    const peer = o.peerId;
    const closed = (reason: WireCloseReason): Error => {
      switch (reason) {
        case 'unreachable':
          return new PeerUnavailableError(`peer ${peer} unreachable at ${this.address}`);
        case 'refused':
          return new PeerUnavailableError(`peer ${peer} refused the handshake`);
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
      clientName: `${PEER_CLIENT_NAME}/${PEER_WIRE_VERSION}`,
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
          this.ready = null;
          this.connected = false;
        }
      },
    });
    this.wire = wire;
    if (this.paused) wire.pause();
    const attempt = wire.ready.then(() => {
      if (this.wire === wire) this.connected = true;
      return wire;
    });
    this.ready = attempt;
    attempt.catch(() => {
      if (this.ready === attempt) this.ready = null;
    });
    return attempt;
  }
}
