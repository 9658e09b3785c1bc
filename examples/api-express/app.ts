/**
 * A small orders API on Express with request de-duplication (@gridlink/express). Orders are kept
 * in the grid cache "orders"; `partnerCalls` counts calls to the (simulated) partner that cannot
 * roll back, which must happen once per order however often a client retries.
 */
import { randomUUID } from 'node:crypto';
import express, { type Express } from 'express';
import type { GridClientConfig } from '@gridlink/client';
import { dedupe, gridlink, type ExpressDedupeOptions, type GridlinkHandle } from '@gridlink/express';

export interface Order {
  id: string;
  sku: string;
  qty: number;
  /** Fencing token of the key's lock when the order was placed. */
  token: number | null;
}

export interface OrdersApp {
  app: Express;
  grid: GridlinkHandle;
  partnerCalls: () => number;
}

export function createOrdersApp(options: { grid: GridClientConfig; dedupe?: ExpressDedupeOptions | false }): OrdersApp {
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '16kb' }));
  const grid = gridlink(app, options.grid);
  let partnerCalls = 0;

  const place: express.RequestHandler = async (req, res, next) => {
    try {
      const { sku, qty } = req.body as { sku?: unknown; qty?: unknown };
      if (typeof sku !== 'string' || typeof qty !== 'number' || !Number.isInteger(qty) || qty < 1) {
        res.status(400).json({ error: 'sku (string) and qty (positive integer) are required' });
        return;
      }
      const order: Order = { id: randomUUID(), sku, qty, token: req.idempotency?.fencingToken ?? null };
      partnerCalls++; // the call that must not happen twice
      await req.grid!.cache<string, Order>('orders').put(order.id, order);
      res.status(201).location(`/orders/${order.id}`).json(order);
    } catch (e) {
      next(e);
    }
  };
  const guard = options.dedupe === false ? [] : [dedupe({ required: true, ...options.dedupe })];
  app.post('/orders', ...guard, place);
  app.get('/orders/:id', async (req, res, next) => {
    try {
      const order = await req.grid!.cache<string, Order>('orders').get(req.params.id);
      if (order === undefined) res.status(404).json({ error: 'no such order' });
      else res.json(order);
    } catch (e) {
      next(e);
    }
  });
  return { app, grid, partnerCalls: () => partnerCalls };
}
