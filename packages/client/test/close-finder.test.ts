import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '@gridlink/node';
import { GridClient, GridClosedError, type AddressFinder } from '@gridlink/client';
import { trackTimers } from './helpers/resources.js';
import { waitFor } from './helpers/wait.js';

let cluster: LocalCluster;
beforeAll(async () => {
  cluster = await LocalCluster.start({ nodes: 1, partitions: 16 });
});
afterAll(async () => {
  await cluster?.stop();
});

describe('close() while the address finder is being asked', () => {
  it('a re-resolution the finder never answers: close() does not wait for it, its signal aborts, no timer of it is left', async () => {
    const timers = trackTimers();
    const signals: AbortSignal[] = [];
    const finder: AddressFinder = {
      resolve: (signal) => {
        if (signal !== undefined) signals.push(signal);
        // The first answer (startup); every later call hangs.
        return signals.length === 1 ? Promise.resolve(cluster.endpoints) : new Promise<string[]>(() => undefined);
      },
    };
    const client = await GridClient.connect({ addressFinder: finder, connectTimeout: 10_000, reResolveInterval: 0 });
    await client.cache<string, number>('f').put('k', 1);
    // The first map's arrival asks the finder again.
    await waitFor(() => signals.length >= 2, 5000, 'a re-resolution after the first map');
    const t0 = performance.now();
    await client.close();
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(signals[1]?.aborted).toBe(true);
    expect(signals[1]?.reason).toBeInstanceOf(GridClosedError);
    try {
      // Destroy hooks run a little after a timer is cleared; the resolution's own would run for 10 s.
      const live = (): Record<string, number> => timers.live((site) => site.startsWith('client/'));
      await waitFor(() => Object.keys(live()).length === 0, 2000, 'no timer of the client left').catch(() => undefined);
      expect(live()).toEqual({});
    } finally {
      timers.stop();
    }
  });
});
