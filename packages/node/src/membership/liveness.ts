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
    return now - Math.max(seenAt, this.countFrom) <= this.leaseMs;
  }

  get blind(): boolean {
    return this.blindNow;
  }
}
