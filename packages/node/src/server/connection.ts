import type net from 'node:net';
import {
  ErrorCode,
  FrameDecoder,
  FrameKind,
  Feature,
  ProtocolError,
  PushKind,
  ResponseFlag,
  checkHandshakeRequest,
  LENGTH_PREFIX_SIZE,
  encodeFrame,
  errorResponse,
  handshakeError,
  negotiateFeatures,
  negotiateVersion,
  responseSize,
  writeResponse,
  errorPayload,
  type Frame,
  type OversizedRequest,
  type RequestFrame,
} from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import { peerWireVersion } from '../peers/peer-client.js';
import { NODE_FEATURES, PEER_WIRE, wireRefusal } from '../peers/wire-version.js';
import type { Scheduler, TimerHandle } from '../scheduler.js';

export interface RequestOutcome {
  flags: number;
  payload: unknown;
}

/**
 * What handleRequest returns for a request it will answer later through
 * `ServerConnection.answer` (the write fast path: no promise per request, ADR 0041).
 */
export const DEFERRED: unique symbol = Symbol('gridlink.deferredAnswer');

const NO_BYTES = new Uint8Array(0);
/** Output slab of a busy connection, and the largest answer encoded into one. */
const SLAB_SIZE = 16 * 1024;
const SLAB_ANSWER_MAX = 4 * 1024;

/**
 * Answers a connection may owe (written to the socket but not taken by the peer, or not written
 * yet) before it stops taking requests: twice the largest frame, at least 1 MiB. A client that
 * sends but does not read cannot make the node buffer without bound.
 */
export function outputHighWater(maxFrameSize: number): number {
  return Math.max(1024 * 1024, 2 * maxFrameSize);
}

/** What a connection needs from its node. */
export interface ConnectionHost {
  readonly opts: ResolvedNodeOptions;
  readonly scheduler: Scheduler;
  topologyVersion(): number;
  partitionCount(): number;
  /**
   * Answers one request, synchronously when it can (a local read), or later: through a promise,
   * or (DEFERRED) by calling `conn.answer` exactly once, possibly before returning. Never
   * rejects or throws (errors come back as an ERROR outcome).
   */
  handleRequest(conn: ServerConnection, frame: RequestFrame): RequestOutcome | Promise<RequestOutcome> | typeof DEFERRED;
  connectionClosed(conn: ServerConnection): void;
  connectionOpened(conn: ServerConnection): void;
}

/** What the decoder hands the connection: frames, and requests too large to read (ADR 0009). */
type Incoming = Frame | OversizedRequest;

/**
 * Server side of one TCP connection: MAGIC + handshake, then requests answered concurrently.
 * Malformed frames, oversized frames other than requests, a handshake that does not arrive in
 * time, a frame that trickles in too slowly and an idle connection all close this connection and
 * nothing else. A request over maxFrameSize (announced in HANDSHAKE_OK) is skipped unread and
 * answered with FRAME_TOO_LARGE; the connection carries on.
 */
export class ServerConnection {
  readonly remote: string;
  sessionId = '';
  clientName = '';
  features = 0;
  isPeer = false;
  /** Node-to-node wire version the peer announced (0: not a peer). */
  peerVersion = 0;
  private state: 'handshake' | 'open' | 'closed' = 'handshake';
  private readonly decoder: FrameDecoder;
  private handshakeTimer: TimerHandle | null;
  private idleTimer: TimerHandle | null = null;
  private frameTimer: TimerHandle | null = null;
  inFlight = 0;
  /** See outputHighWater. */
  private readonly outputHighWater: number;
  /** Over the high water mark: reading stopped until the socket drains. */
  private outputBlocked = false;
  /** Requests read but held back while blocked (in order; nothing is read after them). */
  private backlog: Incoming[] | null = null;
  /** Paused by the node (a frozen scheduler), apart from backpressure. */
  private frozen = false;
  /**
   * Options of every response's encoding (one object, not one per frame): the largest frame the
   * peer accepts, the node's own limit or the lower one the client announced in its handshake.
   */
  private encodeOptions: { maxFrameSize: number };

  constructor(
    private readonly host: ConnectionHost,
    readonly socket: net.Socket,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.decoder = new FrameDecoder({ maxFrameSize: host.opts.maxFrameSize, expectMagic: true });
    this.encodeOptions = { maxFrameSize: host.opts.maxFrameSize };
    this.outputHighWater = outputHighWater(host.opts.maxFrameSize);
    socket.setNoDelay(true);
    this.handshakeTimer = host.scheduler.setTimeout(() => {
      if (this.state !== 'handshake') return;
      this.sendRaw(handshakeError(ErrorCode.HANDSHAKE_TIMEOUT, 'handshake not completed in time'));
      this.close();
    }, host.opts.handshakeTimeoutMs);
    this.armIdle();
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => this.close());
    if (host.scheduler.isFrozen) this.pause();
  }

  /** Bytes of answers owed: in the socket's buffer, queued for the next flush, in the slab. */
  get pendingOutput(): number {
    return this.socket.writableLength + this.outgoingBytes + (this.slabUsed - this.slabStart);
  }

  get open(): boolean {
    return this.state === 'open';
  }

  /** Notes activity; one timer checks for idleness (no timer re-armed per chunk). */
  private armIdle(): void {
    this.lastActivity = Date.now();
    this.idleTimer ??= this.host.scheduler.setTimeout(this.checkIdle, this.host.opts.idleTimeoutMs);
  }

  private lastActivity = 0;

  private readonly checkIdle = (): void => {
    this.idleTimer = null;
    if (this.state === 'closed') return;
    const idle = Date.now() - this.lastActivity;
    if (idle >= this.host.opts.idleTimeoutMs) this.close();
    else this.idleTimer = this.host.scheduler.setTimeout(this.checkIdle, this.host.opts.idleTimeoutMs - idle);
  };

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.armIdle();
    let frames: Incoming[];
    try {
      frames = this.decoder.pushRequests(chunk);
    } catch (err) {
      if (err instanceof ProtocolError && this.state === 'handshake') {
        this.sendRaw(handshakeError(err.wireCode, err.message));
      }
      this.close();
      return;
    }
    if (this.decoder.midFrame) {
      this.frameTimer ??= this.host.scheduler.setTimeout(() => this.close(), this.host.opts.frameTimeoutMs);
    } else if (this.frameTimer) {
      this.frameTimer.cancel();
      this.frameTimer = null;
    }
    this.dispatch(frames);
  }

  /**
   * Handles frames in order. Once the answers owed pass the high water mark the rest are held
   * back and reading stops, until the socket drains (backpressure to the peer over TCP).
   */
  private dispatch(frames: Incoming[]): void {
    for (let i = 0; i < frames.length; i++) {
      if ((this.state as string) === 'closed') return;
      const f = frames[i]!;
      if (f.kind === 'oversized-request') {
        if (this.state === 'handshake') {
          this.sendRaw(handshakeError(ErrorCode.FRAME_TOO_LARGE, `frame length ${f.length} exceeds the maximum frame size ${this.host.opts.maxFrameSize}`));
          this.close();
          return;
        }
        this.refuseOversized(f);
        continue;
      }
      if (this.state === 'handshake') {
        this.onHandshake(f);
        continue;
      }
      if (f.kind !== FrameKind.REQUEST) {
        this.close();
        return;
      }
      if (this.pendingOutput > this.outputHighWater) {
        this.holdBack(frames.slice(i));
        return;
      }
      this.onRequest(f);
    }
  }

  private holdBack(rest: Incoming[]): void {
    this.backlog = rest;
    this.outputBlocked = true;
    this.socket.pause();
    this.socket.once('drain', this.onDrain);
    // The owed bytes are usually still queued for this tick's flush, which checks again.
    if (this.outgoingBytes > 0 || this.slabUsed > this.slabStart) this.scheduleFlush();
    else this.unblockUnlessDraining();
  }

  /**
   * The socket emits 'drain' only after a write it could not take at once. When the kernel took
   * everything, nothing is owed at the socket: carry on after this turn's I/O instead.
   */
  private unblockUnlessDraining(): void {
    if (this.socket.writableNeedDrain) return;
    this.socket.off('drain', this.onDrain);
    setImmediate(this.onDrain);
  }

  private readonly onDrain = (): void => {
    if (!this.outputBlocked) return;
    this.outputBlocked = false;
    if (this.state === 'closed' || this.frozen) return; // resume() carries on
    this.carryOn();
  };

  /** After a drain or a thaw: the held-back requests first, then reading again. */
  private carryOn(): void {
    const rest = this.backlog;
    this.backlog = null;
    if (rest) this.dispatch(rest);
    if (!this.outputBlocked && this.state !== 'closed') this.socket.resume();
  }

  private onHandshake(f: Frame): void {
    if (f.kind !== FrameKind.HANDSHAKE) {
      this.sendRaw(handshakeError(ErrorCode.BAD_REQUEST, 'expected a handshake frame'));
      this.close();
      return;
    }
    const body = f.body;
    try {
      checkHandshakeRequest(body);
    } catch (err) {
      this.sendRaw(handshakeError(ErrorCode.BAD_REQUEST, (err as Error).message));
      this.close();
      return;
    }
    const o = this.host.opts;
    const version = negotiateVersion(body);
    if (version === null) {
      this.sendRaw(handshakeError(ErrorCode.VERSION_MISMATCH, 'no protocol version in common'));
      this.close();
      return;
    }
    if (body.clusterId !== undefined && body.clusterId !== o.clusterId) {
      this.sendRaw(handshakeError(ErrorCode.CLUSTER_MISMATCH, `this node belongs to cluster ${o.clusterId}`));
      this.close();
      return;
    }
    if (o.authToken !== undefined && body.authToken !== o.authToken) {
      this.sendRaw(handshakeError(ErrorCode.AUTH_FAILED, 'authentication failed'));
      this.close();
      return;
    }
    const peerVersion = peerWireVersion(body.clientName ?? '');
    const wire = o[PEER_WIRE];
    if (peerVersion !== null && !(peerVersion >= wire.min && peerVersion <= wire.max)) {
      // Another node speaking a node-to-node wire this one does not: refused, never misread. The
      // refusal names this node's range, from which a newer peer picks a version both speak.
      this.sendRaw(handshakeError(ErrorCode.VERSION_MISMATCH, wireRefusal(body.clientName ?? '', wire)));
      this.close();
      return;
    }
    this.handshakeTimer?.cancel();
    this.handshakeTimer = null;
    this.state = 'open';
    this.sessionId = body.sessionId;
    this.clientName = body.clientName ?? '';
    this.isPeer = peerVersion !== null;
    this.peerVersion = peerVersion ?? 0;
    this.features = negotiateFeatures(body.features, o[NODE_FEATURES]);
    if (body.maxFrameSize !== undefined && body.maxFrameSize < o.maxFrameSize) this.encodeOptions = { maxFrameSize: body.maxFrameSize };
    this.sendRaw({
      kind: FrameKind.HANDSHAKE_OK,
      body: {
        version,
        features: this.features,
        nodeId: o.id,
        clusterId: o.clusterId,
        topologyVersion: this.host.topologyVersion(),
        partitions: this.host.partitionCount(),
        idleTimeoutMs: o.idleTimeoutMs,
        maxFrameSize: o.maxFrameSize,
      },
    });
    this.host.connectionOpened(this);
  }

  /**
   * A request over maxFrameSize, whose body the decoder skipped: answered FRAME_TOO_LARGE, as if
   * the node had refused it, and nothing else happens (an older client that sent it without
   * knowing the limit gets a typed, non-retryable error rather than a closed connection).
   */
  private refuseOversized(f: OversizedRequest): void {
    this.inFlight++;
    const message = `request frame of ${f.length} bytes (op ${f.op}) exceeds this node's maximum frame size ${this.host.opts.maxFrameSize}; it was not read`;
    this.answer(f.id, ResponseFlag.ERROR, errorPayload(ErrorCode.FRAME_TOO_LARGE, message));
  }

  private onRequest(f: RequestFrame): void {
    this.inFlight++;
    let out: RequestOutcome | Promise<RequestOutcome> | typeof DEFERRED;
    try {
      out = this.host.handleRequest(this, f);
    } catch (err) {
      this.reply(f.id, err);
      return;
    }
    if (out === DEFERRED) return;
    if (out instanceof Promise) {
      out.then(
        (o) => this.answer(f.id, o.flags, o.payload),
        (err: unknown) => this.reply(f.id, err),
      );
    } else {
      this.answer(f.id, out.flags, out.payload);
    }
  }

  /** Answers request `id` (once; see DEFERRED). */
  answer(id: number, flags: number, payload: unknown): void {
    this.inFlight--;
    if (this.state === 'closed') return;
    const size = responseSize(payload);
    if (size >= 0 && size <= SLAB_ANSWER_MAX && size - LENGTH_PREFIX_SIZE <= this.encodeOptions.maxFrameSize) {
      // The common answer goes straight into the connection's output slab.
      if (this.slabUsed + size > this.slab.length) this.newSlab(size);
      writeResponse(this.slab, this.slabUsed, size, id, flags, this.host.topologyVersion(), payload);
      this.slabUsed += size;
      this.scheduleFlush();
      return;
    }
    try {
      this.send({ kind: FrameKind.RESPONSE, id, flags, topologyVersion: this.host.topologyVersion(), payload }, id);
    } catch {
      // the connection is gone
    }
  }

  /** Answers request `id` with an INTERNAL error (the host threw or rejected). */
  private reply(id: number, err: unknown): void {
    this.inFlight--;
    try {
      this.send(errorResponse(id, this.host.topologyVersion(), ErrorCode.INTERNAL, String((err as Error)?.message ?? err)), id);
    } catch {
      // the connection is gone
    }
  }

  /** Sends a frame; a response that cannot be encoded becomes an error response. */
  send(frame: Frame, id?: number): void {
    if (this.state === 'closed') return;
    let bytes: Uint8Array;
    try {
      bytes = encodeFrame(frame, this.encodeOptions);
    } catch (err) {
      if (id === undefined) return;
      const code = err instanceof ProtocolError ? err.wireCode : ErrorCode.INTERNAL;
      bytes = encodeFrame(errorResponse(id, this.host.topologyVersion(), code, (err as Error).message));
    }
    this.write(bytes);
  }

  /**
   * Frames written in one tick, sent together at its end as a single buffer: one write call and
   * one syscall, without the stream's per-chunk bookkeeping of cork/writev (as the client does).
   */
  private outgoing: Uint8Array[] = [];
  private outgoingBytes = 0;
  private flushScheduled = false;
  /**
   * Output slab the common answers are encoded into (ADR 0041): `slab[slabStart, slabUsed)` is
   * not written yet. A region handed to the socket is never written again; a full slab is
   * replaced by one sized from the last flush, and an idle connection (nothing in flight at a
   * flush) keeps none.
   */
  private slab: Uint8Array = NO_BYTES;
  private slabStart = 0;
  private slabUsed = 0;

  /** Bytes the last flush wrote: how much room the next slab is likely to need. */
  private lastFlushBytes = 0;

  private newSlab(size: number): void {
    this.takeSlab();
    // Requests still in flight: room for their answers; else about twice what the last flush
    // wrote (answers that come in runs, as synchronous reads do), one answer at a time: small.
    const want = this.inFlight > 0 ? SLAB_SIZE : Math.min(SLAB_SIZE, 2 * this.lastFlushBytes);
    this.slab = Buffer.allocUnsafe(Math.max(size, want));
    this.slabStart = 0;
    this.slabUsed = 0;
  }

  /** Moves the slab's unwritten answers to the outgoing list (in order with other frames). */
  private takeSlab(): void {
    if (this.slabUsed === this.slabStart) return;
    this.outgoing.push(this.slab.subarray(this.slabStart, this.slabUsed));
    this.outgoingBytes += this.slabUsed - this.slabStart;
    this.slabStart = this.slabUsed;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    this.takeSlab();
    if (this.inFlight === 0) {
      this.slab = NO_BYTES;
      this.slabStart = 0;
      this.slabUsed = 0;
    }
    const frames = this.outgoing;
    if (frames.length === 0) return;
    this.outgoing = [];
    const total = this.outgoingBytes;
    this.outgoingBytes = 0;
    this.lastFlushBytes = total;
    if (this.socket.destroyed) return;
    this.socket.write(frames.length === 1 ? frames[0]! : Buffer.concat(frames, total));
    if (this.outputBlocked) this.unblockUnlessDraining();
  };

  /** Writes, coalescing everything written in the same tick into one syscall. */
  private write(bytes: Uint8Array): void {
    this.takeSlab();
    this.scheduleFlush();
    this.outgoing.push(bytes);
    this.outgoingBytes += bytes.length;
  }

  private sendRaw(frame: Frame): void {
    if (this.state === 'closed') return;
    try {
      this.flush();
      this.socket.write(encodeFrame(frame));
    } catch {
      // nothing sensible to send
    }
  }

  pushTopology(version: number): void {
    if (this.state !== 'open' || (this.features & Feature.TOPOLOGY_PUSH) === 0) return;
    this.send({ kind: FrameKind.PUSH, push: PushKind.TOPOLOGY_CHANGED, topologyVersion: version, payload: { version } });
  }

  pushStopping(): void {
    if (this.state !== 'open') return;
    this.send({ kind: FrameKind.PUSH, push: PushKind.NODE_STOPPING, topologyVersion: this.host.topologyVersion(), payload: {} });
  }

  pause(): void {
    this.frozen = true;
    this.socket.pause();
  }
  resume(): void {
    this.frozen = false;
    if (!this.outputBlocked) this.carryOn();
  }

  /** Graceful close (ends the socket once written). */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.handshakeTimer?.cancel();
    this.idleTimer?.cancel();
    this.frameTimer?.cancel();
    this.flush(); // answers written in this tick still leave, before the end
    this.backlog = null;
    const socket = this.socket;
    socket.once('finish', () => socket.destroy());
    socket.end();
    // A peer that does not read would keep the socket (and what it buffers) open for good:
    // it gets frameTimeoutMs to take the last answers.
    if (!socket.destroyed) {
      const grace = setTimeout(() => socket.destroy(), this.host.opts.frameTimeoutMs);
      grace.unref();
      socket.once('close', () => clearTimeout(grace));
    }
    this.host.connectionClosed(this);
  }

  /** Abrupt close. */
  destroy(): void {
    this.close();
    this.socket.destroy();
  }
}
