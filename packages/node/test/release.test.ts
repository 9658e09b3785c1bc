/**
 * What a node tells operators about its release (ADR 0060): the release and the node-to-node wire
 * versions it speaks, in its lease and on /metrics, so a rolling upgrade's progress shows.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryControlPlane, startNode, type GridNode, type LeaseRecord } from '@gridlink/node';
import { LEASE_PREFIX, MIN_PEER_WIRE_VERSION, PEER_WIRE_VERSION, withPeerWireRange } from '@gridlink/node/internal';
import { RELEASE } from '../src/release.js';

const nodes: GridNode[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.kill();
});

describe('the release a node announces', () => {
  it("is the package's version", () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(RELEASE).toBe(pkg.version);
  });

  it('is in its lease and on /metrics, with the wire versions it speaks', async () => {
    const cp = new MemoryControlPlane();
    const a = await startNode({ id: 'a', controlPlane: cp, port: 0, httpPort: 0, partitions: 4, bootstrapNodes: 2 });
    nodes.push(a);
    const b = await startNode(withPeerWireRange({ id: 'b', controlPlane: cp, port: 0, httpPort: 0, partitions: 4, bootstrapNodes: 2 }, { min: 1, max: 3 }));
    nodes.push(b);
    const leaseOf = (id: string): LeaseRecord | undefined => cp.peek<LeaseRecord>(`${LEASE_PREFIX}${id}`)?.value;
    expect(leaseOf('a')).toMatchObject({ release: RELEASE, wire: { min: MIN_PEER_WIRE_VERSION, max: PEER_WIRE_VERSION } });
    expect(leaseOf('b')).toMatchObject({ release: RELEASE, wire: { min: 1, max: 3 } });
    for (const [n, wire] of [[a, `${MIN_PEER_WIRE_VERSION}..${PEER_WIRE_VERSION}`], [b, '1..3']] as const) {
      const text = await (await fetch(`http://127.0.0.1:${n.httpPort}/metrics`)).text();
      expect(text).toContain(`gridlink_node_build_info{release="${RELEASE}",wire="${wire}",node="${n.id}"} 1`);
    }
  });
});
