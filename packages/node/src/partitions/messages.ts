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
