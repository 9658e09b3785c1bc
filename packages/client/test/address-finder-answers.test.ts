import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient, GridConnectionError, type AddressFinder } from '@gridlink/client';

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, partitions: 16 });
});
afterAll(async () => {
  await cluster?.stop();
});

/** A finder (of a JavaScript caller: no types checked) answering `answer`. */
const answering = (answer: unknown): AddressFinder => ({ resolve: () => Promise.resolve(answer as string[]) });

describe('what an address finder answers', () => {
  it('an answer that is not an array (one endpoint string, an object, null) is a failed resolution, not addresses made of its characters', async () => {
    for (const answer of [cluster.endpoints[0], { 0: cluster.endpoints[0] }, null]) {
      const err = await GridClient.connect({ addressFinder: answering(answer), connectTimeout: 1000 }).catch((e: unknown) => e);
      expect(err, JSON.stringify(answer)).toBeInstanceOf(GridConnectionError);
      expect((err as GridConnectionError).message).toMatch(/address finder failed: .*not an array/);
      // Beside endpoints, the client connects through them.
      const client = await GridClient.connect({ addressFinder: answering(answer), endpoints: cluster.endpoints, connectTimeout: 1000 });
      try {
        await client.cache<string, number>('answers').put('k', 1);
      } finally {
        await client.close();
      }
    }
  });

  it('entries that are not endpoint strings are skipped; the others are used', async () => {
    const client = await GridClient.connect({ addressFinder: answering([42, null, '', 'no such:host:x', cluster.endpoints[0]]), connectTimeout: 2000 });
    try {
      await client.cache<string, number>('answers').put('k', 2);
    } finally {
      await client.close();
    }
  });
});
