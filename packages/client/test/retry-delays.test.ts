/**
 * When retries go out, as `RetryConfig.minDelay` documents it: the first retry goes at once, and
 * `minDelay` is the pause before the second (p-retry's delays: minDelay · factorⁿ⁻¹ before retry
 * n + 1). Against a scripted node refusing with OVERLOADED (retryable, and no failover: p-retry's
 * own backoff applies).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Op, ResponseFlag } from '@gridlink/protocol';
import { GridClient } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const MIN_DELAY = 400;

describe('retry.minDelay', () => {
  it('the first retry goes at once; minDelay comes before the second', async () => {
    const at: number[] = [];
    const node = await new ScriptedNode('n1', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      if (req.op === Op.CACHE_GET) {
        at.push(performance.now());
        return at.length <= 2 ? { flags: ResponseFlag.ERROR, payload: { code: ErrorCode.OVERLOADED, message: 'busy' } } : { payload: { value: null } };
      }
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({
      endpoints: [node.endpoint],
      retry: { retries: 5, minDelay: MIN_DELAY, maxDelay: MIN_DELAY, factor: 1, jitter: false },
    });
    cleanups.push(() => client.close());
    await expect(client.cache('c').get('k')).resolves.toBeUndefined();
    expect(at).toHaveLength(3);
    const [a0, a1, a2] = at as [number, number, number];
    // At once: well under minDelay (a round trip on loopback), whatever the machine's load.
    expect(a1 - a0).toBeLessThan(MIN_DELAY / 2);
    expect(a2 - a1).toBeGreaterThanOrEqual(MIN_DELAY - 5);
  });
});
