/**
 * A small orders API on Nest with request de-duplication (@gridlink/nest). Orders are kept in the
 * grid cache "orders" (injected with @InjectCache); health at GET /health (terminus-style result).
 */
import 'reflect-metadata';
import { randomUUID } from 'node:crypto';
import { BadRequestException, Body, Controller, Get, Inject, Module, NotFoundException, Param, Post, Req, type DynamicModule } from '@nestjs/common';
import type { GridCache, GridClientConfig } from '@gridlink/client';
import { GridHealthIndicator, GridlinkModule, Idempotent, InjectCache, type IdempotentRequest } from '@gridlink/nest';

export interface Order {
  id: string;
  sku: string;
  qty: number;
  token: number | null;
}

/** Calls to the (simulated) partner that cannot roll back. */
export const partner = { calls: 0 };

@Controller('orders')
export class OrdersController {
  constructor(@InjectCache('orders') private readonly orders: GridCache<string, Order>) {}

  @Post()
  @Idempotent({ required: true })
  async place(@Body() body: { sku?: unknown; qty?: unknown }, @Req() req: IdempotentRequest): Promise<Order> {
    const { sku, qty } = body;
    if (typeof sku !== 'string' || typeof qty !== 'number' || !Number.isInteger(qty) || qty < 1) {
      throw new BadRequestException('sku (string) and qty (positive integer) are required');
    }
    const order: Order = { id: randomUUID(), sku, qty, token: req.idempotency?.fencingToken ?? null };
    partner.calls++;
    await this.orders.put(order.id, order);
    return order;
  }

  @Get(':id')
  async get(@Param('id') id: string): Promise<Order> {
    const order = await this.orders.get(id);
    if (order === undefined) throw new NotFoundException('no such order');
    return order;
  }
}

@Controller('health')
export class HealthController {
  constructor(@Inject(GridHealthIndicator) private readonly grid: GridHealthIndicator) {}

  @Get()
  check(): unknown {
    return this.grid.isHealthy('grid');
  }
}

export function ordersModule(client: GridClientConfig): DynamicModule {
  @Module({
    imports: [GridlinkModule.forRoot({ client, caches: ['orders'] })],
    controllers: [OrdersController, HealthController],
  })
  class OrdersModule {}
  return { module: OrdersModule };
}
