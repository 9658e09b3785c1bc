import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode } from '@gridlink/protocol';
import type { TopologyRecord } from '@gridlink/node';
import { roleOf, routeRequest } from '@gridlink/node/internal';

const IDS = ['a', 'b', 'c', 'd'];
const P = 6;

const record: fc.Arbitrary<TopologyRecord> = fc
  .record({
    members: fc.subarray(IDS),
    owners: fc.array(fc.subarray(IDS), { minLength: P, maxLength: P }),
    syncing: fc.array(fc.subarray(IDS), { minLength: P, maxLength: P }),
    lost: fc.subarray([0, 1, 2, 3, 4, 5]),
    epochs: fc.array(fc.constantFrom('e1', 'e2'), { minLength: IDS.length, maxLength: IDS.length }),
  })
  .map(({ members, owners, syncing, lost, epochs }) => ({
    clusterId: 'c',
    version: 7,
    partitions: P,
    backups: 1,
    baseline: IDS.map((id) => ({ id })),
    members: Object.fromEntries(members.map((id) => [id, { epoch: epochs[IDS.indexOf(id)]!, host: 'h', port: 1 }])),
    addresses: {},
    owners: owners.map((o, p) => (lost.includes(p) ? [] : o)),
    syncing: syncing.map((s) => s.map((id) => ({ id, since: 1 }))),
    lost,
    autoAdjust: { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 },
    adjust: null,
  }));

describe('routing decisions', () => {
  it('serve locally only as the member primary with a valid lease; forward once, never to itself; lost is lost', () => {
    fc.assert(
      fc.property(
        record,
        fc.constantFrom(...IDS),
        fc.constantFrom('e1', 'e2'),
        fc.integer({ min: -1, max: P }),
        fc.boolean(),
        fc.boolean(),
        (t, me, epoch, p, allowForward, lease) => {
          const d = routeRequest(t, me, epoch, p, allowForward, lease);
          const inRange = p >= 0 && p < P;
          const primary = inRange ? t.owners[p]![0] : undefined;
          const member = t.members[me]?.epoch === epoch;
          if (!inRange) {
            expect(d).toMatchObject({ kind: 'error', code: ErrorCode.BAD_REQUEST });
            return;
          }
          if (t.lost.includes(p) || primary === undefined) {
            expect(d).toMatchObject({ kind: 'error', code: ErrorCode.PARTITION_LOST });
            return;
          }
          if (d.kind === 'local') {
            expect(primary).toBe(me);
            expect(member && lease).toBe(true);
            expect(roleOf(t, me, epoch, p)).toBe('primary');
          } else if (d.kind === 'forward') {
            expect(allowForward).toBe(true);
            expect(d.to).toBe(primary);
            expect(d.to).not.toBe(me);
          } else if (primary === me && member) {
            // Its own partition, but it cannot vouch for its lease: not ready yet (retry here).
            expect(lease).toBe(false);
            expect(d.code).toBe(ErrorCode.NOT_READY);
          } else {
            expect(d.code).toBe(ErrorCode.NOT_PRIMARY);
            expect(!allowForward || primary === me).toBe(true);
          }
          // Exactly one decision for the primary that is a member with a valid lease.
          if (primary === me && member && lease) expect(d.kind).toBe('local');
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('roles: none unless a member under this epoch; primary first owner; syncing never an owner role', () => {
    fc.assert(
      fc.property(record, fc.constantFrom(...IDS), fc.constantFrom('e1', 'e2'), fc.integer({ min: 0, max: P - 1 }), (t, me, epoch, p) => {
        const r = roleOf(t, me, epoch, p);
        if (t.members[me]?.epoch !== epoch) expect(r).toBe('none');
        if (r === 'primary') expect(t.owners[p]![0]).toBe(me);
        if (r === 'backup') expect(t.owners[p]!.slice(1)).toContain(me);
        if (r === 'syncing') expect(t.owners[p]).not.toContain(me);
        expect(roleOf(null, me, epoch, p)).toBe('none');
      }),
      { numRuns: 1000 },
    );
  });
});
