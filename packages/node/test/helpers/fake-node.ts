/**
 * A scripted node on 127.0.0.1 for protocol tests: answers the handshake as told (ok, refuse,
 * or never), then hands each request to `onRequest` (by default: never answered).
 */
import net from 'node:net';
import { ErrorCode, FrameDecoder, FrameKind, encodeFrame, handshakeError, type Frame, type RequestFrame } from '@gridlink/protocol';

export const OK_BODY = { version: 1, features: 0, nodeId: 'fake', clusterId: 'c', topologyVersion: 1, partitions: 8, idleTimeoutMs: 60_000 };

/** A scripted node: answers the handshake as told, then hands each request to `onRequest`. */
export class FakeNode {
  readonly server: net.Server;
  readonly sockets = new Set<net.Socket>();
  port = 0;
  handshake: 'ok' | 'refuse' | 'silent' = 'ok';
  onRequest: (f: RequestFrame, socket: net.Socket) => void = () => {};

  constructor() {
    this.server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      const decoder = new FrameDecoder({ expectMagic: true });
      socket.on('data', (chunk: Buffer) => {
        let frames: Frame[];
        try {
          frames = decoder.push(chunk);
        } catch {
          socket.destroy();
          return;
        }
        for (const f of frames) {
          if (f.kind === FrameKind.HANDSHAKE) {
            if (this.handshake === 'ok') socket.write(encodeFrame({ kind: FrameKind.HANDSHAKE_OK, body: OK_BODY }));
            else if (this.handshake === 'refuse') socket.write(encodeFrame(handshakeError(ErrorCode.AUTH_FAILED, 'no')));
          } else if (f.kind === FrameKind.REQUEST) {
            this.onRequest(f, socket);
          }
        }
      });
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  static answer(socket: net.Socket, f: RequestFrame, payload: unknown): void {
    socket.write(encodeFrame({ kind: FrameKind.RESPONSE, id: f.id, flags: 0, topologyVersion: 1, payload }));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
