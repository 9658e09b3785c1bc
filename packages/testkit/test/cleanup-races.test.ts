/**
 * What the kit starts is ended also when close() races something: a second close(), an addNode or
 * a control-plane connection still under way, a ScriptedNode still binding. In process: the
 * ProcessCluster runs over stand-ins for NATS, the node processes and the control plane (its
 * FaultProxies are real).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { NatsControlPlane, type TopologyRecord } from '@gridlink/node';
import { FaultProxy, NatsCluster, ProcessCluster, ScriptedNode, portOpen } from '@gridlink/testkit';

afterEach(() => {
  vi.restoreAllMocks();
});

/** A control-plane stand-in whose topology lists `members`; counts its closes. */
function fakeControlPlane(members: () => string[]): { cp: NatsControlPlane; closes: () => number } {
  let closes = 0;
  const cp = {
    get: async () => {
      const ids = members();
      if (ids.length === 0) return null;
      return { value: { members: Object.fromEntries(ids.map((id) => [id, {}])), syncing: [] } as unknown as TopologyRecord, revision: 1 };
    },
    close: async () => {
      closes++;
    },
  };
  return { cp: cp as unknown as NatsControlPlane, closes: () => closes };
}

/**
 * A ProcessCluster over one stand-in NATS server (its close takes a moment) and stand-in node
 * processes; `events` records what was started, killed and closed.
 */
function fakeCluster(): { cluster: ProcessCluster; events: string[] } {
  const events: string[] = [];
  const nats = {
    servers: [{ port: 1, resume: () => undefined }],
    urls: ['nats://127.0.0.1:1'],
    close: async () => {
      await new Promise((r) => setTimeout(r, 50));
      events.push('nats closed');
    },
  };
  const makeNode = (id: string): unknown => ({
    id,
    start: async () => void events.push(`${id} started`),
    kill: async () => void events.push(`${id} killed`),
  });
  const Ctor = ProcessCluster as unknown as new (...args: unknown[]) => ProcessCluster;
  return { cluster: new Ctor(nats, [], 'gridlink', makeNode, false, true), events };
}

/** Every FaultProxy started from now on. */
function proxiesStarted(): Promise<FaultProxy>[] {
  const started: Promise<FaultProxy>[] = [];
  const start = FaultProxy.start.bind(FaultProxy);
  vi.spyOn(FaultProxy, 'start').mockImplementation((o) => {
    const p = start(o);
    started.push(p);
    return p;
  });
  return started;
}

describe('ProcessCluster.close() racing other calls', () => {
  it('a second close() resolves only once the first has ended everything', async () => {
    const { cluster, events } = fakeCluster();
    const first = cluster.close();
    await cluster.close();
    expect(events).toContain('nats closed');
    await first;
  });

  it('controlPlane() asked twice at once opens one connection, and close() closes it; none is opened after close()', async () => {
    const { cluster } = fakeCluster();
    const fakes: ReturnType<typeof fakeControlPlane>[] = [];
    const connect = vi.spyOn(NatsControlPlane, 'connect').mockImplementation(async () => {
      await new Promise((r) => setTimeout(r, 20));
      const f = fakeControlPlane(() => []);
      fakes.push(f);
      return f.cp;
    });
    const [a, b] = await Promise.all([cluster.controlPlane(), cluster.controlPlane()]);
    expect(a).toBe(b);
    expect(connect).toHaveBeenCalledTimes(1);
    await cluster.close();
    expect(fakes.map((f) => f.closes())).toEqual([1]);
    await expect(cluster.controlPlane()).rejects.toThrow(/closed/);
    expect(connect).toHaveBeenCalledTimes(1);
  });

  it('addNode() under way when close() runs starts no process and leaves no proxy listening', async () => {
    const { cluster, events } = fakeCluster();
    const proxies = proxiesStarted();
    vi.spyOn(NatsControlPlane, 'connect').mockImplementation(async () => fakeControlPlane(() => ['node-9']).cp);
    const adding = cluster.addNode('node-9').catch((e: unknown) => e);
    await cluster.close();
    expect(await adding).toBeInstanceOf(Error);
    expect(events.filter((e) => e.startsWith('node-9'))).toEqual([]);
    expect(proxies.length).toBe(1);
    expect(await portOpen((await proxies[0]!).port)).toBe(false);
  });

  it('addNode() of an id that exists is refused before anything is started (its proxies would replace the first one\'s)', async () => {
    const { cluster, events } = fakeCluster();
    const proxies = proxiesStarted();
    vi.spyOn(NatsControlPlane, 'connect').mockImplementation(async () => fakeControlPlane(() => ['node-1']).cp);
    try {
      await cluster.addNode('node-1');
      await expect(cluster.addNode('node-1')).rejects.toThrow(/node-1 exists already/);
      expect(proxies.length).toBe(1);
      expect(events).toEqual(['node-1 started']);
    } finally {
      await cluster.close();
    }
    expect(await portOpen((await proxies[0]!).port)).toBe(false);
  });

  it('ProcessCluster.start with an id given twice is refused before NATS is started', async () => {
    const natsStart = vi.spyOn(NatsCluster, 'start').mockRejectedValue(new Error('NATS was started'));
    const cliPath = fileURLToPath(import.meta.url);
    expect(existsSync(cliPath)).toBe(true);
    await expect(ProcessCluster.start({ ids: ['a', 'b', 'a'], cliPath })).rejects.toThrow(/a given twice/);
    expect(natsStart).not.toHaveBeenCalled();
  });

  it('a wait for members polling when close() runs ends with it, not at its timeout', async () => {
    const { cluster } = fakeCluster();
    vi.spyOn(NatsControlPlane, 'connect').mockImplementation(async () => fakeControlPlane(() => []).cp);
    const waiting = cluster.waitForMembers(['node-1'], 5000).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await cluster.close();
    const err = await waiting;
    expect((err as Error).message).toMatch(/closed/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

describe('ScriptedNode', () => {
  it('close() while start() binds: the listener is closed once bound, and start() says so', async () => {
    const node = new ScriptedNode();
    const started = node.start().then(
      () => null,
      (e: unknown) => e,
    );
    await node.close();
    const err = await Promise.race([started, new Promise((r) => setTimeout(() => r('start() never settled'), 2000))]);
    expect(err).toBeInstanceOf(Error);
    expect(node.port === 0 || !(await portOpen(node.port))).toBe(true);
  });
});
