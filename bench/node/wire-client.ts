/**
 * A minimal partition-aware protocol client for the node benchmark: one pipelined connection per
 * node, requests sent to the partition's primary per the node's partition map, errors returned
 * (not retried) so the caller decides. Kept apart from @gridlink/client so the numbers measure
 * the node, not the client's machinery.
 */
import { randomUUID } from 'node:crypto';
import { partitionOfBytes } from '@gridlink/affinity';
import { Op, ResponseFlag, WireClient as Conn, type ErrorPayload, type PartitionMap } from '@gridlink/protocol';

export class WireError extends Error {
  constructor(readonly payload: ErrorPayload) {
    super(`${payload.code}: ${payload.message}`);
  }
}

function connect(endpoint: string, sessionId: string): Promise<Conn> {
  const [host, port] = endpoint.split(':');
  return Conn.connect({ host: host!, port: Number(port), sessionId });
}

export class WireClient {
  readonly sessionId = randomUUID();
  private readonly conns = new Map<string, Conn>();
  private map: PartitionMap | null = null;
  private seq = 0;
  private rr = 0;

  constructor(private endpoints: string[]) {}

  async connect(): Promise<void> {
    for (const ep of this.endpoints) {
      try {
        this.conns.set(ep, await connect(ep, this.sessionId));
      } catch {
        // a dead endpoint; skipped
      }
    }
    await this.refreshMap();
  }

  async refreshMap(): Promise<PartitionMap> {
    for (const c of this.conns.values()) {
      if (c.closed) continue;
      const f = await c.requestFrame(Op.TOPOLOGY, {});
      if ((f.flags & ResponseFlag.ERROR) === 0) {
        this.map = f.payload as PartitionMap;
        return this.map;
      }
    }
    throw new Error('no node answered TOPOLOGY');
  }

  get partitionMap(): PartitionMap {
    return this.map!;
  }

  nextSeq(): number {
    return ++this.seq;
  }

  private async connFor(key: Uint8Array | null): Promise<Conn> {
    if (key && this.map) {
      const p = partitionOfBytes(key, this.map.partitions);
      const node = this.map.nodes[this.map.primaries[p] ?? -1];
      if (node) {
        const ep = `${node.host}:${node.port}`;
        let c = this.conns.get(ep);
        if (!c || c.closed) {
          try {
            c = await connect(ep, this.sessionId);
            this.conns.set(ep, c);
          } catch {
            c = undefined;
          }
        }
        if (c && !c.closed) return c;
      }
    }
    let open = [...this.conns.values()].filter((c) => !c.closed);
    if (open.length === 0) {
      const eps = new Set([...this.endpoints, ...(this.map?.nodes.filter((n) => n.alive).map((n) => `${n.host}:${n.port}`) ?? [])]);
      for (const ep of eps) {
        try {
          this.conns.set(ep, await connect(ep, this.sessionId));
        } catch {
          // still down
        }
      }
      open = [...this.conns.values()].filter((c) => !c.closed);
    }
    if (open.length === 0) throw new Error('no open connection');
    return open[this.rr++ % open.length]!;
  }

  /** One attempt, routed to the key's primary; throws WireError on an error response. */
  async call<T>(op: number, payload: unknown, key: Uint8Array | null): Promise<T> {
    const c = await this.connFor(key);
    const f = await c.requestFrame(op, payload);
    if ((f.flags & ResponseFlag.REFRESH_MAP) !== 0) void this.refreshMap().catch(() => {});
    if ((f.flags & ResponseFlag.ERROR) !== 0) throw new WireError(f.payload as ErrorPayload);
    return f.payload as T;
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
  }
}
