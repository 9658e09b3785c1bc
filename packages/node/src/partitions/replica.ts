/**
 * The replica state machine of one partition on one node, as a pure transition function in the
 * manner of etcd's raft: the node feeds it events (a topology applied, a snapshot installed, a
 * gap detected, a fence done...) and performs the actions it returns (pull, fence, drop, apply
 * the buffered records...). No sockets, no timers, no store: it can be property-tested directly.
 *
 * The hot paths do not allocate through it: a replicated record is classified by `onRecord`
 * (a constant, the state does not change) and a write is admitted by `mayWrite`.
 */
import type { Role } from '../control/routing.js';

export interface ReplicaState {
  /** What the topology says this node is for the partition. */
  readonly role: Role;
  /** A state transfer (pull from the primary) is queued or running. */
  readonly pulling: boolean;
  /** Replicated records are kept aside until a snapshot lands (pull or multi-part push). */
  readonly buffering: boolean;
  /** This copy missed a record: it answers "gap" until a snapshot is installed. */
  readonly awaitingSnapshot: boolean;
  /** Id of a multi-part snapshot being received, or null. */
  readonly receiving: string | null;
  /** Id of the promotion fence pending (0: none). A primary acknowledges nothing until it is done. */
  readonly fencing: number;
  /** Fences started so far: fence ids are never reused. */
  readonly fences: number;
}

/** The phase a replica is in, for humans (docs, metrics, debugging). */
export type ReplicaPhase = 'none' | 'fencing' | 'primary' | 'awaiting-snapshot' | 'backup' | 'pulling' | 'syncing';

export type ReplicaEvent =
  /**
   * A topology was applied. `promoted`: the node became primary of the partition (it was not
   * before, and there was a previous topology with owners for it). `synced`: the node has already
   * reported this partition as caught up (no pull needed).
   */
  | { readonly type: 'topology-applied'; readonly role: Role; readonly promoted: boolean; readonly synced: boolean }
  /** The pull loop stopped without a snapshot (the node is no longer syncing, or no source). */
  | { readonly type: 'pull-abandoned' }
  /** One part of a multi-part snapshot arrived; `have` = parts of this snapshot already kept. */
  | { readonly type: 'snapshot-part'; readonly id: string; readonly index: number; readonly total: number; readonly have: number }
  /** A whole snapshot was installed in the store (pulled, pushed, or joined from parts). */
  | { readonly type: 'snapshot-installed' }
  /** A record could not be applied: the copy missed one before it. */
  | { readonly type: 'gap-detected' }
  /** The promotion fence `id` finished (its probes and resyncs are done). */
  | { readonly type: 'fence-done'; readonly id: number };

export type ReplicaAction =
  /** The node no longer holds the partition: drop its data and forget its state. */
  | { readonly type: 'drop' }
  /** The partition is not (or no longer) being synced: forget the "synced" mark in the lease. */
  | { readonly type: 'clear-synced' }
  /** Queue a state transfer from the primary. */
  | { readonly type: 'pull' }
  /** Probe the other holders' update counters before acknowledging anything (fence `id`). */
  | { readonly type: 'fence'; readonly id: number }
  /** Answer the sender with this replication status. */
  | { readonly type: 'reply'; readonly s: 'ok' | 'gap' }
  /** A multi-part snapshot starts: forget parts kept so far. */
  | { readonly type: 'reset-parts' }
  /** Keep this part. */
  | { readonly type: 'keep-part' }
  /** All parts are in: join them and install the snapshot (then feed snapshot-installed). */
  | { readonly type: 'install-parts' }
  /** Apply the records buffered meanwhile, in order (feed gap-detected at the first that fails). */
  | { readonly type: 'apply-buffered' }
  /** The pull is complete: mark the partition synced (the coordinator then makes it an owner). */
  | { readonly type: 'pull-complete' };

export interface Transition {
  readonly state: ReplicaState;
  readonly actions: readonly ReplicaAction[];
}

export const INITIAL_REPLICA: ReplicaState = Object.freeze({
  role: 'none',
  pulling: false,
  buffering: false,
  awaitingSnapshot: false,
  receiving: null,
  fencing: 0,
  fences: 0,
});

const NO_ACTIONS: readonly ReplicaAction[] = Object.freeze([]);
const DROP: ReplicaAction = Object.freeze({ type: 'drop' });
const CLEAR_SYNCED: ReplicaAction = Object.freeze({ type: 'clear-synced' });
const PULL: ReplicaAction = Object.freeze({ type: 'pull' });
const REPLY_OK: ReplicaAction = Object.freeze({ type: 'reply', s: 'ok' });
const REPLY_GAP: ReplicaAction = Object.freeze({ type: 'reply', s: 'gap' });
const RESET_PARTS: ReplicaAction = Object.freeze({ type: 'reset-parts' });
const KEEP_PART: ReplicaAction = Object.freeze({ type: 'keep-part' });
const INSTALL_PARTS: ReplicaAction = Object.freeze({ type: 'install-parts' });
const APPLY_BUFFERED: ReplicaAction = Object.freeze({ type: 'apply-buffered' });
const PULL_COMPLETE: ReplicaAction = Object.freeze({ type: 'pull-complete' });

function with_(s: ReplicaState, patch: Partial<ReplicaState>): ReplicaState {
  return { ...s, ...patch };
}

/** The transition function: the next state and what the caller must do, in order. */
export function step(s: ReplicaState, e: ReplicaEvent): Transition {
  switch (e.type) {
    case 'topology-applied':
      return onTopology(s, e.role, e.promoted, e.synced);
    case 'pull-abandoned':
      if (!s.pulling && !s.buffering) return { state: s, actions: NO_ACTIONS };
      return { state: with_(s, { pulling: false, buffering: false }), actions: NO_ACTIONS };
    case 'snapshot-part': {
      let next = s;
      const actions: ReplicaAction[] = [];
      let have = e.have;
      if (e.index === 0) {
        next = with_(next, { receiving: e.id, buffering: true });
        actions.push(RESET_PARTS);
        have = 0;
      }
      if (next.receiving !== e.id) return { state: next, actions: [...actions, REPLY_GAP] };
      actions.push(KEEP_PART);
      if (have + 1 < e.total) {
        actions.push(REPLY_OK);
        return { state: next, actions };
      }
      actions.push(INSTALL_PARTS);
      return { state: with_(next, { receiving: null }), actions };
    }
    case 'snapshot-installed':
      // The buffered records are applied next: a record the snapshot already covers is ignored
      // by the store, one it does not cover applies on top.
      if (s.pulling) {
        return { state: with_(s, { pulling: false, buffering: false, awaitingSnapshot: false }), actions: [APPLY_BUFFERED, PULL_COMPLETE] };
      }
      return { state: with_(s, { buffering: false, awaitingSnapshot: false }), actions: [APPLY_BUFFERED] };
    case 'gap-detected':
      if (s.awaitingSnapshot) return { state: s, actions: NO_ACTIONS };
      return { state: with_(s, { awaitingSnapshot: true }), actions: NO_ACTIONS };
    case 'fence-done':
      if (s.fencing !== e.id) return { state: s, actions: NO_ACTIONS };
      return { state: with_(s, { fencing: 0 }), actions: NO_ACTIONS };
  }
}

function onTopology(s: ReplicaState, role: Role, promoted: boolean, synced: boolean): Transition {
  switch (role) {
    case 'none':
      // Everything is forgotten (the next fence id still grows: ids are never reused).
      return { state: s.fences === 0 ? INITIAL_REPLICA : with_(INITIAL_REPLICA, { fences: s.fences }), actions: [DROP, CLEAR_SYNCED] };
    case 'syncing':
      if (!s.pulling && !synced) return { state: with_(s, { role, pulling: true, buffering: true }), actions: [PULL] };
      return { state: s.role === role ? s : with_(s, { role }), actions: NO_ACTIONS };
    case 'backup':
      return { state: s.role === role ? s : with_(s, { role }), actions: [CLEAR_SYNCED] };
    case 'primary': {
      if (!promoted) return { state: s.role === role ? s : with_(s, { role }), actions: [CLEAR_SYNCED] };
      const id = s.fences + 1;
      return { state: with_(s, { role, fencing: id, fences: id }), actions: [CLEAR_SYNCED, { type: 'fence', id }] };
    }
  }
}

/** What a backup does with a replicated record, given its state (the state does not change). */
export function onRecord(s: ReplicaState): 'apply' | 'buffer' | 'gap' {
  if ((s.pulling || s.receiving !== null) && s.buffering) return 'buffer';
  if (s.awaitingSnapshot) return 'gap';
  return 'apply';
}

/** A primary may acknowledge writes (and reads) only once its promotion fence is done. */
export function mayWrite(s: ReplicaState): boolean {
  return s.role === 'primary' && s.fencing === 0;
}

export function phaseOf(s: ReplicaState): ReplicaPhase {
  switch (s.role) {
    case 'none':
      return 'none';
    case 'primary':
      return s.fencing !== 0 ? 'fencing' : 'primary';
    case 'backup':
      return s.awaitingSnapshot ? 'awaiting-snapshot' : 'backup';
    case 'syncing':
      return s.pulling ? 'pulling' : s.awaitingSnapshot ? 'awaiting-snapshot' : 'syncing';
  }
}
