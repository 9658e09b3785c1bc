import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { opName } from '@gridlink/protocol';
import type { GridNode } from './node.js';

/** Prometheus metrics of one node, in a registry of its own (several nodes may share a process). */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly ops: Counter<'op' | 'outcome'>;
  readonly latency: Histogram<'op'>;
  readonly connections: Gauge;
  readonly replicationSeconds: Histogram;
  readonly transfers: Counter;
  private readonly topologyVersion: Gauge;

  constructor(node: GridNode) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: node.id });
    this.ops = new Counter({ name: 'gridlink_node_ops_total', help: 'Client operations answered, by op and outcome', labelNames: ['op', 'outcome'], registers });
    this.latency = new Histogram({
      name: 'gridlink_node_op_duration_seconds',
      help: 'Time from request decoded to response ready, by op',
      labelNames: ['op'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.connections = new Gauge({ name: 'gridlink_node_connected_clients', help: 'Open client connections (peers excluded)', registers });
    this.replicationSeconds = new Histogram({
      name: 'gridlink_node_replication_seconds',
      help: 'Time for all backups to acknowledge a write',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5],
      registers,
    });
    this.transfers = new Counter({ name: 'gridlink_node_state_transfers_total', help: 'Partitions received by state transfer', registers });
    this.topologyVersion = new Gauge({ name: 'gridlink_node_topology_version', help: 'Topology version this node holds', registers });
    new Gauge({
      name: 'gridlink_node_partitions',
      help: 'Partitions by role: owned (primary or backup), primary, moving (being pulled)',
      labelNames: ['state'],
      registers,
      collect() {
        const c = node.partitionCounts();
        this.set({ state: 'owned' }, c.owned);
        this.set({ state: 'primary' }, c.primary);
        this.set({ state: 'moving' }, c.moving);
      },
    });
    new Gauge({
      name: 'gridlink_node_replication_lag',
      help: 'Writes applied on this primary and not yet acknowledged by all backups',
      registers,
      collect() {
        this.set(node.replicationInFlight());
      },
    });
    new Gauge({
      name: 'gridlink_node_resyncs_total',
      help: 'Snapshots pushed to backups that missed records since start',
      registers,
      collect() {
        this.set(node.resyncs);
      },
    });
    new Gauge({
      name: 'gridlink_node_entries',
      help: 'Entries held (primary and backup copies)',
      registers,
      collect() {
        this.set(node.store.stats().entries);
      },
    });
    new Gauge({
      name: 'gridlink_node_bytes',
      help: 'Key and value bytes held',
      registers,
      collect() {
        this.set(node.store.stats().bytes);
      },
    });
    new Gauge({
      name: 'gridlink_node_evictions_total',
      help: 'Entries evicted by the LRU bound since start',
      registers,
      collect() {
        this.set(node.store.stats().evictions);
      },
    });
    new Gauge({
      name: 'gridlink_node_expired_total',
      help: 'Entries removed by TTL since start',
      registers,
      collect() {
        this.set(node.store.stats().expired);
      },
    });
  }

  observeOp(op: number, error: boolean, seconds: number): void {
    const name = opName(op);
    this.ops.inc({ op: name, outcome: error ? 'error' : 'ok' });
    this.latency.observe({ op: name }, seconds);
  }

  onTopology(version: number): void {
    this.topologyVersion.set(version);
  }
}
