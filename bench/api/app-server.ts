/**
 * One app under load, in its own process: the orders example (examples/api-express) without
 * de-duplication ("none"), with @gridlink/express ("gridlink"; "gridlink-after-send" with
 * `storeAfterSend: true`), or the same handler behind the express-idempotency middleware on
 * redis-server ("express-idempotency"); "two-puts", a reference: two plain grid puts around the
 * handler, without lock or de-duplication. A mode with "-embedded" appended ("none-embedded",
 * "gridlink-embedded", ...) runs against a three-node grid started in the app's own process, as
 * the example's `pnpm example:api-express` does, instead of the grid process.
 *   app-server.ts <mode> <grid endpoints, comma-separated> [redis port]
 * Prints "READY <port>"; GET /bench/stats answers { partnerCalls, gridOps, now } (gridOps: grid
 * operations the app's client has completed, every kind; now: the process's monotonic clock, µs).
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { getSharedIdempotencyService, idempotency } from 'express-idempotency';
import RedisAdapter from 'express-idempotency-redis-adapter';
import { gridlink } from '@gridlink/express';
import { LocalCluster } from '@gridlink/node';
import { createOrdersApp } from '../../examples/api-express/app.js';

const [modeArg = '', endpointList, redisPort] = process.argv.slice(2);
// "<mode>-embedded": the example as `pnpm example:api-express` runs it, its three-node grid
// started in this process (examples/api-express/server.ts) instead of the separate grid process.
const embedded = modeArg.endsWith('-embedded');
const mode = embedded ? modeArg.slice(0, -'-embedded'.length) : modeArg;
const local = embedded ? await LocalCluster.start({ nodes: 3, partitions: 128 }) : undefined;
const endpoints = local?.endpoints ?? (endpointList ?? '').split(',').filter(Boolean);

let app: express.Express;
let partnerCalls: () => number;
let gridOps: () => number;

if (mode === 'none' || mode === 'gridlink' || mode === 'gridlink-after-send') {
  const orders = createOrdersApp({ grid: { endpoints }, dedupe: mode === 'none' ? false : { storeAfterSend: mode === 'gridlink-after-send' } });
  const client = await orders.grid.ready;
  app = orders.app;
  partnerCalls = orders.partnerCalls;
  gridOps = () => client.stats().operations;
} else if (mode === 'two-puts') {
  // A reference, not a middleware: two plain grid puts around the same handler (one before it,
  // one before the response), no lock and no de-duplication (duplicates run). What any design
  // making two grid writes per request costs this app at least.
  const orders = createOrdersApp({ grid: { endpoints }, dedupe: false });
  const client = await orders.grid.ready;
  const marks = client.cache<string, number>('bench-marks');
  const records = client.cache<string, { status: number; body: string }>('bench-records');
  app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    const key = req.get('idempotency-key') ?? '';
    marks.put(key, 1).then(() => {
      const end = res.end.bind(res) as (...args: unknown[]) => express.Response;
      res.end = ((...args: unknown[]) => {
        const body = typeof args[0] === 'string' || Buffer.isBuffer(args[0]) ? args[0].toString() : '';
        records.put(key, { status: res.statusCode, body }).then(
          () => end(...args),
          () => end(...args),
        );
        return res;
      }) as typeof res.end;
      next();
    }, next);
  });
  app.use(orders.app);
  partnerCalls = orders.partnerCalls;
  gridOps = () => client.stats().operations;
} else if (mode === 'express-idempotency') {
  app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '16kb' }));
  const grid = gridlink(app as never, { endpoints });
  const client = await grid.ready;
  gridOps = () => client.stats().operations;
  type Adapter = { connect(): Promise<void> };
  const Ctor = ((RedisAdapter as unknown as { default?: unknown }).default ?? RedisAdapter) as new (o: unknown) => Adapter;
  const adapter = new Ctor({ connectionConfig: { url: `redis://127.0.0.1:${redisPort}` } });
  await adapter.connect();
  let calls = 0;
  partnerCalls = () => calls;
  app.post('/orders', idempotency({ dataAdapter: adapter as never }) as never, async (req: express.Request, res: express.Response) => {
    if (getSharedIdempotencyService().isHit(req as never)) return;
    const { sku, qty } = req.body as { sku: string; qty: number };
    const order = { id: randomUUID(), sku, qty, token: null };
    calls++;
    await grid.client!.cache('orders').put(order.id, order);
    res.status(201).location(`/orders/${order.id}`).json(order);
  });
} else {
  throw new Error(`unknown mode ${modeArg}`);
}

// express-idempotency reports a request in progress as an error: answer 409 without a stack trace.
app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
  res.status(/in progress/i.test(err.message) ? 409 : 500).json({ error: err.message });
});
app.get('/bench/stats', (_req, res) => {
  // now: this process's monotonic clock in µs, the clock of V8's CPU profile (bench/api/profile.ts).
  res.json({ partnerCalls: partnerCalls(), gridOps: gridOps(), now: Number(process.hrtime.bigint() / 1000n) });
});
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => {
    if (local === undefined) process.exit(0);
    else void local.stop().finally(() => process.exit(0));
  });
});
