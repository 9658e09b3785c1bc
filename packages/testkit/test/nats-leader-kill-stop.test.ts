/**
 * Real processes: three nats-servers (JetStream cluster, R3 bucket) and three `gridlink-node`
 * processes under load (helpers/load.ts), on a cluster of their own: a NATS cluster whose servers
 * were restarted or hung a moment ago can stay without a stream quorum for over a minute when its
 * leader is killed (Debian's 2.9.10); a fresh one elects in 4.5-8 s. SIGTERM to two of the three
 * nodes as the KV stream leader is killed (ADR 0071).
 *
 * Needs `packages/node/dist/cli.js` (build the node package first).
 */
import { describe, expect, it } from 'vitest';
import { waitFor } from '@gridlink/testkit';
import type { TopologyRecord } from '@gridlink/node';
import { processClusterFixture, streamLeader, throughFault } from './helpers/load.js';

const fx = processClusterFixture({ nodes: 3, natsServers: 3, partitions: 64 });

describe('graceful stops during a NATS stream leader election', () => {
  it('SIGTERM to two nodes as the KV stream leader is killed: they wait for the KV, hand everything to the third, nothing is lost (ADR 0071)', async () => {
    // No topology can be committed until a new stream leader is elected (4.5-8 s here), and
    // the partitions the two hold together must be pulled by node-1 before they go (ADR 0067);
    // before ADR 0071 both stopped at their 5 s hand-off timeout and those partitions were lost.
    const server = await streamLeader(fx.cluster);
    let exits: (number | null)[] = [];
    await throughFault(fx.client, 'stop-in-outage', async () => {
      await server.kill();
      exits = await Promise.all([fx.cluster.node('node-2').terminate(), fx.cluster.node('node-3').terminate()]);
    });
    expect(exits).toEqual([0, 0]);
    let t: TopologyRecord | null = null;
    await waitFor('node-1 alone, nothing moving', async () => {
      t = await fx.cluster.topology();
      return t !== null && Object.keys(t.members).join() === 'node-1' && t.syncing.every((x) => x.length === 0);
    }, 30_000);
    expect(t!.lost).toEqual([]);
  }, 90_000);
});
