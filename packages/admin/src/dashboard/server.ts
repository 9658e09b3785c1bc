/**
 * `gridlink dashboard`: a small read-only web page over the control plane and the nodes' HTTP
 * endpoints. node:http serves a static page (page.ts, no build step) and a server-sent event
 * stream: `topology` whenever the topology record changes (watched in the control plane) or what
 * the leases report unreachable does (listed every interval, ADR 0065), and `metrics` after each
 * scrape of the members' /health/ready and /metrics.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LEASE_PREFIX, TOPOLOGY_KEY, topologyProblem, type ControlPlane, type LeaseRecord, type TopologyRecord } from '@gridlink/node';
import { probeHttp, type HttpLocator } from '../admin.js';
import { DEFAULT_TIMEOUT_MS, withTimeout } from '../control.js';
import { AdminUsageError } from '../errors.js';
import { durationOption, hostListOption, integerOption, shown } from '../options.js';
import { hostCheck, type HostValue } from './hosts.js';
import { fencedNodes, liveIds, reportedUnreachable, safetyOf, type FenceState, type FencedNode } from '../model.js';
import { fencedLine, unreachableLine } from '../table.js';
import { parsePrometheus, sumOf } from '../prometheus.js';
import { APP_CSS, APP_JS, INDEX_HTML } from './page.js';

export interface DashboardOptions {
  controlPlane: ControlPlane;
  /** Where each member's HTTP server is; without it health and metrics are not shown. */
  http?: HttpLocator;
  /** Default 8090; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** How often members are scraped (and the topology and leases re-read). Default 1000 ms; at least 100. */
  scrapeIntervalMs?: number;
  /**
   * Bound on each control plane read of a refresh (the topology record, the leases), as
   * `--timeout` bounds each call of the other verbs: a read that has not answered by then is given
   * up on, and the page keeps what it last showed. Default 10 000 ms.
   */
  timeoutMs?: number;
  /**
   * The Host header values the dashboard answers to besides the loopback names (localhost,
   * 127.0.0.1, [::1] with its port): `name` (any port) or `name:port`. Listening on a loopback
   * address (the default), a request with any other Host is refused with 421, against DNS
   * rebinding; listening elsewhere, any Host is answered unless this is given.
   */
  allowedHosts?: string[];
}

export interface Dashboard {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** What the page draws: sent as the `topology` event. */
export interface TopologyView {
  version: number;
  clusterId: string;
  partitions: number;
  backups: number;
  nodes: {
    id: string;
    zone: string | null;
    address: string | null;
    alive: boolean;
    inBaseline: boolean;
    primary: number;
    backup: number;
    moving: number;
    /** Members its renewing lease reports it cannot reach over the grid (ADR 0065); [] when none. */
    unreachable: string[];
    /** Set while the topology has it asked to stop renewing (ADR 0065): what became of that life. */
    fence: FenceState | null;
    /** A member stopping gracefully: handing its primaryships off (ADR 0029, 0067). */
    leaving: boolean;
  }[];
  /** Per partition: index into nodes of the primary, or -1. */
  primary: number[];
  /** Per partition: r replicated, u under-replicated, m moving, l lost. */
  state: string;
  lost: number;
  moving: number;
  underReplicated: number;
  safe: boolean;
  autoAdjust: { enabled: boolean; pending: boolean };
  /** Nodes asked to stop renewing their lease while the topology keeps the entry (ADR 0065). */
  fenced: FencedNode[];
  /** The `unreachable:` and `fenced:` lines of `gridlink status`, for the page's banner; [] when none. */
  warnings: string[];
}

/**
 * What the leases say beyond the topology: per node, the members its lease reports unreachable
 * (ADR 0065) and the epoch of a lease seen renewing. Only leases seen renewing count, and a
 * member's lease under its member epoch (a lease left behind by a dead node says nothing).
 */
export interface LeaseView {
  unreachable: ReadonlyMap<string, string[]>;
  renewing: ReadonlyMap<string, string>;
}

/** What the leases listed at `revision` (and before at `previous`) say, read defensively. */
export function leaseView(rec: TopologyRecord, leases: readonly { value: unknown; revision: number }[], previous: ReadonlyMap<string, number>): LeaseView & { revisions: Map<string, number> } {
  const unreachable = new Map<string, string[]>();
  const renewing = new Map<string, string>();
  const revisions = new Map<string, number>();
  for (const e of leases) {
    const l = (typeof e.value === 'object' && e.value !== null ? e.value : {}) as Record<string, unknown>;
    const id = l['id'];
    const epoch = l['epoch'];
    if (typeof id !== 'string' || typeof epoch !== 'string') continue;
    revisions.set(id, e.revision);
    const renewed = previous.has(id) && e.revision > previous.get(id)!;
    if (renewed) renewing.set(id, epoch);
    const member = Object.hasOwn(rec.members, id) ? rec.members[id] : undefined;
    const report = reportedUnreachable(l);
    if (report.length > 0 && (renewed || member?.epoch === epoch)) unreachable.set(id, report);
  }
  return { unreachable, renewing, revisions };
}

/** Most a page's event stream may have waiting to be sent before the page is dropped. */
export const MAX_UNSENT_BYTES = 16 * 1024 * 1024;

export interface NodeMetricsView {
  id: string;
  /** /health/ready answered 200; null when not scraped. */
  ready: boolean | null;
  opsPerSec: number | null;
  errorsPerSec: number | null;
  /** Share of operations that failed in the last interval, 0..1. */
  errorRate: number | null;
  clients: number | null;
  /** The release the node reports (`gridlink_node_build_info`, ADR 0060); null before a scrape or from an older node. */
  release: string | null;
}

export function topologyView(rec: TopologyRecord, leases: LeaseView = { unreachable: new Map(), renewing: new Map() }): TopologyView {
  const baseline = rec.baseline.map((n) => n.id);
  const ids = [...new Set([...liveIds(rec), ...baseline])].sort();
  const index = new Map(ids.map((id, i) => [id, i]));
  const nodes = ids.map((id) => {
    const a = rec.members[id] ?? rec.addresses[id];
    return {
      id,
      zone: a?.zone ?? null,
      address: a ? `${a.host}:${a.port}` : null,
      alive: rec.members[id] !== undefined,
      inBaseline: baseline.includes(id),
      primary: 0,
      backup: 0,
      moving: 0,
      unreachable: leases.unreachable.get(id) ?? [],
      fence: null as FenceState | null,
      leaving: rec.members[id]?.leaving === true,
    };
  });
  const fenced = fencedNodes(rec, (id) => leases.renewing.get(id) ?? null);
  for (const f of fenced) {
    const n = nodes[index.get(f.id) ?? -1];
    if (n) n.fence = f.state;
  }
  const safety = safetyOf(rec);
  const lost = new Set(safety.lost);
  const under = new Set(safety.underReplicated);
  const primary: number[] = [];
  let state = '';
  for (let p = 0; p < rec.partitions; p++) {
    const owners = rec.owners[p] ?? [];
    const syncing = rec.syncing[p] ?? [];
    owners.forEach((id, i) => {
      const n = nodes[index.get(id) ?? -1];
      if (n && i === 0) n.primary++;
      else if (n) n.backup++;
    });
    for (const s of syncing) {
      const n = nodes[index.get(s.id) ?? -1];
      if (n) n.moving++;
    }
    primary.push(owners[0] !== undefined ? (index.get(owners[0]) ?? -1) : -1);
    state += lost.has(p) ? 'l' : syncing.length > 0 ? 'm' : under.has(p) ? 'u' : 'r';
  }
  return {
    version: rec.version,
    clusterId: rec.clusterId,
    partitions: rec.partitions,
    backups: rec.backups,
    nodes,
    primary,
    state,
    lost: safety.lost.length,
    moving: safety.moving.length,
    underReplicated: safety.underReplicated.length,
    safe: safety.safe,
    autoAdjust: { enabled: rec.autoAdjust.enabled, pending: rec.adjust !== null },
    fenced,
    warnings: [
      ...unreachableLine([...leases.unreachable].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([id, unreachable]) => ({ id, state: 'reporting', unreachable }))),
      ...fencedLine(fenced),
    ],
  };
}

/**
 * The options of startDashboard, checked as the CLI checks its own: a value of the wrong type or
 * out of range is an AdminUsageError naming the option, never a default silently taken instead
 * (`port: null`) nor another meaning (`host: ''` would listen on every address).
 */
function dashboardOptions(o: unknown): {
  cp: ControlPlane;
  http: HttpLocator | undefined;
  port: number;
  host: string;
  interval: number;
  timeoutMs: number;
  allowedHosts: HostValue[] | undefined;
} {
  if (typeof o !== 'object' || o === null) throw new AdminUsageError('options', `must be an object, got ${shown(o)}`);
  const opts = o as Record<string, unknown>;
  const cp = opts['controlPlane'] as Partial<ControlPlane> | null | undefined;
  if (typeof cp !== 'object' || cp === null || typeof cp.get !== 'function' || typeof cp.list !== 'function' || typeof cp.watch !== 'function') {
    throw new AdminUsageError('controlPlane', `must be a ControlPlane (an object with get, list and watch), got ${shown(cp)}`);
  }
  const http = opts['http'];
  if (http !== undefined && typeof http !== 'function') throw new AdminUsageError('http', `must be a function (id, address) => base URL, got ${shown(http)}`);
  const host = opts['host'] === undefined ? '127.0.0.1' : opts['host'];
  if (typeof host !== 'string' || host.trim() === '') throw new AdminUsageError('host', `must be a host name or address to listen on, got ${shown(host)}`);
  return {
    cp: cp as ControlPlane,
    http: http as HttpLocator | undefined,
    port: integerOption('port', opts['port'], 8090, 0, 65535, 'a port number in [0, 65535]'),
    host,
    interval: durationOption('scrapeIntervalMs', opts['scrapeIntervalMs'], 1000, 100),
    timeoutMs: durationOption('timeoutMs', opts['timeoutMs'], DEFAULT_TIMEOUT_MS, 1),
    allowedHosts: hostListOption('allowedHosts', opts['allowedHosts']),
  };
}

export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { cp, http: locate, port, host, interval, timeoutMs, allowedHosts } = dashboardOptions(options);
  const clients = new Set<http.ServerResponse>();
  let topo: TopologyRecord | null = null;
  let leases: LeaseView = { unreachable: new Map(), renewing: new Map() };
  let leaseRevisions = new Map<string, number>();
  let topoEvent = '';
  let metricsEvent = '';
  const prev = new Map<string, { at: number; ok: number; error: number }>();
  let closed = false;
  // Aborted by close(): what a refresh or a scrape still waits for is given up on at once.
  const stop = new AbortController();

  /** One control plane read of a refresh, bounded by timeoutMs (the CLI's --timeout) and by close(). */
  const bounded = <T>(what: string, run: () => Promise<T>): Promise<T> => withTimeout(what, timeoutMs, run, stop.signal);

  const broadcast = (event: string): void => {
    for (const res of clients) {
      res.write(event);
      // A page that reads nothing (a stalled connection, a frozen tab) would have every event kept
      // for it in memory for as long as its connection lives: it is dropped instead, and its
      // EventSource reconnects and is sent the current state.
      if (res.writableLength > MAX_UNSENT_BYTES) {
        clients.delete(res);
        res.destroy();
      }
    }
  };
  // The view changes with the topology and with what the leases report: sent again when it differs.
  const publish = (): void => {
    if (topo === null) return;
    const event = `event: topology\ndata: ${JSON.stringify(topologyView(topo, leases))}\n\n`;
    if (event === topoEvent) return;
    topoEvent = event;
    broadcast(topoEvent);
  };
  const onTopology = (rec: TopologyRecord): void => {
    // A record that cannot be read is not shown (the nodes ignore it too, ADR 0048): the page
    // keeps the last good one.
    if (topologyProblem(rec) !== null) return;
    if (topo !== null && rec.version <= topo.version) return;
    topo = rec;
    publish();
  };
  const unwatch = cp.watch<TopologyRecord>(TOPOLOGY_KEY, (e) => {
    if (e.type === 'put') onTopology(e.value);
  });
  const refresh = async (): Promise<void> => {
    try {
      const e = await bounded('a topology read', () => cp.get<TopologyRecord>(TOPOLOGY_KEY));
      if (e && !closed) onTopology(e.value);
    } catch {
      // the control plane is unreachable or did not answer in time: keep showing the last record
    }
    if (closed) return;
    try {
      const listed = await bounded('a lease listing', () => cp.list<LeaseRecord>(LEASE_PREFIX));
      if (topo === null || closed) return;
      const next = leaseView(topo, listed, leaseRevisions);
      leaseRevisions = next.revisions;
      leases = next;
      publish();
    } catch {
      // keep what the leases said last
    }
  };

  const scrape = async (): Promise<void> => {
    const rec = topo;
    if (!rec || !locate || closed) return;
    const views = await Promise.all(
      liveIds(rec).map(async (id): Promise<NodeMetricsView> => {
        const m = rec.members[id]!;
        const base = locate(id, { host: m.host, port: m.port });
        const view: NodeMetricsView = { id, ready: null, opsPerSec: null, errorsPerSec: null, errorRate: null, clients: null, release: null };
        if (base === undefined) return view;
        const [ready, metrics] = await Promise.all([probeHttp(base, '/health/ready', interval, stop.signal), probeHttp(base, '/metrics', interval, stop.signal)]);
        view.ready = ready !== null && ready.status === 200;
        if (metrics !== null && metrics.status === 200) {
          const samples = parsePrometheus(metrics.body);
          const ok = sumOf(samples, 'gridlink_node_ops_total', { outcome: 'ok' }) ?? 0;
          const error = sumOf(samples, 'gridlink_node_ops_total', { outcome: 'error' }) ?? 0;
          view.clients = sumOf(samples, 'gridlink_node_connected_clients');
          const build = samples.find((x) => x.name === 'gridlink_node_build_info');
          if (build?.labels['release'] !== undefined) view.release = build.labels['release'].slice(0, 64);
          const now = Date.now();
          const before = prev.get(id);
          prev.set(id, { at: now, ok, error });
          if (before && now > before.at && ok >= before.ok && error >= before.error) {
            const dt = (now - before.at) / 1000;
            const dOk = ok - before.ok;
            const dErr = error - before.error;
            view.opsPerSec = (dOk + dErr) / dt;
            view.errorsPerSec = dErr / dt;
            view.errorRate = dOk + dErr > 0 ? dErr / (dOk + dErr) : 0;
          }
        }
        return view;
      }),
    );
    metricsEvent = `event: metrics\ndata: ${JSON.stringify(views)}\n\n`;
    if (!closed) broadcast(metricsEvent);
  };

  // The tick under way, if any: close() waits for it (it ends at once once stopped).
  let ticking: Promise<void> | null = null;
  const tick = (): void => {
    if (ticking !== null || closed) return;
    // Re-reading the record covers a watch that missed events (a reconnecting control plane).
    ticking = refresh()
      .then(scrape)
      .catch(() => undefined)
      .finally(() => {
        ticking = null;
      });
  };
  const timer = setInterval(tick, interval);
  const keepalive = setInterval(() => broadcast(': keepalive\n\n'), 15_000);

  /**
   * Whether a request's Host is one the dashboard answers to: set once it listens (its address and
   * port known; until then nothing is answered), null when it answers to any.
   */
  let hostAllowed: ((host: string | undefined) => boolean) | null = () => false;
  let listeningOn = '';
  const server = http.createServer((req, res) => {
    if (hostAllowed !== null && !hostAllowed(req.headers.host)) {
      // Before anything else, the event stream included: the page of another origin whose name
      // resolves to this address (DNS rebinding) gets nothing to read.
      const given = req.headers.host === undefined ? 'no Host header' : `Host ${JSON.stringify(req.headers.host.slice(0, 256))}`;
      res
        .writeHead(421, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' })
        .end(`misdirected request: this dashboard (on ${listeningOn}) does not answer to ${given}; it answers to localhost, 127.0.0.1 and [::1] at its port, and to the hosts allowed with --allowed-host (allowedHosts)\n`);
      return;
    }
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const send = (type: string, body: string): void => {
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' }).end(body);
    };
    switch (url) {
      case '/':
        return send('text/html; charset=utf-8', INDEX_HTML);
      case '/app.js':
        return send('text/javascript; charset=utf-8', APP_JS);
      case '/app.css':
        return send('text/css; charset=utf-8', APP_CSS);
      case '/api/topology':
        return send('application/json', topo ? JSON.stringify(topologyView(topo, leases)) : 'null');
      case '/events': {
        if (req.method === 'HEAD') {
          // No stream for HEAD: its headers go out only when the response ends (it used to never end).
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store' }).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write('retry: 1000\n\n');
        if (topoEvent) res.write(topoEvent);
        if (metricsEvent) res.write(metricsEvent);
        clients.add(res);
        req.on('close', () => clients.delete(res));
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    }
  });
  await refresh();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      // Set before the first request can be read: nothing is answered unchecked.
      const a = server.address() as AddressInfo;
      hostAllowed = hostCheck(a.address, a.port, allowedHosts);
      listeningOn = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
      resolve();
    });
  }).catch((err: unknown) => {
    closed = true;
    stop.abort();
    unwatch();
    clearInterval(timer);
    clearInterval(keepalive);
    throw err;
  });
  tick();
  const addr = server.address() as AddressInfo;
  const hostText = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${hostText}:${addr.port}/`,
    port: addr.port,
    close: async () => {
      if (closed) return;
      closed = true;
      // A refresh or scrape under way stops waiting (its HTTP requests to the nodes are aborted):
      // once close() resolves, the dashboard has nothing open and asks nothing of anyone.
      stop.abort();
      unwatch();
      clearInterval(timer);
      clearInterval(keepalive);
      for (const res of clients) res.end();
      clients.clear();
      server.closeAllConnections();
      await Promise.all([new Promise<void>((resolve) => server.close(() => resolve())), ticking]);
    },
  };
}
