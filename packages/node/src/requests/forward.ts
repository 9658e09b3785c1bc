/**
 * Forwarding a misrouted request to the partition's primary, in one hop. A forward whose
 * partition changes primary meanwhile is abandoned at once (marked so the dispatcher routes it
 * again on the new topology).
 */
import { ErrorCode, Op } from '@gridlink/protocol';
import type { TopologyRecord } from '../control/topology.js';
import { GridNodeError } from '../errors.js';
import type { PeerLinks } from '../peers/links.js';
import type { ForwardMsg, ForwardReply } from './messages.js';

/** Forwards abandoned because the partition's primary changed meanwhile (they are routed again). */
const PRIMARY_CHANGED = new WeakSet<Error>();

export function primaryChanged(err: unknown): boolean {
  return err instanceof Error && PRIMARY_CHANGED.has(err);
}

export class Forwarder {
  private readonly pending = new Set<{ p: number; primary: string; reject: (e: Error) => void }>();

  constructor(
    private readonly peers: PeerLinks,
    private readonly forwardTimeoutMs: number,
  ) {}

  /** Forwards waiting for the primary's answer. */
  get inFlight(): number {
    return this.pending.size;
  }

  async forward(primary: string, p: number, op: Op, payload: unknown, session: string): Promise<unknown> {
    // A forwarded LOCK_ACQUIRE waits at the primary up to its waitMs: the forward waits that much
    // longer. Each may be up to 2^31 - 1 ms (MAX_TIMING_MS, MAX_LOCK_DURATION_MS), their sum
    // beyond what a Node timer waits: the node's Scheduler, which times peer requests, waits such
    // a delay in steps (a plain timer fired it after 1 ms: the acquire timed out at once).
    const timeout = this.forwardTimeoutMs + (op === Op.LOCK_ACQUIRE ? (payload as { waitMs: number }).waitMs : 0);
    const msg: ForwardMsg = { op, payload, session };
    const reply = await new Promise<ForwardReply>((resolve, reject) => {
      const f = { p, primary, reject };
      this.pending.add(f);
      let req: Promise<unknown>;
      try {
        req = this.peers.peer(primary).request(Op.PEER_FORWARD, msg, timeout);
      } catch (err) {
        this.pending.delete(f);
        reject(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      req.then(
        (r) => {
          this.pending.delete(f);
          resolve(r as ForwardReply);
        },
        (e: unknown) => {
          this.pending.delete(f);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
    if (reply.ok) return reply.result;
    throw new GridNodeError(reply.error.code as ErrorCode, reply.error.message, reply.error.partition);
  }

  /** A new topology: forwards whose partition changed primary fail with a marked NOT_PRIMARY. */
  onTopology(rec: TopologyRecord): void {
    for (const f of [...this.pending]) {
      if ((rec.owners[f.p] ?? [])[0] !== f.primary) {
        this.pending.delete(f);
        const err = new GridNodeError(ErrorCode.NOT_PRIMARY, 'the partition changed primary while forwarding', f.p);
        PRIMARY_CHANGED.add(err);
        f.reject(err);
      }
    }
  }

  /** The node stopped: every forward fails. */
  rejectAll(): void {
    for (const f of this.pending) f.reject(new GridNodeError(ErrorCode.NODE_STOPPING, 'node stopped'));
    this.pending.clear();
  }
}
