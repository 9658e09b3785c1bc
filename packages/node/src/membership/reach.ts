/**
 * Whether this node is cut off from the other members over the grid while it still reaches the
 * control plane (ADR 0063). Such a node renews its lease, so nobody declares it gone, yet it can
 * replicate to no backup and no primary can replicate to it: the writes of every partition it
 * holds stall. So each node asks every other member "are you alive?" (the same request as ADR
 * 0062's) every renewal interval, and stops renewing its own lease — fences itself — while the
 * members it cannot reach, but that have shown they are alive by renewing *after* it lost them,
 * outnumber those it reaches, itself included (a tie: the side holding the lowest id stays). Its
 * lease then runs out as if it had died, and the ordinary rules (ADR 0003, 0007) hand its
 * partitions over; once it reaches them again it renews and, declared gone meanwhile, rejoins
 * under a new epoch. Fencing only ever stops a renewal, so it cannot break safety; the majority
 * rule and "renewed after the cut" keep a dead or hung peer (which renews nothing) and a cut that
 * splits the cluster in halves from fencing both sides.
 */
import type { Logger } from '../logger.js';
import type { Scheduler } from '../scheduler.js';
import type { AliveAnswer } from './liveness.js';
import type { ClusterView } from './view.js';

/** What this node knows of one other member. */
export interface PeerReachState {
  readonly id: string;
  /** When the last answered request was sent (0: none). */
  readonly okAt: number;
  /** When the first request that failed since the last answer was sent (null: none failed). */
  readonly failingSince: number | null;
  /** Requests failed since the last answer. */
  readonly failures: number;
  /** When this node last saw the peer's lease renewed (undefined: never). */
  readonly renewedAt: number | undefined;
}

export interface ReachTiming {
  /** How long a peer must have answered nothing to count as cut off. */
  readonly cutMs: number;
  /** A peer counts as alive only if seen renewing at least this long after it stopped answering. */
  readonly renewedAfterMs: number;
  /**
   * How many requests in a row must have failed: after a pause of this process (a long GC, a
   * frozen VM) the one request in flight times out at once, which says nothing about the network.
   */
  readonly cutRequests: number;
}

/**
 * This node is cut off from the peer: `cutRequests` requests in a row failed over at least
 * `cutMs`, while the peer was seen renewing its lease at least `renewedAfterMs` after the first
 * of them (a dead or hung peer renews nothing, so it is never "cut off").
 */
export function isCut(p: PeerReachState, now: number, t: ReachTiming): boolean {
  return p.failingSince !== null && p.failures >= t.cutRequests && now - p.failingSince >= t.cutMs && p.renewedAt !== undefined && p.renewedAt >= p.failingSince + t.renewedAfterMs;
}

/** The members this node is cut off from (see `isCut`), sorted: what its lease reports (ADR 0065). */
export function cutPeers(peers: readonly PeerReachState[], now: number, t: ReachTiming): string[] {
  return peers.filter((p) => isCut(p, now, t)).map((p) => p.id).sort();
}

/**
 * The members this node is cut off from if it must fence itself, else null. Pure: the property
 * tests split random clusters and check that exactly the minority side fences.
 */
export function fenceFrom(self: string, peers: readonly PeerReachState[], now: number, t: ReachTiming): string[] | null {
  const cut: string[] = [];
  const reached: string[] = [self];
  for (const p of peers) {
    if (isCut(p, now, t)) cut.push(p.id);
    else if (p.failingSince === null && now - p.okAt <= t.cutMs) reached.push(p.id);
  }
  if (cut.length === 0) return null;
  if (cut.length > reached.length) return cut.sort();
  if (cut.length < reached.length) return null;
  const lowest = (ids: string[]): string => ids.reduce((a, b) => (b < a ? b : a));
  return lowest(cut) < lowest(reached) ? cut.sort() : null;
}

export interface PeerReachDeps {
  readonly id: string;
  readonly view: ClusterView;
  readonly scheduler: Scheduler;
  readonly log: Logger;
  readonly timing: ReachTiming & { readonly intervalMs: number; readonly timeoutMs: number };
  askAlive(peer: string, timeoutMs: number): Promise<AliveAnswer>;
  /** When this node last saw `id`'s lease renewed. */
  renewedAt(id: string): number | undefined;
  /**
   * Every answer (null: the request failed), with when its request was sent: the coordinator
   * counts them too (ADR 0062), so that a node taking over as coordinator from a late lower id
   * already holds that node's recent answers at its first tick.
   */
  heard?(peer: string, sentAt: number, answer: AliveAnswer | null): void;
}

export class PeerReach {
  private readonly peers = new Map<string, { okAt: number; failingSince: number | null; failures: number; asking: boolean }>();
  /**
   * Per member, when a request it answered was sent, under each of its last epochs (a node
   * restarted under the same id answers under a new one): `lastAnswered` (ADR 0072).
   */
  private readonly answeredUnder = new Map<string, Map<string, number>>();
  private fencedFrom: string[] | null = null;

  constructor(private readonly d: PeerReachDeps) {}

  start(): void {
    this.d.scheduler.setInterval(() => this.probe(), this.d.timing.intervalMs);
  }

  /** Asks every other member whether it is alive (one request in flight per member). */
  probe(): void {
    const { view, id } = this.d;
    const topo = view.topo;
    if (topo === null) return;
    for (const peer of Object.keys(topo.members)) {
      if (peer === id) continue;
      let s = this.peers.get(peer);
      if (s === undefined) {
        // Counted as answered now: a member first seen is not cut off before it was ever asked.
        s = { okAt: Date.now(), failingSince: null, failures: 0, asking: false };
        this.peers.set(peer, s);
      }
      if (s.asking) continue;
      s.asking = true;
      const st = s;
      const sentAt = Date.now();
      void Promise.resolve()
        .then(() => this.d.askAlive(peer, this.d.timing.timeoutMs))
        .then(
          (answer) => {
            st.asking = false;
            this.d.heard?.(peer, sentAt, answer);
            this.noteEpoch(peer, answer, sentAt);
            if (sentAt >= st.okAt) st.okAt = sentAt;
            if (st.failingSince !== null && sentAt >= st.failingSince) {
              st.failingSince = null;
              st.failures = 0;
            }
          },
          () => {
            st.asking = false;
            this.d.heard?.(peer, sentAt, null);
            if (sentAt < st.okAt) return;
            st.failingSince ??= sentAt;
            st.failures++;
          },
        );
    }
    for (const peer of this.peers.keys()) {
      if (topo.members[peer] !== undefined) continue;
      this.peers.delete(peer);
      this.answeredUnder.delete(peer);
    }
  }

  private noteEpoch(peer: string, answer: AliveAnswer | null, sentAt: number): void {
    if (answer === null || typeof answer.epoch !== 'string') return;
    let m = this.answeredUnder.get(peer);
    if (m === undefined) this.answeredUnder.set(peer, (m = new Map()));
    m.delete(answer.epoch); // re-inserted last: the map keeps epochs in the order last heard
    m.set(answer.epoch, Math.max(sentAt, m.get(answer.epoch) ?? 0));
    for (const e of m.keys()) {
      if (m.size <= 3) break;
      m.delete(e);
    }
  }

  /**
   * When `peer` last answered under `epoch` (the send time of the request it answered; Date.now()
   * ms); undefined when it never did, as far as this node remembers (its last three epochs).
   */
  lastAnswered(peer: string, epoch: string): number | undefined {
    return this.answeredUnder.get(peer)?.get(epoch);
  }

  /** The members state as `fenceFrom` takes it. */
  states(): PeerReachState[] {
    return [...this.peers].map(([id, s]) => ({ id, okAt: s.okAt, failingSince: s.failingSince, failures: s.failures, renewedAt: this.d.renewedAt(id) }));
  }

  /** The members this node cannot reach while they renew (reported in its lease, ADR 0065). */
  unreachable(): string[] {
    return cutPeers(this.states(), Date.now(), this.d.timing);
  }

  /** Whether this node must not renew its lease now (logged when that starts and ends). */
  fenced(): boolean {
    const cut = fenceFrom(this.d.id, this.states(), Date.now(), this.d.timing);
    if (cut !== null && this.fencedFrom === null) {
      this.d.log.warn('cannot reach the other members over the grid while they renew their leases: not renewing this node\'s lease until it can', { unreachable: cut });
    } else if (cut === null && this.fencedFrom !== null) {
      this.d.log.info('reaches the other members again: renewing its lease', { was: this.fencedFrom });
    }
    this.fencedFrom = cut;
    return cut !== null;
  }
}
