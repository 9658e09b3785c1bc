/**
 * An epoch that left the members never comes back (ADR 0039), as a property of the coordinator's
 * step (`coordinatorStep`, i.e. `nextTopology` then `deferHandBack`) over random histories.
 *
 * The coordinator judges liveness from what it observed of the leases, and there are ways for a
 * dead node's lease to be counted alive again after the node was dropped: the lease stays in the
 * control plane after a kill, a stall or a blind spell makes the coordinator count every observed
 * lease afresh (ADR 0007 rule 5), a coordinator that just started seeds every listed lease as
 * seen, a lagging watch holds an old value. The step must not depend on the judgement being
 * right about those: here any lease a node ever wrote may be passed as alive ("ghosts"), and
 *
 * - every member of a record is a lease passed alive to the step that wrote it;
 * - an (id, epoch) that left the members is never a member of a later record, and the record
 *   that dropped it says so in `departed`;
 * - a node under an epoch that never left (a new node, or a restart) is a member as soon as a
 *   step is given its lease.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { withLossAccepted, type LeaseRecord, type TopologyRecord } from '@gridlink/node';
import { coordinatorStep, initialTopology } from '@gridlink/node/internal';
import type { CacheRule } from '../src/control/topology.js';

const IDS = ['n1', 'n2', 'n3', 'n4'];
const P = 16;

type Event =
  | { t: 'die'; id: string }
  | { t: 'restart'; id: string }
  | { t: 'leave'; id: string }
  | { t: 'sync'; id: string; p: number }
  | { t: 'syncAll'; id: string }
  | { t: 'baseline'; ids: string[] }
  | { t: 'acceptLoss' }
  /** One step at which the coordinator counts these dead nodes' leases (any epoch they had) alive. */
  | { t: 'step'; ghosts: { id: string; pick: number }[] };

const event: fc.Arbitrary<Event> = fc.oneof(
  { arbitrary: fc.record({ t: fc.constant('die' as const), id: fc.constantFrom(...IDS) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('restart' as const), id: fc.constantFrom(...IDS) }), weight: 2 },
  { arbitrary: fc.record({ t: fc.constant('leave' as const), id: fc.constantFrom(...IDS) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('sync' as const), id: fc.constantFrom(...IDS), p: fc.integer({ min: 0, max: P - 1 }) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('syncAll' as const), id: fc.constantFrom(...IDS) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('baseline' as const), ids: fc.subarray(IDS, { minLength: 1 }) }), weight: 1 },
  { arbitrary: fc.constant({ t: 'acceptLoss' as const }), weight: 1 },
  {
    arbitrary: fc.record({
      t: fc.constant('step' as const),
      ghosts: fc.array(fc.record({ id: fc.constantFrom(...IDS), pick: fc.nat() }), { maxLength: 3 }),
    }),
    weight: 6,
  },
);

const CACHE_SETS: CacheRule[][] = [
  [],
  [{ name: 'a', backups: 0, policy: 'READ_WRITE_SAFE' }],
  [
    { name: 'a', backups: 0, policy: 'IGNORE' },
    { name: 'b', backups: 2, policy: 'READ_ONLY_SAFE' },
  ],
];

const tag = (id: string, epoch: string): string => `${id}/${epoch}`;

describe('departed epochs', () => {
  it('never come back as members, whatever stale leases the coordinator counts alive; new epochs join at once', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.constantFrom(...CACHE_SETS), fc.array(event, { maxLength: 50 }), (backups, caches, events) => {
        let n = 0;
        /** Every lease each node ever wrote (the last one is what the control plane holds). */
        const written = new Map<string, LeaseRecord[]>();
        /** Nodes renewing their lease now. */
        const running = new Set<string>();
        const start = (id: string): void => {
          const l: LeaseRecord = { id, epoch: `${id}-e${n++}`, host: '127.0.0.1', port: 1, synced: {} };
          written.set(id, [...(written.get(id) ?? []), l]);
          running.add(id);
        };
        for (const id of IDS.slice(0, 3)) start(id);
        const current = (id: string): LeaseRecord => written.get(id)!.at(-1)!;
        let rec: TopologyRecord = initialTopology({ clusterId: 'c', partitions: P, backups, leases: [...running].map(current) });
        const dropped = new Set<string>();
        /** Per id, the index (in `written`) of the newest of its leases a record listed. */
        const listed = new Map<string, number>();
        let now = 0;

        for (const e of events) {
          if (e.t === 'die') running.delete(e.id);
          else if (e.t === 'restart') start(e.id);
          else if (e.t === 'leave') {
            if (running.has(e.id)) current(e.id).leaving = true;
          } else if (e.t === 'sync' || e.t === 'syncAll') {
            const l = running.has(e.id) ? current(e.id) : undefined;
            if (l && rec.members[e.id]?.epoch === l.epoch) {
              for (let p = 0; p < P; p++) {
                if (e.t === 'sync' && p !== e.p) continue;
                const entry = rec.syncing[p]!.find((s) => s.id === e.id);
                if (entry && rec.owners[p]!.length > 0) l.synced[String(p)] = rec.version;
              }
            }
          } else if (e.t === 'baseline') {
            // An operator's write (LocalCluster.setBaseline, the admin CLI): the record spread.
            rec = { ...rec, baseline: e.ids.map((id) => ({ id })), adjust: null, version: rec.version + 1 };
          } else if (e.t === 'acceptLoss') {
            rec = { ...withLossAccepted(rec), version: rec.version + 1 };
          } else {
            const alive = [...running].map(current);
            for (const g of e.ghosts) {
              // The coordinator holds one observation per id: a ghost only for a node not renewing.
              // It may be stale, but not older than an epoch a record already listed: the
              // coordinator sees the lease revisions in order, and a lease that made it into a
              // record was seen renewing (within half a lease) by every coordinator not blind.
              if (alive.some((l) => l.id === g.id)) continue;
              const past = (written.get(g.id) ?? []).slice(listed.get(g.id) ?? 0);
              if (past.length > 0) alive.push(past[g.pick % past.length]!);
            }
            const next = coordinatorStep(rec, alive, (now += 10), caches);
            if (next !== null) {
              expect(next.version).toBe(rec.version + 1);
              for (const [id, m] of Object.entries(next.members)) {
                expect(alive.some((l) => l.id === id && l.epoch === m.epoch)).toBe(true);
                expect(dropped.has(tag(id, m.epoch))).toBe(false);
              }
              for (const [id, m] of Object.entries(rec.members)) {
                if (next.members[id]?.epoch === m.epoch) continue;
                dropped.add(tag(id, m.epoch));
                expect(next.departed?.[id]).toBe(m.epoch);
              }
              // Departures are remembered for good: an id's entry changes only to a later epoch.
              for (const id of Object.keys(rec.departed ?? {})) expect(next.departed?.[id]).toBeDefined();
              rec = next;
              for (const [id, m] of Object.entries(rec.members)) {
                listed.set(id, Math.max(listed.get(id) ?? 0, written.get(id)!.findIndex((l) => l.epoch === m.epoch)));
              }
            }
            // Whoever renews under an epoch that never left is a member now.
            for (const l of alive) {
              if (running.has(l.id) && current(l.id) === l && !dropped.has(tag(l.id, l.epoch))) expect(rec.members[l.id]?.epoch).toBe(l.epoch);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a killed node counted alive again after its drop stays out; its restart joins', () => {
    const lease = (id: string, epoch: string): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced: {} });
    const n1 = lease('n1', 'a');
    const n2 = lease('n2', 'a');
    const n3 = lease('n3', 'a');
    let rec = initialTopology({ clusterId: 'c', partitions: P, backups: 1, leases: [n1, n2, n3] });
    // n2 killed: judged dead, dropped.
    rec = coordinatorStep(rec, [n1, n3], 1000)!;
    expect(rec.members['n2']).toBeUndefined();
    expect(rec.departed).toEqual({ n2: 'a' });
    // The coordinator stalls and counts every lease it observed afresh, n2's stale one included:
    // nothing to write (before ADR 0039 this re-added n2 under its old epoch, as a puller).
    expect(coordinatorStep(rec, [n1, n2, n3], 1500)).toBeNull();
    // n2 restarts: a new epoch joins and pulls what the assignment gives it.
    const back = lease('n2', 'b');
    rec = coordinatorStep(rec, [n1, back, n3], 2000)!;
    expect(rec.members['n2']?.epoch).toBe('b');
    expect(rec.syncing.some((s) => s.some((e) => e.id === 'n2'))).toBe(true);
  });
});
