/**
 * Nodes of different releases in one cluster, as in the middle of a rolling upgrade (ADR 0060):
 * each node speaks a range of node-to-node wire versions; a node dialing one of an older release
 * is refused, reads the older node's range from the refusal and dials again with the newest
 * version both speak, without failing the requests that waited for the link. A node of a
 * release whose range does not overlap is refused with a message saying so.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MemoryControlPlane, startNode, type GridNode, type Logger, type NodeOptions } from '@gridlink/node';
import { PEER_CLIENT_NAME, PeerClient, Scheduler, commonVersion, refusedRange, withPeerWireRange, wireRefusal, type WireRange } from '@gridlink/node/internal';
import { DEFAULT_MAX_FRAME_SIZE, Op } from '@gridlink/protocol';
import { connectClient } from './helpers/grid.js';
import { until } from './helpers/until.js';

const range = fc
  .tuple(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 0, max: 5 }))
  .map(([min, width]): WireRange => ({ min, max: min + width }));

describe('choosing a wire version', () => {
  it('commonVersion is the newest version in both ranges, null exactly when they do not overlap', () => {
    fc.assert(
      fc.property(range, range, (a, b) => {
        const v = commonVersion(a, b);
        const both = (x: number): boolean => x >= a.min && x <= a.max && x >= b.min && x <= b.max;
        const best = [...Array(30).keys()].filter(both).pop() ?? null;
        expect(v).toBe(best);
      }),
    );
  });

  it("reads back the range a refusal names, whatever the refused peer announced", () => {
    fc.assert(
      fc.property(range, fc.string({ maxLength: 40 }), (r, announced) => {
        expect(refusedRange(`127.0.0.1:1 refused the handshake: ${wireRefusal(announced, r)}`)).toEqual(r);
      }),
    );
    // the text every release since version 2 of the wire sends
    expect(refusedRange('peer wire version gridlink-peer/3 is not supported: this node speaks 1..2')).toEqual({ min: 1, max: 2 });
    for (const other of ['authentication failed', 'this node belongs to cluster x', 'no protocol version in common', 'peer wire version x is not supported: this node speaks 2..1']) {
      expect(refusedRange(other)).toBeNull();
    }
  });

  it('refuses a range that is not 1 <= min <= max', () => {
    for (const bad of [{ min: 0, max: 1 }, { min: 2, max: 1 }, { min: 1.5, max: 2 }]) {
      expect(() => withPeerWireRange({}, bad)).toThrow(RangeError);
    }
  });
});

/** A logger keeping what the node said about the wire versions of its links. */
function wireLog(): { logger: Logger; said: { peer: string; version: number }[] } {
  const said: { peer: string; version: number }[] = [];
  const noop = (): void => {};
  const logger: Logger = {
    debug: noop,
    warn: noop,
    error: noop,
    info: (msg, fields) => {
      if (msg.startsWith('peer speaks an older node-to-node wire')) said.push({ peer: String(fields?.['peer']), version: Number(fields?.['version']) });
    },
  };
  return { logger, said };
}

const nodes: GridNode[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.kill();
});

describe('a cluster of three releases', () => {
  it('replicates in every direction at the newest common version, and keeps every write through two failovers', async () => {
    const cp = new MemoryControlPlane();
    // "old" speaks only 1, "cur" this release's 1..2, "new" a later release's 1..3.
    const releases: Record<string, WireRange> = { old: { min: 1, max: 1 }, cur: { min: 1, max: 2 }, new: { min: 1, max: 3 } };
    const logs = Object.fromEntries(Object.keys(releases).map((id) => [id, wireLog()]));
    for (const [id, r] of Object.entries(releases)) {
      const opts: NodeOptions = { id, controlPlane: cp, port: 0, partitions: 16, backups: 2, bootstrapNodes: 3, logger: logs[id]!.logger };
      nodes.push(await startNode(id === 'cur' ? opts : withPeerWireRange(opts, r)));
    }
    const [oldNode, curNode, newNode] = nodes as [GridNode, GridNode, GridNode];
    await until(() => nodes.every((n) => n.isServing() && Object.keys(n.topology()?.members ?? {}).length === 3), 'three serving members');
    const client = await connectClient(nodes.map((n) => `127.0.0.1:${n.port}`), { operationTimeout: 5000 });
    try {
      const cache = client.cache<string, number>('upgrade');
      // Two backups on three nodes: every node holds every partition, so every write is
      // replicated from its primary to both other nodes (each pair, both directions).
      for (let i = 0; i < 200; i++) await cache.put(`k${i}`, i);
      // The newer releases settled on the version the older one speaks, and said so once per link.
      expect(logs['new']!.said).toEqual(expect.arrayContaining([{ peer: 'cur', version: 2 }, { peer: 'old', version: 1 }]));
      expect(logs['cur']!.said).toEqual([{ peer: 'old', version: 1 }]);
      expect(logs['old']!.said).toEqual([]);
      expect(new Set(logs['new']!.said.map((s) => s.peer)).size).toBe(logs['new']!.said.length);

      // Each copy is complete: lose two of the three releases, one after the other.
      newNode.kill();
      await until(() => !('new' in (curNode.topology()?.members ?? {})), 'the newest node to be declared gone');
      for (let i = 0; i < 200; i++) expect(await cache.get(`k${i}`)).toBe(i);
      for (let i = 200; i < 260; i++) await cache.put(`k${i}`, i);
      curNode.kill();
      await until(() => !('cur' in (oldNode.topology()?.members ?? {})), 'the current node to be declared gone');
      for (let i = 0; i < 260; i++) expect(await cache.get(`k${i}`)).toBe(i);
    } finally {
      await client.close();
    }
  });

  it('a node of a release too far apart is refused with a message that says so, and the link does not settle on a wrong version', async () => {
    const cp = new MemoryControlPlane();
    const node = await startNode({ id: 'cur', controlPlane: cp, port: 0, partitions: 4, backups: 0 });
    nodes.push(node);
    const errors: string[] = [];
    const noop = (): void => {};
    const logger: Logger = { debug: noop, info: noop, warn: noop, error: (msg) => void errors.push(msg) };
    const link = (wireRange: WireRange): PeerClient =>
      new PeerClient({
        logger,
        selfId: 'other',
        peerId: 'cur',
        host: '127.0.0.1',
        port: node.port,
        clusterId: 'gridlink',
        authToken: undefined,
        tls: undefined,
        maxFrameSize: DEFAULT_MAX_FRAME_SIZE,
        scheduler: new Scheduler(),
        connectTimeoutMs: 2000,
        wireRange,
      });
    const far = link({ min: 3, max: 4 });
    try {
      await expect(far.request(Op.PEER_REPLICATE, { p: 0, v: 0, from: 'other', epoch: 'e', probe: true }, 2000)).rejects.toMatchObject({
        name: 'PeerUnavailableError',
        message: expect.stringMatching(/speaks node-to-node wire versions 1\.\.2 and this node 3\.\.4: none in common/),
      });
      expect(far.wireVersion).toBe(0);
      // Said once in the dialing node's log, however many requests fail that way.
      await expect(far.request(Op.PEER_REPLICATE, { p: 0, v: 0, from: 'other', epoch: 'e', probe: true }, 2000)).rejects.toThrow(/none in common/);
      expect(errors).toEqual([expect.stringMatching(/^peer cur speaks node-to-node wire versions 1\.\.2 and this node 3\.\.4: none in common/)]);
    } finally {
      far.destroy();
    }
    // A newer release whose range reaches down to this one's settles on 2, the first request answered.
    const newer = link({ min: 2, max: 5 });
    try {
      // (answered: a probe from a node that is not a member is told it is gone)
      expect(await newer.request(Op.PEER_REPLICATE, { p: 0, v: 0, from: 'other', epoch: 'e', probe: true }, 2000)).toEqual({ s: 'gone' });
      expect(newer.wireVersion).toBe(2);
    } finally {
      newer.destroy();
    }
    expect(PEER_CLIENT_NAME).toBe('gridlink-peer');
  });
});
