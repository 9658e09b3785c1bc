/**
 * How long a graceful stop may wait for its hand-off (ADR 0071). `timeoutMs` counts only the time
 * the control plane answers this node; time it does not answer counts against `outageMs` as well
 * (no topology can be committed then, so no other node could take this node's partitions: leaving
 * would turn a hand-off into a failover, or a loss where this node holds a copy the others need).
 * The wait ends at the latest after `timeoutMs + outageMs` in all.
 */
export class HandoffBudget {
  private answeredMs = 0;
  private silentMs = 0;
  private last: number;

  constructor(
    private readonly timeoutMs: number,
    private readonly outageMs: number,
    now: number,
  ) {
    this.last = now;
  }

  /** Counts the time since the previous call as answered or not; true once the wait is over. */
  spent(now: number, answering: boolean): boolean {
    const dt = Math.max(0, now - this.last);
    this.last = Math.max(this.last, now);
    if (answering) this.answeredMs += dt;
    else this.silentMs += dt;
    return this.answeredMs >= this.timeoutMs || this.answeredMs + this.silentMs >= this.timeoutMs + this.outageMs;
  }

  /** Time counted while the control plane did not answer. */
  get outageCountedMs(): number {
    return this.silentMs;
  }
}
