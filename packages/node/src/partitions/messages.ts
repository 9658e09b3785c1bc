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
  /**
   * A batch (ADR 0056): every partition to pull from this primary in one request, `p` first (an
   * older node ignores the list and answers for `p` alone, a `PullReply`). Answered with a
   * `PullBatchReply`.
   */
  ps?: number[];
  /** The puller installs packed snapshots (ADR 0080): answer with them. An older node ignores it. */
  pk?: boolean;
}

export interface PullReply {
  snap: PartitionSnapshot;
  total: number;
  id?: string;
}

/**
 * The answer to a batch pull: whole snapshots of the partitions that fit the frame's budget, each
 * taken under the same checks as a single pull; `later` did not fit (ask again in another batch);
 * `alone` must be pulled one by one (too big for one part, or refused here: not primary, fencing,
 * the puller not a target yet), where the single pull's retries and multi-part transfer apply.
 */
export interface PullBatchReply {
  snaps: PartitionSnapshot[];
  later: number[];
  alone: number[];
}
