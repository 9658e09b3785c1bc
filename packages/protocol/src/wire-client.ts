/**
 * A small gridlink wire client: one TCP (or TLS) connection, the MAGIC + handshake exchange,
 * framing, requests matched to responses by id, per-request timeouts and close semantics.
 * Nothing else: no routing, no retries, no reconnection (callers that need them build them on
 * top, as the node's peer links, the node tests and the node benchmark do). Also useful for
 * tools that talk to a node directly.
 *
 * Close semantics: once the connection closes (close(), the peer closed it, a malformed frame
 * arrived), every pending request rejects, `closed` is true, `closedPromise` resolves, and new
 * requests reject at once. A request times out on its own; a late response to it is ignored.
 */
import net from 'node:net';
import tls from 'node:tls';
import { FrameDecoder, encodeFrame } from './codec.js';
import { errorCodeInfo } from './errors.js';
import { IntMap } from './int-map.js';
import { ALL_FEATURES, DEFAULT_MAX_FRAME_SIZE, FrameKind, MAGIC, PROTOCOL_VERSION, ResponseFlag } from './messages.js';
import type { ErrorPayload, Frame, HandshakeOk, PushFrame, ResponseFrame } from './messages.js';

/** A cancellable timer (the node passes its own scheduler's, which a frozen process stops). */
export interface WireTimer {
  cancel(): void;
}

export type WireCloseReason = 'unreachable' | 'refused' | 'handshake-timeout' | 'closed';

/** How the client's failures are reported; each defaults to a WireClientError / WireResponseError. */
export interface WireErrors {
  /** The connection is gone (or never came up) and the request cannot be answered. */
  closed(reason: WireCloseReason, detail: string): Error;
  /** No response to `op` within `timeoutMs`. */
  timeout(op: number, timeoutMs: number): Error;
  /** The node answered with an error payload (request(), not requestFrame()). */
  response(payload: ErrorPayload): Error;
}

export interface WireClientOptions {
  host: string;
  port: number;
  /** Local address to bind the connection to (default: chosen by the OS). */
  localAddress?: string;
  /** Connect with TLS, trusting `ca` (system CAs when absent). */
  tls?: { ca?: string | Buffer | (string | Buffer)[]; rejectUnauthorized?: boolean };
  sessionId: string;
  clientName?: string;
  clusterId?: string;
  authToken?: string;
  /**
   * Largest frame accepted from the node (the codec's default when absent), announced in the
   * handshake. Requests are held to it too, and to the node's own limit when it announces one
   * (ADR 0009); a node that announces none is sent frames up to the codec's default.
   */
  maxFrameSize?: number;
  /** The handshake must complete within this time (default 5000 ms). */
  handshakeTimeoutMs?: number;
  /** Timer factory (default: setTimeout). */
  setTimer?: (fn: () => void, ms: number) => WireTimer;
  /** Push frames (topology changed, node stopping) as they arrive. */
  onPush?: (frame: PushFrame) => void;
  /** Called once when the connection closes, for whatever reason. */
  onClose?: () => void;
  errors?: Partial<WireErrors>;
}

const WIRE_ERROR_BRAND = Symbol.for('gridlink.WireClientError');

/** A connection-level failure of the wire client. */
export class WireClientError extends Error {
  readonly code: 'GRID_WIRE_UNREACHABLE' | 'GRID_WIRE_REFUSED' | 'GRID_WIRE_HANDSHAKE_TIMEOUT' | 'GRID_WIRE_CLOSED' | 'GRID_WIRE_TIMEOUT';
  readonly retryable: boolean;
  constructor(code: WireClientError['code'], message: string) {
    super(message);
    this.name = 'WireClientError';
    this.code = code;
    this.retryable = code !== 'GRID_WIRE_REFUSED';
    Object.defineProperty(this, WIRE_ERROR_BRAND, { value: true });
  }
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && WIRE_ERROR_BRAND in value;
  }
}

/** An error response from the node, with its wire code. */
export class WireResponseError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(readonly payload: ErrorPayload) {
    super(`${payload.code}: ${payload.message}`);
    this.name = 'WireResponseError';
    const info = errorCodeInfo(payload.code);
    this.code = info.name;
    this.retryable = info.retryable;
  }
}

const CLOSE_CODES = {
  unreachable: 'GRID_WIRE_UNREACHABLE',
  refused: 'GRID_WIRE_REFUSED',
  'handshake-timeout': 'GRID_WIRE_HANDSHAKE_TIMEOUT',
  closed: 'GRID_WIRE_CLOSED',
} as const;

const DEFAULT_ERRORS: WireErrors = {
  closed: (reason, detail) => new WireClientError(CLOSE_CODES[reason], detail),
  timeout: (op, ms) => new WireClientError('GRID_WIRE_TIMEOUT', `no response to op ${op} within ${ms} ms`),
  response: (payload) => new WireResponseError(payload),
};

function defaultTimer(fn: () => void, ms: number): WireTimer {
  // A timeout already used up (ms < 1) fires after 1 ms, as Node would make it anyway; passing the
  // negative value itself makes Node 23+ print a TimeoutNegativeWarning.
  const t = setTimeout(fn, ms < 1 ? 1 : ms);
  return { cancel: () => clearTimeout(t) };
}

interface Pending {
  resolve: (v: never) => void;
  reject: (e: Error) => void;
  timer: WireTimer | null;
  /** Resolve with the whole response frame (flags included) instead of its payload. */
  raw: boolean;
}

export class WireClient {
  /** Resolves with the node's handshake answer; rejects when the connection does not come up. */
  readonly ready: Promise<HandshakeOk>;
  /** The node's handshake answer, once ready. */
  handshake: HandshakeOk | null = null;
  readonly closedPromise: Promise<void>;
  private readonly socket: net.Socket;
  /** By request id; not a Map (ADR 0075). */
  private readonly pending = new IntMap<Pending>();
  private readonly errors: WireErrors;
  private readonly setTimer: (fn: () => void, ms: number) => WireTimer;
  private nextId = 1;
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  /** The error pending requests fail with when the connection closes. */
  private closeError: Error | null = null;
  /** close() was called: the socket is going away, nothing more is sent. */
  private closing = false;
  /** Encoding options of requests (the limit of send(); see WireClientOptions.maxFrameSize). */
  private sendOptions: { maxFrameSize: number } = { maxFrameSize: DEFAULT_MAX_FRAME_SIZE };

  /** Starts connecting at once; wait for `ready` (or use WireClient.connect). */
  constructor(private readonly opts: WireClientOptions) {
    this.errors = { ...DEFAULT_ERRORS, ...opts.errors };
    this.setTimer = opts.setTimer ?? defaultTimer;
    const o = opts;
    const socket: net.Socket = o.tls
      ? tls.connect({
          host: o.host,
          port: o.port,
          ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
          ...(o.tls.ca !== undefined ? { ca: o.tls.ca } : {}),
          rejectUnauthorized: o.tls.rejectUnauthorized ?? true,
          servername: net.isIP(o.host) ? undefined : o.host,
        })
      : net.connect({ host: o.host, port: o.port, ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}) });
    socket.setNoDelay(true);
    this.socket = socket;
    let onClosed!: () => void;
    this.closedPromise = new Promise<void>((r) => (onClosed = r));
    this.ready = new Promise<HandshakeOk>((resolve, reject) => {
      const decoder = new FrameDecoder(o.maxFrameSize !== undefined ? { maxFrameSize: o.maxFrameSize } : {});
      const ownLimit = decoder.maxFrameSize;
      const timer = this.setTimer(() => {
        if (this.state !== 'connecting') return;
        this.closeError = this.errors.closed('handshake-timeout', `${this.address}: handshake timed out`);
        socket.destroy();
      }, o.handshakeTimeoutMs ?? 5000);
      socket.once(o.tls ? 'secureConnect' : 'connect', () => {
        socket.write(MAGIC);
        socket.write(
          encodeFrame({
            kind: FrameKind.HANDSHAKE,
            body: {
              minVersion: PROTOCOL_VERSION,
              maxVersion: PROTOCOL_VERSION,
              features: ALL_FEATURES,
              sessionId: o.sessionId,
              maxFrameSize: ownLimit,
              ...(o.clientName !== undefined ? { clientName: o.clientName } : {}),
              ...(o.clusterId !== undefined ? { clusterId: o.clusterId } : {}),
              ...(o.authToken !== undefined ? { authToken: o.authToken } : {}),
            },
          }),
        );
      });
      socket.on('data', (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch {
          socket.destroy();
          return;
        }
        for (const f of frames) {
          if (this.state === 'connecting') {
            timer.cancel();
            if (f.kind === FrameKind.HANDSHAKE_OK) {
              this.state = 'open';
              this.handshake = f.body;
              this.sendOptions = { maxFrameSize: Math.min(ownLimit, f.body.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE) };
              resolve(f.body);
            } else {
              const why = f.kind === FrameKind.HANDSHAKE_ERROR ? f.body.message : `unexpected frame kind ${f.kind}`;
              this.closeError = this.errors.closed('refused', `${this.address} refused the handshake: ${why}`);
              socket.destroy();
              return;
            }
          } else if (f.kind === FrameKind.RESPONSE) {
            this.onResponse(f);
          } else if (f.kind === FrameKind.PUSH) {
            o.onPush?.(f);
          }
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        timer.cancel();
        const wasConnecting = this.state === 'connecting';
        this.state = 'closed';
        const err = this.closeError ?? this.errors.closed(wasConnecting ? 'unreachable' : 'closed', wasConnecting ? `${this.address} unreachable` : `connection to ${this.address} closed`);
        if (wasConnecting) reject(err);
        this.failAll(err);
        onClosed();
        o.onClose?.();
      });
    });
    // Awaiting `ready` is optional (send() and request() fail on their own when it never comes).
    this.ready.catch(() => {});
  }

  /** Connects and completes the handshake. */
  static async connect(opts: WireClientOptions): Promise<WireClient> {
    const c = new WireClient(opts);
    await c.ready;
    return c;
  }

  get address(): string {
    return `${this.opts.host}:${this.opts.port}`;
  }

  /** Handshake done and not closed. */
  get open(): boolean {
    return this.state === 'open' && !this.closing;
  }

  get closed(): boolean {
    return this.state === 'closed' || this.closing;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends one request; exactly one of resolve / reject is called later (resolve with the
   * response payload, or with the whole frame when `raw`). No promise of its own: the lowest
   * layer, for callers that already hold one. `timeoutMs` of Infinity: no timer.
   */
  send(op: number, payload: unknown, timeoutMs: number, resolve: (v: never) => void, reject: (e: Error) => void, raw = false, flags = 0): void {
    if (this.state !== 'open' || this.closing) {
      reject(this.closeError ?? this.errors.closed(this.state === 'closed' ? 'closed' : 'unreachable', `connection to ${this.address} is not open`));
      return;
    }
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    let bytes: Uint8Array;
    try {
      bytes = encodeFrame({ kind: FrameKind.REQUEST, op, id, flags, payload } as Frame, this.sendOptions);
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const timer =
      timeoutMs === Infinity
        ? null
        : this.setTimer(() => {
            if (this.pending.delete(id) !== undefined) reject(this.errors.timeout(op, timeoutMs));
          }, timeoutMs);
    this.pending.set(id, { resolve, reject, timer, raw });
    this.socket.write(bytes);
  }

  /** One request: resolves with the response payload, rejects on an error response. */
  request(op: number, payload: unknown, timeoutMs = Infinity, flags = 0): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => this.send(op, payload, timeoutMs, resolve, reject, false, flags));
  }

  /** One request: resolves with the whole response frame (flags, topology version, payload), error or not. */
  requestFrame(op: number, payload: unknown, timeoutMs = Infinity, flags = 0): Promise<ResponseFrame> {
    return new Promise<ResponseFrame>((resolve, reject) => this.send(op, payload, timeoutMs, resolve, reject, true, flags));
  }

  private onResponse(f: ResponseFrame): void {
    const p = this.pending.get(f.id);
    if (!p) return;
    this.pending.delete(f.id);
    p.timer?.cancel();
    if (p.raw) (p.resolve as (v: ResponseFrame) => void)(f);
    else if ((f.flags & ResponseFlag.ERROR) !== 0) p.reject(this.errors.response(f.payload as ErrorPayload));
    else (p.resolve as (v: unknown) => void)(f.payload);
  }

  private failAll(err: Error): void {
    const pending = this.pending.values();
    this.pending.clear();
    for (const p of pending) {
      p.timer?.cancel();
      p.reject(err);
    }
  }

  /** Holds writes until uncork() (several requests leave in one write). */
  cork(): void {
    this.socket.cork();
  }

  uncork(): void {
    this.socket.uncork();
  }

  /** Stops reading (nothing is answered meanwhile; timers still run). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  /** Closes the connection now; pending requests reject with `reason` (default: a closed error). */
  close(reason?: Error): void {
    if (this.state === 'closed' || this.closing) return;
    this.closing = true;
    const err = reason ?? this.errors.closed('closed', `connection to ${this.address} closed by the client`);
    this.closeError ??= err;
    this.failAll(err);
    this.socket.destroy();
  }
}
