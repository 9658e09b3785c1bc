/**
 * A small protocol client for the node's own tests: one connection per endpoint, request/response
 * over the real codec, and a retrying cluster wrapper (any node, retry on retryable errors and
 * dropped connections, same seq on retry).
 */
import { randomUUID } from 'node:crypto';
import { WireClient, isRetryableCode, type ErrorPayload, type HandshakeOk, type Op, type PushFrame, type ResponseFrame } from '@gridlink/protocol';
import { untilValue } from './until.js';

export class GridError extends Error {
  constructor(readonly payload: ErrorPayload) {
    super(`${payload.code}: ${payload.message}`);
  }
  get code(): number {
    return this.payload.code;
  }
}

export class ConnectionLost extends Error {}

/**
 * Repeats `call` (every 10 ms) until the node answers it: a GridError (NOT_READY, NOT_PRIMARY
 * while a fence or a lease check is under way) means not yet; any other error is thrown. After
 * `timeoutMs` throws naming `what`.
 */
export async function untilAnswered<T>(call: () => Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  const answer = await untilValue(
    async () => {
      try {
        return { value: await call() };
      } catch (err) {
        if (err instanceof GridError) return null;
        throw err;
      }
    },
    what,
    timeoutMs,
  );
  return answer.value;
}

/** One connection to one node, on the protocol's WireClient. */
export class TestConnection {
  private constructor(
    private readonly wire: WireClient,
    readonly pushes: PushFrame[],
  ) {}

  get handshake(): HandshakeOk {
    return this.wire.handshake!;
  }

  get closed(): boolean {
    return this.wire.closed;
  }

  get closedPromise(): Promise<void> {
    return this.wire.closedPromise;
  }

  static async connect(
    endpoint: string,
    sessionId: string = randomUUID(),
    timeoutMs = 3000,
    opts: { ca?: string | Buffer; authToken?: string } = {},
  ): Promise<TestConnection> {
    const [host, port] = endpoint.split(':');
    const pushes: PushFrame[] = [];
    const wire = new WireClient({
      host: host!,
      port: Number(port),
      ...(opts.ca ? { tls: { ca: opts.ca } } : {}),
      sessionId,
      ...(opts.authToken !== undefined ? { authToken: opts.authToken } : {}),
      handshakeTimeoutMs: timeoutMs,
      onPush: (f) => pushes.push(f),
      errors: {
        closed: (reason, detail) => (reason === 'refused' ? new Error(`handshake refused: ${detail}`) : new ConnectionLost(detail)),
        timeout: () => new ConnectionLost('request timeout'),
        response: (payload) => new GridError(payload),
      },
    });
    await wire.ready;
    return new TestConnection(wire, pushes);
  }

  request(op: Op, payload: unknown, flags = 0, timeoutMs = 5000): Promise<ResponseFrame> {
    return this.wire.requestFrame(op, payload, timeoutMs, flags);
  }

  call<T = Record<string, unknown>>(op: Op, payload: unknown, timeoutMs = 5000): Promise<T> {
    return this.wire.request(op, payload, timeoutMs) as Promise<T>;
  }

  close(): void {
    this.wire.close(new ConnectionLost('connection closed'));
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

