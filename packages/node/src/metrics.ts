import { Counter, Gauge, Registry, type Metric } from 'prom-client';
import { errorCodeInfo, opName } from '@gridlink/protocol';
import { OWN_WIRE_RANGE } from './peers/wire-version.js';
import { RELEASE } from './release.js';

/** What the metrics read from their node at collection time (the node implements it). */
export interface MetricsSource {
  readonly id: string;
  partitionCounts(): { owned: number; primary: number; moving: number };
  replicationInFlight(): number;
  /** Snapshots pushed to backups that missed records since start. */
  readonly resyncs: number;
  storeStats(): { entries: number; bytes: number; evictions: number; expired: number };
  /** Seconds since the last acknowledged lease renewal (NaN before any). */
  leaseAgeSeconds(): number;
  /** Seconds since this node applied a newer topology (NaN before any). */
  topologyAgeSeconds(): number;
  /** Under-replicated partitions this node holds and lost partitions of the cluster, or null before joining. */
  safety(): { underReplicated: number[]; lost: number[] } | null;
  /** Node-to-node wire versions the node speaks (default: this release's). */
  wireRange?(): { min: number; max: number };
}

/**
 * A counter fed from a cumulative count the source keeps (e.g. the store's evictions): at each
 * collection it adds what the source gained since the last one, so the series only goes up.
 */
function cumulativeCounter(name: string, help: string, registers: Registry[], read: () => number): Counter {
  let seen = 0;
  return new Counter({
    name,
    help,
    registers,
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = Math.max(seen, now);
    },
  });
}

/** One histogram series: counts per bucket (the last one is +Inf), sum and count. */
export interface HistogramSeries {
  readonly labels: Record<string, string>;
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

type MetricValue = { value: number; labels: Record<string, string | number>; metricName?: string };

/**
 * A Prometheus histogram whose observations cost a bucket search and three additions: series
 * are created once per label set and kept by the caller, with no per-observation label hashing
 * or closures. Registered in a prom-client Registry, which formats it like its own histograms.
 */
export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly all: HistogramSeries[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  series(labels: Record<string, string> = {}): HistogramSeries {
    const s: HistogramSeries = { labels, counts: new Float64Array(this.bounds.length + 1), sum: 0, count: 0 };
    this.all.push(s);
    return s;
  }

  observe(s: HistogramSeries, value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const s of this.all) {
      // Labelled series appear once observed (as in prom-client); the unlabelled one always.
      if (s.count === 0 && Object.keys(s.labels).length > 0) continue;
      let cumulative = 0;
      this.bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ value: cumulative, labels: { ...s.labels, le }, metricName: `${this.name}_bucket` });
      });
      values.push({ value: s.count, labels: { ...s.labels, le: '+Inf' }, metricName: `${this.name}_bucket` });
      values.push({ value: s.sum, labels: s.labels, metricName: `${this.name}_sum` });
      values.push({ value: s.count, labels: s.labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const s of this.all) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}

/** Per-op accumulators, flushed into the ops counter when metrics are collected. */
interface OpStats {
  name: string;
  ok: number;
  error: number;
  latency: HistogramSeries;
}

/** Prometheus metrics of one node, in a registry of its own (several nodes may share a process). */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly ops: Counter<'op' | 'outcome'>;
  readonly latency: FastHistogram;
  readonly connections: Gauge;
  readonly replicationSeconds: FastHistogram;
  readonly replication: HistogramSeries;
  readonly transfers: Counter;
  /** Partitions of IGNORE caches this node started serving again, empty, after they were lost. */
  readonly lossesIgnored: Counter<'cache'>;
  private readonly topologyVersion: Gauge;
  readonly handoffSeconds: FastHistogram;
  readonly transferBytes: Counter;
  readonly transferSeconds: FastHistogram;
  private readonly transfer: HistogramSeries;
  private readonly rejected: Counter<'code'>;
  private readonly rejectedNames: string[] = [];
  private readonly handoff: HistogramSeries;
  private readonly opStats: (OpStats | undefined)[] = [];

  constructor(node: MetricsSource) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: node.id });
    const flushOps = (): void => this.flushOps();
    this.ops = new Counter({
      name: 'gridlink_node_ops_total',
      help: 'Client operations answered, by op and outcome',
      labelNames: ['op', 'outcome'],
      registers,
      collect() {
        flushOps();
      },
    });
    this.latency = new FastHistogram(
      'gridlink_node_op_duration_seconds',
      'Time from request decoded to response ready, by op',
      [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      this.registry,
    );
    this.connections = new Gauge({ name: 'gridlink_node_connected_clients', help: 'Open client connections (peers excluded)', registers });
    this.replicationSeconds = new FastHistogram(
      'gridlink_node_replication_seconds',
      'Time for all backups to acknowledge a write',
      [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5],
      this.registry,
    );
    this.replication = this.replicationSeconds.series();
    this.transfers = new Counter({ name: 'gridlink_node_state_transfers_total', help: 'Partitions received by state transfer', registers });
    this.lossesIgnored = new Counter({
      name: 'gridlink_node_partition_losses_ignored_total',
      help: 'Partitions of IGNORE caches lost and served again, empty, by this node as their new primary',
      labelNames: ['cache'],
      registers,
    });
    this.handoffSeconds = new FastHistogram(
      'gridlink_node_handoff_duration_seconds',
      'Graceful stop: time to hand every primaryship to a caught-up backup',
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      this.registry,
    );
    this.handoff = this.handoffSeconds.series();
    this.topologyVersion = new Gauge({ name: 'gridlink_node_topology_version', help: 'Topology version this node holds', registers });
    const wire = node.wireRange?.() ?? OWN_WIRE_RANGE;
    new Gauge({
      name: 'gridlink_node_build_info',
      help: 'Always 1: the gridlink release this node runs and the node-to-node wire versions it speaks (ADR 0060)',
      labelNames: ['release', 'wire'],
      registers,
    }).set({ release: RELEASE, wire: `${wire.min}..${wire.max}` }, 1);
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
      name: 'gridlink_node_replication_lag_writes',
      help: 'Writes applied on this primary and not yet acknowledged by all backups',
      registers,
      collect() {
        this.set(node.replicationInFlight());
      },
    });
    cumulativeCounter('gridlink_node_resyncs_total', 'Snapshots pushed to backups that missed records', registers, () => node.resyncs);
    new Gauge({
      name: 'gridlink_node_entries',
      help: 'Entries held (primary and backup copies)',
      registers,
      collect() {
        this.set(node.storeStats().entries);
      },
    });
    new Gauge({
      name: 'gridlink_node_bytes',
      help: 'Key and value bytes held',
      registers,
      collect() {
        this.set(node.storeStats().bytes);
      },
    });
    cumulativeCounter('gridlink_node_evictions_total', 'Entries evicted by the LRU bound', registers, () => node.storeStats().evictions);
    cumulativeCounter('gridlink_node_expired_total', 'Entries removed by TTL', registers, () => node.storeStats().expired);
    new Gauge({
      name: 'gridlink_node_lease_age_seconds',
      help: 'Time since the control plane last acknowledged this node\'s lease renewal',
      registers,
      collect() {
        const v = node.leaseAgeSeconds();
        if (!Number.isNaN(v)) this.set(v);
      },
    });
    new Gauge({
      name: 'gridlink_node_topology_age_seconds',
      help: 'Time since this node applied a newer topology',
      registers,
      collect() {
        const v = node.topologyAgeSeconds();
        if (!Number.isNaN(v)) this.set(v);
      },
    });
    new Gauge({
      name: 'gridlink_node_partitions_under_replicated',
      help: 'Partitions this node holds with fewer caught-up copies than the cluster wants',
      registers,
      collect() {
        this.set(node.safety()?.underReplicated.length ?? 0);
      },
    });
    new Gauge({
      name: 'gridlink_node_partitions_lost',
      help: 'Lost partitions of the cluster (no caught-up copy alive) as this node sees them',
      registers,
      collect() {
        this.set(node.safety()?.lost.length ?? 0);
      },
    });
    this.transferBytes = new Counter({ name: 'gridlink_node_state_transfer_bytes_total', help: 'Key and value bytes installed by state transfer', registers });
    this.transferSeconds = new FastHistogram(
      'gridlink_node_state_transfer_duration_seconds',
      'Time to pull one partition (first request to installed, retries included)',
      [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      this.registry,
    );
    this.transfer = this.transferSeconds.series();
    this.rejected = new Counter({ name: 'gridlink_node_rejected_requests_total', help: 'Client requests answered with an error, by error code', labelNames: ['code'], registers });
  }

  observeOp(op: number, error: boolean, seconds: number): void {
    let st = this.opStats[op];
    if (st === undefined) {
      const name = opName(op);
      st = { name, ok: 0, error: 0, latency: this.latency.series({ op: name }) };
      this.opStats[op] = st;
    }
    if (error) st.error++;
    else st.ok++;
    this.latency.observe(st.latency, seconds);
  }

  /** Moves the per-op counts into the prom-client counter (at collection time). */
  private flushOps(): void {
    for (const st of this.opStats) {
      if (st === undefined) continue;
      if (st.ok > 0) this.ops.inc({ op: st.name, outcome: 'ok' }, st.ok);
      if (st.error > 0) this.ops.inc({ op: st.name, outcome: 'error' }, st.error);
      st.ok = 0;
      st.error = 0;
    }
  }

  onTransfer(bytes: number, seconds: number): void {
    this.transferBytes.inc(bytes);
    this.transferSeconds.observe(this.transfer, seconds);
  }

  onRejected(code: number): void {
    let name = this.rejectedNames[code];
    if (name === undefined) {
      name = errorCodeInfo(code).name;
      this.rejectedNames[code] = name;
    }
    this.rejected.inc({ code: name });
  }

  onHandoff(seconds: number): void {
    this.handoffSeconds.observe(this.handoff, seconds);
  }

  onTopology(version: number): void {
    this.topologyVersion.set(version);
  }
}
