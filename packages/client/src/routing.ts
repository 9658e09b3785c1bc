/**
 * Routing decisions (pure). Given the partition map and which nodes have a usable connection,
 * pick the node for an operation:
 * - single-key: the partition's primary when connected, otherwise round-robin over healthy nodes;
 * - multi-key: split the keys by primary (keys whose primary is not connected form one group that
 *   goes round-robin), each group runs in parallel;
 * - anything else: round-robin.
 * Partition awareness is only a latency optimisation: any node accepts any request.
 */
import type { PartitionMap } from '@gridlink/protocol';
import { primaryOf } from './partition-table.js';

export type RouteReason = 'primary' | 'round-robin';

export interface Route {
  nodeId: string;
  reason: RouteReason;
}

/** Round-robin cursor; `next` returns an index in [0, n). */
export class RoundRobin {
  private i = 0;
  next(n: number): number {
    if (n <= 0) return 0;
    const v = this.i % n;
    this.i = (this.i + 1) % 0x7fffffff;
    return v;
  }
}

/**
 * Chooses a node. `healthy` lists node ids with a usable connection, in a stable order.
 * Returns null when there is none.
 */
export function route(
  healthy: readonly string[],
  rr: RoundRobin,
  map: PartitionMap | null,
  partition: number | undefined,
  partitionAware = true,
): Route | null {
  if (healthy.length === 0) return null;
  if (partitionAware && partition !== undefined) {
    const primary = primaryOf(map, partition);
    if (primary !== null && healthy.includes(primary.id)) return { nodeId: primary.id, reason: 'primary' };
  }
  const nodeId = healthy[rr.next(healthy.length)] as string;
  return { nodeId, reason: 'round-robin' };
}

/**
 * Splits item indices by the primary of each item's partition. Items whose primary is unknown or
 * not connected are grouped under `null` (sent round-robin). Order within a group is preserved.
 */
export function splitByPrimary(
  partitions: readonly number[],
  map: PartitionMap | null,
  healthy: ReadonlySet<string>,
  partitionAware = true,
): Map<string | null, number[]> {
  const groups = new Map<string | null, number[]>();
  partitions.forEach((p, i) => {
    let owner: string | null = null;
    if (partitionAware) {
      const primary = primaryOf(map, p);
      if (primary !== null && healthy.has(primary.id)) owner = primary.id;
    }
    let g = groups.get(owner);
    if (g === undefined) {
      g = [];
      groups.set(owner, g);
    }
    g.push(i);
  });
  return groups;
}
