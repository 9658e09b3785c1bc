/** Node-to-node ops arriving on peer connections: forwarded requests, replication, state pulls, fan-out parts. */
import { ErrorCode, Op, errorPayload, validateRequest, type CacheConfig, type RequestFrame } from '@gridlink/protocol';
import { GridNodeError } from '../errors.js';
import type { BackupReceiver } from '../partitions/backup.js';
import type { PullMsg, ReplicateBatchMsg, ReplicateMsg } from '../partitions/messages.js';
import type { StateTransfer } from '../partitions/transfer.js';
import type { PromiseBook, PromiseRequest } from '../membership/promises.js';
import { isBatch } from '../peers/peer-client.js';
import type { NodeStore } from '../store/index.js';
import type { Dispatcher } from './dispatch.js';
import { toGridError } from './errors.js';
import type { FanOut } from './fanout.js';
import type { ForwardMsg, ForwardReply } from './messages.js';

export interface PeerOpsDeps {
  readonly store: NodeStore;
  readonly dispatcher: Dispatcher;
  readonly fanout: FanOut;
  readonly backup: BackupReceiver;
  readonly transfer: StateTransfer;
  readonly promises: PromiseBook;
}

/**
 * PEER_REPLICATE: synchronous unless a record waits for a topology this node does not hold yet.
 * Records sent in one tick to this node arrive as one batch: handled exactly as if they had
 * arrived as frames back to back (each starts now, in order).
 */
export function onPeerReplicate(backup: BackupReceiver, payload: unknown): unknown {
  if (isBatch(payload)) return backup.onReplicateBatch(payload as ReplicateBatchMsg);
  return backup.onReplicate(payload as ReplicateMsg);
}

export async function handlePeerOp(d: PeerOpsDeps, frame: RequestFrame): Promise<unknown> {
  switch (frame.op) {
    case Op.PEER_FORWARD: {
      const m = frame.payload as ForwardMsg;
      try {
        if (m.local && m.op === Op.CACHE_CREATE) {
          const c = m.payload as { cache: string; config: CacheConfig };
          d.store.createCache(c.cache, c.config);
          return { ok: true, result: {} } satisfies ForwardReply;
        }
        validateRequest({ ...frame, op: m.op, payload: m.payload });
        const r = await d.dispatcher.execute(m.op, m.payload, m.session, false);
        return { ok: true, result: r.result } satisfies ForwardReply;
      } catch (err) {
        const e = toGridError(err);
        return { ok: false, error: errorPayload(e.wireCode, e.message, e.partition) } satisfies ForwardReply;
      }
    }
    case Op.PEER_REPLICATE:
      return onPeerReplicate(d.backup, frame.payload);
    case Op.PEER_STATE_PULL:
      return d.transfer.onStatePull(frame.payload as PullMsg);
    case Op.PEER_PROMISE:
      return d.promises.onRequest(frame.payload as PromiseRequest);
    case Op.PEER_SIZE: {
      const m = frame.payload as { cache: string; parts?: unknown };
      return d.fanout.localPrimarySize(m.cache, m.parts);
    }
    case Op.PEER_CLEAR: {
      const m = frame.payload as { cache: string; seq: number; session: string };
      await d.fanout.localClear(m, m.session);
      return {};
    }
    default:
      throw new GridNodeError(ErrorCode.UNKNOWN_OP, `unknown peer op ${frame.op}`);
  }
}
