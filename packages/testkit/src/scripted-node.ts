/**
 * A scripted grid node on 127.0.0.1, for the few behaviours a real node cannot be made to show on
 * demand: a handshake refused or never answered, an older node's feature bits, an older partition
 * map, an answer held back or never sent. It speaks the real protocol through the protocol
 * package's codec; every request goes to the test's handler, which answers it (a reply, now or
 * after a delay) or leaves it to be answered later with `answer()`, or never.
 */
import net from 'node:net';
import {
  ErrorCode,
  Feature,
  FrameDecoder,
  FrameKind,
  PushKind,
  encodeFrame,
  handshakeError,
  type Frame,
  type PartitionMap,
  type RequestFrame,
} from '@gridlink/protocol';

export interface ScriptedReply {
  /** Answer this much later (ms). */
  delayMs?: number;
  flags?: number;
  topologyVersion?: number;
  payload: unknown;
}

/**
 * The handler of a scripted node: a reply, or undefined to answer later (`node.answer(socket,
 * req, payload)`) or never.
 */
export type ScriptedHandler = (req: RequestFrame, node: ScriptedNode, socket: net.Socket) => ScriptedReply | undefined;

export class ScriptedNode {
  /** Every request received, in order. */
  readonly requests: RequestFrame[] = [];
  topologyVersion = 1;
  /** Feature bits granted in the handshake: by default those of a node before LOCK_GET_IF_ABSENT. */
  features: number = Feature.TOPOLOGY_PUSH | Feature.LOCKS;
  /** How the handshake is answered: accepted, refused (AUTH_FAILED), or never. */
  handshake: 'ok' | 'refuse' | 'silent' = 'ok';
  idleTimeoutMs = 30_000;
  port = 0;
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private server: net.Server | null = null;

  constructor(
    readonly nodeId = 'scripted',
    readonly partitions = 8,
    /** Replaceable between requests. Default: never answers. */
    public handler: ScriptedHandler = () => undefined,
    readonly clusterId = 'scripted',
  ) {}

  async start(): Promise<this> {
    const server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const decoder = new FrameDecoder({ expectMagic: true });
      socket.on('data', (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch {
          socket.destroy(); // malformed input: a closed connection, as a real node does
          return;
        }
        for (const frame of frames) {
          if (frame.kind === FrameKind.HANDSHAKE) this.onHandshake(socket);
          else if (frame.kind === FrameKind.REQUEST) {
            this.requests.push(frame);
            const r = this.handler(frame, this, socket);
            if (r !== undefined) this.reply(socket, frame, r);
          }
        }
      });
    });
    this.server = server;
    const closedWhileStarting = (): Error => new Error('the scripted node was closed while it started');
    // close() while it binds cancels the bind (no 'listening' ever comes: start() waited for ever)
    // or, on another runtime, lets it finish after close() returned; and a failed bind is an error.
    await new Promise<void>((resolve, reject) => {
      const onClose = (): void => reject(closedWhileStarting());
      server.once('close', onClose);
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('close', onClose);
        server.off('error', reject);
        resolve();
      });
    });
    if (this.server !== server) {
      server.close();
      throw closedWhileStarting();
    }
    this.port = (server.address() as net.AddressInfo).port;
    return this;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  private onHandshake(socket: net.Socket): void {
    if (this.handshake === 'ok') {
      const body = {
        version: 1,
        features: this.features,
        nodeId: this.nodeId,
        clusterId: this.clusterId,
        topologyVersion: this.topologyVersion,
        partitions: this.partitions,
        idleTimeoutMs: this.idleTimeoutMs,
      };
      socket.write(encodeFrame({ kind: FrameKind.HANDSHAKE_OK, body }));
    } else if (this.handshake === 'refuse') {
      socket.write(encodeFrame(handshakeError(ErrorCode.AUTH_FAILED, 'refused by the scripted node')));
    }
  }

  private reply(socket: net.Socket, req: RequestFrame, r: ScriptedReply): void {
    const bytes = encodeFrame({
      kind: FrameKind.RESPONSE,
      id: req.id,
      flags: r.flags ?? 0,
      topologyVersion: r.topologyVersion ?? this.topologyVersion,
      payload: r.payload,
    });
    if (r.delayMs === undefined) {
      socket.write(bytes);
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!socket.destroyed) socket.write(bytes);
    }, r.delayMs);
    this.timers.add(t);
  }

  /** Answers `req` now, on the connection it came from (for a handler that returned undefined). */
  answer(socket: net.Socket, req: RequestFrame, payload: unknown): void {
    this.reply(socket, req, { payload });
  }

  /** A one-node map of `version` naming this node as every partition's primary. */
  map(version: number): PartitionMap {
    return {
      version,
      partitions: this.partitions,
      backups: 0,
      nodes: [{ id: this.nodeId, host: '127.0.0.1', port: this.port, alive: true }],
      primaries: new Array<number>(this.partitions).fill(0),
    };
  }

  /** Pushes TOPOLOGY_CHANGED(version) to every connected client. */
  pushTopologyChanged(version: number): void {
    const bytes = encodeFrame({ kind: FrameKind.PUSH, push: PushKind.TOPOLOGY_CHANGED, topologyVersion: version, payload: { version } });
    for (const s of this.sockets) s.write(bytes);
  }

  /** Requests received with this op code. */
  count(op: number): number {
    return this.requests.filter((r) => r.op === op).length;
  }

  /** Closes every connection and the listener; pending delayed answers are dropped. */
  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = null;
    if (server !== null) await new Promise<void>((r) => server.close(() => r()));
  }
}
