/**
 * Backups vouch for their primary (ADR 0007 rules 2–4). While its lease renewals are late, a
 * primary asks the other owners of its partitions for a promise every `intervalMs`; an owner
 * gives one for partition p only while, in the newest topology it knows, the asker (under its
 * epoch) is p's primary, and is then bound not to serve p as primary before `now + promiseMs`.
 * The primary counts a promise valid until `sentAt + promiseMs − marginMs` (from when it asked),
 * and may serve p while its lease is valid or while it holds a valid promise from every other
 * owner of p (at least one). A node that became primary of p serves only once every promise it
 * gave for p has run out. The primary asks only when its lease runs short, so while the control
 * plane is healthy nobody holds a promise and hand-overs wait for nothing.
 */
import type { AliveAnswer } from './liveness.js';
import type { ResolvedNodeOptions } from '../config.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Logger } from '../logger.js';
import type { PeerLinks } from '../peers/links.js';
import type { Scheduler } from '../scheduler.js';
import type { ClusterView } from './view.js';
import { Op } from '@gridlink/protocol';

export interface PromiseTiming {
  promiseMs: number;
  marginMs: number;
  intervalMs: number;
  /** Ask for promises while the own lease has less than this left. */
  askBelowMs: number;
}

/**
 * Timings from the lease's: a dead primary's last promises must have run out by the time it can
 * be declared gone (promiseMs ≤ leaseMs − renewIntervalMs − coordinatorIntervalMs).
 */
export function promiseTiming(o: Pick<ResolvedNodeOptions, 'leaseMs' | 'renewIntervalMs' | 'coordinatorIntervalMs' | 'leaseMarginMs'>): PromiseTiming {
  const promiseMs = Math.max(1, Math.min(Math.floor(o.leaseMs * 0.6), o.leaseMs - o.renewIntervalMs - o.coordinatorIntervalMs));
  const marginMs = Math.max(1, Math.floor(promiseMs / 6));
  return { promiseMs, marginMs, intervalMs: Math.max(5, Math.floor(promiseMs / 6)), askBelowMs: Math.max(1, o.leaseMs - o.renewIntervalMs - o.leaseMarginMs - Math.floor(o.renewIntervalMs / 2)) };
}

export interface PromiseRequest {
  from: string;
  epoch: string;
  parts: number[];
}
export interface PromiseReply {
  epoch: string;
  parts: number[];
  /** The giver's topology version (ADR 0062: a request for no partitions asks "are you alive?"). */
  version?: number;
}

export interface PromiseDeps {
  readonly id: string;
  readonly opts: ResolvedNodeOptions;
  readonly view: ClusterView;
  readonly peers: PeerLinks;
  readonly scheduler: Scheduler;
  readonly life: Lifecycle;
  readonly log: Logger;
  /** Time left on the own lease (0 when not certainly valid). */
  leaseRemainingMs(): number;
  /**
   * This life gave its lease up (ADR 0073): it serves nothing as primary any more, promises held
   * or not, and asks for none (a promise binds its giver not to serve).
   */
  gaveUp?(): boolean;
}

/** What this node asks each peer for: its primary partitions that peer owns too, made once per topology. */
interface AskPlan {
  topo: unknown;
  epoch: string;
  targetsVersion: number;
  byPeer: Map<string, { parts: number[]; covers: Uint8Array }>;
}

/**
 * The promises held from one owner under one epoch. A reply granting everything asked (the usual
 * case: both sides hold the same topology) is recorded in O(1) as `full` (the partitions of the
 * plan it answered, valid until `until`); a partial grant is written partition by partition into
 * `until`. So while nothing changes, holding promises costs nothing per partition (ADR 0007, "Cost at many partitions").
 */
interface Held {
  until: Float64Array;
  full: { covers: Uint8Array; until: number } | null;
  /** Latest expiry of anything held: the whole entry is dropped after it. */
  last: number;
}

export class PromiseBook {
  readonly timing: PromiseTiming;
  /** By partition: this node promised not to serve it as primary before this time. */
  private readonly given: number[] = [];
  /** By `owner:epoch`: the promises held from that owner. */
  private readonly held = new Map<string, Held>();
  private plan: AskPlan | null = null;
  /** How many times the ask plan was made (a test counts that it is not made again while nothing changes). */
  planBuilds = 0;
  /** Peers asked and not answered yet (a slow peer holds up nobody else). */
  private readonly asking = new Set<string>();

  constructor(private readonly d: PromiseDeps) {
    this.timing = promiseTiming(d.opts);
  }

  start(): void {
    this.d.scheduler.setInterval(() => this.ask(), this.timing.intervalMs);
  }

  /** May this node serve p as primary now (it is p's primary in its topology; the caller checks that)? */
  mayServe(p: number, leaseValid: boolean): boolean {
    if (this.d.gaveUp?.() === true) return false;
    const given = this.given[p];
    if (given !== undefined && Date.now() < given) return false;
    if (leaseValid) return true;
    const targets = this.d.view.targets(p);
    if (targets.length === 0) return false;
    const now = Date.now();
    return targets.every((t) => {
      const h = this.held.get(`${t.id}:${t.epoch}`);
      if (h === undefined) return false;
      if (h.full !== null && h.full.until > now && h.full.covers[p] === 1) return true;
      return (h.until[p] ?? 0) > now;
    });
  }

  /** Owner side: promise the partitions of which the asker is primary in our newest topology. */
  onRequest(m: PromiseRequest): PromiseReply {
    const { view } = this.d;
    const t = view.topo;
    const out: number[] = [];
    if (t !== null && t.members[m.from]?.epoch === m.epoch && Array.isArray(m.parts)) {
      const until = Date.now() + this.timing.promiseMs;
      for (const p of m.parts) {
        if (!Number.isInteger(p) || p < 0 || p >= t.partitions) continue;
        if (t.owners[p]?.[0] !== m.from) continue;
        this.given[p] = Math.max(this.given[p] ?? 0, until);
        out.push(p);
      }
    }
    return { epoch: view.epoch, parts: out, version: view.topologyVersion() };
  }

  /**
   * Asks `peer` whether it is alive (ADR 0062): a promise request for no partitions, answered by
   * every release with its epoch, and since ADR 0062 with its topology version.
   */
  askAlive(peer: string, timeoutMs: number): Promise<AliveAnswer> {
    const { peers, id, view } = this.d;
    return Promise.resolve()
      .then(() => peers.peer(peer).request(Op.PEER_PROMISE, { from: id, epoch: view.epoch, parts: [] } satisfies PromiseRequest, timeoutMs))
      .then((r) => {
        const reply = r as Partial<PromiseReply> | null;
        return reply !== null && typeof reply === 'object' && typeof reply.epoch === 'string' ? { epoch: reply.epoch, ...(typeof reply.version === 'number' ? { version: reply.version } : {}) } : { epoch: '' };
      });
  }

  /** A new life: the promises held were for the old epoch (the ones given stay binding). */
  clearHeld(): void {
    this.held.clear();
  }

  /**
   * Owners (by epoch) this node holds promises from; an owner's entry is dropped at the first
   * asking interval after everything it promised has run out.
   */
  get heldCount(): number {
    return this.held.size;
  }

  /**
   * Drops the owners whose promises have all run out: `mayServe` counts them as absent already.
   * Kept, they would pile up for good — one for every epoch of every peer that ever gave one
   * (each restart of a peer during a lease hiccup adds one).
   */
  private forgetExpired(now: number): void {
    for (const [key, h] of this.held) if (h.last <= now) this.held.delete(key);
  }

  /** The partitions to ask each peer for, made again only when the topology, epoch or targets changed. */
  private askPlan(): AskPlan {
    const { view } = this.d;
    const pl = this.plan;
    if (pl !== null && pl.topo === view.topo && pl.epoch === view.epoch && pl.targetsVersion === view.targetsVersion) return pl;
    this.planBuilds++;
    const n = view.partitionCount();
    const byPeer = new Map<string, { parts: number[]; covers: Uint8Array }>();
    for (const p of view.primaryPartitions()) {
      for (const t of view.targets(p)) {
        let e = byPeer.get(t.id);
        if (e === undefined) byPeer.set(t.id, (e = { parts: [], covers: new Uint8Array(n) }));
        e.parts.push(p);
        e.covers[p] = 1;
      }
    }
    this.plan = { topo: view.topo, epoch: view.epoch, targetsVersion: view.targetsVersion, byPeer };
    return this.plan;
  }

  /** Records a reply: everything asked in O(1), a part of it partition by partition. */
  private record(key: string, asked: { parts: number[]; covers: Uint8Array }, granted: number[], until: number): void {
    let h = this.held.get(key);
    if (h === undefined) this.held.set(key, (h = { until: new Float64Array(asked.covers.length), full: null, last: 0 }));
    h.last = Math.max(h.last, until);
    if (granted.length === asked.parts.length) {
      // The giver answers the parts asked in their order, filtered: the same length is all of them.
      const f = h.full;
      if (f !== null && f.covers !== asked.covers && f.until > Date.now()) {
        // A new plan (the topology moved): what the old one still covers is kept partition by partition.
        for (let p = 0; p < f.covers.length; p++) if (f.covers[p] === 1 && (h.until[p] ?? 0) < f.until) h.until[p] = f.until;
      }
      h.full = f !== null && f.covers === asked.covers ? { covers: f.covers, until: Math.max(f.until, until) } : { covers: asked.covers, until };
      return;
    }
    for (const p of granted) if (Number.isInteger(p) && p >= 0 && p < h.until.length && (h.until[p] ?? 0) < until) h.until[p] = until;
  }

  private ask(): void {
    if (this.held.size > 0) this.forgetExpired(Date.now());
    const { view, life, peers, id } = this.d;
    if (life.state !== 'running' || view.topo === null) return;
    if (this.d.leaseRemainingMs() >= this.timing.askBelowMs || this.d.gaveUp?.() === true) return;
    const { byPeer } = this.askPlan();
    const sentAt = Date.now();
    const until = sentAt + this.timing.promiseMs - this.timing.marginMs;
    const req = (peer: string, asked: { parts: number[]; covers: Uint8Array }): Promise<void> =>
      Promise.resolve()
        .then(() => peers.peer(peer).request(Op.PEER_PROMISE, { from: id, epoch: view.epoch, parts: asked.parts } satisfies PromiseRequest, this.timing.promiseMs))
        .then((r) => {
          const reply = r as PromiseReply;
          this.record(`${peer}:${reply.epoch}`, asked, reply.parts, until);
        });
    for (const [peer, asked] of byPeer) {
      if (this.asking.has(peer)) continue;
      this.asking.add(peer);
      req(peer, asked).then(
        () => this.asking.delete(peer),
        () => this.asking.delete(peer),
      );
    }
  }
}
