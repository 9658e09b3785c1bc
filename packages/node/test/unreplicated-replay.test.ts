/**
 * A primary cut off from the control plane keeps serving on its backup's promise (ADR 0007)
 * until the promise runs out. If the backup meanwhile learned that it is the new primary, it
 * refuses the old primary's records ("stale"), and the old primary answers the write with
 * NOT_PRIMARY — but it had applied the write, outcome included. The client retries the same
 * (session, seq): the old primary must not answer that retry from its outcome table (that
 * acknowledged a write only it held, and lost it when it learned it was gone: seen as a stale
 * read in the process tests), nor let a read see the write.
 */
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { decode, encode } from '@msgpack/msgpack';
import { encodeKey, partitionOf } from '@gridlink/affinity';
import { ErrorCode, Op } from '@gridlink/protocol';
import { MemoryControlPlane, silentLogger, startNode, type GridNode } from '@gridlink/node';
import { FlakyControlPlane } from './helpers/flaky-control-plane.js';
import { GridError, TestConnection, untilAnswered } from './helpers/client.js';
import { until } from './helpers/until.js';

const P = 8;

/** The error code a call failed with, or 'ok'. */
async function outcome(p: Promise<unknown>): Promise<number | 'ok'> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    if (err instanceof GridError) return err.code;
    throw err;
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of a node's port (set `target` once it listens), for the
 * address its peers dial (`advertisePort`); `cut()` ends every connection and refuses new ones.
 */
async function peerProxy(): Promise<{ port: number; target: number; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let cutOff = false;
  const p = {
    port: 0,
    target: 0,
    cut(): void {
      cutOff = true;
      for (const s of sockets) s.destroy();
    },
    close: (): Promise<void> => {
      p.cut();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = createServer((down) => {
    if (cutOff || p.target === 0) {
      down.destroy();
      return;
    }
    const up = connect(p.target, '127.0.0.1');
    const end = (): void => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', end);
      s.on('close', end);
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  p.port = (server.address() as AddressInfo).port;
  return p;
}

describe('a write the backup refused is neither replayed as acknowledged nor read', () => {
  const nodes: GridNode[] = [];
  const conns: TestConnection[] = [];
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of conns.splice(0)) c.close();
    for (const n of nodes.splice(0)) n.kill();
    for (const c of closers.splice(0)) await c();
  });

  it('old primary, backup promoted: the retry of the refused write and a read of it fail; the new primary never had it', async () => {
    const shared = new MemoryControlPlane();
    const cpA = new FlakyControlPlane(shared);
    // A long lease: the old primary's promise from its backup outlives the backup's promotion by
    // more than a second (promise 1800 ms, asked every 300 ms), so the write below reaches it.
    const common = { port: 0, partitions: P, backups: 1, bootstrapNodes: 2, leaseMs: 3000, logger: silentLogger };
    const [a, b] = await Promise.all([startNode({ ...common, id: 'a', controlPlane: cpA }), startNode({ ...common, id: 'b', controlPlane: shared })]);
    nodes.push(a, b);
    await until(() => [a, b].every((n) => Object.keys(n.topology()?.members ?? {}).length === 2 && n.isServing()), 'two serving members', 15_000);

    // A key whose primary is a.
    const topo = a.topology()!;
    let name = '';
    for (let i = 0; name === ''; i++) if (topo.owners[partitionOf(`k${i}`, P)]![0] === 'a') name = `k${i}`;
    const key = encodeKey(name);
    const toA = await TestConnection.connect(`127.0.0.1:${a.port}`);
    conns.push(toA);
    const put = (value: number, seq: number): Promise<unknown> => toA.call(Op.CACHE_PUT, { cache: 'c', key, value: encode(value), seq });
    expect(await outcome(put(1, 1))).toBe('ok');

    // Cut a off from the control plane: its renewals fail, it sees no topology change.
    cpA.failReads = true;
    cpA.failWrites = true;
    cpA.stallWatches();
    await until(() => b.topology()?.members['a'] === undefined, 'b to learn that a is gone', 20_000);

    // a still serves (on b's promise); b, now primary, refuses a's record.
    expect(await outcome(put(2, 2))).toBe(ErrorCode.NOT_PRIMARY);
    // The client's retry, same session and seq, lands on a again: not acknowledged.
    expect(await outcome(put(2, 2))).not.toBe('ok');
    // Nor does a read at a see the refused write.
    let read: unknown;
    try {
      const r = await toA.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache: 'c', key });
      read = r.value === null ? null : decode(r.value);
    } catch (err) {
      if (!(err instanceof GridError)) throw err;
      read = `error ${err.code}`;
    }
    expect(read).not.toBe(2);

    // What was acknowledged is at the new primary; the refused write is not.
    const toB = await TestConnection.connect(`127.0.0.1:${b.port}`);
    conns.push(toB);
    // b answers NOT_READY until the promises it gave a have run out: poll with a deadline.
    const r = await untilAnswered(() => toB.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache: 'c', key }), 'b to answer the read', 10_000);
    expect(r.value === null ? null : decode(r.value)).toBe(1);
  });

  /**
   * Three nodes; a (primary) and b hold a key's partition. a is cut off from the control plane
   * (and, with `cutPeers`, from its peers: they reach it through a proxy), b dies, and a takes a
   * write it cannot replicate. Returns the nodes, a's control plane and that write's outcome.
   */
  async function backupDiesWhilePrimaryCutOff(cutPeers: boolean): Promise<{ a: GridNode; c: GridNode; cpA: FlakyControlPlane; name: string; toA: TestConnection; pending: Promise<number | 'ok'> }> {
    const shared = new MemoryControlPlane();
    const cpA = new FlakyControlPlane(shared);
    const peersOfA = await peerProxy();
    closers.push(() => peersOfA.close());
    // The write below waits for its dead backup until the topology drops it (not the deadline).
    const common = { port: 0, partitions: 64, backups: 1, bootstrapNodes: 3, leaseMs: 3000, replicationTimeoutMs: 30_000, logger: silentLogger };
    const [a, b, c] = await Promise.all([
      startNode({ ...common, id: 'a', controlPlane: cpA, advertisePort: peersOfA.port }).then((n) => {
        peersOfA.target = n.port;
        return n;
      }),
      startNode({ ...common, id: 'b', controlPlane: shared }),
      startNode({ ...common, id: 'c', controlPlane: shared }),
    ]);
    nodes.push(a, b, c);
    await until(() => [a, b, c].every((n) => Object.keys(n.topology()?.members ?? {}).length === 3 && n.isServing()), 'three serving members', 15_000);

    // A key of a partition held by a (primary) and b only.
    const topo = a.topology()!;
    let name = '';
    for (let i = 0; name === '' && i < 10_000; i++) if (topo.owners[partitionOf(`k${i}`, 64)]!.join() === 'a,b') name = `k${i}`;
    expect(name).not.toBe('');
    const key = encodeKey(name);
    const toA = await TestConnection.connect(`127.0.0.1:${a.port}`);
    conns.push(toA);
    const put = (value: number, seq: number): Promise<unknown> => toA.call(Op.CACHE_PUT, { cache: 'c', key, value: encode(value), seq }, 60_000);
    expect(await outcome(put(1, 1))).toBe('ok');

    // a is cut off, then its backup dies; a (lease still valid) takes a write it cannot replicate.
    cpA.failReads = true;
    cpA.failWrites = true;
    cpA.stallWatches();
    if (cutPeers) peersOfA.cut();
    b.kill();
    return { a, c, cpA, name, toA, pending: outcome(put(2, 2)) };
  }

  const reconnect = (cp: FlakyControlPlane): void => {
    cp.failReads = false;
    cp.failWrites = false;
    cp.releaseWatches();
  };

  it('a write whose only backup died while its primary was cut off is not acknowledged once the primary learns it was dropped', async () => {
    // Cut off from its peers too: a node cut off from the control plane alone still answers the
    // coordinator and is kept while it holds the only copy of a partition (ADR 0062; next test).
    const { c, cpA, pending } = await backupDiesWhilePrimaryCutOff(true);
    // c declares both gone: the partition has lost every holder.
    await until(() => c.topology()?.members['a'] === undefined && c.topology()?.members['b'] === undefined, 'c to drop a and b', 30_000);
    // a learns it: the write's target left, but a is no primary of anything any more.
    reconnect(cpA);
    expect(await pending).toBe(ErrorCode.NOT_PRIMARY);
  }, 60_000);

  it('the same, but the primary still answers its peers: kept as the only holder (ADR 0062), nothing is lost, and the write is acknowledged once it is back on the control plane', async () => {
    const { a, c, cpA, name, toA, pending } = await backupDiesWhilePrimaryCutOff(false);
    // c drops b, keeps a (it answers, and holds the only copy left), and loses nothing.
    await until(() => c.topology()?.members['b'] === undefined, 'c to drop b', 30_000);
    expect(c.topology()!.members['a']?.epoch).toBe(a.epoch);
    expect(c.topology()!.lost).toEqual([]);
    expect(c.topology()!.owners[partitionOf(name, 64)]).toEqual(['a']);
    reconnect(cpA);
    expect(await pending).toBe('ok');
    await until(() => a.isServing(), 'a serving again', 15_000);
    const got = await toA.call<{ value: Uint8Array | null }>(Op.CACHE_GET, { cache: 'c', key: encodeKey(name) }, 10_000);
    expect(decode(got.value!)).toBe(2);
  }, 60_000);
});
