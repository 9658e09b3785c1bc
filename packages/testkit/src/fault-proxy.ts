/**
 * FaultProxy: a TCP proxy on 127.0.0.1 in front of one target (a grid node), with faults that can
 * be switched at runtime:
 *
 * - `delay(ms)`: every chunk, both directions, is forwarded `ms` later (order kept);
 * - `blackhole(true)`: connections are accepted but nothing is forwarded or answered, existing
 *   connections go silent too (the peer sees a hung node, not a closed one);
 * - `reset()`: destroys every current connection (the peer sees a reset);
 * - `refuse(true)`: new connections are closed as soon as they are accepted;
 * - `halfOpen('toNode' | 'toClient' | null)`: stop forwarding one direction;
 * - `dropEveryNthRequest(n)`: frame-aware on the client-to-node direction: after the 4 MAGIC
 *   bytes the stream is split into length-prefixed frames (u32 big-endian length of what follows,
 *   then a kind byte) and every n-th REQUEST frame (kind 3) is silently discarded;
 * - `blackholeFrom(address, true)`: like `blackhole`, but only for connections whose source
 *   address is `address` (existing and new ones): a network partition between one peer and the
 *   target while everybody else still gets through;
 * - `heal()`: clears every fault.
 *
 * Nothing here knows the payloads; the proxy works at the byte and frame-boundary level.
 */
import net from 'node:net';

const MAGIC_LENGTH = 4;
const REQUEST_KIND = 3;

export type HalfOpenDirection = 'toNode' | 'toClient' | null;

export interface FaultProxyTarget {
  host: string;
  port: number;
}

export interface FaultProxyOptions {
  /** "host:port" or { host, port } of the node to forward to. */
  target: string | FaultProxyTarget;
  /** Port to listen on (default 0 = ephemeral). */
  port?: number;
  /**
   * Parse the client-to-node direction as gridlink frames (needed by `dropEveryNthRequest`).
   * Default true; false forwards bytes untouched, for other protocols (e.g. a NATS connection).
   */
  frames?: boolean;
}

export interface FaultProxyStats {
  accepted: number;
  open: number;
  droppedRequests: number;
  forwardedRequests: number;
  /** Bytes swallowed by blackhole/half-open, per direction. */
  swallowedToNode: number;
  swallowedToClient: number;
}

/** "::ffff:127.0.1.2" → "127.0.1.2"; other addresses unchanged. */
function normalizeAddress(a: string): string {
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
}

function parseTarget(t: string | FaultProxyTarget): FaultProxyTarget {
  if (typeof t !== 'string') return { host: t.host, port: t.port };
  const i = t.lastIndexOf(':');
  if (i <= 0) throw new TypeError(`target must be "host:port", got ${t}`);
  const host = t.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(t.slice(i + 1));
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`bad target port in ${t}`);
  return { host, port };
}

/** Splits the client-to-node stream into frames so single REQUEST frames can be dropped. */
class RequestFilter {
  private magicLeft = MAGIC_LENGTH;
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly decide: () => boolean) {}

  /** Returns the bytes to forward for this chunk (whole frames only, except MAGIC). */
  push(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let data = chunk;
    if (this.magicLeft > 0) {
      const n = Math.min(this.magicLeft, data.length);
      out.push(data.subarray(0, n));
      this.magicLeft -= n;
      data = data.subarray(n);
    }
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    let pos = 0;
    while (this.buf.length - pos >= 5) {
      const len = this.buf.readUInt32BE(pos);
      if (this.buf.length - pos - 4 < len) break;
      const frame = this.buf.subarray(pos, pos + 4 + len);
      const kind = this.buf[pos + 4];
      pos += 4 + len;
      if (kind === REQUEST_KIND && !this.decide()) continue;
      out.push(frame);
    }
    this.buf = this.buf.subarray(pos);
    if (this.buf.length > 0) this.buf = Buffer.from(this.buf); // detach from the chunk
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }
}

/** One direction of one proxied connection, with an ordered delay queue. */
class Pipe {
  private queue: { at: number; chunk: Buffer }[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly proxy: FaultProxy,
    private readonly dir: 'toNode' | 'toClient',
    private readonly dest: () => net.Socket | null,
    /** This connection's source is blackholed. */
    private readonly cut: () => boolean = () => false,
  ) {}

  write(chunk: Buffer): void {
    if (chunk.length === 0) return;
    const delay = this.proxy.currentDelay;
    if (delay <= 0 && this.queue.length === 0) {
      this.forward(chunk);
      return;
    }
    this.queue.push({ at: Date.now() + delay, chunk });
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== null || this.queue.length === 0) return;
    const head = this.queue[0] as { at: number };
    this.timer = setTimeout(() => {
      this.timer = null;
      const now = Date.now();
      while (this.queue.length > 0 && (this.queue[0] as { at: number }).at <= now) {
        this.forward((this.queue.shift() as { chunk: Buffer }).chunk);
      }
      this.schedule();
    }, Math.max(0, head.at - Date.now()));
  }

  private forward(chunk: Buffer): void {
    if (this.proxy.isBlackholed || this.proxy.halfOpenDirection === this.dir || this.cut()) {
      this.proxy.countSwallowed(this.dir, chunk.length);
      return;
    }
    const d = this.dest();
    if (d !== null && !d.destroyed) d.write(chunk);
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.queue = [];
  }
}

interface Link {
  /** Source address of the accepted connection (IPv4-mapped prefix removed). */
  source: string;
  client: net.Socket;
  upstream: net.Socket | null;
  pipes: Pipe[];
}

export class FaultProxy {
  private server: net.Server;
  private target: FaultProxyTarget;
  private readonly links = new Set<Link>();
  private delayMs = 0;
  private blackholed = false;
  private refusing = false;
  private halfOpenDir: HalfOpenDirection = null;
  private readonly cutSources = new Set<string>();
  private dropNth = 0;
  private requestCount = 0;
  private readonly counters = { accepted: 0, droppedRequests: 0, forwardedRequests: 0, swallowedToNode: 0, swallowedToClient: 0 };
  private listenPort = 0;

  private readonly frames: boolean;

  private constructor(options: FaultProxyOptions) {
    this.target = parseTarget(options.target);
    this.frames = options.frames ?? true;
    this.server = net.createServer((socket) => this.onConnection(socket));
  }

  /** Starts a proxy listening on 127.0.0.1. */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const p = new FaultProxy(options);
    await new Promise<void>((resolve, reject) => {
      p.server.once('error', reject);
      p.server.listen(options.port ?? 0, '127.0.0.1', () => {
        p.server.off('error', reject);
        resolve();
      });
    });
    p.listenPort = (p.server.address() as net.AddressInfo).port;
    return p;
  }

  get port(): number {
    return this.listenPort;
  }

  /** "127.0.0.1:port", ready for a client's endpoint list. */
  get endpoint(): string {
    return `127.0.0.1:${this.listenPort}`;
  }

  get currentDelay(): number {
    return this.delayMs;
  }

  get isBlackholed(): boolean {
    return this.blackholed;
  }

  get halfOpenDirection(): HalfOpenDirection {
    return this.halfOpenDir;
  }

  stats(): FaultProxyStats {
    return { ...this.counters, open: this.links.size };
  }

  /** @internal */
  countSwallowed(dir: 'toNode' | 'toClient', bytes: number): void {
    if (dir === 'toNode') this.counters.swallowedToNode += bytes;
    else this.counters.swallowedToClient += bytes;
  }

  /** Points new connections at another target (existing ones keep theirs). */
  setTarget(target: string | FaultProxyTarget): void {
    this.target = parseTarget(target);
  }

  delay(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError('delay must be a non-negative number of ms');
    this.delayMs = ms;
  }

  blackhole(on = true): void {
    this.blackholed = on;
  }

  refuse(on = true): void {
    this.refusing = on;
  }

  /**
   * Blackholes every connection from source address `address` (on) or stops doing so (off):
   * existing ones go silent both ways, new ones are accepted and never connected upstream (they
   * stay silent after healing too, as with `blackhole`; the peer's timeouts close them).
   */
  blackholeFrom(address: string, on = true): void {
    const a = normalizeAddress(address);
    if (net.isIP(a) === 0) throw new TypeError(`blackholeFrom needs an IP address, got ${JSON.stringify(address)}`);
    if (on) this.cutSources.add(a);
    else this.cutSources.delete(a);
  }

  /** Destroys every current connection from source address `address` (a reset, as `reset()`). */
  resetFrom(address: string): void {
    const a = normalizeAddress(address);
    for (const link of [...this.links]) if (link.source === a) this.teardown(link, true);
  }

  /** Source addresses currently blackholed by `blackholeFrom`. */
  get blackholedSources(): string[] {
    return [...this.cutSources];
  }

  halfOpen(direction: HalfOpenDirection): void {
    this.halfOpenDir = direction;
  }

  /** Drop every n-th client-to-node REQUEST frame; 0 disables. */
  dropEveryNthRequest(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n === 1) throw new RangeError('n must be 0 (off) or an integer >= 2');
    this.dropNth = n;
    this.requestCount = 0;
  }

  /** Clears every fault (connections stay as they are). */
  heal(): void {
    this.delayMs = 0;
    this.blackholed = false;
    this.refusing = false;
    this.halfOpenDir = null;
    this.dropNth = 0;
    this.cutSources.clear();
  }

  /** Destroys every current connection, both sides, with a TCP reset where possible. */
  reset(): void {
    for (const link of [...this.links]) this.teardown(link, true);
  }

  private decideForward(): boolean {
    if (this.dropNth === 0) {
      this.counters.forwardedRequests++;
      return true;
    }
    this.requestCount++;
    if (this.requestCount % this.dropNth === 0) {
      this.counters.droppedRequests++;
      return false;
    }
    this.counters.forwardedRequests++;
    return true;
  }

  private onConnection(client: net.Socket): void {
    this.counters.accepted++;
    client.on('error', () => undefined);
    if (this.refusing) {
      client.destroy();
      return;
    }
    const source = normalizeAddress(client.remoteAddress ?? '');
    const link: Link = { source, client, upstream: null, pipes: [] };
    this.links.add(link);
    const cut = (): boolean => this.cutSources.has(source);
    const toNode = new Pipe(this, 'toNode', () => link.upstream, cut);
    const toClient = new Pipe(this, 'toClient', () => link.client, cut);
    link.pipes.push(toNode, toClient);
    const filter = new RequestFilter(() => this.decideForward());
    client.on('data', (chunk: Buffer) => {
      if (this.blackholed || cut()) {
        this.counters.swallowedToNode += chunk.length;
        return;
      }
      toNode.write(this.frames ? filter.push(chunk) : chunk);
    });
    client.on('close', () => this.teardown(link, false));
    if (this.blackholed || cut()) return; // accept and stay silent; never connect upstream
    this.connectUpstream(link, toClient);
  }

  private connectUpstream(link: Link, toClient: Pipe): void {
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    link.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', () => undefined);
    upstream.on('data', (chunk: Buffer) => toClient.write(chunk));
    upstream.on('close', () => {
      // A blackholed link stays open on the client side: the node "hangs" rather than closes.
      if (!this.blackholed && !this.cutSources.has(link.source)) this.teardown(link, false);
    });
  }

  private teardown(link: Link, hard: boolean): void {
    if (!this.links.delete(link)) return;
    for (const p of link.pipes) p.stop();
    for (const s of [link.client, link.upstream]) {
      if (s === null || s.destroyed) continue;
      if (hard && typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
      else s.destroy();
    }
  }

  /** Stops listening and destroys every connection. */
  async close(): Promise<void> {
    for (const link of [...this.links]) this.teardown(link, true);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/**
 * A server on 127.0.0.1 that accepts connections and never answers: an endpoint a client can
 * reach but never complete a handshake with (a "blackholed" node).
 */
export class SilentServer {
  private readonly sockets = new Set<net.Socket>();
  private listenPort = 0;

  private constructor(private readonly server: net.Server) {}

  static async start(): Promise<SilentServer> {
    const server = net.createServer();
    const s = new SilentServer(server);
    server.on('connection', (socket) => {
      s.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => s.sockets.delete(socket));
      socket.resume(); // swallow whatever arrives
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    s.listenPort = (server.address() as net.AddressInfo).port;
    return s;
  }

  get port(): number {
    return this.listenPort;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.listenPort}`;
  }

  /** Connections accepted and still open. */
  get connections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
