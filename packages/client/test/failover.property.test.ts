/**
 * Model-based failover property: random interleavings of cache operations with node kills,
 * hangs, restarts and proxy faults (at most one node down at a time, backups = 1).
 *
 * Invariants checked on every run:
 * - every operation succeeds or fails with a typed GridError, within its deadline;
 * - no acknowledged write is lost (a read returns the last acknowledged value or the value of a
 *   later write whose outcome is unknown);
 * - no mutation applies twice (counters stay within [acknowledged, acknowledged + unknown]);
 * - no unhandled rejection;
 * - once faults stop, every operation succeeds and single-key operations go to primaries again.
 *
 * FAILOVER_RUNS / FAILOVER_COMMANDS raise the number of runs and the length of command sequences
 * for longer hunts (e.g. FAILOVER_RUNS=30 FAILOVER_COMMANDS=60, about two minutes).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { FaultProxy } from '@gridlink/testkit';
import { GridClient, GridError, type GridCache } from '@gridlink/client';
import { waitFor } from './helpers/wait.js';

const OP_TIMEOUT = 6000;
const SLACK = 2000;
const KEYS = ['a', 'b', 'c', 'd'];

interface Model {
  /** Highest fencing token seen per lock key. */
  tokens: Map<string, number>;
  /** Last acknowledged value per key, and values of later writes with unknown outcome. */
  values: Map<string, { confirmed: number | undefined; unknown: Set<number> }>;
  counters: Map<string, { acked: number; unknown: number }>;
  down: { id: string; kind: 'killed' | 'hung' } | null;
  nextValue: number;
}

interface Real {
  cluster: LocalCluster;
  client: GridClient;
  cache: GridCache<string, number>;
  proxies: Map<string, FaultProxy>;
  ids: string[];
}

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => {
  unhandled.push(e);
};
beforeAll(() => {
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
});

/** Runs an operation; asserts the outcome is a value or a typed error within the deadline. */
async function timed<T>(fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: GridError }> {
  const t0 = performance.now();
  try {
    const value = await fn();
    return { ok: true, value };
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(GridError);
    return { ok: false, error: e as GridError };
  } finally {
    expect(performance.now() - t0).toBeLessThan(OP_TIMEOUT + SLACK);
  }
}

class Put implements fc.AsyncCommand<Model, Real> {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const v = m.nextValue++;
    const entry = m.values.get(this.key) ?? { confirmed: undefined, unknown: new Set<number>() };
    m.values.set(this.key, entry);
    const res = await timed(() => r.cache.put(this.key, v));
    if (res.ok) {
      entry.confirmed = v;
      entry.unknown.clear();
    } else {
      entry.unknown.add(v);
    }
  }
  toString = (): string => `put(${this.key})`;
}

class Get implements fc.AsyncCommand<Model, Real> {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const res = await timed(() => r.cache.get(this.key));
    if (!res.ok) return;
    const entry = m.values.get(this.key);
    const allowed = new Set<number | undefined>([entry?.confirmed, ...(entry?.unknown ?? [])]);
    expect(allowed.has(res.value), `get(${this.key}) = ${res.value}, allowed ${[...allowed].join(',')}`).toBe(true);
  }
  toString = (): string => `get(${this.key})`;
}

class Incr implements fc.AsyncCommand<Model, Real> {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const c = m.counters.get(this.key) ?? { acked: 0, unknown: 0 };
    m.counters.set(this.key, c);
    const res = await timed(() => r.cache.increment(`ctr-${this.key}`));
    if (res.ok) {
      // The returned value counts every earlier application: never more than were attempted.
      expect(res.value).toBeGreaterThanOrEqual(c.acked + 1);
      expect(res.value).toBeLessThanOrEqual(c.acked + c.unknown + 1);
      c.acked += 1;
    } else {
      c.unknown += 1;
    }
  }
  toString = (): string => `incr(${this.key})`;
}

class Lock implements fc.AsyncCommand<Model, Real> {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const res = await timed(() => r.client.lock(`lock-${this.key}`).tryAcquire({ leaseMs: 1500 }));
    if (!res.ok || res.value === null) return;
    const h = res.value;
    // Fencing tokens strictly increase per lock key, across failovers.
    const last = m.tokens.get(this.key) ?? -1;
    expect(h.fencingToken).toBeGreaterThan(last);
    m.tokens.set(this.key, h.fencingToken);
    await timed(() => h.release());
  }
  toString = (): string => `lock(${this.key})`;
}

class PutAll implements fc.AsyncCommand<Model, Real> {
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const entries = KEYS.map((k) => [k, m.nextValue++] as const);
    const res = await timed(() => r.cache.putAll(entries));
    for (const [k, v] of entries) {
      const entry = m.values.get(k) ?? { confirmed: undefined, unknown: new Set<number>() };
      m.values.set(k, entry);
      if (res.ok) {
        entry.confirmed = v;
        entry.unknown.clear();
      } else {
        entry.unknown.add(v);
      }
    }
  }
  toString = (): string => 'putAll';
}

class GetAll implements fc.AsyncCommand<Model, Real> {
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const res = await timed(() => r.cache.getAll(KEYS));
    if (!res.ok) return;
    KEYS.forEach((k, i) => {
      const entry = m.values.get(k);
      const allowed = new Set<number | undefined>([entry?.confirmed, ...(entry?.unknown ?? [])]);
      expect(allowed.has(res.value[i]), `getAll ${k} = ${res.value[i]}`).toBe(true);
    });
  }
  toString = (): string => 'getAll';
}

class Fault implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly node: number,
    readonly kind: 'kill' | 'hang',
  ) {}
  check = (m: Readonly<Model>): boolean => m.down === null;
  async run(m: Model, r: Real): Promise<void> {
    const id = r.ids[this.node % r.ids.length]!;
    if (this.kind === 'kill') await r.cluster.kill(id);
    else r.cluster.hang(id);
    m.down = { id, kind: this.kind === 'kill' ? 'killed' : 'hung' };
  }
  toString = (): string => `${this.kind}(${this.node})`;
}

class Recover implements fc.AsyncCommand<Model, Real> {
  check = (m: Readonly<Model>): boolean => m.down !== null;
  async run(m: Model, r: Real): Promise<void> {
    const d = m.down!;
    if (d.kind === 'killed') {
      await r.cluster.restart(d.id);
      r.proxies.get(d.id)?.setTarget(r.cluster.endpointOf(d.id));
    } else {
      r.cluster.resume(d.id);
    }
    // Only one node down at a time: wait until the cluster holds every partition again.
    await r.cluster.waitForStable(20_000);
    m.down = null;
  }
  toString = (): string => 'recover';
}

class ProxyFault implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly node: number,
    readonly kind: 'reset' | 'drop2' | 'drop3' | 'delay' | 'blackhole' | 'halfOpen',
  ) {}
  check = (): boolean => true;
  async run(_m: Model, r: Real): Promise<void> {
    const p = r.proxies.get(r.ids[this.node % r.ids.length]!)!;
    p.heal();
    if (this.kind === 'reset') p.reset();
    else if (this.kind === 'drop2') p.dropEveryNthRequest(2);
    else if (this.kind === 'drop3') p.dropEveryNthRequest(3);
    else if (this.kind === 'blackhole') p.blackhole(true);
    else if (this.kind === 'halfOpen') p.halfOpen('toClient');
    else p.delay(30);
  }
  toString = (): string => `proxy-${this.kind}(${this.node})`;
}

const key = fc.constantFrom(...KEYS);
const node = fc.integer({ min: 0, max: 2 });
const commands = [
  key.map((k) => new Put(k)),
  key.map((k) => new Get(k)),
  key.map((k) => new Incr(k)),
  key.map((k) => new Lock(k)),
  fc.constant(new PutAll()),
  fc.constant(new GetAll()),
  fc.tuple(node, fc.constantFrom('kill' as const, 'hang' as const)).map(([n, k]) => new Fault(n, k)),
  fc.constant(new Recover()),
  fc.tuple(node, fc.constantFrom('reset' as const, 'drop2' as const, 'drop3' as const, 'delay' as const, 'blackhole' as const, 'halfOpen' as const)).map(([n, k]) => new ProxyFault(n, k)),
];

it('failover: typed errors within deadlines, no lost or doubled writes, primaries again after faults', async () => {
  await fc.assert(
    fc.asyncProperty(fc.commands(commands, { maxCommands: Number(process.env.FAILOVER_COMMANDS ?? 24), ...(process.env.FAILOVER_COMMANDS ? { size: 'max' as const } : {}) }), async (cmds) => {
      const cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 32 });
      const proxies = new Map<string, FaultProxy>();
      let client: GridClient | undefined;
      try {
        for (const id of cluster.nodeIds) proxies.set(id, await FaultProxy.start({ target: cluster.endpointOf(id) }));
        client = await GridClient.connect({
          endpoints: [...proxies.values()].map((p) => p.endpoint),
          heartbeatInterval: 100,
          heartbeatTimeout: 600,
          requestTimeout: 400,
          operationTimeout: OP_TIMEOUT,
          reconnect: { minDelay: 20, maxDelay: 300 },
        });
        const real: Real = { cluster, client, cache: client.cache<string, number>('failover'), proxies, ids: [...cluster.nodeIds] };
        const model: Model = { tokens: new Map(), values: new Map(), counters: new Map(), down: null, nextValue: 1 };
        await fc.asyncModelRun(() => ({ model, real }), cmds);

        // Faults stop: heal proxies, bring the down node back, let the cluster settle.
        for (const p of proxies.values()) p.heal();
        if (model.down !== null) await new Recover().run(model, real);
        await cluster.waitForStable(20_000);
        await waitFor(() => client!.stats().nodes.filter((n) => n.connected).length === 3, 15_000, 'reconnected to every node');
        // Everything acknowledged is there; counters applied exactly once per acknowledged call.
        for (const [k, e] of model.values) {
          const v = await real.cache.get(k);
          expect(new Set([e.confirmed, ...e.unknown]).has(v)).toBe(true);
        }
        for (const [k, c] of model.counters) {
          const v = (await real.cache.get(`ctr-${k}`)) ?? 0;
          expect(v).toBeGreaterThanOrEqual(c.acked);
          expect(v).toBeLessThanOrEqual(c.acked + c.unknown);
        }
        // Every op succeeds now, and single-key ops go to primaries (no fallback, no forwarding)
        // once the client's map has caught up with the cluster.
        await waitFor(async () => {
          await real.cache.get('probe');
          return client!.topology().version === cluster.topologyVersion;
        }, 10_000, 'client map caught up');
        // A reset the client has not noticed yet can still close a connection now, so routing is
        // checked batch by batch until one whole batch went to primaries; every op must succeed.
        const routedDeadline = Date.now() + 15_000;
        for (let batch = 0; ; batch++) {
          const before = client.stats();
          for (let i = 0; i < 20; i++) {
            await real.cache.put(`after-${batch}-${i}`, i);
            expect(await real.cache.get(`after-${batch}-${i}`)).toBe(i);
          }
          const after = client.stats();
          expect(after.failedOperations - before.failedOperations).toBe(0);
          const offPrimary = after.routing.roundRobin - before.routing.roundRobin + (after.forwarded - before.forwarded);
          if (offPrimary === 0) break;
          if (Date.now() > routedDeadline) throw new Error(`single-key ops still miss primaries after faults stopped (${offPrimary} in the last batch)`);
        }
      } finally {
        await client?.close();
        for (const p of proxies.values()) await p.close();
        await cluster.stop();
      }
    }),
    {
      numRuns: Number(process.env.FAILOVER_RUNS ?? 8),
      endOnFailure: true,
      // Replay a reported failure: FAILOVER_SEED=<seed> FAILOVER_PATH=<path>.
      ...(process.env.FAILOVER_SEED ? { seed: Number(process.env.FAILOVER_SEED), path: process.env.FAILOVER_PATH } : {}),
    },
  );
  expect(unhandled).toEqual([]);
}, process.env.FAILOVER_RUNS ? 900_000 : 180_000);
