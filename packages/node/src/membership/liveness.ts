/**
 * When the coordinator may count time against a lease (ADR 0007 rule 5). The coordinator sees
 * other nodes' renewals only through the control plane: while its own renewals do not come back
 * to it (its writes fail, or its watch lags behind), it cannot tell a dead node from a renewal it
 * did not see, so it judges nobody. Once its own renewal is seen again, every lease gets a full
 * `leaseMs` counted from that moment: time in which the control plane was unavailable counts
 * against nobody. Pure (the clock is passed in), so the property tests drive it directly.
 */
export class LivenessClock {
  /** When this node's own renewal was last seen through the watch. */
  private ownSeenAt: number;
  /** Own renewals have not been seen for a while: observations are unreliable. */
  private blindNow = false;
  /** Leases are judged from no earlier than this (the end of the last blind spell). */
  private countFrom = 0;

  constructor(
    private readonly leaseMs: number,
    /** How long own renewals may go unseen before the coordinator stops judging. */
    private readonly blindAfterMs: number,
    now: number,
    /**
     * A gap between two own renewals seen longer than this (a renewal missed or seen late) also
     * restarts every lease's count: the others may have missed renewals in the same trouble.
     */
    private readonly gapMs: number = blindAfterMs,
  ) {
    this.ownSeenAt = now;
  }

  /** Restarts the clock (the loop starts; the first tick judges nobody stalled). */
  reset(now: number): void {
    this.ownSeenAt = now;
    this.blindNow = false;
  }

  /** This node's own lease renewal was seen through the watch at `now`. */
  ownRenewalSeen(now: number): void {
    if (this.blindNow || now - this.ownSeenAt > this.gapMs) {
      this.blindNow = false;
      this.countFrom = now;
    }
    this.ownSeenAt = Math.max(this.ownSeenAt, now);
  }

  /** At a tick: may leases be judged now? (Not while own renewals are unseen.) */
  canJudge(now: number): boolean {
    if (now - this.ownSeenAt > this.blindAfterMs) this.blindNow = true;
    return !this.blindNow;
  }

  /** A lease last seen renewed at `seenAt` is still alive at `now`. */
  alive(seenAt: number, now: number): boolean {
    return this.age(seenAt, now) <= this.leaseMs;
  }

  /** How long a lease last seen renewed at `seenAt` counts as unrenewed at `now`. */
  age(seenAt: number, now: number): number {
    return now - Math.max(seenAt, this.countFrom);
  }

  get blind(): boolean {
    return this.blindNow;
  }

  /** When every lease's count last restarted (the end of the last blind spell or gap; 0: never). */
  get restartedAt(): number {
    return this.countFrom;
  }
}

/** A node's answer to the coordinator's "are you alive?" over the grid (ADR 0062). */
export interface AliveAnswer {
  /** The epoch the node runs under. */
  readonly epoch: string;
  /** The topology version it holds (absent from nodes of releases before ADR 0062: no answer then). */
  readonly version?: number;
}

/**
 * Nodes whose lease renewals are late but who still answer over the grid (ADR 0062). A node
 * whose control-plane connection broke (its nats-server was killed or hung, it is reconnecting to
 * another) cannot renew for a moment, yet serves its partitions on its backups' promises (ADR
 * 0007); declaring it gone then pauses those partitions and sends it back empty under a new epoch.
 * Every node asks every member "are you alive?" each renewal interval (`PeerReach`, ADR 0063) and
 * hands the answers here; a fresh answer from the same epoch holding the current topology keeps a
 * node whose lease ran out a member for up to `graceMs` past its lease. A dead or hung node
 * answers nothing and is judged exactly as before; a node cut off from the control plane for good
 * is dropped when the grace ends, or at once when the topology moves on without it (it cannot
 * learn the new version). Declaring a node gone later never weakens safety (ADR 0007: who serves
 * rests on leases and promises, not on this judgement). Pure (the clock is passed in), so the
 * tests drive it directly.
 */
export class LateNodes {
  /** The newest answer per node, with when the request it answered was sent. */
  private readonly heard = new Map<string, { epoch: string; version: number; sentAt: number }>();

  constructor(
    private readonly leaseMs: number,
    /** An answer counts while the request it answered was sent no longer ago than this. */
    private readonly freshMs: number,
    /** How long past its lease an answering node is kept. */
    readonly graceMs: number,
  ) {}

  /** The request sent at `sentAt` got `answer` (null: it failed or timed out). */
  answered(id: string, sentAt: number, answer: AliveAnswer | null): void {
    if (answer === null || typeof answer.epoch !== 'string' || typeof answer.version !== 'number') return;
    const h = this.heard.get(id);
    if (h === undefined || h.sentAt < sentAt) this.heard.set(id, { epoch: answer.epoch, version: answer.version, sentAt });
  }

  /** The node answered a request sent within `freshMs` of `now`, under `epoch`. */
  answering(id: string, epoch: string, now: number): boolean {
    const h = this.heard.get(id);
    return h !== undefined && h.epoch === epoch && now - h.sentAt <= this.freshMs;
  }

  /**
   * A lease under `epoch` last seen `age` ago (past the lease) counts as alive at `now` with the
   * topology at `version`: the node answers (see `answering`), holds that version or a newer one,
   * and the grace has not run out.
   */
  vouched(id: string, epoch: string, age: number, version: number, now: number): boolean {
    if (age > this.leaseMs + this.graceMs || !this.answering(id, epoch, now)) return false;
    return this.heard.get(id)!.version >= version;
  }

  /**
   * The newest topology version among the answers to requests sent within `freshMs` of `now`
   * (-1: none). Rising while this node's own control plane does not answer, it says the control
   * plane commits for the others (ADR 0071 amendment).
   */
  newestVersion(now: number): number {
    let v = -1;
    for (const h of this.heard.values()) if (now - h.sentAt <= this.freshMs && h.version > v) v = h.version;
    return v;
  }

  /** Forgets nodes not in `keep` (no longer observed). */
  retain(keep: (id: string) => boolean): void {
    for (const id of this.heard.keys()) if (!keep(id)) this.heard.delete(id);
  }
}

/**
 * Leases read straight from the control plane while the coordinator's watch cannot be trusted
 * (ADR 0066). After a nats-server is killed, watches can stall again and again for many seconds:
 * the plane re-creates their consumers and reads the gap, so renewals arrive in bursts, and the
 * coordinator — rightly — counts every lease afresh after each gap in its own renewals
 * (`LivenessClock`). A node that dies then is never judged, and its partitions stay dead until the
 * watches recover. A read of a lease key by its last revision answers, from the stream leader,
 * what the newest renewal is: if two reads of a node's lease show the same revision, the node
 * committed no renewal between the answer of the first and the start of the second, whatever the
 * watch does. When that span is a lease or more, and this node's own renewals were accepted all
 * along (the control plane took writes, so the other node could have written too), the node's
 * lease has run out. Pure (times are passed in), so the tests drive it directly.
 */
export class LeaseReads {
  /** Per node, the newest revision read, when a read first showed it, and the latest read start that showed it still. */
  private readonly seen = new Map<string, { revision: number; since: number; stillAt: number }>();

  /** A read of `id`'s lease started at `startedAt` and answered at `answeredAt` with `revision`. */
  answered(id: string, revision: number, startedAt: number, answeredAt: number): void {
    const s = this.seen.get(id);
    if (s === undefined || revision > s.revision) this.seen.set(id, { revision, since: answeredAt, stillAt: answeredAt });
    else if (revision === s.revision) s.stillAt = Math.max(s.stillAt, startedAt);
  }

  /** The watch delivered `revision` of `id`'s lease: a newer one than read means it renewed. */
  watched(id: string, revision: number): void {
    const s = this.seen.get(id);
    if (s !== undefined && revision > s.revision) this.seen.delete(id);
  }

  /**
   * How long `id` is known to have committed no renewal (0: not known), counting only spans in
   * which `writable(from, to)` says this node's own renewals were accepted throughout.
   */
  silentFor(id: string, writable: (from: number, to: number) => boolean): number {
    const s = this.seen.get(id);
    if (s === undefined || s.stillAt <= s.since) return 0;
    return writable(s.since, s.stillAt) ? s.stillAt - s.since : 0;
  }

  /** Forgets nodes not in `keep`. */
  retain(keep: (id: string) => boolean): void {
    for (const id of this.seen.keys()) if (!keep(id)) this.seen.delete(id);
  }
}

/**
 * Whether acknowledgements at `acks` (ascending) cover [from, to] with no gap longer than
 * `maxGapMs`: the control plane accepted writes all along (ADR 0066).
 */
export function coveredByAcks(acks: readonly number[], from: number, to: number, maxGapMs: number): boolean {
  if (to < from) return false;
  let last = from;
  for (const a of acks) {
    if (a < from) continue;
    if (a > to) break;
    if (a - last > maxGapMs) return false;
    last = a;
  }
  return to - last <= maxGapMs;
}
