/**
 * This node's own membership lease: renewed on a timer, and "certainly valid" only while the
 * last acknowledged renewal, judged from when it was sent minus a drift margin, has not run out.
 * After a lapse the node is not primary of anything until the control plane confirms it is
 * still a member (a re-read of the topology notices when its epoch was declared gone).
 */
import type { ResolvedNodeOptions } from '../config.js';
import { LEASE_PREFIX } from '../control/keys.js';
import type { ControlPlane } from '../control/kv.js';
import type { LeaseRecord } from '../control/topology.js';
import type { Logger } from '../logger.js';
import type { Scheduler } from '../scheduler.js';
import type { Lifecycle } from '../lifecycle.js';
import { PEER_WIRE } from '../peers/wire-version.js';
import { RELEASE } from '../release.js';
import { coveredByAcks } from './liveness.js';

export interface OwnLeaseDeps {
  readonly id: string;
  readonly opts: ResolvedNodeOptions;
  readonly kv: ControlPlane;
  readonly scheduler: Scheduler;
  readonly log: Logger;
  readonly life: Lifecycle;
  epoch(): string;
  port(): number;
  /** After a lapse: re-read the topology (applying it notices if this epoch was declared gone). */
  rejoinCheck(): Promise<void>;
  /** State transfers are still queued or running (ADR 0056: `synced` is reported in bulk meanwhile). */
  pullsPending?(): boolean;
  /** Cut off from the other members over the grid (ADR 0063), or asked to by the coordinator (ADR 0065): renew nothing meanwhile. */
  fenced?(): boolean;
  /** Members this node cannot reach while they renew, reported in the lease (ADR 0065). */
  unreachable?(): string[];
  /** This life is a member of the topology this node holds. */
  isMember?(): boolean;
  /**
   * Fenced because it is cut off from most members (ADR 0063), and every partition it holds has
   * another owner that renews: giving the lease up loses no copy (ADR 0073). Otherwise a fenced
   * lease just runs out (and the coordinator may keep a sole holder that answers it: ADR 0062).
   */
  mayGiveUp?(): boolean;
  /** Start over under a new epoch, empty (a life whose lease was given up never renews again: ADR 0073). */
  newLife?(): void;
}

/**
 * While pulls remain, the lease reports newly synced partitions at most this often (ADR 0056):
 * each report is a coordinator step, a new topology version every node reads and applies whole.
 */
export const SYNCED_REPORT_MS = 2000;

/** How many renewal acknowledgements are kept for `acceptedThroughout` (16 s at 250 ms). */
export const ACKS_KEPT = 64;

/** While renewals keep failing, how often that is logged again. */
export const FAILURE_LOG_MS = 10_000;

export class OwnLease {
  private validUntil = 0;
  private lastRenewSentAt = 0;
  /** When the last renewal was acknowledged by the control plane (ms), 0 before any. */
  lastAckAt = 0;
  /** When the recent renewals were acknowledged, oldest first (the last ACKS_KEPT; ADR 0066). */
  private readonly acks: number[] = [];
  /** After a lapse: not primary until the control plane confirms membership. */
  private rejoinCheckAfter = 0;
  /** A lapse was noticed and the topology has not been re-read successfully since. */
  private rejoinPending = false;
  private rejoinTimerSet = false;
  private writeScheduled = false;
  /** Partitions this node has caught up on while syncing, by partition, with the topology version. */
  synced: Record<string, number> = {};
  /** What the lease record last reported of `synced`, and when (see SYNCED_REPORT_MS). */
  private reportedSynced: Record<string, number> = {};
  private reportedAt = 0;
  /** Partitions where this node holds every cache its rank asks for while listed as behind. */
  caughtUp: Record<string, number> = {};
  /** Graceful stop under way: the coordinator moves this node's primaryships away. */
  leaving = false;
  /** Given up (graceful stop): nothing is written any more, so no late renewal brings it back. */
  private released = false;
  /**
   * The epoch whose lease this node gave up on being fenced (ADR 0073): it serves nothing of that
   * life any more and never renews it again.
   */
  private givenUpEpoch: string | null = null;
  /** The renewal in flight, if any. */
  private putting: Promise<number> | null = null;
  /** The revision of this node's newest acknowledged renewal (0 before any). */
  private lastRevision = 0;
  /** Renewals failed in a row, since when, and when that was last logged. */
  private failedRenewals = 0;
  private failingSince = 0;
  private failureLoggedAt = 0;

  constructor(private readonly d: OwnLeaseDeps) {}

  /**
   * The control plane acknowledged this node's renewals all through [from, to], none further
   * apart than two renewal intervals (ADR 0066: it took writes, so others could write too).
   */
  acceptedThroughout(from: number, to: number): boolean {
    return coveredByAcks(this.acks, from, to, 2 * this.d.opts.renewIntervalMs);
  }

  /** The lease is certainly valid: renewed recently enough, judged from when the renewal was sent. */
  valid(): boolean {
    return Date.now() < this.validUntil && !this.rejoinPending && Date.now() >= this.rejoinCheckAfter && !this.gaveUp();
  }

  /**
   * This life's lease was given up on being fenced (ADR 0073): nothing may be served as primary
   * in this life any more, promises held or not.
   */
  gaveUp(): boolean {
    return this.givenUpEpoch !== null && this.givenUpEpoch === this.d.epoch();
  }

  /**
   * The last acknowledged renewal has not run out (judged from when it was sent), whether or not
   * the node re-read the topology since a lapse: its renewals are accepted, so the other nodes see
   * it alive. Not a licence to serve (`valid` is); enough to coordinate (ADR 0066).
   */
  renewed(): boolean {
    return Date.now() < this.validUntil && !this.gaveUp();
  }

  /** Time left on the lease while it is certainly valid, else 0. */
  remainingMs(): number {
    return this.valid() ? this.validUntil - Date.now() : 0;
  }

  record(): LeaseRecord {
    const { opts } = this.d;
    const r: LeaseRecord = {
      id: this.d.id,
      epoch: this.d.epoch(),
      host: opts.advertiseHost,
      port: opts.advertisePort ?? this.d.port(),
      synced: this.syncedReport(),
      release: RELEASE,
      wire: { min: opts[PEER_WIRE].min, max: opts[PEER_WIRE].max },
    };
    if (this.leaving) r.leaving = true;
    const unreachable = this.d.unreachable?.() ?? [];
    if (unreachable.length > 0) r.unreachable = unreachable;
    if (Object.keys(this.caughtUp).length > 0) r.caughtUp = { ...this.caughtUp };
    if (opts.zone !== undefined) r.zone = opts.zone;
    if (opts.weight !== undefined) r.weight = opts.weight;
    return r;
  }

  /**
   * `synced` as the lease reports it: as it is, except while pulls remain, when partitions synced
   * since the last report wait for the next one, at most SYNCED_REPORT_MS later (the last pull
   * ending reports at once). Holding a report back only delays the coordinator making this node
   * an owner of those partitions; until then it is a replication target of each, as while pulling.
   */
  private syncedReport(): Record<string, number> {
    const now = Date.now();
    if (this.d.pullsPending?.() !== true || now - this.reportedAt >= SYNCED_REPORT_MS) {
      this.reportedSynced = { ...this.synced };
      this.reportedAt = now;
    }
    return { ...this.reportedSynced };
  }

  async renew(): Promise<void> {
    const { life, opts, log } = this.d;
    if ((life.state !== 'running' && life.state !== 'stopping') || this.released) return;
    const now = Date.now();
    if (this.validUntil > 0 && now >= this.validUntil) {
      // Our lease may have expired: the coordinator may have declared us gone and promoted others.
      // Serve as primary again only once the control plane confirms we are still a member.
      if (!this.rejoinPending) log.warn('lease lapsed', { id: this.d.id });
      this.rejoinCheckAfter = now + opts.leaseMs;
      this.rejoinPending = true;
      this.scheduleRejoinCheck(opts.leaseMs);
    }
    // Cut off from the members that renew (ADR 0063), or asked to stop by the coordinator (ADR
    // 0065): out, as if this node had died — cut off, at once, by giving the lease up (ADR 0073).
    if (this.d.fenced?.() === true) {
      if (this.d.mayGiveUp?.() === true) this.giveUp();
      return;
    }
    // The fence ended before the topology dropped the life that gave its lease up: that life is
    // over all the same (the coordinator may be dropping it right now); start a new one.
    if (this.gaveUp()) {
      this.d.newLife?.();
      return;
    }
    const sentAt = now;
    this.lastRenewSentAt = sentAt;
    try {
      const put = this.d.kv.put(LEASE_PREFIX + this.d.id, this.record());
      this.putting = put;
      const rev = await put;
      if (rev > this.lastRevision) this.lastRevision = rev;
      if ((life.state as string) === 'stopped') return;
      this.validUntil = Math.max(this.validUntil, sentAt + opts.leaseMs - opts.leaseMarginMs);
      this.lastAckAt = Date.now();
      this.acks.push(this.lastAckAt);
      if (this.acks.length > ACKS_KEPT) this.acks.splice(0, this.acks.length - ACKS_KEPT);
      if (this.failedRenewals > 0) {
        log.info('lease renewals succeed again', { failed: this.failedRenewals, forMs: Date.now() - this.failingSince });
        this.failedRenewals = 0;
      }
    } catch (err) {
      // Said once when renewals start failing, then at most every FAILURE_LOG_MS with a count:
      // while the control plane is down a renewal fails every renewal interval (4 a second by
      // default), which would bury the lines that matter.
      const t = Date.now();
      if (this.failedRenewals++ === 0) {
        this.failingSince = t;
        this.failureLoggedAt = t;
        log.warn('lease renewal failed', { err: String(err) });
      } else if (t - this.failureLoggedAt >= FAILURE_LOG_MS) {
        this.failureLoggedAt = t;
        log.warn('lease renewals still failing', { err: String(err), failed: this.failedRenewals, forMs: t - this.failingSince });
      }
    }
  }

  /**
   * Cut off while a member (ADR 0073; `mayGiveUp`): stops serving this life at once (`valid`,
   * `gaveUp`: checked synchronously before anything is served), then deletes the lease, so that the coordinator
   * declares the node gone now instead of a lease after its last renewal. Never renewed again:
   * a renewal after the delete would bring this life back. A delete that fails (the control
   * plane unreachable too) leaves the lease to run out, as before. Not a member (a life not yet
   * admitted): nothing to give up; it just renews nothing until the fence ends.
   * A fence the coordinator asked for (ADR 0065) is not given up this way: the coordinator takes
   * such a fence back when the node turns out to hold the only copy of a partition. On a control
   * plane whose delete is not conditional (`ControlPlane.conditionalDelete`) the life is given up
   * all the same, but the lease is left to run out.
   */
  private giveUp(): void {
    if (this.gaveUp() || this.d.isMember?.() !== true) return;
    const epoch = this.d.epoch();
    this.givenUpEpoch = epoch;
    const { log, kv, id } = this.d;
    if (kv.conditionalDelete !== true) {
      log.warn('fenced: this life serves nothing more; the control plane cannot delete the lease conditionally, so it is left to run out', { epoch });
      return;
    }
    log.warn('fenced: giving the lease up now, so that the others take over its partitions at once; this life serves nothing more', { epoch });
    // After the renewal in flight, if any, and only if that renewal is still the key's newest
    // revision: a delete that reaches the control plane late (held in the NATS client through a
    // disconnect) must not delete the lease a later life of this node wrote meanwhile.
    // (Taken now: a later life's renewals move lastRevision on.)
    const newest = this.lastRevision;
    void (this.putting ?? Promise.resolve(newest))
      .then(
        (rev) => Math.max(rev, newest),
        () => newest,
      )
      .then((rev) => kv.delete(LEASE_PREFIX + id, rev))
      .then(
        () => log.info('lease given up', { epoch }),
        (err: unknown) => log.warn('giving the lease up failed: it runs out instead', { epoch, err: String(err) }),
      );
  }

  /**
   * Re-reads the topology `delayMs` from now (one timer at a time). A failed read (control plane
   * unavailable) is logged and retried a renewal interval later; until a read succeeds the lease
   * is not trusted, so no rejection ever escapes the timer.
   */
  private scheduleRejoinCheck(delayMs: number): void {
    if (this.rejoinTimerSet) return;
    this.rejoinTimerSet = true;
    this.d.scheduler.setTimeout(() => {
      this.rejoinTimerSet = false;
      const { life, log, opts } = this.d;
      if (life.state !== 'running' && life.state !== 'stopping') return;
      // The re-read must start once the coordinator could have declared us gone (a later lapse
      // pushes that moment on).
      const startedAt = Date.now();
      if (startedAt < this.rejoinCheckAfter) {
        this.scheduleRejoinCheck(this.rejoinCheckAfter - startedAt);
        return;
      }
      this.d.rejoinCheck().then(
        () => {
          if (startedAt >= this.rejoinCheckAfter) this.rejoinPending = false;
          else this.scheduleRejoinCheck(Math.max(1, this.rejoinCheckAfter - Date.now()));
        },
        (err: unknown) => {
          if (!this.rejoinPending) return;
          log.warn('topology re-read after lease lapse failed; retrying', { err: String(err) });
          this.scheduleRejoinCheck(opts.renewIntervalMs);
        },
      );
    }, delayMs);
  }

  /** Writes the lease soon (coalesced): its content changed (a partition synced, a new epoch). */
  scheduleWrite(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    this.d.scheduler.setTimeout(() => {
      this.writeScheduled = false;
      void this.renew();
    }, 2);
  }

  /**
   * A new life after being declared gone: nothing synced, and the old lease's lapse is no reason
   * to wait. The new epoch becomes a member only after the coordinator saw a renewal carrying it,
   * and valid() holds only once such a renewal was acknowledged.
   */
  restart(): void {
    this.synced = {};
    this.reportedSynced = {};
    this.reportedAt = 0;
    this.caughtUp = {};
    this.rejoinCheckAfter = 0;
    this.rejoinPending = false;
    this.validUntil = 0;
    this.scheduleWrite();
  }

  /**
   * Gives the lease up (graceful stop). From now on no renewal is written: one sent after the
   * delete would bring the lease back for a whole `leaseMs`, and the coordinator would keep a
   * stopped node as a member that long. The delete only saves the others that wait, so it is
   * bounded by `withinMs` (a control plane that does not answer must not hold the stop up): past
   * it the lease simply runs out.
   */
  async release(withinMs: number): Promise<void> {
    this.released = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${withinMs} ms; the lease runs out instead`)), withinMs);
    });
    try {
      await Promise.race([this.d.kv.delete(LEASE_PREFIX + this.d.id), late]);
    } finally {
      clearTimeout(timer);
    }
  }
}
