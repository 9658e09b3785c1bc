import net from 'node:net';
import tls from 'node:tls';
import {
  ALL_FEATURES,
  ErrorCode,
  FrameDecoder,
  FrameKind,
  MAGIC,
  PROTOCOL_VERSION,
  ResponseFlag,
  encodeFrame,
  type ErrorPayload,
  type Frame,
  type Op,
} from '@gridlink/protocol';
import { GridNodeError } from './errors.js';
import type { TlsOptions } from './config.js';
import type { Scheduler } from './scheduler.js';

/** Client name peers announce in their handshake. */
export const PEER_CLIENT_NAME = 'gridlink-peer';

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
  clusterId: string;
  authToken: string | undefined;
  tls: TlsOptions | undefined;
  maxFrameSize: number;
  scheduler: Scheduler;
  connectTimeoutMs: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: { cancel(): void };
}

/** One connection from this node to another, used for forwarding, replication and state transfer. */
export class PeerClient {
  private socket: net.Socket | null = null;
  private ready: Promise<net.Socket> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private paused = false;
  private corked = false;

  constructor(readonly opts: PeerClientOptions) {}

  get address(): string {
    return `${this.opts.host}:${this.opts.port}`;
  }

  request(op: Op, payload: unknown, timeoutMs: number): Promise<unknown> {
    if (this.closed) return Promise.reject(new PeerUnavailableError(`peer ${this.opts.peerId} client closed`));
    return this.connect().then(
      (socket) =>
        new Promise<unknown>((resolve, reject) => {
          const id = this.nextId;
          this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
          const timer = this.opts.scheduler.setTimeout(() => {
            if (this.pending.delete(id)) {
              reject(new GridNodeError(ErrorCode.TIMEOUT, `peer ${this.opts.peerId} did not answer op ${op} within ${timeoutMs} ms`));
            }
          }, timeoutMs);
          this.pending.set(id, { resolve, reject, timer });
          if (!this.corked) {
            this.corked = true;
            socket.cork();
            process.nextTick(() => {
              this.corked = false;
              socket.uncork();
            });
          }
          socket.write(encodeFrame({ kind: FrameKind.REQUEST, op, id, flags: 0, payload }));
        }),
    );
  }

  pause(): void {
    this.paused = true;
    this.socket?.pause();
  }

  resume(): void {
    this.paused = false;
    this.socket?.resume();
  }

  /** Abrupt close: pending requests fail. */
  destroy(): void {
    this.closed = true;
    this.socket?.destroy();
    this.failAll(new PeerUnavailableError(`peer ${this.opts.peerId} client closed`));
  }

  private failAll(err: Error): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.timer.cancel();
      p.reject(err);
    }
  }

  private connect(): Promise<net.Socket> {
    if (this.ready) return this.ready;
    const attempt = new Promise<net.Socket>((resolve, reject) => {
      const o = this.opts;
      const socket: net.Socket = o.tls
        ? tls.connect({
            host: o.host,
            port: o.port,
            ca: o.tls.ca,
            rejectUnauthorized: o.tls.rejectUnauthorized ?? true,
            servername: net.isIP(o.host) ? undefined : o.host,
          })
        : net.connect({ host: o.host, port: o.port });
      socket.setNoDelay(true);
      this.socket = socket;
      if (this.paused) socket.pause();
      const decoder = new FrameDecoder({ maxFrameSize: o.maxFrameSize });
      let handshaken = false;
      const timer = o.scheduler.setTimeout(() => {
        if (!handshaken) {
          socket.destroy();
          reject(new PeerUnavailableError(`peer ${o.peerId} handshake timed out`));
        }
      }, o.connectTimeoutMs);
      const onReady = (): void => {
        socket.write(MAGIC);
        socket.write(
          encodeFrame({
            kind: FrameKind.HANDSHAKE,
            body: {
              minVersion: PROTOCOL_VERSION,
              maxVersion: PROTOCOL_VERSION,
              features: ALL_FEATURES,
              sessionId: `peer:${o.selfId}`,
              clientName: PEER_CLIENT_NAME,
              clusterId: o.clusterId,
              ...(o.authToken !== undefined ? { authToken: o.authToken } : {}),
            },
          }),
        );
      };
      socket.once(o.tls ? 'secureConnect' : 'connect', onReady);
      socket.on('data', (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch {
          socket.destroy();
          return;
        }
        for (const f of frames) {
          if (!handshaken) {
            if (f.kind === FrameKind.HANDSHAKE_OK) {
              handshaken = true;
              timer.cancel();
              resolve(socket);
            } else {
              timer.cancel();
              socket.destroy();
              reject(new PeerUnavailableError(`peer ${o.peerId} refused the handshake`));
            }
            continue;
          }
          if (f.kind !== FrameKind.RESPONSE) continue;
          const p = this.pending.get(f.id);
          if (!p) continue;
          this.pending.delete(f.id);
          p.timer.cancel();
          if ((f.flags & ResponseFlag.ERROR) !== 0) {
            const e = f.payload as ErrorPayload;
            p.reject(new GridNodeError(e.code as ErrorCode, e.message, e.partition));
          } else {
            p.resolve(f.payload);
          }
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        timer.cancel();
        if (this.socket === socket) {
          this.socket = null;
          this.ready = null;
        }
        if (!handshaken) reject(new PeerUnavailableError(`peer ${o.peerId} unreachable at ${this.address}`));
        this.failAll(new PeerUnavailableError(`connection to peer ${o.peerId} closed`));
      });
    });
    this.ready = attempt;
    attempt.catch(() => {
      if (this.ready === attempt) this.ready = null;
    });
    return attempt;
  }
}
