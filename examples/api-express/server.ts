/**
 * The orders API against an embedded three-node grid, in one command:
 *
 *   pnpm example:api-express            # serves on 127.0.0.1:3000 (PORT to change) until Ctrl-C
 *   pnpm example:api-express --demo     # fires duplicate requests at itself, prints, exits
 */
import type { AddressInfo } from 'node:net';
import { LocalCluster } from '@gridlink/node';
import { trackResponses } from '../http-shutdown.js';
import { createOrdersApp } from './app.js';

const demo = process.argv.includes('--demo');
const cluster = await LocalCluster.start({ nodes: 3, partitions: 128 });
const { app, grid, partnerCalls } = createOrdersApp({ grid: { endpoints: cluster.endpoints } });
await grid.ready;
const server = app.listen(demo ? 0 : Number(process.env.PORT ?? 3000), '127.0.0.1');
await new Promise<void>((r) => server.once('listening', r));
const responses = trackResponses(server);
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

async function shutdown(): Promise<void> {
  // Requests under way finish (their idempotency keys stored or freed, not left to their lease)
  // and their connections close after the answer; idle keep-alive sockets close at once; whatever
  // still runs after 10 s is cut.
  const closed = new Promise<void>((r) => server.close(() => r())); // closes the grid client too
  responses.stopping();
  const cut = setTimeout(() => server.closeAllConnections(), 10_000);
  await closed;
  clearTimeout(cut);
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
  console.log('partner calls:', partnerCalls());
  await shutdown();
}
