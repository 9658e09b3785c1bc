/**
 * The Nest orders API against an embedded three-node grid, in one command:
 *
 *   pnpm example:api-nest            # serves on 127.0.0.1:3000 (PORT to change) until Ctrl-C
 *   pnpm example:api-nest --demo     # fires duplicate requests at itself, prints, exits
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { NestFactory } from '@nestjs/core';
import { LocalCluster } from '@gridlink/node';
import { trackResponses } from '../http-shutdown.js';
import { ordersModule, partner } from './app.module.js';

const demo = process.argv.includes('--demo');
const cluster = await LocalCluster.start({ nodes: 3, partitions: 128 });
const app = await NestFactory.create(ordersModule({ endpoints: cluster.endpoints }), { logger: demo ? false : ['log', 'error', 'warn'] });
await app.listen(demo ? 0 : Number(process.env.PORT ?? 3000), '127.0.0.1');
const base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
const responses = trackResponses(app.getHttpServer());

async function shutdown(): Promise<void> {
  // Requests under way finish and their connections close after the answer (not held for the
  // keep-alive timeout); then the grid client closes (onApplicationShutdown).
  const closed = app.close();
  responses.stopping();
  await closed;
  await cluster.stop();
}

if (!demo) {
  console.log(`orders API on ${base} (grid: ${cluster.endpoints.join(', ')})`);
  console.log(`try: curl -i -X POST ${base}/orders -H 'content-type: application/json' -H 'idempotency-key: k1' -d '{"sku":"book","qty":1}'`);
  process.once('SIGINT', () => void shutdown());
  process.once('SIGTERM', () => void shutdown());
} else {
  const send = (key: string | null, body: unknown) =>
    fetch(`${base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key === null ? {} : { 'idempotency-key': key }) },
      body: JSON.stringify(body),
    });
  const burst = await Promise.all(Array.from({ length: 20 }, () => send('order-1', { sku: 'book', qty: 1 })));
  const counts: Record<string, number> = {};
  for (const r of burst) {
    const label = r.headers.get('idempotent-replayed') === 'true' ? `${r.status} replayed` : String(r.status);
    counts[label] = (counts[label] ?? 0) + 1;
  }
  console.log('20 concurrent POSTs with one key:', JSON.stringify(counts));
  const retry = await send('order-1', { sku: 'book', qty: 1 });
  console.log('retry after completion:', retry.status, 'replayed:', retry.headers.get('idempotent-replayed'));
  console.log('same key, other payload:', (await send('order-1', { sku: 'pen', qty: 2 })).status);
  console.log('no key:', (await send(null, { sku: 'book', qty: 1 })).status);
  console.log('health:', JSON.stringify(await (await fetch(`${base}/health`)).json()));
  console.log('partner calls:', partner.calls);
  await shutdown();
}
