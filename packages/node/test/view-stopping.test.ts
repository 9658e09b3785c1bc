/**
 * A replica that answered NODE_STOPPING stops being a replication target at once (ADR 0034):
 * exactly that (id, epoch), for every partition, until a topology no longer lists that epoch; a
 * restart under the same id (a new epoch) is a target again, and no other error drops anyone.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode } from '@gridlink/protocol';
import type { LeaseRecord, TopologyRecord } from '@gridlink/node';
import { GridNodeError } from '../src/errors.js';
import { initialTopology, Scheduler } from '@gridlink/node/internal';
import { ClusterView, GONE } from '../src/membership/view.js';

const IDS = ['a', 'b', 'c', 'd'];
const P = 16;

const lease = (id: string, epoch = `${id}-1`): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced: {} });

function topology(backups: number, epochs: Record<string, string> = {}): TopologyRecord {
  return initialTopology({ clusterId: 'c', partitions: P, backups, leases: IDS.map((id) => lease(id, epochs[id])) });
}

const stopping = new GridNodeError(ErrorCode.NODE_STOPPING, 'the node is shutting down');

/** Targets of p by the topology alone (owners and pullers other than `self`). */
function expected(t: TopologyRecord, self: string, p: number, departed: Set<string>): string[] {
  const ids = [...t.owners[p]!, ...t.syncing[p]!.map((e) => e.id)];
  return ids.filter((id) => id !== self && !departed.has(`${id}:${t.members[id]!.epoch}`));
}

describe('ClusterView.noteStopping', () => {
  it('drops exactly the stopping (id, epoch) from every partition, and only for NODE_STOPPING', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.record({ who: fc.constantFrom(...IDS), stopping: fc.boolean() }), { maxLength: 6 }),
        (backups, notes) => {
          const view = new ClusterView('a', P, new Scheduler(), () => true);
          const t = topology(backups);
          view.set(t);
          const departed = new Set<string>();
          for (const n of notes) {
            const target = { id: n.who, epoch: t.members[n.who]!.epoch };
            const err = n.stopping ? stopping : new GridNodeError(ErrorCode.TIMEOUT, 'slow');
            expect(view.noteStopping(target, err)).toBe(n.stopping);
            if (n.stopping) departed.add(`${target.id}:${target.epoch}`);
          }
          for (let p = 0; p < P; p++) expect(view.targets(p).map((x) => x.id)).toEqual(expected(t, 'a', p, departed));
        },
      ),
    );
  });

  it('ends a replication race waiting on that target, and forgets it once a topology has another epoch', async () => {
    const view = new ClusterView('a', P, new Scheduler(), () => true);
    const t1 = topology(3);
    view.set(t1);
    const b = { id: 'b', epoch: t1.members['b']!.epoch };
    const never = new Promise<never>(() => {});
    const race = view.raceTopology(never, () => view.isTarget(0, b));
    view.noteStopping(b, stopping);
    expect(await race).toBe(GONE);
    expect(view.isTarget(0, b)).toBe(false);
    // An error about an epoch the topology does not list drops nobody.
    expect(view.noteStopping({ id: 'c', epoch: 'old' }, stopping)).toBe(true);
    expect(view.targets(0).map((x) => x.id)).toContain('c');
    // b restarted: same id, new epoch, a target again.
    const t2 = { ...topology(3, { b: 'b-2' }), version: t1.version + 1 };
    view.set(t2);
    expect(view.isTarget(0, { id: 'b', epoch: 'b-2' })).toBe(true);
    // ...and the old epoch's refusal is forgotten, not carried over.
    view.set({ ...t1, version: t2.version + 1 });
    expect(view.isTarget(0, b)).toBe(true);
  });
});
