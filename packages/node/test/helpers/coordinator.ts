import { afterEach, beforeEach, vi } from 'vitest';
import { MemoryControlPlane, resolveNodeOptions, silentLogger, type KvEvent, type LeaseRecord, type TopologyRecord } from '@gridlink/node';
import { LEASE_PREFIX, TOPOLOGY_KEY } from '../../src/control/keys.js';
import type { CacheRule } from '../../src/control/topology.js';
import { Lifecycle } from '../../src/lifecycle.js';
import { Coordinator } from '../../src/membership/coordinator.js';
import { ClusterView } from '../../src/membership/view.js';
import { Scheduler } from '../../src/scheduler.js';

/** A lease record of node `id` under `epoch` (nothing synced). */
export const lease = (id: string, epoch = `${id}-1`): LeaseRecord => ({ id, epoch, host: '127.0.0.1', port: 1, synced: {} });

/** Lets the control plane's queued watch events (microtasks) and the coordinator's awaits run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/**
 * One node's coordinator (8 partitions, backups 1) with what it needs from the node: its view,
 * fed by a topology watch, and `caches` as its cache registry. The answers of the node's probes
 * (ADR 0062/0063) are fed by the test through `coordinator.late.answered`.
 */
export function coordinatorOf(
  kv: MemoryControlPlane,
  id: string,
  caches?: () => readonly CacheRule[],
): { coordinator: Coordinator; view: ClusterView; leaseEvents: KvEvent<LeaseRecord>[]; refreshTopology: () => Promise<void>; close: () => void } {
  const opts = resolveNodeOptions({ id, controlPlane: kv, partitions: 8, backups: 1 });
  const scheduler = new Scheduler();
  const view = new ClusterView(id, 8, scheduler, () => true);
  const life = new Lifecycle();
  life.state = 'running';
  const apply = (rec: TopologyRecord): void => {
    if (view.topo === null || rec.version > view.topo.version) view.set(rec);
  };
  const refreshTopology = async (): Promise<void> => {
    const e = await kv.get<TopologyRecord>(TOPOLOGY_KEY);
    if (e === null) return;
    view.topoRevision = Math.max(view.topoRevision, e.revision);
    apply(e.value);
  };
  const leaseEvents: KvEvent<LeaseRecord>[] = [];
  const coordinator = new Coordinator({
    id,
    opts,
    kv,
    log: silentLogger,
    life,
    view,
    renewed: () => true,
    applyTopology: apply,
    refreshTopology,
    ...(caches !== undefined ? { caches } : {}),
  });
  const unwatch = [
    kv.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => {
      if (e.type !== 'put') return;
      view.topoRevision = Math.max(view.topoRevision, e.revision);
      apply(e.value);
    }),
    kv.watch<LeaseRecord>(LEASE_PREFIX, (e) => {
      leaseEvents.push(e);
      coordinator.onLeaseEvent(e);
    }),
  ];
  return {
    coordinator,
    view,
    leaseEvents,
    refreshTopology,
    close: () => {
      for (const u of unwatch) u();
      scheduler.stop();
    },
  };
}

/**
 * A clock the test moves by hand: `Date` is faked from `start` before each test and real again
 * after it, when `closers` run too. Set `clock.now` and call `clock.apply()` to move it.
 */
export function fakeDateClock(start = 1_000_000): { now: number; readonly closers: (() => void)[]; apply(): void } {
  const clock = {
    now: start,
    closers: [] as (() => void)[],
    apply(): void {
      vi.setSystemTime(clock.now);
    },
  };
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    clock.now = start;
    clock.apply();
  });
  afterEach(() => {
    for (const c of clock.closers.splice(0)) c();
    vi.useRealTimers();
  });
  return clock;
}
