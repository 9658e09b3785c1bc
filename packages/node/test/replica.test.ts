import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { TopologyRecord } from '@gridlink/node';
import {
  INITIAL_REPLICA,
  mayWrite,
  onRecord,
  phaseOf,
  roleOf,
  step,
  type ReplicaAction,
  type ReplicaEvent,
  type ReplicaState,
  type Role,
} from '@gridlink/node/internal';

const ROLES: Role[] = ['primary', 'backup', 'syncing', 'none'];

/** Events as the node feeds them; a "record" step is the backup's decision on one record. */
type Input = ReplicaEvent | { type: 'record'; applies: boolean } | { type: 'fence-done-latest' };

const event: fc.Arbitrary<Input> = fc.oneof(
  fc.record({ type: fc.constant('topology-applied' as const), role: fc.constantFrom(...ROLES), promoted: fc.boolean(), synced: fc.boolean() }),
  fc.constant({ type: 'pull-abandoned' as const }),
  fc.record({
    type: fc.constant('snapshot-part' as const),
    id: fc.constantFrom('s1', 's2'),
    index: fc.integer({ min: 0, max: 2 }),
    total: fc.integer({ min: 1, max: 3 }),
    have: fc.integer({ min: 0, max: 2 }),
  }),
  fc.constant({ type: 'snapshot-installed' as const }),
  fc.constant({ type: 'gap-detected' as const }),
  fc.record({ type: fc.constant('fence-done' as const), id: fc.integer({ min: 0, max: 5 }) }),
  fc.constant({ type: 'fence-done-latest' as const }),
  fc.record({ type: fc.constant('record' as const), applies: fc.boolean() }),
);

/**
 * Runs the machine as the node does: topology events normalised like applyTopology (promoted
 * only as primary), snapshot-part followed by the install it asks for, records applied or
 * buffered per onRecord (a failed apply feeds gap-detected). Calls `check` after every input.
 */
function run(inputs: Input[], check: (before: ReplicaState, input: Input, after: ReplicaState, actions: readonly ReplicaAction[], decision?: string) => void): void {
  let s: ReplicaState = INITIAL_REPLICA;
  for (const raw of inputs) {
    let input: Input = raw;
    if (input.type === 'topology-applied' && input.role !== 'primary') input = { ...input, promoted: false };
    if (input.type === 'fence-done-latest') input = { type: 'fence-done', id: s.fencing };
    const before = s;
    if (input.type === 'record') {
      const decision = onRecord(s);
      let actions: readonly ReplicaAction[] = [];
      if (decision === 'apply' && !input.applies) ({ state: s, actions } = step(s, { type: 'gap-detected' }));
      check(before, input, s, actions, decision);
      continue;
    }
    const t = step(s, input);
    s = t.state;
    check(before, input, s, t.actions);
    if (t.actions.some((a) => a.type === 'install-parts')) {
      const before2 = s;
      const t2 = step(s, { type: 'snapshot-installed' });
      s = t2.state;
      check(before2, { type: 'snapshot-installed' }, s, t2.actions);
    }
  }
}

describe('replica state machine', () => {
  it('a copy that missed a record never applies or acknowledges one before a snapshot is installed', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (inputs) => {
        let missed = false;
        run(inputs, (_before, input, after, _actions, decision) => {
          if (input.type === 'record' && missed) expect(decision).not.toBe('apply');
          if (input.type === 'record' && decision === 'apply' && !input.applies) missed = true;
          if (input.type === 'gap-detected') missed = true;
          if (input.type === 'snapshot-installed') missed = false;
          if (input.type === 'topology-applied' && input.role === 'none') missed = false; // dropped: starts empty
          if (missed) expect(after.awaitingSnapshot || after.buffering).toBe(true);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('a promoted primary accepts no write until its fence is done, and a stale fence-done does not end a newer fence', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (inputs) => {
        let pending: number | null = null;
        const started = new Set<number>();
        run(inputs, (_before, input, after, actions) => {
          for (const a of actions) {
            if (a.type !== 'fence') continue;
            expect(started.has(a.id)).toBe(false); // fence ids are never reused
            started.add(a.id);
            pending = a.id;
          }
          if (input.type === 'fence-done' && input.id === pending) pending = null;
          if (input.type === 'topology-applied' && input.role === 'none') pending = null;
          if (pending !== null) {
            expect(mayWrite(after)).toBe(false);
            expect(after.fencing).toBe(pending);
          }
          if (after.role === 'primary' && pending === null) expect(mayWrite(after)).toBe(true);
        });
      }),
      { numRuns: 500 },
    );
  });

  it('records arriving while a snapshot is on its way are buffered, and replayed before any other record applies', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (inputs) => {
        let buffered = 0;
        run(inputs, (before, input, after, actions, decision) => {
          if (input.type === 'record') {
            if (before.pulling && before.buffering) expect(decision).toBe('buffer');
            if (decision === 'buffer') buffered++;
            if (decision === 'apply') expect(buffered).toBe(0);
          }
          if (actions.some((a) => a.type === 'apply-buffered') || !after.buffering) buffered = 0;
        });
      }),
      { numRuns: 500 },
    );
  });

  it('a pull completes only through an installed snapshot, once per pull; role none forgets everything', () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 60 }), (inputs) => {
        run(inputs, (before, input, after, actions) => {
          const completes = actions.filter((a) => a.type === 'pull-complete').length;
          if (completes > 0) {
            expect(input.type).toBe('snapshot-installed');
            expect(before.pulling).toBe(true);
            expect(completes).toBe(1);
            expect(actions.findIndex((a) => a.type === 'apply-buffered')).toBeLessThan(actions.findIndex((a) => a.type === 'pull-complete'));
          }
          if (actions.some((a) => a.type === 'pull')) {
            expect(before.pulling).toBe(false);
            expect(after).toMatchObject({ role: 'syncing', pulling: true, buffering: true });
          }
          if (input.type === 'topology-applied' && input.role === 'none') {
            expect({ ...after, fences: 0 }).toEqual(INITIAL_REPLICA);
            expect(actions.map((a) => a.type)).toContain('drop');
          }
          if (input.type === 'topology-applied') expect(after.role).toBe(input.role);
          expect(phaseOf(after)).toBeTypeOf('string');
        });
      }),
      { numRuns: 500 },
    );
  });

  it('no two replicas are primary of a partition in one topology version', () => {
    const IDS = ['a', 'b', 'c'];
    const topology = fc
      .record({
        owners: fc.array(fc.shuffledSubarray(IDS), { minLength: 4, maxLength: 4 }),
        epochs: fc.array(fc.constantFrom('e1', 'e2'), { minLength: 3, maxLength: 3 }),
        members: fc.subarray(IDS),
      });
    fc.assert(
      fc.property(fc.array(topology, { minLength: 1, maxLength: 8 }), fc.array(fc.constantFrom('e1', 'e2'), { minLength: 3, maxLength: 3 }), (topos, own) => {
        // Each node holds its own replica per partition and feeds it every topology in order.
        const states = new Map<string, ReplicaState>();
        topos.forEach((t, i) => {
          const rec = {
            version: i + 1,
            partitions: 4,
            owners: t.owners,
            syncing: [[], [], [], []],
            members: Object.fromEntries(t.members.map((id) => [id, { epoch: t.epochs[IDS.indexOf(id)]!, host: 'h', port: 1 }])),
          } as unknown as TopologyRecord;
          for (let p = 0; p < 4; p++) {
            let primaries = 0;
            IDS.forEach((id, k) => {
              const key = `${id}/${p}`;
              const role = roleOf(rec, id, own[k]!, p);
              const s = step(states.get(key) ?? INITIAL_REPLICA, { type: 'topology-applied', role, promoted: role === 'primary', synced: false }).state;
              states.set(key, s);
              if (s.role === 'primary') primaries++;
            });
            expect(primaries).toBeLessThanOrEqual(1);
          }
        });
      }),
      { numRuns: 300 },
    );
  });
});
