/**
 * natsAddressFinder against real grid nodes announcing themselves in a real nats-server's KV:
 * a client given only the NATS servers finds every node, picks up a new one, and drops one that
 * left (deleted announcement) or died (announcement no longer renewed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient, GridConfigError } from '@gridlink/client';
import { natsAddressFinder } from '@gridlink/client/nats';
import { NatsControlPlane, startNode, type GridNode } from '@gridlink/node';
import { NatsCluster, waitFor } from '@gridlink/testkit';

let nats: NatsCluster;
const planes: NatsControlPlane[] = [];
const nodes: GridNode[] = [];

async function gridNode(id: string): Promise<GridNode> {
  const cp = await NatsControlPlane.connect({ servers: nats.urls, bucket: 'finder', connectTimeoutMs: 10_000 });
  planes.push(cp);
  const node = await startNode({ id, controlPlane: cp, port: 0, partitions: 16, backups: 1 });
  nodes.push(node);
  return node;
}

beforeAll(async () => {
  nats = await NatsCluster.start({ servers: 1 });
});

afterAll(async () => {
  for (const n of nodes) await n.stop().catch(() => undefined);
  await Promise.all(planes.map((p) => p.close()));
  await nats?.close();
});

describe('natsAddressFinder (@gridlink/client/nats)', () => {
  it('refuses bad options naming the field', () => {
    expect(() => natsAddressFinder({ servers: [] })).toThrow(GridConfigError);
    expect(() => natsAddressFinder({ servers: 'http://x' })).toThrow(/servers/);
    expect(() => natsAddressFinder({ servers: 'nats://x:1', bucket: 'a.b' })).toThrow(/bucket/);
    expect(() => natsAddressFinder({ servers: 'nats://x:1', staleAfterMs: 0 })).toThrow(/staleAfterMs/);
  });

  it('rejects (so the client keeps its previous list) while NATS is unreachable', async () => {
    const f = natsAddressFinder({ servers: 'nats://127.0.0.1:1', timeoutMs: 300 });
    await expect(f.resolve()).rejects.toThrow();
    await f.close();
  });

  it('a client given only the NATS servers finds every node, picks up a new one, and drops gone ones', async () => {
    const a = await gridNode('a');
    const finder = natsAddressFinder({ servers: nats.urls, bucket: 'finder', staleAfterMs: 1500 });
    try {
      expect(await finder.resolve()).toEqual([`127.0.0.1:${a.port}`]);
      const client = await GridClient.connect({ addressFinder: finder, reResolveInterval: 200 });
      try {
        const cache = client.cache<string, number>('c');
        await cache.put('k', 1);
        expect(await cache.get('k')).toBe(1);

        const b = await gridNode('b');
        await waitFor('b announced', async () => (await finder.resolve()).includes(`127.0.0.1:${b.port}`));
        expect(finder.announced().map((x) => x.id)).toEqual(['a', 'b']);
        // The client connects to the new node without a restart.
        await waitFor('client connected to b', () => client.stats().nodes.some((n) => n.nodeId === 'b' && n.connected), 15_000);

        // A node that stops deletes its announcement.
        await b.stop();
        await waitFor('b gone after stop', async () => !(await finder.resolve()).includes(`127.0.0.1:${b.port}`));

        // A node that dies stops renewing: left out once stale.
        const c = await gridNode('c');
        await waitFor('c announced', async () => (await finder.resolve()).includes(`127.0.0.1:${c.port}`));
        c.kill();
        await waitFor('c stale', async () => !(await finder.resolve()).includes(`127.0.0.1:${c.port}`), 10_000);
        expect(await cache.get('k')).toBe(1);
      } finally {
        await client.close();
      }
    } finally {
      await finder.close();
    }
  });
});
