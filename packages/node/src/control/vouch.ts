/**
 * Vouching: how a primary keeps serving while the control plane (NATS JetStream KV) elects a new
 * leader, without ever giving two nodes the same partition at once. Design and safety argument:
 * docs/adr/0007-lease-vouching.md. This module is pure (no sockets, no timers): the decision rules
 * a node would apply, and `VouchWorld`, an executable model of a cluster under arbitrary KV
 * outages, lost or delayed messages, crashes and clock-rate drift, used by the property tests.
 * It is not wired into the node yet.
 *
 * Rules, per partition p, all times on the deciding node's own clock:
 *
 * 1. Lease (as in ADR 0003): a node's lease is certainly valid until `sentAt + leaseMs −
 *    leaseMarginMs` of its last acknowledged renewal.
 * 2. Promise: the primary P of p (in the newest topology it knows) asks every other owner of p
 *    (its backups, who receive its writes anyway) for a promise. An owner B gives one only while
 *    P is primary of p in the newest topology *B* knows; giving it at B-time `t` binds B not to
 *    serve p as primary before `t + promiseMs`. P counts it valid until `requestSentAt +
 *    promiseMs − promiseMarginMs`.
 * 3. Serve: P acts as primary of p while its lease is valid, or while it holds a valid promise
 *    from every other owner of p (and there is at least one): the nodes that could take p over
 *    are exactly those owners, and each has bound itself.
 * 4. Take over: a node that becomes primary of p in a newer topology first waits until every
 *    promise it gave for p has run out.
 * 5. Declare gone: the coordinator declares a node gone only when `leaseMs` has passed on its own
 *    clock since it saw the node's last renewal *and* since the control plane last became
 *    writable for the coordinator itself (`kvHealthySince`): time during which nobody could renew
 *    does not count against anybody.
 *
 * Why it is safe: a second node Q can serve p only after a topology excluding P was committed
 * (rule 5: P's lease had run out on the coordinator's clock, hence on P's with the margin) and Q
 * learned it; Q waited out its promise to P (rule 4), and P's copy of that promise ran out
 * earlier (rule 2's margin); every owner Q that could take p over is one P needed a promise from
 * (rule 3). A KV outage commits nothing, so during it P keeps serving on promises alone.
 */

export interface VouchTiming {
  leaseMs: number;
  renewIntervalMs: number;
  leaseMarginMs: number;
  promiseMs: number;
  promiseMarginMs: number;
}

/** The timings chosen in ADR 0007 (lease timings as ADR 0003). */
export const VOUCH_TIMING: VouchTiming = { leaseMs: 1000, renewIntervalMs: 250, leaseMarginMs: 150, promiseMs: 600, promiseMarginMs: 100 };

/** Rule 1: until when (own clock) the last acknowledged renewal, sent at `sentAt`, is certainly valid. */
export function leaseValidUntil(sentAt: number, t: VouchTiming): number {
  return sentAt + t.leaseMs - t.leaseMarginMs;
}

/** Rule 2, primary's side: until when (own clock) a promise asked for at `requestSentAt` counts. */
export function promiseValidUntil(requestSentAt: number, t: VouchTiming): number {
  return requestSentAt + t.promiseMs - t.promiseMarginMs;
}

/** Rule 2, owner's side: may this node promise `requester` for p, given the newest topology it knows? */
export function mayPromise(self: string, requester: string, owners: readonly string[]): boolean {
  return owners[0] === requester && requester !== self && owners.includes(self);
}

/** Rule 3: may `self` act as primary of p now? `promises` maps owner → valid-until (own clock). */
export function mayServe(o: { self: string; owners: readonly string[]; now: number; leaseValidUntil: number; promises: ReadonlyMap<string, number> }): boolean {
  if (o.owners[0] !== o.self) return false;
  if (o.now < o.leaseValidUntil) return true;
  const others = o.owners.slice(1);
  return others.length > 0 && others.every((id) => (o.promises.get(id) ?? -Infinity) > o.now);
}

/** Rule 4: the earliest own-clock time a new primary may serve, given when it last promised for p. */
export function takeoverAt(lastPromiseGivenAt: number | undefined, t: VouchTiming): number {
  return lastPromiseGivenAt === undefined ? -Infinity : lastPromiseGivenAt + t.promiseMs;
}

/** Rule 5: has the lease last seen at `seenAt` expired, judged by the coordinator at `now`? */
export function leaseExpired(seenAt: number, kvHealthySince: number, now: number, t: VouchTiming): boolean {
  return now - Math.max(seenAt, kvHealthySince) > t.leaseMs;
}

// ---------------------------------------------------------------------------------------------
// The executable model

/** One step of the model; times are real milliseconds. */
export type VouchAction =
  | { kind: 'renew'; node: number }
  | { kind: 'coordinate' }
  | { kind: 'learn'; node: number }
  | { kind: 'ask'; from: number; to: number; delay: number; replyDelay: number }
  | { kind: 'kv'; up: boolean }
  | { kind: 'kvLink'; node: number; up: boolean }
  | { kind: 'link'; a: number; b: number; up: boolean }
  | { kind: 'crash'; node: number };

interface NodeState {
  id: string;
  /** Local clock: offset + rate × real time. */
  rate: number;
  offset: number;
  alive: boolean;
  kvLink: boolean;
  known: number;
  leaseUntil: number;
  promises: Map<string, number>;
  /** Own-clock time this node last gave a promise (for the partition). */
  lastPromiseGiven: number | undefined;
  /** Own-clock time before which it may not serve the partition (rule 4), fixed when it learns a newer topology. */
  takeoverFrom: number;
  /** Set when a renewal found the lease lapsed (ADR 0003): renewals count only after a re-read at or after this. */
  rejoinAt: number | undefined;
  /** Validity of the renewals made while waiting for that re-read. */
  pendingLease: number;
}

interface Message {
  deliverAt: number;
  kind: 'ask' | 'reply';
  from: number;
  to: number;
  sentLocal: number;
  replyDelay: number;
}

/** A cluster of nodes sharing one partition, its topology history in a KV, and a coordinator. */
export class VouchWorld {
  now = 0;
  readonly nodes: NodeState[];
  /** Committed topologies: owners of the partition, primary first. */
  readonly versions: string[][];
  kvUp = true;
  private readonly links = new Set<string>();
  private messages: Message[] = [];
  /** Coordinator bookkeeping (kept per coordinator node, as each node observes on its own). */
  private readonly seen = new Map<number, Map<string, number>>();
  private readonly kvHealthySince = new Map<number, number>();
  private readonly lastRenewCommit = new Map<string, number>();
  /** Real-time intervals during which each node acted as primary (for checks). */
  readonly serving: { node: number; from: number; to: number }[] = [];

  constructor(
    readonly timing: VouchTiming,
    clocks: { rate: number; offset: number }[],
    /** Switches a rule off, to show the property tests catch its absence. */
    private readonly rules: { takeoverWait: boolean } = { takeoverWait: true },
  ) {
    this.nodes = clocks.map((c, i) => ({
      id: `n${i}`,
      rate: c.rate,
      offset: c.offset,
      alive: true,
      kvLink: true,
      known: 0,
      leaseUntil: -Infinity,
      promises: new Map(),
      lastPromiseGiven: undefined,
      takeoverFrom: -Infinity,
      rejoinAt: undefined,
      pendingLease: -Infinity,
    }));
    this.versions = [this.nodes.map((n) => n.id)];
    for (let i = 0; i < this.nodes.length; i++) this.apply({ kind: 'renew', node: i });
  }

  local(i: number, real = this.now): number {
    const n = this.nodes[i]!;
    return n.offset + n.rate * real;
  }
  private toReal(i: number, local: number): number {
    const n = this.nodes[i]!;
    return (local - n.offset) / n.rate;
  }
  private canKv(i: number): boolean {
    const n = this.nodes[i]!;
    return this.kvUp && n.alive && n.kvLink;
  }
  private linked(a: number, b: number): boolean {
    return !this.links.has(a < b ? `${a}|${b}` : `${b}|${a}`);
  }
  get latest(): string[] {
    return this.versions[this.versions.length - 1]!;
  }

  /** Applies one action at the current time, then advances real time by `dt`, recording who served. */
  step(action: VouchAction, dt: number): void {
    this.apply(action);
    this.advance(dt);
  }

  private apply(a: VouchAction): void {
    switch (a.kind) {
      case 'renew': {
        const n = this.nodes[a.node]!;
        if (!this.canKv(a.node)) return;
        // Sent, committed and acknowledged now (delays only make the sender more conservative).
        const local = this.local(a.node);
        const until = leaseValidUntil(local, this.timing);
        this.lastRenewCommit.set(n.id, this.now);
        if (n.rejoinAt === undefined && n.leaseUntil !== -Infinity && local >= n.leaseUntil) {
          // ADR 0003: the lease lapsed, so the node may have been declared gone. This renewal
          // counts only once the node has re-read the topology a full lease later.
          n.rejoinAt = local + this.timing.leaseMs;
          n.pendingLease = until;
        } else if (n.rejoinAt !== undefined) n.pendingLease = Math.max(n.pendingLease, until);
        else n.leaseUntil = Math.max(n.leaseUntil, until);
        return;
      }
      case 'coordinate': {
        const c = this.nodes.findIndex((n, i) => n.alive && this.canKv(i));
        if (c < 0) return;
        const nowC = this.local(c);
        // Rule 5's kvHealthySince: set on the first successful KV access after a failure.
        if (!this.kvHealthySince.has(c)) this.kvHealthySince.set(c, nowC);
        const seen = this.seen.get(c) ?? new Map<string, number>();
        this.seen.set(c, seen);
        // The coordinator reads every lease now; a renewal it has not seen before is stamped now.
        for (const [id, commit] of this.lastRenewCommit) {
          const key = `${id}@${commit}`;
          if (!seen.has(key)) {
            seen.set(key, nowC);
            seen.set(id, nowC);
          }
        }
        const owners = this.latest.filter((id) => !leaseExpired(seen.get(id) ?? this.kvHealthySince.get(c)!, this.kvHealthySince.get(c)!, nowC, this.timing));
        // Rejoin: a node renewing again after being dropped is appended (it would pull the data
        // from the primary, which therefore knows the newest topology: required here).
        const primaryIdx = this.nodes.findIndex((n) => n.id === owners[0]);
        // The pull is served only once the primary holds the topology that adds the puller
        // (StateTransfer.onStatePull waits for it), so the primary must be able to learn it now,
        // and does: a primary cut off from the control plane serves no pull, and nobody rejoins
        // through it. (Without this the model let a node rejoin through a primary that never
        // learned of it, and found two primaries that the node itself cannot produce.)
        const primaryUpToDate = primaryIdx >= 0 && this.nodes[primaryIdx]!.known === this.versions.length - 1 && this.canKv(primaryIdx);
        let rejoined = false;
        if (primaryUpToDate) {
          for (const n of this.nodes) {
            const s = seen.get(n.id);
            if (!owners.includes(n.id) && s !== undefined && !leaseExpired(s, this.kvHealthySince.get(c)!, nowC, this.timing) && owners.length > 0) {
              owners.push(n.id);
              rejoined = true;
            }
          }
        }
        if (owners.length !== this.latest.length || owners.some((id, i) => id !== this.latest[i])) {
          this.versions.push(owners);
          if (rejoined) this.apply({ kind: 'learn', node: primaryIdx });
        }
        return;
      }
      case 'learn': {
        const n = this.nodes[a.node]!;
        if (!this.canKv(a.node)) return;
        if (n.rejoinAt !== undefined && this.local(a.node) >= n.rejoinAt) {
          n.rejoinAt = undefined;
          n.leaseUntil = Math.max(n.leaseUntil, n.pendingLease);
        }
        if (n.known === this.versions.length - 1) return;
        n.known = this.versions.length - 1;
        // Rule 4: a node that may now be primary waits out the promises it gave.
        n.takeoverFrom = this.rules.takeoverWait ? takeoverAt(n.lastPromiseGiven, this.timing) : -Infinity;
        return;
      }
      case 'ask': {
        const n = this.nodes[a.from]!;
        if (!n.alive || a.from === a.to) return;
        this.messages.push({ deliverAt: this.now + a.delay, kind: 'ask', from: a.from, to: a.to, sentLocal: this.local(a.from), replyDelay: a.replyDelay });
        return;
      }
      case 'kv':
        if (!a.up) this.kvHealthySince.clear();
        this.kvUp = a.up;
        return;
      case 'kvLink':
        if (!a.up) this.kvHealthySince.delete(a.node);
        this.nodes[a.node]!.kvLink = a.up;
        return;
      case 'link': {
        const k = a.a < a.b ? `${a.a}|${a.b}` : `${a.b}|${a.a}`;
        if (a.up) this.links.delete(k);
        else this.links.add(k);
        return;
      }
      case 'crash':
        this.nodes[a.node]!.alive = false;
        this.kvHealthySince.delete(a.node);
        return;
    }
  }

  private deliver(m: Message): void {
    const to = this.nodes[m.to]!;
    if (!to.alive || !this.linked(m.from, m.to)) return;
    if (m.kind === 'ask') {
      const owners = this.versions[to.known]!;
      if (!mayPromise(to.id, this.nodes[m.from]!.id, owners)) return;
      to.lastPromiseGiven = Math.max(to.lastPromiseGiven ?? -Infinity, this.local(m.to));
      this.messages.push({ deliverAt: this.now + m.replyDelay, kind: 'reply', from: m.to, to: m.from, sentLocal: m.sentLocal, replyDelay: 0 });
    } else {
      const until = promiseValidUntil(m.sentLocal, this.timing);
      to.promises.set(this.nodes[m.from]!.id, Math.max(to.promises.get(this.nodes[m.from]!.id) ?? -Infinity, until));
    }
  }

  /** Moves real time forward, delivering due messages in order and recording serving intervals. */
  private advance(dt: number): void {
    const end = this.now + dt;
    for (;;) {
      this.messages.sort((x, y) => x.deliverAt - y.deliverAt);
      const next = this.messages[0];
      const until = next !== undefined && next.deliverAt <= end ? next.deliverAt : end;
      this.record(this.now, until);
      this.now = until;
      if (next !== undefined && next.deliverAt <= end) {
        this.messages.shift();
        this.deliver(next);
      } else break;
    }
  }

  /** For [from, to) with no action inside, each node's serving interval, computed exactly. */
  private record(from: number, to: number): void {
    if (to <= from) return;
    for (let i = 0; i < this.nodes.length; i++) {
      const n = this.nodes[i]!;
      if (!n.alive) continue;
      const owners = this.versions[n.known]!;
      if (owners[0] !== n.id) continue;
      // Serving holds where local ≥ takeoverFrom and (local < leaseUntil or local < min promise).
      const others = owners.slice(1);
      const promiseUntil = others.length === 0 ? -Infinity : Math.min(...others.map((id) => n.promises.get(id) ?? -Infinity));
      const validUntilLocal = Math.max(n.leaseUntil, promiseUntil);
      const start = Math.max(from, this.toReal(i, n.takeoverFrom));
      const stop = Math.min(to, this.toReal(i, validUntilLocal));
      if (stop > start) this.serving.push({ node: i, from: start, to: stop });
    }
  }

  /** Pairs of different nodes whose serving intervals overlap (must be empty). */
  overlaps(): { a: number; b: number; at: number }[] {
    const out: { a: number; b: number; at: number }[] = [];
    const s = [...this.serving].sort((x, y) => x.from - y.from);
    for (let i = 0; i < s.length; i++) {
      for (let j = i + 1; j < s.length && s[j]!.from < s[i]!.to; j++) {
        if (s[j]!.node !== s[i]!.node) out.push({ a: s[i]!.node, b: s[j]!.node, at: s[j]!.from });
      }
    }
    return out;
  }

  /** Whether node `i` acts as primary at the current instant. */
  servingNow(i: number): boolean {
    const n = this.nodes[i]!;
    if (!n.alive) return false;
    const owners = this.versions[n.known]!;
    const local = this.local(i);
    return local >= n.takeoverFrom && mayServe({ self: n.id, owners, now: local, leaseValidUntil: n.leaseUntil, promises: n.promises });
  }
}
