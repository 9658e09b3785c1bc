import { DEFAULT_MAX_FRAME_SIZE } from '@gridlink/protocol';
import { PeerClient, Scheduler } from '@gridlink/node/internal';

/** A peer link from node `selfId` to the node `peerId` listening on 127.0.0.1:`port` (no auth, no TLS). */
export function peerClientTo(port: number, peerId: string, selfId = 'b', clusterId = 'gridlink'): PeerClient {
  return new PeerClient({
    selfId,
    peerId,
    host: '127.0.0.1',
    port,
    clusterId,
    authToken: undefined,
    tls: undefined,
    maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
    scheduler: new Scheduler(),
    connectTimeoutMs: 2000,
  });
}
