import { afterEach, describe, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { GridClient, GridTimeoutError } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { trackTimers } from './helpers/resources.js';
import { waitFor } from './helpers/wait.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('a per-call timeoutMs shorter than the connection sweep', () => {
  it('is kept with the default settings: the operation rejects at its deadline, not at the next sweep (250 ms)', async () => {
    // Answers the handshake, the map and heartbeats; never a cache operation.
    const node = await new ScriptedNode('mute', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint] });
    cleanups.push(() => client.close());
    const cache = client.cache<string, number>('mute');
    for (const timeoutMs of [20, 40, 60, 20]) {
      const t0 = performance.now();
      const err = await cache.get('k', { timeoutMs }).catch((e: unknown) => e);
      const elapsed = performance.now() - t0;
      expect(err).toBeInstanceOf(GridTimeoutError);
      expect((err as GridTimeoutError).code).toBe('GRID_TIMEOUT');
      expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 2);
      // The sweep runs every 250 ms with these settings: a deadline kept is well inside that.
      expect(elapsed, `timeoutMs ${timeoutMs}`).toBeLessThan(timeoutMs + 120);
    }
    // Several at once with different deadlines, each kept.
    const started = performance.now();
    const outcomes = await Promise.all(
      [70, 30, 50].map((timeoutMs) =>
        cache.get('k', { timeoutMs }).then(
          () => ({ timeoutMs, at: NaN }),
          () => ({ timeoutMs, at: performance.now() - started }),
        ),
      ),
    );
    for (const o of outcomes) expect(o.at, `timeoutMs ${o.timeoutMs}`).toBeLessThan(o.timeoutMs + 120);
    expect(client.bookkeeping().operations).toBe(0);
  });

  it('leaves no timer behind once its request is answered or expired', async () => {
    const node = await new ScriptedNode('echo', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      if (req.op === Op.CACHE_GET) return { payload: { value: null } };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint] });
    cleanups.push(() => client.close());
    const timers = trackTimers();
    try {
      // Deadlines shorter than the sweep (250 ms) but long enough for an answer on a busy machine.
      for (let i = 0; i < 50; i++) await client.cache('echo').get('k', { timeoutMs: 200 });
      const extra = (): number => Object.entries(timers.live((s) => s.startsWith('client/'))).reduce((n, [, c]) => n + c, 0);
      // The expiry timer of the last request fires (finding nothing) within its 200 ms.
      await waitFor(() => extra() === 0, 2000, 'no request timer left');
    } finally {
      timers.stop();
    }
  });
});
