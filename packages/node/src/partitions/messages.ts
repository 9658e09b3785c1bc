/** Payloads of the node-to-node ops of replication and state transfer. */
import type { PartitionSnapshot, ReplicationRecord } from '../store/index.js';

export interface ReplicateMsg {
  p: number;
  v: number;
  from: string;
  epoch: string;
  rec?: ReplicationRecord;
  snap?: PartitionSnapshot;
  /** One part of a snapshot too large for one frame: parts are sent in order. */
  part?: { id: string; index: number; total: number; snap: PartitionSnapshot };
  probe?: boolean;
}

export type ReplicateReply = { s: 'ok'; counter?: number } | { s: 'gap' } | { s: 'stale' } | { s: 'gone' };

/**
 * Several PEER_REPLICATE messages in one frame, handled as if they had arrived back to back. The
 * reply is `{ batch: ReplicateReply[] }` in the same order, or, when `compactAck` is set and every
 * message was answered OK without a counter, the compact `{ ok: n }` (ADR 0035). A node that does
 * not know `compactAck` ignores it and answers with the list, which the sender also accepts.
 */
export interface ReplicateBatchMsg {
  batch: (ReplicateMsg | Uint8Array)[];
  compactAck?: boolean;
}

export type ReplicateBatchReply = { batch: ReplicateReply[] } | { ok: number };

export interface PullMsg {
  p: number;
  v: number;
  from: string;
  /** Continuation of a multi-part transfer: which part of which snapshot. */
  id?: string;
  index?: number;
}

export interface PullReply {
  snap: PartitionSnapshot;
  total: number;
  id?: string;
}
