/**
 * One TCP (or TLS) connection to one grid node: MAGIC + handshake, request ids mapped to pending
 * promises, heartbeats when idle, closing when the node goes silent, server pushes, and a graceful
 * drain. Knows nothing about routing or retries.
 */
import net from 'node:net';
import tls from 'node:tls';
import { EventEmitter } from 'eventemitter3';
import {
  ALL_FEATURES,
  DEFAULT_MAX_FRAME_SIZE,
  ErrorCode,
  FrameDecoder,
  FrameKind,
  IntMap,
  MAGIC,
  MIN_PROTOCOL_VERSION,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  encodeFrame,
  payloadForFeatures,
  type Frame,
  type HandshakeOk,
  type PushFrame,
  type ResponseFrame,
} from '@gridlink/protocol';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { GridAbortError, GridConnectionError, GridError, GridSerializationError, GridServerError, GridTimeoutError, GridTlsError } from './errors.js';
import type { Endpoint } from './endpoints.js';
import { formatEndpoint } from './endpoints.js';

export interface ConnectionOptions {
  endpoint: Endpoint;
  sessionId: string;
  clientName: string;
  clusterId?: string | undefined;
  authToken?: string | undefined;
  tls?: TlsConnectionOptions | undefined;
  connectTimeout: number;
  heartbeatInterval: number;
  heartbeatTimeout: number;
  /** Typical per-request timeout: request expiry is checked at a fraction of it. */
  requestTimeout?: number | undefined;
}

export interface ConnectionEvents {
  /** The connection closed; `error` says why (null when closed by us without a fault). */
  close: (error: GridError | null) => void;
  push: (frame: PushFrame) => void;
  /** Every response/push carries the node's topology version. */
  version: (version: number, refresh: boolean) => void;
}

/**
 * Receives the outcome of one request, called synchronously by the connection exactly once: the
 * response frame (with the time its chunk arrived, from performance.now()), or the error that
 * ended the request (connection lost, request expired, aborted). Must not throw.
 */
export interface ResponseHandler {
  /**
   * True when the handler passes each response's topology version on itself: the connection then
   * skips its `version` event for that response.
   */
  readonly observesVersion?: boolean;
  onResponse(frame: ResponseFrame, receivedAt: number): void;
  onFailure(err: GridError): void;
}

interface Pending {
  handler: ResponseHandler;
  /** Removes the abort listener, if any. */
  cleanup: (() => void) | null;
  /** performance.now() after which the request fails with GRID_REQUEST_TIMEOUT. */
  expiresAt: number;
  op: Op;
}

/** Adapts a ResponseHandler to a promise (for callers that await a request). */
export class PromiseHandler implements ResponseHandler {
  resolve!: (frame: ResponseFrame) => void;
  reject!: (err: unknown) => void;
  readonly promise = new Promise<ResponseFrame>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
  onResponse(frame: ResponseFrame): void {
    this.resolve(frame);
  }
  onFailure(err: GridError): void {
    this.reject(err);
  }
}

export type ConnectionState = 'connecting' | 'open' | 'draining' | 'closed';

export interface RequestOptions {
  signal?: AbortSignal | undefined;
  /** Fail the request with a retryable GRID_REQUEST_TIMEOUT after this long (ms). */
  timeoutMs?: number | undefined;
}

function abortError(signal: AbortSignal): GridError {
  const reason: unknown = signal.reason;
  if (reason instanceof GridError) return reason;
  return new GridAbortError('the operation was aborted', { cause: reason });
}

/** Socket errors that may cut a TLS handshake short without anything being wrong with the settings. */
const TRANSIENT_SOCKET_CODES: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED']);

/** A TLS handshake that failed with node:tls's error `e`: a GridTlsError naming TLS and its code. */
function tlsFailure(address: string, e: Error): GridTlsError {
  const code = (e as NodeJS.ErrnoException).code;
  return new GridTlsError(`${address}: TLS handshake failed: ${e.message}${code !== undefined ? ` (${code})` : ''}`, {
    cause: e,
    retryable: code !== undefined && TRANSIENT_SOCKET_CODES.has(code),
  });
}

/** Average frame size of a flush from which its frames are written as they are (writev), not joined. */
const WRITEV_MIN_AVERAGE_FRAME = 1024;

export class Connection extends EventEmitter<ConnectionEvents> {
  readonly endpoint: Endpoint;
  readonly address: string;
  state: ConnectionState = 'connecting';
  handshake: HandshakeOk | null = null;
  /**
   * Largest request frame (its length field) sent on this connection: the client's own limit
   * (the protocol's default, which its decoder also holds responses to), or the lower one the
   * node announced in its handshake (ADR 0009). A larger request is refused before it is sent.
   */
  maxFrameSize = DEFAULT_MAX_FRAME_SIZE;
  /** Encoding options of requests: undefined while the client's own limit is in force. */
  private encodeOptions: { maxFrameSize: number } | undefined = undefined;
  private socket: net.Socket | null = null;
  private readonly decoder = new FrameDecoder();
  /** By request id; not a Map: per-request churn in a V8 Map slows the collector down for good (ADR 0075). */
  private readonly pending = new IntMap<Pending>();
  private nextId = 1;
  private idsWrapped = false;
  private lastReceived = 0;
  private lastSent = 0;
  private heartbeatOutstanding = false;
  private timer: NodeJS.Timeout | null = null;
  private drainWaiters: (() => void)[] = [];
  /**
   * Frames written during one turn of the event loop, sent together as a single buffer (one
   * write call and one syscall, without the stream's per-chunk bookkeeping of cork/writev) from
   * setImmediate: after every I/O callback of this turn, so that requests made in answer to
   * several sockets' data (responses, HTTP requests of an app) share one write per connection
   * instead of one per callback.
   */
  private outgoing: Uint8Array[] = [];
  private outgoingBytes = 0;
  private readonly flush = (): void => {
    const frames = this.outgoing;
    this.outgoing = [];
    const total = this.outgoingBytes;
    this.outgoingBytes = 0;
    const socket = this.socket;
    if (socket === null || this.state === 'closed' || frames.length === 0) return;
    if (frames.length === 1) socket.write(frames[0]!);
    else if (total >= frames.length * WRITEV_MIN_AVERAGE_FRAME) {
      // Big frames (values of a kilobyte and more): one writev of the frames as they are. Joining
      // them first copied every byte again into a fresh buffer of up to hundreds of kB, which
      // cost more than the per-chunk bookkeeping of a corked socket (measured on loopback).
      socket.cork();
      for (const f of frames) socket.write(f);
      socket.uncork();
    } else socket.write(Buffer.concat(frames, total));
  };
  /** Earliest expiresAt among pending requests (Infinity when none expires). */
  private nextExpiry = Infinity;
  /** How often the heartbeat timer sweeps for expired requests (ms; 0 until the connection is open). */
  private tick = 0;
  /**
   * A one-shot timer for a request expiring sooner than the next sweep (a per-call `timeoutMs`
   * shorter than the sweep period), and when it fires: without it such a request outlived its
   * deadline by up to a whole sweep period (250 ms with the default settings).
   */
  private expiryTimer: NodeJS.Timeout | null = null;
  private expiryTimerAt = Infinity;
  private closeError: GridError | null = null;

  constructor(private readonly opts: ConnectionOptions) {
    super();
    this.endpoint = opts.endpoint;
    this.address = formatEndpoint(opts.endpoint);
  }

  get nodeId(): string | undefined {
    return this.handshake?.nodeId;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Usable for new requests. */
  get usable(): boolean {
    return this.state === 'open';
  }

  /**
   * Opens the socket and completes the handshake. Rejects with GridConnectionError (or a
   * GridServerError for a HANDSHAKE_ERROR) within `connectTimeout`, or when `signal` aborts.
   */
  connect(signal?: AbortSignal): Promise<HandshakeOk> {
    return new Promise<HandshakeOk>((resolve, reject) => {
      const { host, port } = this.opts.endpoint;
      let settled = false;
      const finish = (err: GridError | null, ok?: HandshakeOk): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timeout);
        signal?.removeEventListener('abort', onAbort);
        if (err !== null) {
          this.destroy(err);
          reject(err);
        } else {
          resolve(ok as HandshakeOk);
        }
      };
      const timeout = setTimeout(() => {
        finish(new GridConnectionError(`${this.address}: no handshake within ${this.opts.connectTimeout} ms`));
      }, this.opts.connectTimeout);
      timeout.unref();
      const onAbort = (): void => finish(new GridConnectionError(`${this.address}: connection attempt cancelled`));
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });

      const useTls = this.opts.tls !== undefined;
      /** TCP is up (TLS: its handshake under way until `secured`). */
      let tcpConnected = false;
      let secured = false;
      let socket: net.Socket;
      try {
        socket =
          this.opts.tls !== undefined
            ? tls.connect({ ...this.opts.tls, host, port, servername: this.opts.tls.servername ?? (net.isIP(host) ? undefined : host) })
            : net.connect({ host, port });
      } catch (e) {
        // Options node:tls refuses at each attempt (the config check catches those it can).
        finish(new GridTlsError(`${this.address}: TLS options refused by node:tls: ${(e as Error).message}`, { cause: e }));
        return;
      }
      this.socket = socket;
      if (useTls) {
        socket.once('connect', () => (tcpConnected = true));
        socket.once('secureConnect', () => (secured = true));
      }
      /** A TLS handshake under way: its failures are the settings', named as TLS. */
      const inTlsHandshake = (): boolean => useTls && tcpConnected && !secured;
      socket.setNoDelay(true);
      const onConnect = (): void => {
        const body = {
          minVersion: MIN_PROTOCOL_VERSION,
          maxVersion: PROTOCOL_VERSION,
          features: ALL_FEATURES,
          sessionId: this.opts.sessionId,
          clientName: this.opts.clientName,
          // Responses larger than the decoder takes are answered FRAME_TOO_LARGE, not sent.
          maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
          ...(this.opts.authToken !== undefined ? { authToken: this.opts.authToken } : {}),
          ...(this.opts.clusterId !== undefined ? { clusterId: this.opts.clusterId } : {}),
        };
        socket.write(MAGIC);
        socket.write(encodeFrame({ kind: FrameKind.HANDSHAKE, body }));
      };
      socket.once(useTls ? 'secureConnect' : 'connect', onConnect);
      socket.on('error', (e: Error) => {
        const err = !settled && inTlsHandshake() ? tlsFailure(this.address, e) : new GridConnectionError(`${this.address}: ${e.message}`, { cause: e });
        if (!settled) finish(err);
        else this.destroy(err);
      });
      socket.on('close', () => {
        if (!settled && inTlsHandshake()) {
          finish(new GridTlsError(`${this.address}: connection closed during the TLS handshake (does the node serve TLS?)`, { retryable: true }));
        } else if (!settled) finish(new GridConnectionError(`${this.address}: connection closed during handshake`));
        else this.destroy(this.closeError ?? new GridConnectionError(`${this.address}: connection closed by the node`));
      });
      socket.on('data', (chunk: Buffer) => {
        this.lastReceived = performance.now();
        let frames: Frame[];
        try {
          frames = this.decoder.push(chunk);
        } catch (e) {
          const err = new GridConnectionError(`${this.address}: malformed data from node: ${(e as Error).message}`, { cause: e });
          if (!settled) finish(err);
          else this.destroy(err);
          return;
        }
        for (const frame of frames) {
          if (this.state === 'connecting') {
            if (frame.kind === FrameKind.HANDSHAKE_OK) {
              this.handshake = frame.body;
              const announced = frame.body.maxFrameSize;
              if (announced !== undefined && announced < this.maxFrameSize) {
                this.maxFrameSize = announced;
                this.encodeOptions = { maxFrameSize: announced };
              }
              this.state = 'open';
              this.startHeartbeats();
              finish(null, frame.body);
            } else if (frame.kind === FrameKind.HANDSHAKE_ERROR) {
              finish(new GridServerError(frame.body.code, `${this.address}: handshake refused: ${frame.body.message}`));
              return;
            } else {
              finish(new GridConnectionError(`${this.address}: unexpected frame before handshake`));
              return;
            }
          } else {
            this.onFrame(frame);
          }
          if (this.state === 'closed') return;
        }
      });
    });
  }

  private onFrame(frame: Frame): void {
    if (frame.kind === FrameKind.RESPONSE) {
      const p = this.pending.get(frame.id);
      if (p === undefined || p.handler.observesVersion !== true) this.emit('version', frame.topologyVersion, false);
      if (p !== undefined) {
        this.pending.delete(frame.id);
        p.cleanup?.();
        p.handler.onResponse(frame, this.lastReceived);
        this.checkDrained();
      }
    } else if (frame.kind === FrameKind.PUSH) {
      this.emit('version', frame.topologyVersion, false);
      this.emit('push', frame);
    } else {
      this.destroy(new GridConnectionError(`${this.address}: unexpected frame kind ${frame.kind}`));
    }
  }

  private startHeartbeats(): void {
    const now = performance.now();
    this.lastReceived = now;
    this.lastSent = now;
    // The node closes connections idle longer than its idleTimeoutMs: heartbeat well inside it.
    const idle = this.handshake?.idleTimeoutMs ?? 0;
    const interval = idle > 0 ? Math.min(this.opts.heartbeatInterval, Math.max(1, Math.floor(idle / 3))) : this.opts.heartbeatInterval;
    const tick = Math.max(5, Math.min(interval, this.opts.heartbeatTimeout, this.opts.requestTimeout ?? Infinity) / 4);
    this.tick = tick;
    this.timer = setInterval(() => {
      const t = performance.now();
      if (t >= this.nextExpiry) this.expireRequests(t);
      if (t - this.lastReceived >= this.opts.heartbeatTimeout) {
        this.destroy(new GridConnectionError(`${this.address}: nothing received for ${this.opts.heartbeatTimeout} ms (heartbeat timeout)`));
        return;
      }
      if (!this.heartbeatOutstanding && (t - this.lastSent >= interval || t - this.lastReceived >= interval)) {
        this.sendHeartbeat(interval);
      }
    }, tick);
    this.timer.unref();
  }

  /** Fails every pending request whose expiry has passed (one timer for all of them). */
  private expireRequests(now: number): void {
    let next = Infinity;
    const expired: number[] = [];
    this.pending.forEach((p, id) => {
      if (p.expiresAt <= now) expired.push(id);
      else if (p.expiresAt < next) next = p.expiresAt;
    });
    // The next expiry first: a request sent while the expired ones fail lowers it itself.
    this.nextExpiry = next;
    this.scheduleExpiry(next, now);
    for (const id of expired) {
      const p = this.pending.delete(id);
      if (p === undefined) continue;
      p.cleanup?.();
      p.handler.onFailure(
        new GridTimeoutError(`${this.address}: no response to op ${p.op} from node ${this.nodeId ?? '?'} in time`, {
          code: 'GRID_REQUEST_TIMEOUT',
          retryable: true,
        }),
      );
    }
    this.checkDrained();
  }

  /** Arms the one-shot expiry timer for `at` when it comes sooner than the next sweep and the timer. */
  private scheduleExpiry(at: number, now: number): void {
    if (at - now >= this.tick || at >= this.expiryTimerAt || this.state === 'closed') return;
    if (this.expiryTimer !== null) clearTimeout(this.expiryTimer);
    this.expiryTimerAt = at;
    this.expiryTimer = setTimeout(this.onExpiryTimer, Math.max(1, Math.ceil(at - now)));
    this.expiryTimer.unref();
  }

  private readonly onExpiryTimer = (): void => {
    this.expiryTimer = null;
    this.expiryTimerAt = Infinity;
    this.expireRequests(performance.now());
  };

  /** A heartbeat whose answer is lost (a dropped frame) expires so the next one can go out. */
  private sendHeartbeat(interval: number): void {
    this.heartbeatOutstanding = true;
    const h = new PromiseHandler();
    const err = this.start(Op.HEARTBEAT, {}, h, interval, undefined, performance.now(), true);
    if (err !== null) h.reject(err);
    h.promise.then(
      () => {
        this.heartbeatOutstanding = false;
      },
      () => {
        this.heartbeatOutstanding = false;
      },
    );
  }

  /** Sends a request and resolves with its response frame (errors are not interpreted here). */
  request(op: Op, payload: unknown, options?: RequestOptions): Promise<ResponseFrame> {
    const h = new PromiseHandler();
    const err = this.start(op, payload, h, options?.timeoutMs, options?.signal, performance.now(), false);
    if (err !== null) h.reject(err);
    return h.promise;
  }

  /**
   * Sends a request whose outcome goes to `handler` (called later, never from inside this call).
   * Returns the error instead when the request cannot be sent at all (connection not open,
   * `signal` already aborted, payload not encodable); the handler is then never called.
   * `now` is the caller's performance.now(); the request expires `timeoutMs` after it.
   */
  start(
    op: Op,
    payload: unknown,
    handler: ResponseHandler,
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
    now: number,
    internal = false,
  ): GridError | null {
    if (this.state !== 'open' && !(internal && this.state === 'draining')) {
      return this.closeError ?? new GridConnectionError(`${this.address}: connection is ${this.state}`);
    }
    if (signal?.aborted) return abortError(signal);
    let id = this.nextId;
    // Ids count up from 1; only after they wrap around can one still be in use.
    if (this.idsWrapped) while (this.pending.has(id)) id = (id % 0xffffffff) + 1;
    if (id === 0xffffffff) this.idsWrapped = true;
    this.nextId = (id % 0xffffffff) + 1;
    payload = payloadForFeatures(op, payload, this.handshake!.features);
    let bytes: Uint8Array;
    try {
      bytes = encodeFrame({ kind: FrameKind.REQUEST, op, id, flags: 0, payload }, this.encodeOptions);
    } catch (e) {
      // A request over the frame limit (a key, value or batch too large) or holding what
      // MessagePack cannot carry: refused here, before anything is sent. The cause is the
      // protocol's error (code GRID_FRAME_TOO_LARGE or GRID_BAD_REQUEST).
      if (e instanceof GridError) return e;
      let message = `cannot encode request: ${(e as Error).message}`;
      if (this.encodeOptions !== undefined && e instanceof ProtocolError && e.wireCode === ErrorCode.FRAME_TOO_LARGE) {
        message += ` (the maxFrameSize node ${this.nodeId ?? '?'} at ${this.address} announced)`;
      }
      return new GridSerializationError(message, { cause: e });
    }
    let cleanup: (() => void) | null = null;
    if (signal !== undefined) {
      const onAbort = (): void => {
        const p = this.pending.get(id);
        if (p !== undefined && p.handler === handler) {
          this.pending.delete(id);
          handler.onFailure(abortError(signal));
          this.checkDrained();
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      cleanup = () => signal.removeEventListener('abort', onAbort);
    }
    const expiresAt = timeoutMs !== undefined && timeoutMs > 0 ? now + timeoutMs : Infinity;
    if (expiresAt < this.nextExpiry) this.nextExpiry = expiresAt;
    if (expiresAt < this.expiryTimerAt && expiresAt - now < this.tick) this.scheduleExpiry(expiresAt, now);
    this.pending.set(id, { handler, cleanup, expiresAt, op });
    this.lastSent = now;
    if (this.outgoing.length === 0) setImmediate(this.flush);
    this.outgoing.push(bytes);
    this.outgoingBytes += bytes.length;
    return null;
  }

  /**
   * Stops accepting requests, waits (up to `timeoutMs`) for in-flight ones, then closes.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.state = 'draining';
    if (this.pending.size > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        t.unref();
        this.drainWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    this.close();
  }

  /** Marks the connection as draining: no new requests; existing ones complete. */
  markDraining(): void {
    if (this.state === 'open') this.state = 'draining';
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.pending.size > 0) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  /** Closes gracefully (no error). Pending requests fail with a retryable connection error. */
  close(): void {
    this.destroy(null);
  }

  /** Tears the connection down, failing every pending request with `err` (or a generic one). */
  destroy(err: GridError | null): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.closeError = err ?? new GridConnectionError(`${this.address}: connection closed`);
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
    if (this.expiryTimer !== null) {
      clearTimeout(this.expiryTimer);
      this.expiryTimer = null;
      this.expiryTimerAt = Infinity;
    }
    const socket = this.socket;
    if (socket !== null) {
      if (err === null) socket.end();
      socket.destroy();
    }
    const pending = this.pending.values();
    this.pending.clear();
    for (const p of pending) {
      p.cleanup?.();
      p.handler.onFailure(this.closeError);
    }
    this.checkDrained();
    this.emit('close', err);
    this.removeAllListeners();
  }
}

