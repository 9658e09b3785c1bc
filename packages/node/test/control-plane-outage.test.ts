/**
 * A control plane that fails (reads and writes) for a while: the node must neither crash nor
 * leave an unhandled rejection behind, must stop trusting its lease while it cannot renew, and
 * must serve again on its own once the control plane is back.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { partitionOf } from '@gridlink/affinity';
import { LEASE_PREFIX, MemoryControlPlane, silentLogger, startNode, type GridNode } from '@gridlink/node';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { connectClient, optionsOf, startThree } from './helpers/grid.js';
import { until } from './helpers/until.js';

describe('control plane outage (node level)', () => {
  let node: GridNode | undefined;
  const rejections: unknown[] = [];
  const onRejection = (reason: unknown): void => {
    rejections.push(reason);
  };
  afterEach(() => {
    node?.kill();
    node = undefined;
    process.off('unhandledRejection', onRejection);
    rejections.length = 0;
  });

  it('failing reads and writes: no unhandled rejection, the lease is not trusted, and it serves again afterwards', async () => {
    process.on('unhandledRejection', onRejection);
    const cp = new FlakyControlPlane();
    node = await startNode({ id: 'a', controlPlane: cp, port: 0, partitions: 8, backups: 0, logger: silentLogger });
    const n = node;
    await until(() => n.isServing(), 'the node to serve');
    cp.failReads = true;
    cp.failWrites = true;
    await until(() => !n.leaseValid(), 'the lease to lapse');
    // Renewals succeed again, reads still fail: the topology re-read a lease after the lapse
    // fails, is retried, and until one succeeds the lease is not trusted.
    cp.failWrites = false;
    await until(() => cp.failedReads >= 2, 'the failed topology re-reads', 10_000);
    expect(n.running).toBe(true);
    expect(n.leaseValid()).toBe(false);
    expect(n.isServing()).toBe(false);
    cp.failReads = false;
    await until(() => n.leaseValid() && n.isServing(), 'the node to serve again');
    expect(rejections).toEqual([]);
  });
});

describe('control plane outage (three nodes)', () => {
  const nodes: GridNode[] = [];
  afterEach(() => {
    for (const n of nodes.splice(0)) n.kill();
  });

  const start3 = (cp: FlakyControlPlane): Promise<void> => startThree(nodes, () => cp);

  const membersOf = (n: GridNode): string =>
    JSON.stringify(Object.entries(n.topology()!.members).map(([id, m]) => [id, m.epoch]).sort());

  it('a watch that lags behind for several leases and skips revisions: the coordinator declares nobody gone', async () => {
    const cp = new FlakyControlPlane();
    await start3(cp);
    const before = membersOf(nodes[0]!);
    const version = nodes[0]!.topologyVersion();
    cp.stallWatches();
    // Writes (renewals) keep succeeding while nobody sees them: ~12 renewals = 1 s per node, plenty past a lease.
    const w0 = cp.writes;
    await until(() => cp.writes - w0 >= 36, 'renewals during the lag');
    // The coordinator (a, the lowest id) gets its own renewals back first; the others' renewals
    // made during the lag are never delivered, their next ones arrive live.
    cp.releaseWatches((key) => key !== LEASE_PREFIX + 'b' && key !== LEASE_PREFIX + 'c');
    const w1 = cp.writes;
    await until(() => cp.writes - w1 >= 12, 'renewals after the lag');
    for (const n of nodes) expect(membersOf(n)).toBe(before);
    expect(nodes.every((n) => n.topologyVersion() === version)).toBe(true);
    await until(() => nodes.every((n) => n.isServing()), 'all serving again');
  });

  it('renewals fail cluster-wide for several leases: nobody is declared gone, all serve again', async () => {
    const cp = new FlakyControlPlane();
    await start3(cp);
    const before = membersOf(nodes[0]!);
    const version = nodes[0]!.topologyVersion();
    cp.failWrites = true;
    await until(() => cp.failedWrites >= 30, 'renewals failing for over a lease');
    expect(nodes.some((n) => n.leaseValid())).toBe(false);
    cp.failWrites = false;
    await until(() => nodes.every((n) => n.isServing()), 'all serving again');
    const w1 = cp.writes;
    await until(() => cp.writes - w1 >= 24, 'two leases of renewals after the outage');
    for (const n of nodes) expect(membersOf(n)).toBe(before);
    expect(nodes.every((n) => n.topologyVersion() === version)).toBe(true);
  });
});

describe('primaries vouched for by their backups (ADR 0007)', () => {
  const nodes: GridNode[] = [];
  afterEach(() => {
    for (const n of nodes.splice(0)) n.kill();
  });

  it('renewals fail cluster-wide for several leases: every node keeps serving on promises, writes succeed throughout', async () => {
    const cp = new FlakyControlPlane();
    await startThree(nodes, () => cp);
    const client = await connectClient(nodes.map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 3000 });
    try {
      const cache = client.cache<string, number>('v');
      cp.failWrites = true;
      await until(() => nodes.every((n) => !n.leaseValid()), 'every lease to lapse');
      // No lease is valid, yet every partition is served: its primary holds its backup's promise.
      let n = 0;
      const failedBefore = cp.failedWrites;
      while (cp.failedWrites - failedBefore < 36) {
        expect(nodes.every((x) => x.isServing())).toBe(true);
        await cache.put(`k${n % 64}`, n);
        expect(await cache.get(`k${n % 64}`)).toBe(n);
        n++;
      }
      expect(nodes.some((x) => x.leaseValid())).toBe(false);
      cp.failWrites = false;
      await until(() => nodes.every((x) => x.leaseValid()), 'leases valid again');
      for (const x of nodes) expect(Object.keys(x.topology()!.members).sort()).toEqual(['a', 'b', 'c']);
    } finally {
      await client.close();
    }
  });
});

describe('a node whose own control-plane connection fails for a moment (ADR 0062)', () => {
  const nodes: GridNode[] = [];
  afterEach(() => {
    for (const n of nodes.splice(0)) n.kill();
  });

  it('renewals fail for c alone for longer than a lease: c answers the coordinator over the grid, stays a member under its epoch, and writes succeed throughout', async () => {
    const shared = new MemoryControlPlane();
    // c reaches the control plane through its own connection (a nats-server that was killed).
    const cOnly = new FlakyControlPlane(shared);
    await startThree(nodes, (id) => (id === 'c' ? cOnly : shared));
    const c = nodes[2]!;
    const epoch = c.epoch;
    const version = c.topologyVersion();
    const client = await connectClient(nodes.map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 3000 });
    try {
      const cache = client.cache<string, number>('v');
      cOnly.failWrites = true;
      cOnly.failReads = true;
      await until(() => !c.leaseValid(), 'c\'s lease to lapse');
      // Six failed renewals: 1.5 s without one, half a lease past its lease (declared gone at 1 s before).
      let n = 0;
      while (cOnly.failedWrites < 6) {
        await cache.put(`k${n % 64}`, n);
        expect(await cache.get(`k${n % 64}`)).toBe(n);
        n++;
      }
      cOnly.failWrites = false;
      cOnly.failReads = false;
      await until(() => c.leaseValid() && c.isServing(), 'c serving on its lease again');
      for (const x of nodes) expect(x.topology()!.members['c']?.epoch).toBe(epoch);
      expect(c.epoch).toBe(epoch);
      expect(nodes.every((x) => x.topologyVersion() === version)).toBe(true);
      for (let i = 0; i < 64; i++) await cache.put(`k${i}`, 1000 + i);
      for (let i = 0; i < 64; i++) expect(await cache.get(`k${i}`)).toBe(1000 + i);
    } finally {
      await client.close();
    }
  });
});

describe('a backup restarted under a new epoch while the coordinator is blind (watches stalled)', () => {
  const nodes: GridNode[] = [];
  afterEach(() => {
    for (const n of nodes.splice(0)) n.kill();
  });

  it('the snapshot it refuses (not that life any more) waits for the topology like a record: no write fails once the watches resume', async () => {
    const cp = new FlakyControlPlane();
    await startThree(nodes, () => cp, { replicationTimeoutMs: 1000 });
    const topo = nodes[0]!.topology()!;
    // A key whose backup is c.
    let key = '';
    for (let i = 0; key === ''; i++) if (topo.owners[partitionOf(`k${i}`, 16)]?.[1] === 'c') key = `k${i}`;
    const client = await connectClient(nodes.map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 20_000 });
    try {
      const cache = client.cache<string, number>('v');
      await cache.put(key, 0);
      // Every coordinator goes blind: nobody is declared gone, nobody joins.
      cp.stallWatches();
      const c = nodes[2]!;
      const port = c.port;
      c.kill();
      const c2 = await startNode(optionsOf('c', cp, { replicationTimeoutMs: 1000, port }));
      nodes[2] = c2;
      expect(c2.epoch).not.toBe(topo.members['c']!.epoch);
      // Writes now replicate to c's old epoch, whose address answers "not that life" ('gone').
      let n = 0;
      let stop = false;
      const writes = (async () => {
        for (; !stop; n++) await cache.put(key, n + 1);
      })();
      // The watches come back after a while: the old epoch is dropped, the new one joins.
      await new Promise((r) => setTimeout(r, 2500)); // the stall's duration, not a synchronisation
      cp.releaseWatches();
      await until(() => nodes[0]!.topology()!.members['c']?.epoch === c2.epoch, 'c back under its new epoch', 15_000);
      const at = n;
      await until(() => n >= at + 20, 'writes after the stall');
      stop = true;
      await writes;
      expect(await cache.get(key)).toBe(n);
    } finally {
      await client.close();
    }
  }, 60_000);
});

describe('a node killed while the watches keep stalling (ADR 0066)', () => {
  const nodes: GridNode[] = [];
  afterEach(() => {
    for (const n of nodes.splice(0)) n.kill();
  });

  it('is declared gone on direct lease reads while every watch delivers only in bursts, and writes to its partitions go on', async () => {
    const cp = new FlakyControlPlane();
    await startThree(nodes, () => cp);
    const topo = nodes[0]!.topology()!;
    // A key whose primary is c.
    let key = '';
    for (let i = 0; key === ''; i++) if (topo.owners[partitionOf(`k${i}`, 16)]?.[0] === 'c') key = `k${i}`;
    const client = await connectClient(nodes.slice(0, 2).map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 20_000 });
    // As after a nats-server kill: every watch stalls, is re-created and reads its gap, again and
    // again (ADR 0061's soak runs: ~15 s). Each burst restarts every lease's count (ADR 0007).
    cp.stallWatches();
    const bursts = setInterval(() => {
      cp.releaseWatches();
      cp.stallWatches();
    }, 700);
    let bursting = true;
    try {
      const cache = client.cache<string, number>('v');
      await cache.put(key, 0);
      nodes[2]!.kill();
      let n = 0;
      let stop = false;
      const writes = (async () => {
        for (; !stop; n++) await cache.put(key, n + 1);
      })();
      // Declared gone while the watches still stall (they would for 10 s more here).
      const stopBursts = setTimeout(() => {
        bursting = false;
        clearInterval(bursts);
        cp.releaseWatches();
      }, 10_000);
      await until(() => nodes[0]!.topology()!.members['c'] === undefined, 'c declared gone', 15_000);
      expect(bursting).toBe(true);
      const at = n;
      await until(() => n >= at + 20, 'writes to its partition after the takeover');
      stop = true;
      await writes;
      clearTimeout(stopBursts);
      expect(await cache.get(key)).toBe(n);
    } finally {
      clearInterval(bursts);
      cp.releaseWatches();
      await client.close();
    }
  }, 60_000);
});

describe('a node killed while the coordinator has just lapsed and renews again', () => {
  const nodes: GridNode[] = [];
  afterEach(() => {
    for (const n of nodes.splice(0)) n.kill();
  });

  it('is declared gone though the coordinator cannot re-read the topology yet: it coordinates while its renewals are accepted', async () => {
    const cp = new FlakyControlPlane();
    await startThree(nodes, () => cp);
    // Every lease lapses (writes refused for over a lease), then writes come back while reads
    // still fail: each node renews again, but re-reading the topology (which a lapsed lease waits
    // for before it is trusted: ADR 0003) keeps failing.
    cp.failWrites = true;
    await until(() => nodes.every((n) => !n.leaseValid()), 'every lease to lapse');
    cp.failReads = true;
    cp.failWrites = false;
    try {
      const w = cp.writes;
      await until(() => cp.writes - w >= 12, 'renewals accepted again');
      nodes[2]!.kill();
      // a, the lowest id, is the coordinator the others defer to; it must not wait for its re-read.
      await until(() => nodes[0]!.topology()!.members['c'] === undefined, 'c declared gone while reads fail', 8000);
      expect(cp.failReads).toBe(true);
    } finally {
      cp.failReads = false;
    }
  }, 30_000);
});
