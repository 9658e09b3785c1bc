/**
 * Health indicator for @nestjs/terminus (11 and 12): returns `{ [key]: { status: 'up' | 'down', ... } }`,
 * the result shape terminus' HealthCheckService evaluates; terminus itself is not imported.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { GridClient } from '@gridlink/client';
import { GRID_CLIENT } from './tokens.js';

export type GridHealthResult<K extends string> = Record<K, { status: 'up' | 'down'; connectedNodes: number; knownNodes: number; topologyVersion: number | null }>;

export class GridHealthIndicator {
  constructor(private readonly client: GridClient) {}

  /** Up when the client holds a live connection to at least one grid node. */
  isHealthy<K extends string = 'grid'>(key: K = 'grid' as K): GridHealthResult<K> {
    const t = this.client.topology();
    const connected = t.nodes.filter((n) => n.connected).length;
    return {
      [key]: { status: connected > 0 ? 'up' : 'down', connectedNodes: connected, knownNodes: t.nodes.length, topologyVersion: t.version },
    } as GridHealthResult<K>;
  }
}
Injectable()(GridHealthIndicator);
Inject(GRID_CLIENT)(GridHealthIndicator, undefined, 0);
