/**
 * This node's links to the other nodes: one PeerClient per node, for the address the topology
 * gives it (a node that moved gets a new client, the old one is closed).
 */
import type { ResolvedNodeOptions } from '../config.js';
import type { Scheduler } from '../scheduler.js';
import type { ClusterView } from '../membership/view.js';
import { peerLocalAddress } from './local-address.js';
import { PeerClient, PeerUnavailableError } from './peer-client.js';
import { PEER_WIRE } from './wire-version.js';

export class PeerLinks {
  /** Peer clients by node id, valid for the address they were made for. */
  private readonly byId = new Map<string, { host: string; port: number; client: PeerClient }>();
  private readonly clients = new Map<string, PeerClient>();

  constructor(
    private readonly id: string,
    private readonly opts: ResolvedNodeOptions,
    private readonly scheduler: Scheduler,
    private readonly view: ClusterView,
  ) {}

  peer(id: string): PeerClient {
    const t = this.view.topo;
    const m = t?.members[id] ?? t?.addresses[id];
    if (!m) throw new PeerUnavailableError(`unknown node ${id}`);
    const known = this.byId.get(id);
    if (known !== undefined && known.host === m.host && known.port === m.port) return known.client;
    const c = this.peerFor(id, m);
    this.byId.set(id, { host: m.host, port: m.port, client: c });
    return c;
  }

  private peerFor(id: string, m: { host: string; port: number }): PeerClient {
    const key = `${id}@${m.host}:${m.port}`;
    let c = this.clients.get(key);
    if (!c) {
      for (const [k, old] of this.clients) {
        if (k.startsWith(`${id}@`)) {
          old.destroy();
          this.clients.delete(k);
        }
      }
      c = new PeerClient({
        selfId: this.id,
        peerId: id,
        host: m.host,
        port: m.port,
        localAddress: peerLocalAddress(this.opts.host, m.host),
        clusterId: this.opts.clusterId,
        authToken: this.opts.authToken,
        tls: this.opts.tls,
        maxFrameSize: this.opts.maxFrameSize,
        scheduler: this.scheduler,
        connectTimeoutMs: this.opts.replicationTimeoutMs,
        wireRange: this.opts[PEER_WIRE],
        logger: this.opts.logger,
      });
      if (this.scheduler.isFrozen) c.pause();
      this.clients.set(key, c);
    }
    return c;
  }

  /** Peer clients held (one per node and address). */
  get size(): number {
    return this.clients.size;
  }

  pause(): void {
    for (const p of this.clients.values()) p.pause();
  }

  resume(): void {
    for (const p of this.clients.values()) p.resume();
  }

  destroyAll(): void {
    for (const p of this.clients.values()) p.destroy();
    this.clients.clear();
    this.byId.clear();
  }
}
