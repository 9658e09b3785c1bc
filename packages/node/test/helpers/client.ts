/**
 * A small protocol client for the node's own tests: one connection per endpoint, request/response
 * over the real codec, and a retrying cluster wrapper (any node, retry on retryable errors and
 * dropped connections, same seq on retry).
 */
import net from 'node:net';
import tls from 'node:tls';
import { randomUUID } from 'node:crypto';
import {
  ALL_FEATURES,
  FrameDecoder,
  FrameKind,
  MAGIC,
  PROTOCOL_VERSION,
  ResponseFlag,
  encodeFrame,
  isRetryableCode,
  type ErrorPayload,
  type Frame,
  type HandshakeOk,
  type Op,
  type PushFrame,
  type ResponseFrame,
} from '@gridlink/protocol';

export class GridError extends Error {
  constructor(readonly payload: ErrorPayload) {
    super(`${payload.code}: ${payload.message}`);
  }
  get code(): number {
    return this.payload.code;
  }
}

export class ConnectionLost extends Error {}

export class TestConnection {
  handshake!: HandshakeOk;
  readonly pushes: PushFrame[] = [];
  private readonly pending = new Map<number, { resolve: (f: ResponseFrame) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    this.closedPromise = new Promise((r) => socket.once('close', () => r()));
  }

  static async connect(
    endpoint: string,
    sessionId: string = randomUUID(),
    timeoutMs = 3000,
    opts: { ca?: string | Buffer; authToken?: string } = {},
  ): Promise<TestConnection> {
    const [host, port] = endpoint.split(':');
    const socket = opts.ca ? tls.connect({ host: host!, port: Number(port), ca: opts.ca }) : net.connect({ host: host!, port: Number(port) });
    socket.setNoDelay(true);
    const c = new TestConnection(socket);
    const decoder = new FrameDecoder();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new ConnectionLost('handshake timeout'));
      }, timeoutMs);
      socket.once(opts.ca ? 'secureConnect' : 'connect', () => {
        socket.write(MAGIC);
        socket.write(
          encodeFrame({
            kind: FrameKind.HANDSHAKE,
            body: {
              minVersion: PROTOCOL_VERSION,
              maxVersion: PROTOCOL_VERSION,
              features: ALL_FEATURES,
              sessionId,
              ...(opts.authToken !== undefined ? { authToken: opts.authToken } : {}),
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
          if (f.kind === FrameKind.HANDSHAKE_OK) {
            c.handshake = f.body;
            clearTimeout(timer);
            resolve();
          } else if (f.kind === FrameKind.HANDSHAKE_ERROR) {
            clearTimeout(timer);
            reject(new Error(`handshake refused: ${f.body.message}`));
          } else if (f.kind === FrameKind.RESPONSE) {
            const p = c.pending.get(f.id);
            c.pending.delete(f.id);
            p?.resolve(f);
          } else if (f.kind === FrameKind.PUSH) {
            c.pushes.push(f);
          }
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        c.closed = true;
        clearTimeout(timer);
        reject(new ConnectionLost('closed during handshake'));
        for (const p of c.pending.values()) p.reject(new ConnectionLost('connection closed'));
        c.pending.clear();
      });
    });
    return c;
  }

  request(op: Op, payload: unknown, flags = 0, timeoutMs = 5000): Promise<ResponseFrame> {
    if (this.closed) return Promise.reject(new ConnectionLost('connection closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ConnectionLost('request timeout'));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(encodeFrame({ kind: FrameKind.REQUEST, op, id, flags, payload }));
    });
  }

  async call<T = Record<string, unknown>>(op: Op, payload: unknown, timeoutMs = 5000): Promise<T> {
    const f = await this.request(op, payload, 0, timeoutMs);
    if ((f.flags & ResponseFlag.ERROR) !== 0) throw new GridError(f.payload as ErrorPayload);
    return f.payload as T;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Sends each request to some node, retrying retryable failures (same payload, same seq) until a deadline. */
export class TestClusterClient {
  readonly sessionId = randomUUID();
  private conns = new Map<string, TestConnection>();
  private rr = 0;
  private seq = 0;

  constructor(private readonly endpoints: () => string[]) {}

  nextSeq(): number {
    return ++this.seq;
  }

  private async conn(endpoint: string): Promise<TestConnection> {
    const c = this.conns.get(endpoint);
    if (c && !c.closed) return c;
    const n = await TestConnection.connect(endpoint, this.sessionId, 1000);
    this.conns.set(endpoint, n);
    return n;
  }

  /** One attempt on one endpoint chosen round-robin. */
  async once<T>(op: Op, payload: unknown, timeoutMs = 3000, endpoint?: string): Promise<T> {
    const eps = this.endpoints();
    const ep = endpoint ?? eps[this.rr++ % eps.length]!;
    const c = await this.conn(ep);
    return c.call<T>(op, payload, timeoutMs);
  }

  async call<T = Record<string, unknown>>(op: Op, payload: unknown, deadlineMs = 15_000): Promise<T> {
    const deadline = Date.now() + deadlineMs;
    let last: unknown;
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      try {
        return await this.once<T>(op, payload, Math.min(3000, Math.max(100, deadline - Date.now())));
      } catch (err) {
        last = err;
        if (err instanceof GridError && !isRetryableCode(err.code)) throw err;
        await new Promise((r) => setTimeout(r, Math.min(100, 5 * 2 ** Math.min(attempt, 5))));
      }
    }
    throw last instanceof Error ? last : new Error('deadline exceeded');
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}

