/**
 * The server edge: the TCP (or TLS) listener and the connections it accepted, and the optional
 * HTTP listener (health and metrics).
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { ResolvedNodeOptions } from '../config.js';
import type { Logger } from '../logger.js';
import type { Scheduler } from '../scheduler.js';
import { ServerConnection, type ConnectionHost } from './connection.js';
import { handleHttp, type HttpStatusSource } from './http.js';

/** Requests one HTTP connection may have waiting for their answers (pipelined) before it is closed. */
export const HTTP_PIPELINE_MAX = 32;

/**
 * Bounds of the HTTP listener (/health, /metrics), which had none: a client opening connections
 * without end, or sending a request a byte at a time, or nothing at all, held a socket (and its
 * buffers) for ever. Probes and scrapers send a short GET and read the answer at once, so these
 * are far above what they need.
 */
export interface HttpLimits {
  /** Open connections at most; one more is closed as it is accepted (those open are served on). */
  maxConnections: number;
  /** A request's headers must have arrived this long after it began (or the connection opened). */
  headersTimeoutMs: number;
  /** A whole request (headers and body) must have arrived this long after it began. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed this long after its last answer. */
  keepAliveTimeoutMs: number;
  /** A connection on which no byte moves either way (an answer its client does not read) is closed after this. */
  idleTimeoutMs: number;
  /** How often the header and request timeouts are checked: they fire up to this much late. */
  checkIntervalMs: number;
}

export const HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  maxConnections: 64,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 30_000,
  checkIntervalMs: 1_000,
});

export class ServerEdge {
  private server: net.Server | null = null;
  private httpServer: http.Server | null = null;
  private readonly conns = new Set<ServerConnection>();
  /** Accepted sockets not closed yet (a connection closing gracefully keeps its socket a while). */
  private openSockets = 0;
  port = 0;
  httpPort: number | undefined;

  constructor(
    private readonly opts: ResolvedNodeOptions,
    private readonly scheduler: Scheduler,
    private readonly log: Logger,
    /** Whether a new connection is accepted at all (the node is running). */
    private readonly accepting: () => boolean,
    /** Called when the number of client connections changed. */
    private readonly onClientCount: (n: number) => void,
  ) {}

  listen(host: ConnectionHost): Promise<void> {
    const onConn = (socket: net.Socket): void => {
      if (!this.accepting() || this.conns.size >= this.opts.maxConnections) {
        socket.destroy();
        return;
      }
      this.openSockets++;
      socket.once('close', () => this.openSockets--);
      const conn = new ServerConnection(host, socket);
      this.conns.add(conn);
      this.onClientCount(this.clientConnections());
    };
    const t = this.opts.tls;
    const server = t ? tls.createServer({ key: t.key, cert: t.cert }, onConn) : net.createServer(onConn);
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.log.error('server error', { err: String(err) }));
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  /** Starts the HTTP listener; `limits` are HTTP_LIMITS but in tests. */
  listenHttp(source: HttpStatusSource, limits: Readonly<HttpLimits> = HTTP_LIMITS): Promise<void> {
    // Requests of each connection not answered yet. The answers are written later (a scrape is
    // asynchronous), so Node's own check, which stops reading a connection that owes answers,
    // never saw them owed: a client pipelining requests without reading the answers made the
    // node buffer every answer (~100 MB for one connection). Past HTTP_PIPELINE_MAX the
    // connection is closed.
    const pending = new WeakMap<object, number>();
    const server = http.createServer({ headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: limits.checkIntervalMs }, (req, res) => {
      const socket = req.socket;
      const n = (pending.get(socket) ?? 0) + 1;
      if (n > HTTP_PIPELINE_MAX) {
        socket.destroy();
        return;
      }
      pending.set(socket, n);
      res.once('close', () => pending.set(socket, (pending.get(socket) ?? 1) - 1));
      this.scheduler.run(() => void handleHttp(source, req, res));
    });
    server.maxConnections = limits.maxConnections;
    server.keepAliveTimeout = limits.keepAliveTimeoutMs;
    // With no 'timeout' listener, a connection idle this long is destroyed.
    server.setTimeout(limits.idleTimeoutMs);
    this.httpServer = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.httpPort, this.opts.httpHost, () => {
        server.off('error', reject);
        this.httpPort = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  /** A connection closed (called by the node's ConnectionHost). */
  remove(conn: ServerConnection): void {
    this.conns.delete(conn);
  }

  clientConnections(): number {
    let n = 0;
    for (const c of this.conns) if (!c.isPeer) n++;
    return n;
  }

  /** Open connections from other nodes (their peer links to this one). */
  peerConnections(): number {
    let n = 0;
    for (const c of this.conns) if (c.isPeer) n++;
    return n;
  }

  /** Sockets accepted and not yet closed, closing ones included. */
  sockets(): number {
    return this.openSockets;
  }

  /** Bytes of answers the open connections owe their peers. */
  outputBytes(): number {
    let n = 0;
    for (const c of this.conns) n += c.pendingOutput;
    return n;
  }

  anyInFlight(): boolean {
    for (const c of this.conns) if (c.inFlight > 0) return true;
    return false;
  }

  pushStopping(): void {
    for (const c of this.conns) c.pushStopping();
  }

  pushTopology(version: number): void {
    for (const c of this.conns) if (!c.isPeer) c.pushTopology(version);
  }

  pause(): void {
    for (const c of this.conns) c.pause();
  }

  resume(): void {
    for (const c of this.conns) c.resume();
  }

  /** Closes every connection (abruptly or not) and both listeners. */
  close(abrupt: boolean): void {
    for (const c of [...this.conns]) {
      if (abrupt) c.destroy();
      else c.close();
    }
    this.server?.close();
    this.httpServer?.closeAllConnections();
    this.httpServer?.close();
  }
}
