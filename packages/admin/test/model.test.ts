import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { computeAssignment } from '@gridlink/affinity';
import type { LeaseRecord, TopologyRecord } from '@gridlink/node';
import { initialTopology, nextTopology, nodeSafety } from '@gridlink/node/internal';
import { AdminError, AdminInternalError, AdminRefusedError, AdminUsageError, ControlPlaneUnreachableError, baselineSpecs, classifyError, MAX_DURATION_MS, withTimeout, formatDuration, nodeSafe, parseDuration, parsePrometheus, partitionCounts, planBaseline, safetyOf, topologyView } from '@gridlink/admin';
import { ranges } from '../src/table.js';

const lease = (id: string, zone?: string): LeaseRecord => ({ id, epoch: `e-${id}`, host: '127.0.0.1', port: 1000 + Number(id.slice(1)), ...(zone ? { zone } : {}), synced: {} });

/** Runs the coordinator's pure step, with every pull reported done at once, until nothing changes. */
function settle(rec: TopologyRecord, leases: LeaseRecord[]): TopologyRecord {
  let cur = rec;
  for (let i = 0; i < 20; i++) {
    const ls = leases.map((l) => {
      const synced: Record<string, number> = {};
      cur.syncing.forEach((s, p) => {
        for (const e of s) if (e.id === l.id) synced[String(p)] = e.since;
      });
      return { ...l, synced };
    });
    const next = nextTopology(cur, ls, 0);
    if (next === null) return cur;
    cur = next;
  }
  throw new Error('did not settle');
}

const clusterArb = fc.record({
  nodes: fc.integer({ min: 1, max: 6 }),
  extra: fc.integer({ min: 1, max: 2 }),
  partitions: fc.integer({ min: 1, max: 48 }),
  backups: fc.integer({ min: 0, max: 2 }),
  zones: fc.boolean(),
});

describe('admin errors', () => {
  it('instanceof tells the classes apart: each error is an AdminError and its own class only', () => {
    const made = {
      usage: new AdminUsageError('--x', 'bad'),
      unreachable: new ControlPlaneUnreachableError('down'),
      refused: new AdminRefusedError('ADMIN_X', 'no'),
      internal: new AdminInternalError(new TypeError('boom')),
    };
    const classes = { usage: AdminUsageError, unreachable: ControlPlaneUnreachableError, refused: AdminRefusedError, internal: AdminInternalError };
    for (const [name, err] of Object.entries(made)) {
      expect(err).toBeInstanceOf(AdminError);
      expect(err).toBeInstanceOf(Error);
      for (const [other, cls] of Object.entries(classes)) expect(err instanceof cls, `${name} instanceof ${other}`).toBe(name === other);
    }
    expect(new Error('x') instanceof AdminError).toBe(false);
    expect(classifyError(made.usage)).toBe(made.usage);
    expect(classifyError(new TypeError('t'))).toBeInstanceOf(AdminInternalError);
  });

  it('a control plane call passes our own errors through and turns others into unreachable', async () => {
    const usage = new AdminUsageError('--node', 'unknown');
    await expect(withTimeout('a read', 1000, () => Promise.reject(usage))).rejects.toBe(usage);
    await expect(withTimeout('a read', 1000, () => Promise.reject(new Error('socket closed')))).rejects.toBeInstanceOf(ControlPlaneUnreachableError);
  });
});

describe('durations', () => {
  it('format then parse is the identity', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => parseDuration(formatDuration(ms), 'x') === ms));
  });
  it('refuses a duration longer than a timer can wait, naming the argument', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX_DURATION_MS + 1, max: 10_000_000_000_000 }), (ms) => {
        try {
          parseDuration(formatDuration(ms), '--timeout');
          return false;
        } catch (err) {
          return err instanceof AdminUsageError && err.argument === '--timeout' && /too large/.test(err.message);
        }
      }),
    );
    expect(() => parseDuration('600h', '--timeout')).toThrow(AdminUsageError);
    expect(parseDuration('596h', '--timeout')).toBe(596 * 3_600_000);
  });
  it('examples', () => {
    expect(parseDuration('10s', 'a')).toBe(10_000);
    expect(parseDuration('2m', 'a')).toBe(120_000);
    expect(parseDuration('1m30s', 'a')).toBe(90_000);
    expect(parseDuration('250ms', 'a')).toBe(250);
    expect(parseDuration('0', 'a')).toBe(0);
  });
  it('anything else is a usage error naming the argument', () => {
    fc.assert(
      fc.property(
        fc.string().filter((s) => s.trim() !== '0' && !/^(\d+(ms|s|m|h))+$/.test(s.trim())),
        (s) => {
          try {
            parseDuration(s, '--soft');
            return false;
          } catch (err) {
            return err instanceof AdminUsageError && err.argument === '--soft' && err.exitCode === 1;
          }
        },
      ),
    );
  });
});

describe('baseline plans', () => {
  it('re-planning the current baseline of a settled cluster moves nothing', () => {
    fc.assert(
      fc.property(clusterArb, (c) => {
        const leases = Array.from({ length: c.nodes }, (_, i) => lease(`n${i + 1}`, c.zones ? `z${i % 2}` : undefined));
        const rec = settle(initialTopology({ clusterId: 'c', partitions: c.partitions, backups: c.backups, leases }), leases);
        const plan = planBaseline(rec, rec.baseline);
        expect(plan.movesData).toBe(false);
        expect(plan.copiesToTransfer).toBe(0);
        expect(safetyOf(rec).safe).toBe(true);
        const counts = partitionCounts(rec);
        expect([...counts.values()].reduce((n, x) => n + x.primary, 0)).toBe(c.partitions);
      }),
    );
  });

  it('adding nodes: only the new nodes pull, and exactly what the coordinator then gives them', () => {
    fc.assert(
      fc.property(clusterArb, (c) => {
        const leases = Array.from({ length: c.nodes }, (_, i) => lease(`n${i + 1}`, c.zones ? `z${i % 2}` : undefined));
        let rec = settle(initialTopology({ clusterId: 'c', partitions: c.partitions, backups: c.backups, leases }), leases);
        const added = Array.from({ length: c.extra }, (_, i) => lease(`n${c.nodes + i + 1}`, c.zones ? `z${i % 3}` : undefined));
        const all = [...leases, ...added];
        rec = settle(rec, all); // they join: live, outside the baseline, holding nothing
        expect(rec.owners.every((o) => added.every((a) => !o.includes(a.id)))).toBe(true);
        const specs = baselineSpecs(rec, all.map((l) => l.id));
        const plan = planBaseline(rec, specs);
        for (const l of leases) expect(plan.perNode[l.id]!.gains).toBe(0);
        const after = settle({ ...rec, baseline: specs, adjust: null, version: rec.version + 1 }, all);
        for (const l of all) {
          const held = after.owners.filter((o) => o.includes(l.id)).length;
          const primary = after.owners.filter((o) => o[0] === l.id).length;
          expect(plan.perNode[l.id]!.copiesAfter).toBe(held);
          expect(plan.perNode[l.id]!.primaryAfter).toBe(primary);
        }
        const target = computeAssignment({ partitions: c.partitions, backups: c.backups, baseline: specs, alive: all.map((l) => l.id) });
        expect(plan.copiesToTransfer).toBe(added.reduce((n, a) => n + target.owners.filter((o) => o.includes(a.id)).length, 0));
        expect(plan.movesData).toBe(plan.copiesToTransfer > 0 || Object.values(plan.perNode).some((n) => n.drops > 0));
      }),
      { numRuns: 60 },
    );
  });

  it('removing a node: the plan predicts the settled owners, and the removed node ends up holding nothing', () => {
    fc.assert(
      fc.property(clusterArb.filter((c) => c.nodes >= 2), fc.nat(), (c, pick) => {
        const leases = Array.from({ length: c.nodes }, (_, i) => lease(`n${i + 1}`, c.zones ? `z${i % 2}` : undefined));
        const rec = settle(initialTopology({ clusterId: 'c', partitions: c.partitions, backups: c.backups, leases }), leases);
        const gone = leases[pick % leases.length]!.id;
        const specs = rec.baseline.filter((n) => n.id !== gone);
        const plan = planBaseline(rec, specs);
        expect(plan.removed).toEqual([gone]);
        expect(plan.perNode[gone]!.copiesAfter).toBe(0);
        const after = settle({ ...rec, baseline: specs, adjust: null, version: rec.version + 1 }, leases);
        expect(after.owners.some((o) => o.includes(gone))).toBe(false);
        expect(after.lost).toEqual([]);
        for (const l of leases) expect(plan.perNode[l.id]!.copiesAfter).toBe(after.owners.filter((o) => o.includes(l.id)).length);
      }),
      { numRuns: 60 },
    );
  });
});

describe('views of any reachable topology', () => {
  // Random histories: nodes die, come back under a new epoch, pulls complete or not.
  const step = fc.oneof(
    fc.record({ kind: fc.constant('kill' as const), node: fc.nat() }),
    fc.record({ kind: fc.constant('return' as const), node: fc.nat() }),
    fc.record({ kind: fc.constant('tick' as const), sync: fc.boolean() }),
  );
  type Step = { kind: 'kill'; node: number } | { kind: 'return'; node: number } | { kind: 'tick'; sync: boolean };
  /** The record after the history: nodes n1..n<c.nodes>, a node returning under epoch r<k>. */
  function historyOf(c: { nodes: number; partitions: number; backups: number }, steps: readonly Step[]): TopologyRecord {
    const ids = Array.from({ length: c.nodes }, (_, i) => `n${i + 1}`);
    const alive = new Map(ids.map((id) => [id, lease(id)]));
    let rec = settle(initialTopology({ clusterId: 'c', partitions: c.partitions, backups: c.backups, leases: [...alive.values()], autoAdjust: { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 0 } }), [...alive.values()]);
    let epoch = 0;
    for (const s of steps) {
      if (s.kind === 'kill') alive.delete(ids[s.node % ids.length]!);
      else if (s.kind === 'return') {
        const id = ids[s.node % ids.length]!;
        if (!alive.has(id)) alive.set(id, { ...lease(id), epoch: `r${epoch++}` });
      } else {
        const ls = [...alive.values()].map((l) => {
          const synced: Record<string, number> = {};
          if (s.sync) rec.syncing.forEach((sy, p) => sy.forEach((e) => e.id === l.id && (synced[String(p)] = e.since)));
          return { ...l, synced };
        });
        rec = nextTopology(rec, ls, 0) ?? rec;
      }
    }
    return rec;
  }
  it('counts, safety and the dashboard view agree with each other', () => {
    fc.assert(
      fc.property(clusterArb, fc.array(step, { maxLength: 12 }), (c, steps) => {
        const rec = historyOf(c, steps);
        const safety = safetyOf(rec);
        const counts = partitionCounts(rec);
        const owned = rec.owners.filter((o) => o.length > 0).length;
        expect([...counts.values()].reduce((n, x) => n + x.primary, 0)).toBe(owned);
        expect([...counts.values()].reduce((n, x) => n + x.moving, 0)).toBe(rec.syncing.reduce((n, s) => n + s.length, 0));
        if (safety.safe) for (const id of Object.keys(rec.members)) expect(nodeSafe(rec, id)).toBe(true);
        const view = topologyView(rec);
        expect(view.state.length).toBe(rec.partitions);
        expect([...view.state].filter((x) => x === 'l').length).toBe(safety.lost.length);
        expect([...view.state].filter((x) => x === 'm').length).toBe(safety.moving.length);
        expect(view.safe).toBe(safety.safe);
        view.primary.forEach((i, p) => expect(i === -1 ? undefined : view.nodes[i]!.id).toBe(rec.owners[p]![0]));
      }),
      { numRuns: 80 },
    );
  });
  it('with fenced entries, agree with the node\u2019s own rule (nodeSafety): a fenced life still a member counts for no copy (ADR 0065)', () => {
    // Entries for members under their epoch, for an earlier life (e-<id> once it returned), for a
    // node that is no member, and for an epoch never seen.
    const entry = fc.record({ node: fc.integer({ min: 1, max: 8 }), epoch: fc.constantFrom('current', 'first', 'other') });
    fc.assert(
      fc.property(clusterArb, fc.array(step, { maxLength: 12 }), fc.array(entry, { maxLength: 4 }), (c, steps, entries) => {
        const base = historyOf(c, steps);
        const fenced: Record<string, string> = {};
        for (const e of entries) {
          const id = `n${e.node}`;
          fenced[id] = e.epoch === 'current' ? (base.members[id]?.epoch ?? `e-${id}`) : e.epoch === 'first' ? `e-${id}` : 'never';
        }
        const rec: TopologyRecord = Object.keys(fenced).length > 0 ? { ...base, fenced } : base;
        const safety = safetyOf(rec);
        const lost = new Set(safety.lost);
        const all = Array.from({ length: 8 }, (_, i) => `n${i + 1}`);
        for (const id of all) {
          const node = nodeSafety(rec, id);
          const holds = (p: number): boolean => !lost.has(p) && ((rec.owners[p] ?? []).includes(id) || (rec.syncing[p] ?? []).some((e) => e.id === id));
          // The same verdict as the node's /health/safe judges it from the same record, which
          // answers `fenced` for a member asked to stop renewing, whatever it holds...
          const fencedNow = rec.members[id] !== undefined && rec.fenced?.[id] === rec.members[id].epoch;
          expect(nodeSafe(rec, id) && safety.lost.length === 0).toBe(node.safe && !fencedNow);
          if (fencedNow) expect(nodeSafe(rec, id)).toBe(false);
          // ...for the same partitions.
          expect(safety.underReplicated.filter(holds)).toEqual(node.underReplicated);
          expect(safety.moving.filter(holds)).toEqual(node.moving);
          expect(safety.lost).toEqual(node.lost);
        }
        if (safety.safe) for (const id of all) expect(nodeSafety(rec, id).safe).toBe(true);
        // Any member being fenced makes the cluster unsafe, even one holding nothing.
        const fencedNow = all.filter((id) => rec.members[id] !== undefined && rec.fenced?.[id] === rec.members[id].epoch);
        expect(safety.fenced).toEqual(fencedNow);
        if (fencedNow.length > 0) expect(safety.safe).toBe(false);
        expect(topologyView(rec).safe).toBe(safety.safe);
        // A fence under way makes every partition the fenced life holds under-replicated.
        for (const [id, epoch] of Object.entries(fenced)) {
          if (rec.members[id]?.epoch !== epoch) continue;
          for (let p = 0; p < rec.partitions; p++) if (!lost.has(p) && rec.owners[p]!.includes(id)) expect(safety.underReplicated).toContain(p);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('prometheus text', () => {
  const name = fc.stringMatching(/^[a-z_][a-z0-9_]{0,12}$/);
  const value = fc.oneof(fc.integer({ min: -1e9, max: 1e9 }), fc.double({ noNaN: true, noDefaultInfinity: true }));
  it('reads back what it is given', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ name, labels: fc.dictionary(name, fc.string({ maxLength: 8 }), { maxKeys: 3 }), value })),
        (samples) => {
          const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
          const text = samples
            .map((s) => {
              const ls = Object.entries(s.labels).map(([k, v]) => `${k}="${esc(v)}"`);
              return `# HELP ${s.name} x\n${s.name}${ls.length ? `{${ls.join(',')}}` : ''} ${s.value}`;
            })
            .join('\n');
          const parsed = parsePrometheus(text);
          expect(parsed).toEqual(samples.map((s) => ({ name: s.name, labels: { ...s.labels }, value: Object.is(s.value, -0) ? 0 : s.value })));
        },
      ),
    );
  });
  it('skips lines it cannot read, without throwing', () => {
    fc.assert(fc.property(fc.string(), (s) => Array.isArray(parsePrometheus(s))));
  });
});

describe('partition ranges', () => {
  it('expands back to the sorted set', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 200 }), { maxLength: 30 }), (ps) => {
        const text = ranges(ps, 1000);
        const back = text === 'none' ? [] : text.split(',').flatMap((r) => {
          const [a, b] = r.split('-').map(Number);
          return Array.from({ length: (b ?? a!) - a! + 1 }, (_, i) => a! + i);
        });
        expect(back).toEqual([...ps].sort((x, y) => x - y));
      }),
    );
  });
});
