/**
 * Model-based test: random cache operations interleaved with kill / hang / resume / restart /
 * addNode against a LocalCluster (backups = 1, at most one node down at a time), every read
 * checked against a model of acknowledged writes.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { GridCache, GridClient } from '@gridlink/client';
import { LocalCluster } from '@gridlink/node';
import { connectClient } from './helpers/grid.js';

interface Model {
  values: Map<string, string>;
  counters: Map<string, number>;
  down: { id: string; kind: 'killed' | 'hung' } | null;
  nodes: number;
}

interface Real {
  cluster: LocalCluster;
  client: GridClient;
  /** Values (MessagePack strings) and counters (MessagePack integers). */
  m: GridCache<string, string>;
  n: GridCache<string, number>;
  hung: Set<string>;
}

type Cmd = fc.AsyncCommand<Model, Real>;

const KEYS = ['a', 'b', 'c', 'd', 'e', 'f'];

class Put implements Cmd {
  constructor(readonly key: string, readonly value: string) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    await r.m.put(this.key, this.value);
    m.values.set(this.key, this.value);
  }
  toString = (): string => `put(${this.key}=${this.value})`;
}

class Remove implements Cmd {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    expect(await r.m.remove(this.key)).toBe(m.values.has(this.key));
    m.values.delete(this.key);
  }
  toString = (): string => `remove(${this.key})`;
}

class Get implements Cmd {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    expect(await r.m.get(this.key)).toBe(m.values.get(this.key));
  }
  toString = (): string => `get(${this.key})`;
}

class Increment implements Cmd {
  constructor(readonly key: string, readonly delta: number) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    const value = await r.n.increment(this.key, this.delta);
    const next = (m.counters.get(this.key) ?? 0) + this.delta;
    expect(value).toBe(next);
    m.counters.set(this.key, next);
    // The counter is stored as a MessagePack integer, readable by a plain get.
    expect(await r.n.get(this.key)).toBe(next);
  }
  toString = (): string => `incr(${this.key}, ${this.delta})`;
}

function pick(r: Real, index: number): string {
  const ids = r.cluster.nodeIds;
  return ids[index % ids.length]!;
}

class Kill implements Cmd {
  constructor(readonly index: number) {}
  check = (m: Readonly<Model>): boolean => m.down === null;
  async run(m: Model, r: Real): Promise<void> {
    await r.cluster.waitForStable(20_000);
    const id = pick(r, this.index);
    await r.cluster.kill(id);
    m.down = { id, kind: 'killed' };
  }
  toString = (): string => `kill(#${this.index})`;
}

class Hang implements Cmd {
  constructor(readonly index: number) {}
  check = (m: Readonly<Model>): boolean => m.down === null;
  async run(m: Model, r: Real): Promise<void> {
    await r.cluster.waitForStable(20_000);
    const id = pick(r, this.index);
    r.cluster.hang(id);
    r.hung.add(id);
    m.down = { id, kind: 'hung' };
  }
  toString = (): string => `hang(#${this.index})`;
}

class Recover implements Cmd {
  check = (m: Readonly<Model>): boolean => m.down !== null;
  async run(m: Model, r: Real): Promise<void> {
    const d = m.down!;
    if (d.kind === 'hung') {
      r.cluster.resume(d.id);
      r.hung.delete(d.id);
    } else {
      await r.cluster.restart(d.id);
    }
    m.down = null;
  }
  toString = (): string => 'recover';
}

class Restart implements Cmd {
  constructor(readonly index: number) {}
  check = (m: Readonly<Model>): boolean => m.down === null;
  async run(_m: Model, r: Real): Promise<void> {
    await r.cluster.waitForStable(20_000);
    await r.cluster.restart(pick(r, this.index));
  }
  toString = (): string => `restart(#${this.index})`;
}

class AddNode implements Cmd {
  check = (m: Readonly<Model>): boolean => m.down === null && m.nodes < 5;
  async run(m: Model, r: Real): Promise<void> {
    await r.cluster.waitForStable(20_000);
    const id = await r.cluster.addNode();
    await r.cluster.waitForTopology((t) => t.members[id] !== undefined);
    await r.cluster.setBaseline(r.cluster.nodeIds);
    m.nodes++;
  }
  toString = (): string => 'addNode';
}

const key = fc.constantFrom(...KEYS);
const commands = [
  fc.tuple(key, fc.string({ minLength: 1, maxLength: 8 })).map(([k, v]) => new Put(k, v)),
  key.map((k) => new Get(k)),
  key.map((k) => new Remove(k)),
  fc.tuple(fc.constantFrom('x', 'y'), fc.integer({ min: -5, max: 5 })).map(([k, d]) => new Increment(k, d)),
  fc.nat(10).map((i) => new Kill(i)),
  fc.nat(10).map((i) => new Hang(i)),
  fc.constant(new Recover()),
  fc.nat(10).map((i) => new Restart(i)),
  fc.constant(new AddNode()),
];

describe('model-based: random ops with kill/hang/restart/addNode', () => {
  it('every read matches the acknowledged writes', async () => {
    const ran: string[] = [];
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 20, size: 'max' }), async (cmds) => {
        fc.pre([...cmds].length >= 10);
        const cluster = await LocalCluster.start({ nodes: 3, backups: 1, partitions: 16, autoAdjust: { enabled: false } });
        const hung = new Set<string>();
        let lastModel: Model | null = null;
        let client: GridClient | undefined;
        try {
          // Notices a hung node by heartbeat timeout; learns added and restarted nodes from the map.
          client = await connectClient(cluster.endpoints, { operationTimeout: 20_000 });
          const real: Real = { cluster, client, m: client.cache<string, string>('m'), n: client.cache<string, number>('n'), hung };
          await fc.asyncModelRun(
            () => {
              lastModel = { values: new Map(), counters: new Map(), down: null, nodes: 3 };
              return { model: lastModel, real };
            },
            cmds,
          );
          // Finally: recover everything, wait for the cluster to settle and read all keys once more.
          for (const id of hung) cluster.resume(id);
          hung.clear();
          await cluster.waitForStable(20_000);
          const model = lastModel!;
          for (const k of KEYS) await new Get(k).run(model, real);
          ran.push([...cmds].map((c) => c.toString()).join(","));
        } finally {
          await client?.close();
          await cluster.stop();
        }
      }),
      { numRuns: 4, endOnFailure: true },
    );
    // The runs exercised faults, not just plain ops.
    expect(ran.join(' ')).toMatch(/kill|hang|restart|addNode/);
  }, 180_000);
});
