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
import { GridNodeError } from '../errors.js';
import type { TlsOptions } from '../config.js';
import type { Scheduler } from '../scheduler.js';

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
  private socket: net.Socket | null = null;
  private ready: Promise<net.Socket> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
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
    return new Promise<unknown>((resolve, reject) => {
      this.queue.push({ op, payload, timeoutMs, batchable, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        process.nextTick(this.flush);
      }
    });
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
    const socket = this.socket;
    if (!socket || this.ready === null || !this.connected) {
      // Not connected yet: send everything queued, in order, once the handshake is done.
      this.connect().then(
        () => this.flush(),
        (err: unknown) => this.failQueued(err instanceof Error ? err : new Error(String(err))),
      );
      return;
    }
    const queued = this.queue;
    this.queue = [];
    socket.cork();
    for (let i = 0; i < queued.length; ) {
      const q = queued[i]!;
      let j = i + 1;
      if (q.batchable) while (j < queued.length && queued[j]!.batchable && queued[j]!.op === q.op) j++;
      if (j - i === 1) this.send(socket, q.op, q.payload, q.timeoutMs, q.resolve, q.reject);
      else this.sendBatch(socket, queued.slice(i, j));
      i = j;
    }
    process.nextTick(() => socket.uncork());
  };

  private failQueued(err: Error): void {
    const queued = this.queue;
    this.queue = [];
    for (const q of queued) q.reject(err);
  }

  private send(socket: net.Socket, op: Op, payload: unknown, timeoutMs: number, resolve: (v: unknown) => void, reject: (e: Error) => void): void {
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const timer = this.opts.scheduler.setTimeout(() => {
      if (this.pending.delete(id)) {
        reject(new GridNodeError(ErrorCode.TIMEOUT, `peer ${this.opts.peerId} did not answer op ${op} within ${timeoutMs} ms`));
      }
    }, timeoutMs);
    this.pending.set(id, { resolve, reject, timer });
    let bytes: Uint8Array;
    try {
      bytes = encodeFrame({ kind: FrameKind.REQUEST, op, id, flags: 0, payload });
    } catch (err) {
      this.pending.delete(id);
      timer.cancel();
      reject(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    socket.write(bytes);
  }

  private sendBatch(socket: net.Socket, items: Queued[]): void {
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
    this.send(socket, items[0]!.op, { batch: items.map((q) => q.payload) } satisfies BatchPayload, timeoutMs, resolve, reject);
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
    this.failQueued(new PeerUnavailableError(`peer ${this.opts.peerId} client closed`));
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
              if (this.socket === socket) this.connected = true;
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
          this.connected = false;
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
