import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { PartitionMap } from '@gridlink/protocol';
import { EMPTY_MAP_STATE, acceptMap, isStale, observeVersion, primaryOf, type MapState } from '@gridlink/client/internal';

const P = 8;
const nodes = ['a', 'b', 'c'].map((id, i) => ({ id, host: '127.0.0.1', port: 1000 + i, alive: true }));

const mapArb: fc.Arbitrary<PartitionMap> = fc.record({
  version: fc.integer({ min: 0, max: 50 }),
  partitions: fc.constant(P),
  backups: fc.constant(1),
  nodes: fc.constant(nodes),
  primaries: fc.array(fc.integer({ min: -1, max: nodes.length - 1 }), { minLength: P, maxLength: P }),
});

type Event = { kind: 'map'; map: PartitionMap } | { kind: 'version'; version: number; flag: boolean } | { kind: 'garbage'; value: unknown };
const eventArb: fc.Arbitrary<Event> = fc.oneof(
  mapArb.map((map) => ({ kind: 'map' as const, map })),
  fc.record({ kind: fc.constant('version' as const), version: fc.integer({ min: 0, max: 60 }), flag: fc.boolean() }),
  fc.record({
    kind: fc.constant('garbage' as const),
    value: fc.oneof(fc.constant(null), fc.record({ version: fc.integer({ min: 100, max: 200 }), partitions: fc.constant(P), nodes: fc.constant(nodes), primaries: fc.constant([9]) })),
  }),
);

describe('partition map merging', () => {
  it('the installed map is always the newest valid one seen; older never replaces newer', () => {
    fc.assert(
      fc.property(fc.array(eventArb, { maxLength: 40 }), (events) => {
        let state: MapState = EMPTY_MAP_STATE;
        let newest: PartitionMap | null = null;
        let maxSeen = -1;
        for (const e of events) {
          const before = state.map?.version ?? -1;
          if (e.kind === 'map') {
            const r = acceptMap(state, e.map);
            state = r.state;
            expect(r.accepted).toBe(e.map.version > before || before === -1 && newest === null);
            if (newest === null || e.map.version > newest.version) newest = e.map;
            maxSeen = Math.max(maxSeen, e.map.version);
          } else if (e.kind === 'version') {
            const r = observeVersion(state, e.version, e.flag);
            maxSeen = Math.max(maxSeen, e.version);
            expect(r.refresh).toBe(e.flag || maxSeen > before);
            state = r.state;
          } else {
            const r = acceptMap(state, e.value);
            expect(r.accepted).toBe(false);
            state = r.state;
          }
          // Monotonic: the map version never goes down.
          expect(state.map?.version ?? -1).toBeGreaterThanOrEqual(before);
          expect(state.knownVersion).toBe(maxSeen);
        }
        expect(state.map).toBe(newest);
        expect(isStale(state)).toBe(state.map === null || maxSeen > state.map.version);
      }),
    );
  });

  it('primaryOf follows the primaries index and reports lost partitions as null', () => {
    fc.assert(
      fc.property(mapArb, fc.integer({ min: 0, max: P - 1 }), (map, p) => {
        const idx = map.primaries[p] as number;
        expect(primaryOf(map, p)).toBe(idx < 0 ? null : nodes[idx]);
      }),
    );
  });
});
