/**
 * A scripted grid node for the few behaviours the real node cannot be made to show on demand
 * (answering with an older partition map). It speaks the real protocol through the protocol
 * package's codec; every request goes to the test's handler.
 */
import net from 'node:net';
import { FrameDecoder, FrameKind, PushKind, encodeFrame, type PartitionMap, type RequestFrame } from '@gridlink/protocol';

export interface ScriptedReply {
  /** Answer this much later (ms). */
  delayMs?: number;
  flags?: number;
  topologyVersion?: number;
  payload: unknown;
}

export class ScriptedNode {
  readonly requests: RequestFrame[] = [];
  topologyVersion = 1;
  /** Feature bits granted in the handshake: by default those of a node before LOCK_GET_IF_ABSENT. */
  features = 3;
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private server!: net.Server;
  port = 0;

  constructor(
    readonly nodeId: string,
    readonly partitions: number,
    private readonly handler: (req: RequestFrame, node: ScriptedNode) => ScriptedReply,
    readonly clusterId = 'scripted',
  ) {}

  async start(): Promise<this> {
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      const decoder = new FrameDecoder({ expectMagic: true });
      socket.on('data', (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.kind === FrameKind.HANDSHAKE) {
            socket.write(
              encodeFrame({
                kind: FrameKind.HANDSHAKE_OK,
                body: {
                  version: 1,
                  features: this.features,
                  nodeId: this.nodeId,
                  clusterId: this.clusterId,
                  topologyVersion: this.topologyVersion,
                  partitions: this.partitions,
                  idleTimeoutMs: 30_000,
                },
              }),
            );
          } else if (frame.kind === FrameKind.REQUEST) {
            this.requests.push(frame);
            const r = this.handler(frame, this);
            const bytes = encodeFrame({
              kind: FrameKind.RESPONSE,
              id: frame.id,
              flags: r.flags ?? 0,
              topologyVersion: r.topologyVersion ?? this.topologyVersion,
              payload: r.payload,
            });
            if (r.delayMs !== undefined) {
              const t = setTimeout(() => {
                this.timers.delete(t);
                if (!socket.destroyed) socket.write(bytes);
              }, r.delayMs);
              this.timers.add(t);
            } else {
              socket.write(bytes);
            }
          }
        }
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
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

  count(op: number): number {
    return this.requests.filter((r) => r.op === op).length;
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
