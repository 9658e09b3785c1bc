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
}

export class PromiseBook {
  readonly timing: PromiseTiming;
  /** By partition: this node promised not to serve it as primary before this time. */
  private readonly given: number[] = [];
  /** By partition: `owner:epoch` → valid until. */
  private readonly held = new Map<number, Map<string, number>>();
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
    const given = this.given[p];
    if (given !== undefined && Date.now() < given) return false;
    if (leaseValid) return true;
    const targets = this.d.view.targets(p);
    if (targets.length === 0) return false;
    const h = this.held.get(p);
    if (h === undefined) return false;
    const now = Date.now();
    return targets.every((t) => (h.get(`${t.id}:${t.epoch}`) ?? 0) > now);
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
    return { epoch: view.epoch, parts: out };
  }

  /** A new life: the promises held were for the old epoch (the ones given stay binding). */
  clearHeld(): void {
    this.held.clear();
  }

  /** Promises held, one per (partition, owner epoch); those run out are dropped at the next asking interval. */
  get heldCount(): number {
    let n = 0;
    for (const h of this.held.values()) n += h.size;
    return n;
  }

  /**
   * Drops the promises held that have run out: `mayServe` counts them as absent already. Kept,
   * they would pile up for good — one per partition for every epoch of every peer that ever gave
   * one (each restart of a peer during a lease hiccup adds a set).
   */
  private forgetExpired(now: number): void {
    for (const [p, h] of this.held) {
      for (const [key, until] of h) if (until <= now) h.delete(key);
      if (h.size === 0) this.held.delete(p);
    }
  }

  private ask(): void {
    if (this.held.size > 0) this.forgetExpired(Date.now());
    const { view, life, peers, id } = this.d;
    if (life.state !== 'running' || view.topo === null) return;
    if (this.d.leaseRemainingMs() >= this.timing.askBelowMs) return;
    const byPeer = new Map<string, number[]>();
    for (const p of view.primaryPartitions()) {
      for (const t of view.targets(p)) {
        let list = byPeer.get(t.id);
        if (list === undefined) byPeer.set(t.id, (list = []));
        list.push(p);
      }
    }
    const sentAt = Date.now();
    const until = sentAt + this.timing.promiseMs - this.timing.marginMs;
    const req = (peer: string, parts: number[]): Promise<void> =>
      Promise.resolve()
        .then(() => peers.peer(peer).request(Op.PEER_PROMISE, { from: id, epoch: view.epoch, parts } satisfies PromiseRequest, this.timing.promiseMs))
        .then((r) => {
          const reply = r as PromiseReply;
          for (const p of reply.parts) {
            let h = this.held.get(p);
            if (h === undefined) this.held.set(p, (h = new Map()));
            const key = `${peer}:${reply.epoch}`;
            h.set(key, Math.max(h.get(key) ?? 0, until));
          }
        });
    for (const [peer, parts] of byPeer) {
      if (this.asking.has(peer)) continue;
      this.asking.add(peer);
      req(peer, parts).then(
        () => this.asking.delete(peer),
        () => this.asking.delete(peer),
      );
    }
  }
}
