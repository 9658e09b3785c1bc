/**
 * What `stats()` counts against a node: only requests that went out on its connection, and the
 * errors of those. A request the client refused itself (bad arguments, a value that does not
 * serialise, one over the frame limit, a closed client) is no node's request or error; the ones
 * refused at the connection, after routing, are counted as `unsent`. Against a real one-node
 * LocalCluster.
 */
import { describe, expect, it } from 'vitest';
import { GridClient, GridClosedError, GridConfigError, GridSerializationError, GridServerError, type ClientStats } from '@gridlink/client';
import { oneNodeGrid } from './helpers/grid.js';
import { rejection } from './helpers/wait.js';

const grid = oneNodeGrid();

/** Requests and errors summed over the nodes. */
function nodeTotals(s: ClientStats): { requests: number; errors: number } {
  return s.nodes.reduce((t, n) => ({ requests: t.requests + n.requests, errors: t.errors + n.errors }), { requests: 0, errors: 0 });
}

describe('node requests and errors in stats()', () => {
  it('a request refused before it is sent is not a request or error of the node it was routed to', async () => {
    const client = await GridClient.connect({ endpoints: grid.cluster.endpoints, connectTimeout: 3000 });
    try {
      const c = client.cache<string, unknown>('node-stats');
      await c.put('warm', 1);
      const before = client.stats();

      // Over the 4 MiB frame limit: refused by the connection the request was routed to.
      const big = 'v'.repeat(4 * 1024 * 1024 + 1);
      expect(await rejection(c.put('big', big))).toBeInstanceOf(GridSerializationError);
      expect(await rejection(c.putAll([['big', big]]))).toBeInstanceOf(GridSerializationError);
      // Refused before routing: bad options, a value the serializer refuses.
      expect(await rejection(c.put('k', 1, { timeoutMs: -1 }))).toBeInstanceOf(GridConfigError);
      expect(await rejection(c.put('k', undefined))).toBeInstanceOf(GridSerializationError);

      const after = client.stats();
      expect(nodeTotals(after)).toEqual(nodeTotals(before));
      expect(after.unsent - before.unsent).toBe(2);
      // They are failed operations of the client all the same.
      expect(after.failedOperations - before.failedOperations).toBe(2);

      // An error the node answered still counts against it.
      expect(await rejection(c.create({ backups: 17 }))).toBeInstanceOf(GridServerError);
      const answered = client.stats();
      expect(nodeTotals(answered)).toEqual({ requests: nodeTotals(after).requests + 1, errors: nodeTotals(after).errors + 1 });
      expect(answered.unsent).toBe(after.unsent);

      // A closed client refuses every call: no node's request or error either.
      await client.close();
      expect(await rejection(c.get('warm'))).toBeInstanceOf(GridClosedError);
      expect(nodeTotals(client.stats())).toEqual(nodeTotals(answered));
    } finally {
      await client.close();
    }
  });
});
