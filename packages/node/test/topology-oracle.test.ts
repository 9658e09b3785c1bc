/**
 * The coordinator's step, made cheaper at large partition counts (ADR 0003, amendment on step
 * cost), gives exactly the results it gave before: `initialTopology`, `nextTopology` and
 * `coordinatorStep` against verbatim copies of the functions as they were
 * (`helpers/topology-reference.ts`), over random cluster histories: joins, deaths, restarts under
 * new epochs, graceful stops, pulls reported done (and stale reports), owners behind reporting
 * they caught up, stale leases counted alive, operators' baseline writes and accepted losses,
 * cache rules changing (IGNORE, fewer and more backups than the cluster), zones and weights,
 * records read back from the control plane, odd records, and time passing around the auto-adjust
 * timeouts. Each result is compared deep and as JSON text (records are stored and compared as
 * JSON), null included. The inputs are frozen: a step may reuse the lists of the record it moves
 * on from, never change them.
 */
import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { initialTopology, nextTopology, withLossAccepted, type CacheRule, type LeaseRecord, type TopologyRecord } from '../src/control/topology.js';
import { sameJson } from '../src/control/same-json.js';
import { coordinatorStep } from '../src/membership/handback.js';
import * as reference from './helpers/topology-reference.js';

const IDS = ['n1', 'n2', 'n3', 'n4', 'n5'];
const POLICIES = ['READ_WRITE_SAFE', 'READ_ONLY_SAFE', 'IGNORE'] as const;

type Event =
  | { t: 'die'; id: string }
  /** A join, or a restart under a new epoch when the node runs. */
  | { t: 'start'; id: string }
  | { t: 'leave'; id: string }
  /** A pull reported done: 0 at the current version, 1 one version before it was asked (too old), 2 for a partition it may not pull. */
  | { t: 'sync'; id: string; p: number; how: 0 | 1 | 2 }
  | { t: 'syncAll'; id: string }
  /** An owner behind reports it caught up (on one partition or all; `stale`: at a version before it was marked). */
  | { t: 'caughtUp'; id: string; p: number; all: boolean; stale: boolean }
  /** The next step counts a lease this node wrote in the past alive (when it does not run now). */
  | { t: 'ghost'; id: string; pick: number }
  | { t: 'baseline'; ids: string[] }
  | { t: 'acceptLoss'; p: number; all: boolean }
  | { t: 'rules'; rules: { backups: number; policy: (typeof POLICIES)[number] }[] }
  /** The record as read back from the control plane. */
  | { t: 'reload' }
  /** A record no step of today writes: owners of p rotated (an older version, an operator). */
  | { t: 'perturb'; p: number; k: number }
  | { t: 'step'; dt: number; rotate: number };

const on = <T extends 'die' | 'start' | 'leave' | 'syncAll'>(t: T): fc.Arbitrary<{ t: T; id: string }> => fc.record({ t: fc.constant(t), id: fc.constantFrom(...IDS) });
const partition = fc.nat(63);
/** Cache rules; now and then a ladder of every depth, under which owners fall behind one rank at a time. */
const rulesArb = fc.oneof(
  { arbitrary: fc.array(fc.record({ backups: fc.integer({ min: 0, max: 3 }), policy: fc.constantFrom(...POLICIES) }), { maxLength: 3 }), weight: 2 },
  { arbitrary: fc.constant([0, 1, 2, 3].map((backups) => ({ backups, policy: 'READ_WRITE_SAFE' as const }))), weight: 1 },
);

const event: fc.Arbitrary<Event> = fc.oneof(
  { arbitrary: on('die'), weight: 3 },
  { arbitrary: on('start'), weight: 3 },
  { arbitrary: on('leave'), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('sync' as const), id: fc.constantFrom(...IDS), p: partition, how: fc.constantFrom(0 as const, 0 as const, 1 as const, 2 as const) }), weight: 3 },
  { arbitrary: on('syncAll'), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('caughtUp' as const), id: fc.constantFrom(...IDS), p: partition, all: fc.boolean(), stale: fc.constantFrom(false, false, true) }), weight: 3 },
  { arbitrary: fc.record({ t: fc.constant('ghost' as const), id: fc.constantFrom(...IDS), pick: fc.nat() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('baseline' as const), ids: fc.subarray(IDS, { minLength: 1 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('acceptLoss' as const), p: partition, all: fc.boolean() }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('rules' as const), rules: rulesArb }), weight: 1 },
  { arbitrary: fc.constant({ t: 'reload' as const }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('perturb' as const), p: partition, k: fc.integer({ min: 1, max: 3 }) }), weight: 1 },
  { arbitrary: fc.record({ t: fc.constant('step' as const), dt: fc.constantFrom(0, 10, 10, 40, 120, 400, 3000), rotate: fc.nat(4) }), weight: 10 },
);

const scenario = fc.record({
  partitions: fc.constantFrom(1, 4, 8, 16, 16, 32),
  backups: fc.integer({ min: 0, max: 2 }),
  running: fc.integer({ min: 1, max: 5 }),
  /** The first record's baseline: the first leases (undefined), or these nodes. */
  baseline: fc.option(fc.subarray(IDS, { minLength: 1 }), { nil: undefined }),
  autoAdjust: fc.option(fc.record({ enabled: fc.boolean(), softTimeoutMs: fc.constantFrom(0, 50, 300), hardTimeoutMs: fc.constantFrom(100, 1000, 5000) }), { nil: undefined }),
  zones: fc.boolean(),
  weights: fc.boolean(),
  rules: rulesArb,
  events: fc.array(event, { minLength: 10, maxLength: 150, size: 'max' }),
});

function rulesOf(rules: { backups: number; policy: (typeof POLICIES)[number] }[]): CacheRule[] {
  return deepFreeze(rules.map((r, i) => ({ name: `c${i}`, ...r })));
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** The new result is the old one: the same JSON text, deep-equal, null when it was null. */
function same<T>(got: T | null, want: T | null): void {
  expect(got === null).toBe(want === null);
  expect(JSON.stringify(got)).toBe(JSON.stringify(want));
  // Deep and strict (prototypes, fields set to undefined); toStrictEqual only to show a difference.
  if (!isDeepStrictEqual(got, want)) expect(got).toStrictEqual(want);
}

describe('the cheaper coordinator step', () => {
  it('returns exactly what the step returned before, over random cluster histories (property)', () => {
    // Cases met (the property is not vacuous on any of them).
    const met = { steps: 0, nothing: 0, lost: 0, ignoreServed: 0, lostCaches: 0, behind: 0, floors: 0, departed: 0, adjusted: 0, deferred: 0, deferredToNothing: 0 };
    fc.assert(
      fc.property(scenario, (s) => {
        let n = 0;
        /** Every lease each node wrote (the last one is the current one). */
        const written = new Map<string, LeaseRecord[]>();
        const running = new Set<string>();
        const start = (id: string): void => {
          const i = IDS.indexOf(id);
          const l: LeaseRecord = { id, epoch: `${id}-e${n}`, host: `h${i}`, port: 1 + (n % 3), synced: {} };
          n++;
          if (s.zones && i !== 4) l.zone = `z${i % 2}`;
          if (s.weights && i % 2 === 1) l.weight = i;
          written.set(id, [...(written.get(id) ?? []), l]);
          running.add(id);
        };
        for (const id of IDS.slice(0, s.running)) start(id);
        const current = (id: string): LeaseRecord => written.get(id)!.at(-1)!;
        /** Leases as one step is given them: copies, frozen. */
        const snapshot = (ls: LeaseRecord[]): LeaseRecord[] => deepFreeze(ls.map((l) => structuredClone(l)));

        const opts = { clusterId: 'c', partitions: s.partitions, backups: s.backups, leases: snapshot([...running].map(current)), ...(s.baseline ? { baseline: s.baseline.map((id) => ({ id })) } : {}), ...(s.autoAdjust ? { autoAdjust: s.autoAdjust } : {}) };
        deepFreeze(opts);
        let rec = initialTopology(opts);
        same(rec, reference.initialTopology(opts));
        deepFreeze(rec);
        let caches = rulesOf(s.rules);
        let ghosts: LeaseRecord[] = [];
        let now = 0;

        for (const e of s.events) {
          if (e.t === 'die') running.delete(e.id);
          else if (e.t === 'start') start(e.id);
          else if (e.t === 'leave') {
            if (running.has(e.id)) current(e.id).leaving = true;
          } else if (e.t === 'sync' || e.t === 'syncAll') {
            if (!running.has(e.id)) continue;
            const l = current(e.id);
            for (let p = 0; p < s.partitions; p++) {
              if (e.t === 'sync' && p !== e.p % s.partitions) continue;
              const entry = rec.syncing[p]!.find((x) => x.id === e.id);
              if (e.t === 'sync' && e.how === 2) l.synced[String(p)] = rec.version;
              else if (entry) l.synced[String(p)] = e.t === 'sync' && e.how === 1 ? entry.since - 1 : rec.version;
            }
          } else if (e.t === 'caughtUp') {
            if (!running.has(e.id)) continue;
            const l = current(e.id);
            for (const [key, ids] of Object.entries(rec.behind ?? {})) {
              if (!e.all && Number(key) !== e.p % s.partitions) continue;
              const b = ids[e.id];
              if (b) l.caughtUp = { ...l.caughtUp, [key]: e.stale ? b.since - 1 : rec.version };
            }
          } else if (e.t === 'ghost') {
            if (running.has(e.id)) continue;
            const past = written.get(e.id) ?? [];
            if (past.length > 0) ghosts.push(past[e.pick % past.length]!);
          } else if (e.t === 'baseline') {
            // An operator's write (LocalCluster.setBaseline, the admin CLI): the record spread.
            rec = deepFreeze({ ...rec, baseline: e.ids.map((id) => ({ id })), adjust: null, version: rec.version + 1 });
          } else if (e.t === 'acceptLoss') {
            rec = deepFreeze({ ...withLossAccepted(rec, e.all ? undefined : [e.p % s.partitions], now), version: rec.version + 1 });
          } else if (e.t === 'rules') caches = rulesOf(e.rules);
          else if (e.t === 'reload') rec = deepFreeze(JSON.parse(JSON.stringify(rec)) as TopologyRecord);
          else if (e.t === 'perturb') {
            const p = e.p % s.partitions;
            const o = rec.owners[p]!;
            const k = o.length === 0 ? 0 : e.k % o.length;
            const owners = rec.owners.slice();
            owners[p] = [...o.slice(k), ...o.slice(0, k)];
            rec = deepFreeze({ ...rec, owners, version: rec.version + 1 });
          } else {
            now += e.dt;
            const live = [...[...running].map(current), ...ghosts];
            ghosts = [];
            // The order the coordinator lists the leases in is its own.
            const alive = snapshot([...live.slice(e.rotate % (live.length || 1)), ...live.slice(0, e.rotate % (live.length || 1))]);
            const given = caches.length === 0 && e.rotate === 0 ? undefined : caches;
            const stepped = reference.nextTopology(rec, alive, now, given);
            same(nextTopology(rec, alive, now, given), stepped);
            const want = reference.coordinatorStep(rec, alive, now, given);
            const got = coordinatorStep(rec, alive, now, given);
            same(got, want);
            met.steps++;
            if (want === null) met.nothing++;
            if (stepped !== null && JSON.stringify(want) !== JSON.stringify(stepped)) met[want === null ? 'deferredToNothing' : 'deferred']++;
            if (got === null) continue;
            if (got.lost.length > 0) met.lost++;
            if (got.lost.some((p) => got.owners[p]!.length > 0)) met.ignoreServed++;
            if (got.lostCaches) met.lostCaches++;
            if (got.behind) met.behind++;
            if (got.floors) met.floors++;
            if (got.departed) met.departed++;
            if (JSON.stringify(got.baseline) !== JSON.stringify(rec.baseline)) met.adjusted++;
            rec = deepFreeze(got);
          }
        }
      }),
      { numRuns: 600 },
    );
    for (const [k, v] of Object.entries(met)) expect(v, k).toBeGreaterThan(k === 'steps' || k === 'nothing' ? 1000 : 20);
  });

  it('returns exactly what the step returned before at the scale of the bench: a drop, the adjust, a restart pulling, graceful stops, per-cache losses', () => {
    const P = 4096;
    const lease = (i: number, epoch = `e${i}`): LeaseRecord => ({ id: `gridlink-${i}`, epoch, host: `gridlink-${i}.gridlink`, port: 10800, synced: {} });
    const autoAdjust = { enabled: true, softTimeoutMs: 100, hardTimeoutMs: 1000 };
    const leases = [lease(0), lease(1), lease(2)];
    const opts = deepFreeze({ clusterId: 'gridlink', partitions: P, backups: 1, leases: leases.map((l) => structuredClone(l)), autoAdjust });
    let rec = initialTopology(opts);
    same(rec, reference.initialTopology(opts));
    let now = 0;
    const written: (TopologyRecord | null)[] = [];
    let deferred = 0;
    const step = (alive: LeaseRecord[], dt: number, caches: CacheRule[] = []): void => {
      now += dt;
      const given = deepFreeze(alive.map((l) => structuredClone(l)));
      deepFreeze(rec);
      const stepped = nextTopology(rec, given, now, caches);
      same(stepped, reference.nextTopology(rec, given, now, caches));
      const got = coordinatorStep(rec, given, now, caches);
      same(got, reference.coordinatorStep(rec, given, now, caches));
      if (JSON.stringify(got) !== JSON.stringify(stepped)) deferred++;
      written.push(got);
      if (got !== null) rec = got;
    };
    const pulled = (l: LeaseRecord, share: number): void => {
      rec.syncing.forEach((s, p) => {
        const e = s.find((x) => x.id === l.id);
        if (e && p % share === 0) l.synced[String(p)] = e.since;
      });
    };
    step(leases, 1);
    // gridlink-2 dies: the drop, then nothing while the adjust is pending, then the adjust.
    const two = leases.slice(0, 2);
    step(two, 1);
    step(two, 10);
    step(two, 200);
    step(two, 0);
    // It comes back under a new epoch and pulls, half then all: primaryships come back at once.
    const back = lease(2, 'e2b');
    const three = [...two, back];
    step(three, 10);
    step(three, 200);
    pulled(back, 2);
    step(three, 10);
    pulled(back, 1);
    step(three, 10);
    step(three, 10);
    // A graceful stop hands primaryships over.
    const leaving = { ...two[1]!, leaving: true };
    step([two[0]!, leaving, back], 10);
    step([two[0]!, leaving, back], 10);
    // Caches with fewer backups than the ranking and one ignoring losses: the same graceful stop
    // hands nothing over, and its end loses the cache with no backup where it was primary.
    const rules: CacheRule[] = [
      { name: 'a', backups: 0, policy: 'READ_WRITE_SAFE' },
      { name: 'b', backups: 0, policy: 'IGNORE' },
    ];
    step([two[0]!, back], 10, rules);
    step([two[0]!, back], 10, rules);
    step([{ ...two[0]!, leaving: true }, back], 10, rules);
    step([back], 10, rules);
    step([back], 10, rules);
    // Not vacuous: steps that wrote, steps that found nothing to write, hand-backs deferred.
    expect(written.filter((r) => r === null).length).toBeGreaterThan(2);
    expect(written.filter((r) => r !== null).length).toBeGreaterThan(5);
    expect(deferred).toBeGreaterThan(0);
  });
});

/**
 * A value built from a shape whose leaves are chosen, each side apart, among values that print
 * the same JSON (or, for a few, something else): NaN and null, -0 and 0, a Date and its text, a
 * boxed primitive, a `toJSON`, what JSON leaves out of objects and prints as null in lists.
 */
type Shape = { leaf: number } | { list: Shape[] } | { fields: [string, Shape][]; bare: boolean };

const LEAVES: (() => unknown)[][] = [
  [() => null, () => Number.NaN, () => Number.POSITIVE_INFINITY, () => -Infinity, () => ({ toJSON: () => null })],
  [() => undefined, () => () => 0, () => Symbol('s'), () => ({ toJSON: () => undefined })],
  [() => 0, () => -0, () => ({ toJSON: () => 0 }), () => new Number(0)],
  [() => 'x', () => new String('x'), () => ({ toJSON: () => 'x' })],
  [() => true, () => new Boolean(true)],
  [() => new Date(0), () => '1970-01-01T00:00:00.000Z'],
  [() => 1, () => 1.5, () => '1'],
  [() => ({}), () => Object.create(null) as object, () => new Map([[1, 2]]), () => []],
];

const shapeArb = fc.letrec<{ shape: Shape }>((tie) => ({
  shape: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ leaf: fc.nat(LEAVES.length - 1) }),
    fc.record({ list: fc.array(tie('shape'), { maxLength: 3 }) }),
    fc.record({ fields: fc.array(fc.tuple(fc.constantFrom('a', 'b', '1', '0', 'toJSON'), tie('shape')), { maxLength: 3 }), bare: fc.boolean() }),
  ),
})).shape;

/** The value of a shape, each leaf picked by `pick` among its look-alikes. */
function build(shape: Shape, pick: () => number): unknown {
  if ('leaf' in shape) {
    const options = LEAVES[shape.leaf]!;
    return options[pick() % options.length]!();
  }
  if ('list' in shape) return shape.list.map((s) => build(s, pick));
  const out: Record<string, unknown> = shape.bare ? (Object.create(null) as Record<string, unknown>) : {};
  for (const [k, s] of shape.fields) out[k] = build(s, pick);
  return out;
}

const picks = (seed: number[]): (() => number) => {
  let i = 0;
  return () => seed[i++ % seed.length]!;
};

describe('sameJson', () => {
  it('is JSON.stringify(a) === JSON.stringify(b) (property)', () => {
    const met = { same: 0, different: 0 };
    const check = (a: unknown, b: unknown): void => {
      const want = JSON.stringify(a) === JSON.stringify(b);
      met[want ? 'same' : 'different']++;
      expect(sameJson(a, b), `${JSON.stringify(a)} / ${JSON.stringify(b)}`).toBe(want);
    };
    fc.assert(
      fc.property(shapeArb, shapeArb, fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), (s1, s2, seedA, seedB) => {
        // The same shape, leaves picked apart: mostly the same text, told by the walk.
        check(build(s1, picks(seedA)), build(s1, picks(seedB)));
        // Two shapes: mostly different.
        check(build(s1, picks(seedA)), build(s2, picks(seedB)));
        // A value and the one JSON reads back from its text.
        const a = build(s1, picks(seedA));
        const text = JSON.stringify(a);
        if (text !== undefined) check(a, JSON.parse(text));
      }),
      { numRuns: 3000 },
    );
    const anything = fc.anything({ withBoxedValues: true, withMap: true, withSet: true, withNullPrototype: true, withDate: true, withTypedArray: true, withSparseArray: true, withObjectString: true });
    fc.assert(
      fc.property(anything, anything, (a, b) => {
        check(a, b);
        check(a, a);
        const text = JSON.stringify(a);
        if (text !== undefined) check(a, JSON.parse(text));
      }),
      { numRuns: 2000 },
    );
    expect(met.same).toBeGreaterThan(1000);
    expect(met.different).toBeGreaterThan(1000);
  });
});
