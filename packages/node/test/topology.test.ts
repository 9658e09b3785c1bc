/**
 * Properties of the coordinator's pure step function (nextTopology), driven by random sequences
 * of membership events: deaths, (re)joins under a new epoch, completed pulls, baseline changes.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { computeAssignment } from '@gridlink/affinity';
import type { LeaseRecord, TopologyRecord } from '@gridlink/node';
import { initialTopology, isBalanced, nextTopology, partitionMapOf } from '@gridlink/node/internal';

const IDS = ['n1', 'n2', 'n3', 'n4', 'n5'];
const P = 24;

type Event =
  | { t: 'die'; id: string }
  | { t: 'join'; id: string }
  | { t: 'sync'; id: string }
  | { t: 'baseline'; ids: string[] }
  | { t: 'step' };

const event: fc.Arbitrary<Event> = fc.oneof(
  fc.record({ t: fc.constant('die' as const), id: fc.constantFrom(...IDS) }),
  fc.record({ t: fc.constant('join' as const), id: fc.constantFrom(...IDS) }),
  fc.record({ t: fc.constant('sync' as const), id: fc.constantFrom(...IDS) }),
  fc.record({ t: fc.constant('baseline' as const), ids: fc.subarray(IDS, { minLength: 1 }) }),
  fc.constant({ t: 'step' as const }),
);

const lease = (id: string, epoch: string): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced: {} });

describe('nextTopology', () => {
  it('owners always hold the data; a partition whose holders all died is lost, never re-created empty; syncing ends balanced', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 }), fc.array(event, { maxLength: 40 }), (backups, events) => {
        let epochN = 0;
        const alive = new Map<string, LeaseRecord>();
        for (const id of IDS.slice(0, 3)) alive.set(id, lease(id, `e${epochN++}`));
        let rec: TopologyRecord = initialTopology({ clusterId: 'c', partitions: P, backups, leases: [...alive.values()] });
        // Model of who holds an up-to-date copy of each partition: "id/epoch".
        const holders: Set<string>[] = rec.owners.map((o) => new Set(o.map((id) => `${id}/${alive.get(id)!.epoch}`)));
        const everHeld = rec.owners.map((o) => o.length > 0);
        let now = 0;

        const step = (): void => {
          now += 10;
          const next = nextTopology(rec, [...alive.values()], now);
          if (next === null) return;
          expect(next.version).toBe(rec.version + 1);
          for (let p = 0; p < P; p++) {
            for (const id of next.owners[p]!) {
              expect(next.members[id]).toBeDefined();
              const tag = `${id}/${next.members[id]!.epoch}`;
              const wasOwner = rec.owners[p]!.includes(id) && rec.members[id]?.epoch === next.members[id]!.epoch;
              const fresh = !everHeld[p];
              if (!wasOwner && !fresh) expect(holders[p]!.has(tag)).toBe(true);
              holders[p]!.add(tag);
            }
            if (next.owners[p]!.length > 0) everHeld[p] = true;
            const liveHolders = [...holders[p]!].filter((h) => {
              const [id, epoch] = h.split('/');
              return next.members[id!]?.epoch === epoch;
            });
            if (everHeld[p] && liveHolders.length === 0) expect(next.lost).toContain(p);
            if (next.lost.includes(p)) expect(next.owners[p]).toEqual([]);
            for (const s of next.syncing[p]!) expect(next.owners[p]!.includes(s.id)).toBe(false);
          }
          rec = next;
        };

        for (const e of events) {
          if (e.t === 'die') alive.delete(e.id);
          else if (e.t === 'join') alive.set(e.id, lease(e.id, `e${epochN++}`));
          else if (e.t === 'sync') {
            const l = alive.get(e.id);
            if (l && rec.members[e.id]?.epoch === l.epoch) {
              for (let p = 0; p < P; p++) {
                const entry = rec.syncing[p]!.find((s) => s.id === e.id);
                // A pull copies from the primary: only possible while one is alive.
                if (entry && rec.owners[p]!.length > 0) {
                  l.synced[String(p)] = rec.version;
                  holders[p]!.add(`${e.id}/${l.epoch}`);
                }
              }
            }
          } else if (e.t === 'baseline') {
            rec = { ...rec, baseline: e.ids.map((id) => ({ id })), version: rec.version + 1 };
          }
          step();
        }
        // Let everyone alive finish pulling: the record converges to the balanced assignment.
        for (let round = 0; round < 6; round++) {
          for (const l of alive.values()) {
            for (let p = 0; p < P; p++) {
              if (rec.syncing[p]!.some((s) => s.id === l.id) && rec.owners[p]!.length > 0) {
                l.synced[String(p)] = rec.version;
                holders[p]!.add(`${l.id}/${l.epoch}`);
              }
            }
          }
          step();
        }
        if (rec.baseline.some((n) => alive.has(n.id))) expect(isBalanced(rec)).toBe(true);
        // A fixed point: nothing changed, nothing written.
        expect(nextTopology(rec, [...alive.values()], now)).toBeNull();
      }),
      { numRuns: 150 },
    );
  });

  it('a brief absence moves no data: the dead node just leaves the owner lists', () => {
    const leases = IDS.slice(0, 4).map((id, i) => lease(id, `e${i}`));
    const t1 = initialTopology({ clusterId: 'c', partitions: 64, backups: 1, leases, autoAdjust: { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 } });
    const t2 = nextTopology(t1, leases.slice(1), 1)!;
    for (let p = 0; p < 64; p++) {
      expect(t2.owners[p]).toEqual(t1.owners[p]!.filter((id) => id !== 'n1'));
      expect(t2.syncing[p]).toEqual([]);
    }
    expect(t2.baseline).toEqual(t1.baseline);
  });

  it('auto-adjust: soft timeout restarted by each change, capped by the hard timeout', () => {
    const policy = { enabled: true, softTimeoutMs: 100, hardTimeoutMs: 250 };
    const leases = IDS.slice(0, 3).map((id, i) => lease(id, `e${i}`));
    let t = initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases, autoAdjust: policy });
    // n3 dies at 0: pending adjust starts.
    t = nextTopology(t, leases.slice(0, 2), 0)!;
    expect(t.adjust).toEqual({ firstAt: 0, lastAt: 0, liveKey: 'n1,n2' });
    expect(nextTopology(t, leases.slice(0, 2), 99)).toBeNull();
    // n4 joins at 90: the soft timeout restarts.
    const withN4 = [...leases.slice(0, 2), lease('n4', 'e9')];
    t = nextTopology(t, withN4, 90)!;
    expect(t.adjust?.lastAt).toBe(90);
    expect(nextTopology(t, withN4, 150)).toBeNull();
    const fired = nextTopology(t, withN4, 190)!;
    expect(fired.baseline.map((n) => n.id)).toEqual(['n1', 'n2', 'n4']);
    expect(fired.adjust).toBeNull();
    // Hard cap: changes every 80 ms keep the soft timeout from expiring, the hard one fires at 250.
    let h = nextTopology(initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases, autoAdjust: policy }), leases.slice(0, 2), 0)!;
    let live = leases.slice(0, 2);
    for (let at = 80; at < 250; at += 80) {
      live = at % 160 === 0 ? leases.slice(0, 2) : [...leases.slice(0, 2), lease('n5', `x${at}`)];
      h = nextTopology(h, live, at) ?? h;
      expect(h.adjust).not.toBeNull();
    }
    const capped = nextTopology(h, live, 250)!;
    expect(capped.adjust).toBeNull();
    expect(capped.baseline.map((n) => n.id).sort()).toEqual(live.map((l) => l.id).sort());
  });

  it('the partition map points every partition at its first owner, -1 when lost', () => {
    const leases = IDS.slice(0, 3).map((id, i) => lease(id, `e${i}`));
    const t = initialTopology({ clusterId: 'c', partitions: 32, backups: 0, leases });
    const lost = nextTopology(t, leases.slice(1), 1)!;
    const map = partitionMapOf(lost);
    const a = computeAssignment({ partitions: 32, backups: 0, baseline: t.baseline, alive: ['n2', 'n3'] });
    for (let p = 0; p < 32; p++) {
      if (lost.lost.includes(p)) expect(map.primaries[p]).toBe(-1);
      else expect(map.nodes[map.primaries[p]!]!.id).toBe(a.primaries[p]);
    }
    expect(map.nodes.find((n) => n.id === 'n1')?.alive).toBe(false);
  });
});
