import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Op, ResponseFlag } from '@gridlink/protocol';
import { GridClient } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A node that answers CACHE_GET with NOT_PRIMARY while `moved` is false, then with a value; its
 * TOPOLOGY answers the map of the current `topologyVersion`. The client's transition backoff grows
 * to a minute: an operation waiting it out only goes on early when something wakes it.
 */
async function setup(retry: { minDelay: number; maxDelay: number; factor: number }, version = 1): Promise<{ node: ScriptedNode; client: GridClient; gets: () => number; move: () => void }> {
  let moved = false;
  let gets = 0;
  const node = await new ScriptedNode('n1', 8, (req, n) => {
    if (req.op === Op.TOPOLOGY) return { payload: n.map(n.topologyVersion) };
    if (req.op === Op.HEARTBEAT) return { payload: {} };
    if (req.op === Op.CACHE_GET) {
      gets++;
      return moved ? { payload: { value: null } } : { flags: ResponseFlag.ERROR, payload: { code: ErrorCode.NOT_PRIMARY, message: 'not the primary (scripted)' } };
    }
    return undefined;
  }).start();
  node.topologyVersion = version;
  cleanups.push(() => node.close());
  const client = await GridClient.connect({
    endpoints: [node.endpoint],
    retry: { retries: 3, jitter: false, ...retry },
    operationTimeout: 120_000,
  });
  cleanups.push(() => client.close());
  return { node, client, gets: () => gets, move: () => (moved = true) };
}

describe('an operation waiting out a transition backoff', () => {
  it('tries again as soon as the client installs a newer partition map, not when its backoff ends', async () => {
    const { node, client, gets, move } = await setup({ minDelay: 60_000, maxDelay: 60_000, factor: 1 });
    let settled = false;
    const get = client.cache('c').get('k').finally(() => (settled = true));
    // The first NOT_PRIMARY is retried at once; the second starts the minute-long backoff.
    await waitFor(() => gets() >= 2, 5000, 'the second NOT_PRIMARY');
    expect(settled).toBe(false);
    move();
    const changed = new Promise<{ version: number }>((resolve) => client.once('topologyChanged', resolve));
    node.topologyVersion = 2;
    node.pushTopologyChanged(2);
    expect((await changed).version).toBe(2);
    // Woken by the map: answered well before the 60 s backoff (the test's own timeout is far shorter).
    await expect(get).resolves.toBeUndefined();
    expect(gets()).toBe(3);
  });

  it('is woken by a node announcing the map the client holds (it was behind), not by an older one; its backoff starts over', async () => {
    // Waits of 200 ms, then 20 s, then a minute.
    const { node, client, gets, move } = await setup({ minDelay: 200, maxDelay: 60_000, factor: 100 }, 2);
    const get = client.cache('c').get('k');
    await waitFor(() => gets() >= 3, 5000, 'the third NOT_PRIMARY (then a 20 s wait)');
    // An older version: refreshed (the push asks for it), nothing installed, nothing woken.
    const refreshes = client.stats().mapRefreshes;
    node.pushTopologyChanged(1);
    await waitFor(() => client.stats().mapRefreshes > refreshes, 5000, 'the refresh the push asks for');
    expect(gets()).toBe(3);
    // The node now holds the client's map (a node that refused while behind, caught up): woken.
    // That attempt fails too; the backoff has started over, so the next attempt follows 200 ms
    // later (not a minute), and then it waits 20 s again.
    node.pushTopologyChanged(2);
    await waitFor(() => gets() >= 5, 5000, 'two attempts after the push');
    move();
    node.topologyVersion = 3;
    node.pushTopologyChanged(3);
    await expect(get).resolves.toBeUndefined();
    expect(gets()).toBe(6);
  });
});
