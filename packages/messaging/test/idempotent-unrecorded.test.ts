/**
 * An idempotent consumer whose processed mark the grid does not take, with a real grid (reached
 * through fault proxies) and nats-server.
 */
import { describe, expect, it } from 'vitest';
import { GridError } from '@gridlink/client';
import { headers } from '@nats-io/transport-node';
import { IdempotentConsumer } from '@gridlink/messaging';
import { waitUntil } from './helpers/processes.js';
import { messagingEnv } from './helpers/env.js';

describe('idempotent consumer: a mark the grid does not take', () => {
  const env = messagingEnv();
  const { closers, grid, natsConn } = env;

  it('is reported as failed (not only as an anonymous error); the id is not marked and runs again when redelivered', async () => {
    const { gw, proxies } = await env.proxiedGrid();
    const ic = new IdempotentConsumer({ grid: gw, name: 'unmarked', lockLeaseMs: 500 });
    closers.push(() => ic.close());
    const nc = await natsConn();
    const { gate, open } = env.gate();
    let runs = 0;
    ic.subscribe(nc, 'unmarked.in', async () => {
      runs++;
      if (runs === 1) await gate;
    });
    const failed: { id: string; error: unknown }[] = [];
    const processed: string[] = [];
    ic.on('failed', (e) => failed.push(e));
    ic.on('processed', (e) => processed.push(e.id));
    ic.on('error', () => undefined);
    const publish = (): void => {
      const h = headers();
      h.set('Nats-Msg-Id', 'm-1');
      nc.publish('unmarked.in', 'x', { headers: h });
    };
    publish();
    await waitUntil(() => runs === 1, 10_000, 'the handler to run');
    for (const p of proxies) p.blackhole(true);
    open();
    await waitUntil(() => failed.length > 0, 15_000, 'the failure reported');
    expect(failed[0]?.id).toBe('m-1');
    expect(failed[0]?.error).toBeInstanceOf(GridError);
    expect(processed).toEqual([]);
    for (const p of proxies) p.heal();
    const reader = new IdempotentConsumer({ grid: await grid(), name: 'unmarked' });
    closers.push(() => reader.close());
    expect(await reader.isProcessed('m-1')).toBe(false);
    // Redelivered (here: published again, while the lock it could not give back is still reported
    // in progress): not a duplicate, it runs and is marked.
    ic.on('inProgress', () => publish());
    publish();
    await waitUntil(() => processed.length === 1, 15_000, 'the redelivery processed');
    expect(runs).toBe(2);
    expect(await reader.isProcessed('m-1')).toBe(true);
  });
});
