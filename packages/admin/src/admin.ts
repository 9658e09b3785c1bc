/**
 * The operator's verbs as functions over a ControlPlane. The `gridlink` command is a thin layer
 * over these; tests and embedded setups call them directly (e.g. with a LocalCluster's control
 * plane).
 */
import { CACHE_PREFIX, CLUSTER_KEY, LEASE_PREFIX, TOPOLOGY_KEY, lostAnywhere, withLossAccepted, type AutoAdjustPolicy, type ControlPlane, type LeaseRecord, type TopologyRecord } from '@gridlink/node';
import { AdminRefusedError, AdminUsageError } from './errors.js';
import { DEFAULT_TIMEOUT_MS, readTopology, updateTopology, withTimeout } from './control.js';
import { durationOption } from './options.js';
import {
  autoAdjustCountdown,
  baselineIds,
  baselineSpecs,
  fencedNodes,
  liveIds,
  nodeSafe,
  partitionCounts,
  planBaseline,
  reportedUnreachable,
  safetyOf,
  type BaselinePlan,
  type FencedNode,
  type PartitionCounts,
} from './model.js';

/** Base URL (`http://host:port`) of a node's HTTP server (/health, /metrics), when known. */
export type HttpLocator = (id: string, address: { host: string; port: number }) => string | undefined;

export interface AdminOptions {
  /** Bound on each control plane call. Default 10 s. */
  timeoutMs?: number;
  /** Where each node's HTTP server is; without it health is derived from the control plane only. */
  http?: HttpLocator;
}

/**
 * GET a node's HTTP path: the status code, or null when the node did not answer within
 * `timeoutMs` (or `signal` aborted first: the request is then aborted too).
 */
export async function probeHttp(base: string, path: string, timeoutMs = 2000, signal?: AbortSignal): Promise<{ status: number; body: string } | null> {
  const ac = new AbortController();
  const abort = (): void => ac.abort();
  const timer = setTimeout(abort, timeoutMs);
  if (signal?.aborted) abort();
  else signal?.addEventListener('abort', abort, { once: true });
  try {
    const res = await fetch(new URL(path, base), { signal: ac.signal });
    return { status: res.status, body: await res.text() };
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
}

// ---------------------------------------------------------------------------------------------
// status

/** What a lease announces of the node's release (ADR 0060), read defensively: nothing decides on it. */
function announced(lease: LeaseRecord | undefined): { release: string | null; wire: string | null } {
  const l = lease as Record<string, unknown> | undefined;
  const release = typeof l?.['release'] === 'string' && l['release'].length <= 64 ? l['release'] : null;
  const w = l?.['wire'] as Record<string, unknown> | null | undefined;
  const wire = typeof w === 'object' && w !== null && Number.isSafeInteger(w['min']) && Number.isSafeInteger(w['max']) ? `${String(w['min'])}..${String(w['max'])}` : null;
  return { release, wire };
}

export type MemberState = 'member' | 'leaving' | 'joining' | 'offline';

export interface MemberStatus {
  id: string;
  /**
   * member: in the topology; leaving: in the topology, stopping gracefully (handing its
   * primaryships off, ADR 0029, 0067); joining: lease renewed while sampling, not yet in the
   * topology; offline: in the baseline (or a lease left behind) without renewals.
   */
  state: MemberState;
  zone: string | null;
  address: string | null;
  epoch: string | null;
  /**
   * The gridlink release the node announces in its lease, and the node-to-node wire versions it
   * speaks (`1..2`); null when it has no lease or a release older than these fields (ADR 0060).
   */
  release: string | null;
  wire: string | null;
  /**
   * Members the node's lease reports it cannot reach over the grid while they renew (ADR 0065),
   * sorted; [] when none, for offline nodes, and for nodes older than the report.
   */
  unreachable: string[];
  /** Time since the last lease renewal seen while sampling; null when none was seen. */
  leaseAgeMs: number | null;
  ready: boolean;
  /** Where `ready` came from: the node's /health/ready, or the control plane. */
  readySource: 'http' | 'control-plane';
  inBaseline: boolean;
  partitions: PartitionCounts;
}

export interface ClusterStatus {
  clusterId: string;
  topologyVersion: number;
  partitions: number;
  backups: number;
  members: MemberStatus[];
  baseline: string[];
  live: string[];
  /** Baseline nodes without a live lease. */
  offline: string[];
  /** Live nodes outside the baseline (they hold no data until the baseline includes them). */
  outsideBaseline: string[];
  lost: number[];
  moving: number[];
  underReplicated: number[];
  autoAdjust: AutoAdjustPolicy & { pending: boolean; countdownMs: number | null };
  /** No partition lost, moving or under-replicated. */
  safe: boolean;
  /**
   * Nodes the coordinator asked to stop renewing their lease (cut from another member, ADR 0065),
   * while the topology keeps the entry: still a member, gone, or gone with a later life held back.
   */
  fenced: FencedNode[];
}

export interface StatusOptions extends AdminOptions {
  /** How long to watch lease renewals to judge each lease's age. Default 600 ms; 0 skips it. */
  sampleMs?: number;
  now?: () => number;
}

export async function clusterStatus(cp: ControlPlane, o: StatusOptions = {}): Promise<ClusterStatus> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const sampleMs = o.sampleMs ?? 600;
  const now = o.now ?? Date.now;
  const renewedAt = new Map<string, number>();
  const listedRevision = new Map<string, number>();
  const pending: { id: string; revision: number; at: number }[] = [];
  // Only a revision newer than the one listed counts as a renewal: a watch that replays current
  // values (as a JetStream KV watch may) must not make a dead lease look fresh.
  const unwatch = cp.watch<LeaseRecord>(LEASE_PREFIX, (e) => {
    if (e.type === 'put') pending.push({ id: e.key.slice(LEASE_PREFIX.length), revision: e.revision, at: now() });
  });
  let leases: LeaseRecord[];
  let rec: TopologyRecord;
  try {
    const listed = await withTimeout('a lease listing', timeoutMs, () => cp.list<LeaseRecord>(LEASE_PREFIX));
    for (const e of listed) listedRevision.set(e.key.slice(LEASE_PREFIX.length), e.revision);
    leases = listed.map((e) => e.value);
    if (sampleMs > 0) await new Promise((r) => setTimeout(r, sampleMs));
    rec = (await readTopology(cp, timeoutMs)).value;
  } finally {
    unwatch();
  }
  for (const p of pending) if (p.revision > (listedRevision.get(p.id) ?? 0)) renewedAt.set(p.id, p.at);
  const t = now();
  const leaseById = new Map(leases.map((l) => [l.id, l]));
  const counts = partitionCounts(rec);
  const baseline = baselineIds(rec);
  const live = liveIds(rec);
  const ids = [...new Set([...live, ...leaseById.keys(), ...baseline])].sort();
  const members = await Promise.all(
    ids.map(async (id): Promise<MemberStatus> => {
      const m = rec.members[id];
      const lease = leaseById.get(id);
      const addr = m ?? lease ?? rec.addresses[id];
      const at = renewedAt.get(id);
      // A lease left behind by a killed node stays in the store: joining means renewing.
      const state: MemberState = m ? (m.leaving === true ? 'leaving' : 'member') : lease && at !== undefined ? 'joining' : 'offline';
      const leaseAgeMs = at !== undefined ? t - at : null;
      let ready = m !== undefined && (sampleMs === 0 || leaseAgeMs !== null) && (lease === undefined || lease.epoch === m?.epoch);
      let readySource: MemberStatus['readySource'] = 'control-plane';
      const base = addr && state !== 'offline' ? o.http?.(id, { host: addr.host, port: addr.port }) : undefined;
      if (base !== undefined) {
        const r = await probeHttp(base, '/health/ready');
        ready = r !== null && r.status === 200;
        readySource = 'http';
      }
      return {
        id,
        state,
        zone: addr?.zone ?? null,
        address: addr ? `${addr.host}:${addr.port}` : null,
        epoch: m?.epoch ?? lease?.epoch ?? null,
        ...announced(lease),
        unreachable: state === 'offline' ? [] : reportedUnreachable(lease),
        leaseAgeMs,
        ready,
        readySource,
        inBaseline: baseline.includes(id),
        partitions: counts.get(id) ?? { primary: 0, backup: 0, moving: 0 },
      };
    }),
  );
  const safety = safetyOf(rec);
  const countdownMs = autoAdjustCountdown(rec, t);
  return {
    clusterId: rec.clusterId,
    topologyVersion: rec.version,
    partitions: rec.partitions,
    backups: rec.backups,
    members,
    baseline,
    live,
    offline: baseline.filter((id) => rec.members[id] === undefined),
    outsideBaseline: live.filter((id) => !baseline.includes(id)),
    lost: safety.lost,
    moving: safety.moving,
    underReplicated: safety.underReplicated,
    autoAdjust: { ...rec.autoAdjust, pending: rec.adjust !== null, countdownMs },
    safe: safety.safe,
    // A later life is held back when its lease renews (joining) under another epoch.
    fenced: fencedNodes(rec, (id) => {
      const m = members.find((x) => x.id === id);
      return m?.state === 'joining' ? m.epoch : null;
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// baseline

export interface BaselineView {
  topologyVersion: number;
  baseline: { id: string; zone: string | null; alive: boolean }[];
  live: string[];
  autoAdjust: AutoAdjustPolicy & { pending: boolean; countdownMs: number | null };
}

export async function showBaseline(cp: ControlPlane, o: AdminOptions = {}): Promise<BaselineView> {
  const rec = (await readTopology(cp, o.timeoutMs)).value;
  return {
    topologyVersion: rec.version,
    baseline: rec.baseline.map((n) => ({ id: n.id, zone: n.zone ?? null, alive: rec.members[n.id] !== undefined })),
    live: liveIds(rec),
    autoAdjust: { ...rec.autoAdjust, pending: rec.adjust !== null, countdownMs: autoAdjustCountdown(rec, Date.now()) },
  };
}

export type BaselineChange = { kind: 'set'; ids: string[] } | { kind: 'add'; id: string } | { kind: 'remove'; id: string };

export interface ChangeOptions extends AdminOptions {
  /** Carry out a change that moves data. Without it such a change is only planned. */
  yes?: boolean;
}

export interface BaselineChangeResult {
  plan: BaselinePlan;
  /** True when the record was written. */
  applied: boolean;
  /** Why nothing was written: the plan moves data and `yes` was not given, or nothing changes. */
  reason: 'applied' | 'confirmation-required' | 'no-change';
  topologyVersion: number;
  /** Set when auto-adjust may undo this change (a live node left out of the baseline). */
  warning: string | null;
}

function targetIds(rec: TopologyRecord, change: BaselineChange): string[] {
  const current = baselineIds(rec);
  switch (change.kind) {
    case 'set':
      if (change.ids.length === 0) throw new AdminUsageError('ids', 'give at least one node id');
      return change.ids;
    case 'add':
      if (current.includes(change.id)) return current;
      return [...current, change.id];
    case 'remove': {
      if (!current.includes(change.id)) throw new AdminRefusedError('ADMIN_NOT_IN_BASELINE', `node ${change.id} is not in the baseline`);
      const rest = current.filter((id) => id !== change.id);
      if (rest.length === 0) throw new AdminRefusedError('ADMIN_EMPTY_BASELINE', `removing ${change.id} would leave the baseline empty`);
      return rest;
    }
  }
}

function autoAdjustWarning(rec: TopologyRecord, after: string[]): string | null {
  const left = liveIds(rec).filter((id) => !after.includes(id));
  if (!rec.autoAdjust.enabled || left.length === 0) return null;
  return (
    `auto-adjust is enabled: live node(s) ${left.join(', ')} outside the baseline will be put back into it after ` +
    `${rec.autoAdjust.softTimeoutMs} ms unless stopped before (or disable auto-adjust first)`
  );
}

/**
 * Changes the baseline through the topology record, compare-and-set on its revision (as
 * LocalCluster.setBaseline does); the coordinator then moves partitions to the new owners,
 * building new copies before dropping old ones. Pending auto-adjust is cleared.
 */
export async function changeBaseline(cp: ControlPlane, change: BaselineChange, o: ChangeOptions = {}): Promise<BaselineChangeResult> {
  let plan: BaselinePlan | null = null;
  let reason: BaselineChangeResult['reason'] = 'applied';
  let warning: string | null = null;
  const { record, written } = await updateTopology(
    cp,
    (rec) => {
      const ids = targetIds(rec, change);
      const specs = baselineSpecs(rec, ids);
      plan = planBaseline(rec, specs);
      warning = autoAdjustWarning(rec, ids);
      const same = plan.before.length === ids.length && plan.before.every((id, i) => id === ids[i]);
      if (same) {
        reason = 'no-change';
        return null;
      }
      if (plan.movesData && !o.yes) {
        reason = 'confirmation-required';
        return null;
      }
      reason = 'applied';
      return { ...rec, baseline: specs, adjust: null };
    },
    o.timeoutMs,
  );
  return { plan: plan!, applied: written, reason, topologyVersion: record.version, warning };
}

// ---------------------------------------------------------------------------------------------
// auto-adjust

export interface AutoAdjustChange {
  enabled?: boolean;
  softTimeoutMs?: number;
  hardTimeoutMs?: number;
}

export interface AutoAdjustResult {
  before: AutoAdjustPolicy;
  after: AutoAdjustPolicy;
  applied: boolean;
  reason: 'applied' | 'confirmation-required' | 'no-change';
  /** True when the live set differs from the baseline, so enabling lets the baseline follow it (moving data). */
  movesData: boolean;
  topologyVersion: number;
}

export async function changeAutoAdjust(cp: ControlPlane, change: AutoAdjustChange, o: ChangeOptions = {}): Promise<AutoAdjustResult> {
  for (const [k, v] of [['soft', change.softTimeoutMs], ['hard', change.hardTimeoutMs]] as const) {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new AdminUsageError(`--${k}`, 'must be a duration of 0 or more');
  }
  let before: AutoAdjustPolicy | null = null;
  let after: AutoAdjustPolicy | null = null;
  let movesData = false;
  let reason: AutoAdjustResult['reason'] = 'applied';
  const { record, written } = await updateTopology(
    cp,
    (rec) => {
      before = rec.autoAdjust;
      const next: AutoAdjustPolicy = { ...rec.autoAdjust };
      if (change.enabled !== undefined) next.enabled = change.enabled;
      if (change.softTimeoutMs !== undefined) next.softTimeoutMs = change.softTimeoutMs;
      if (change.hardTimeoutMs !== undefined) next.hardTimeoutMs = change.hardTimeoutMs;
      if (next.hardTimeoutMs < next.softTimeoutMs) {
        throw new AdminUsageError(change.hardTimeoutMs !== undefined ? '--hard' : '--soft', `the hard timeout (${next.hardTimeoutMs} ms) must not be shorter than the soft one (${next.softTimeoutMs} ms)`);
      }
      after = next;
      const differs = liveIds(rec).join(',') !== [...baselineIds(rec)].sort().join(',');
      movesData = next.enabled && !rec.autoAdjust.enabled && differs;
      if (JSON.stringify(next) === JSON.stringify(rec.autoAdjust)) {
        reason = 'no-change';
        return null;
      }
      if (movesData && !o.yes) {
        reason = 'confirmation-required';
        return null;
      }
      reason = 'applied';
      return { ...rec, autoAdjust: next };
    },
    o.timeoutMs,
  );
  return { before: before!, after: after!, applied: written, reason, movesData, topologyVersion: record.version };
}

// ---------------------------------------------------------------------------------------------
// reset-lost

export interface ResetLostResult {
  lostBefore: number[];
  reset: number[];
  /** Asked for but not lost. */
  notLost: number[];
  applied: boolean;
  reason: 'applied' | 'confirmation-required' | 'no-change';
  topologyVersion: number;
}

/**
 * Accepts the loss of lost partitions (all, or the ones given): they are served again, empty,
 * by their target owners. Always destructive, so it needs `yes`.
 */
export async function resetLost(cp: ControlPlane, partitions: number[] | undefined, o: ChangeOptions = {}): Promise<ResetLostResult> {
  let lostBefore: number[] = [];
  let reset: number[] = [];
  let notLost: number[] = [];
  let reason: ResetLostResult['reason'] = 'applied';
  const { record, written } = await updateTopology(
    cp,
    (rec) => {
      lostBefore = lostAnywhere(rec);
      for (const p of partitions ?? []) {
        if (!Number.isInteger(p) || p < 0 || p >= rec.partitions) throw new AdminUsageError('partitions', `partition ${p} is out of range [0, ${rec.partitions - 1}]`);
      }
      const wanted = partitions ? new Set(partitions) : null;
      reset = lostBefore.filter((p) => wanted === null || wanted.has(p));
      notLost = (partitions ?? []).filter((p) => !lostBefore.includes(p));
      if (reset.length === 0) {
        reason = 'no-change';
        return null;
      }
      if (!o.yes) {
        reason = 'confirmation-required';
        return null;
      }
      reason = 'applied';
      return withLossAccepted(rec, reset);
    },
    o.timeoutMs,
  );
  return { lostBefore, reset, notLost, applied: written, reason, topologyVersion: record.version };
}

// ---------------------------------------------------------------------------------------------
// caches

export interface CacheInfo {
  name: string;
  config: Record<string, unknown>;
  /** Synchronous backups the cache keeps: its own, else the cluster's (null when unknown). */
  backups: number | null;
  /** Its partition-loss policy (READ_WRITE_SAFE when it names none). */
  policy: string;
  /** Partitions lost for this cache (lost partitions and those lost for it alone); [] for IGNORE. */
  lost: number[];
  /** Entries, when a size source was given and answered; else null. */
  size: number | null;
  /**
   * Why `size` is null although sizes were asked: the error the size source failed with for this
   * cache (a timeout, nodes that cannot be reached, a lost partition the node refuses to count…).
   * Null when the size was read, or when no size source was given (`--skip-sizes`).
   */
  sizeError: SizeError | null;
}

/** A failure to read one cache's size, as `{ code, message, retryable }` (like the CLI's errors). */
export interface SizeError {
  /** The failing error's stable code (GRID_TIMEOUT, GRID_CONNECTION, PARTITION_LOST…). */
  code: string;
  message: string;
  retryable: boolean;
}

/**
 * The SizeError of whatever a size source threw: the error's own `code`, `message` and
 * `retryable` when it has them (every GridError does), else code SIZE_ERROR and a description
 * of the value that does not depend on its having a string form.
 */
export function sizeErrorOf(err: unknown): SizeError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; message?: unknown; retryable?: unknown; name?: unknown };
  const code = typeof e.code === 'string' && e.code !== '' ? e.code : 'SIZE_ERROR';
  let message: string;
  if (typeof e.message === 'string' && e.message !== '') message = e.message;
  else if (err instanceof Error) message = typeof e.name === 'string' ? e.name : 'Error';
  else if (typeof err === 'string') message = err;
  else if (typeof err === 'number' || typeof err === 'boolean' || typeof err === 'bigint' || err === null || err === undefined) message = `${String(err)} was thrown`;
  else message = `a ${typeof err} was thrown`;
  return { code, message, retryable: e.retryable === true };
}

/**
 * The cache registry with what each cache is promised: backups (a cache naming none has the
 * cluster's, from the cluster record when the nodes run as processes), loss policy, and which
 * partitions are lost for it now (from the topology record, when there is one). With `sizeOf`,
 * each cache's size too; a size that cannot be read is null with the reason in `sizeError`, and
 * does not fail the listing.
 */
export async function listCaches(cp: ControlPlane, o: AdminOptions & { sizeOf?: (name: string) => Promise<number> } = {}): Promise<CacheInfo[]> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const [entries, topo, cluster] = await Promise.all([
    withTimeout('a cache listing', timeoutMs, () => cp.list<Record<string, unknown>>(CACHE_PREFIX)),
    withTimeout('a topology read', timeoutMs, () => cp.get<TopologyRecord>(TOPOLOGY_KEY)),
    withTimeout('a cluster record read', timeoutMs, () => cp.get<{ backups?: unknown }>(CLUSTER_KEY)),
  ]);
  const clusterBackups = typeof cluster?.value.backups === 'number' ? cluster.value.backups : null;
  const out = await Promise.all(
    entries.map(async (e): Promise<CacheInfo> => {
      const name = e.key.slice(CACHE_PREFIX.length);
      let size: number | null = null;
      let sizeError: SizeError | null = null;
      if (o.sizeOf) {
        try {
          size = await o.sizeOf(name);
        } catch (err) {
          sizeError = sizeErrorOf(err);
        }
      }
      const policy = typeof e.value['partitionLossPolicy'] === 'string' ? e.value['partitionLossPolicy'] : 'READ_WRITE_SAFE';
      const own = e.value['backups'];
      const rec = topo?.value;
      const lost = rec === undefined || policy === 'IGNORE' ? [] : [...new Set([...rec.lost, ...(rec.lostCaches?.[name] ?? [])])].sort((a, b) => a - b);
      return { name, config: e.value, backups: typeof own === 'number' ? own : clusterBackups, policy, lost, size, sizeError };
    }),
  );
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

// ---------------------------------------------------------------------------------------------
// safe

export interface NodeSafety {
  id: string;
  safe: boolean;
  /** http: the node's /health/safe answered; control-plane: derived from the topology record. */
  source: 'http' | 'control-plane';
}

export interface SafeReport {
  safe: boolean;
  topologyVersion: number;
  lost: number[];
  moving: number[];
  underReplicated: number[];
  /** Members being fenced (ADR 0065; `SafetyReport.fenced`): none may be for the cluster to be safe. */
  fenced: string[];
  nodes: NodeSafety[];
}

/**
 * Is it safe to take a node down now? Asks each member's /health/safe when its HTTP address is
 * known and the node serves that path; otherwise (no address, 404, no answer) derives it from
 * the topology record: no partition the node holds is moving or under-replicated. The cluster
 * is safe when every node is and no partition is lost.
 */
export async function checkSafe(cp: ControlPlane, o: AdminOptions = {}): Promise<SafeReport> {
  const rec = (await readTopology(cp, o.timeoutMs)).value;
  const safety = safetyOf(rec);
  const nodes = await Promise.all(
    liveIds(rec).map(async (id): Promise<NodeSafety> => {
      const m = rec.members[id]!;
      const base = o.http?.(id, { host: m.host, port: m.port });
      if (base !== undefined) {
        const r = await probeHttp(base, '/health/safe');
        if (r !== null && r.status !== 404) return { id, safe: r.status === 200, source: 'http' };
      }
      return { id, safe: nodeSafe(rec, id), source: 'control-plane' };
    }),
  );
  return {
    safe: safety.safe && nodes.every((n) => n.safe),
    topologyVersion: rec.version,
    lost: safety.lost,
    moving: safety.moving,
    underReplicated: safety.underReplicated,
    fenced: safety.fenced,
    nodes,
  };
}

/**
 * Polls checkSafe until safe or the deadline; returns the last report. `waitMs` and `pollMs` are
 * integer milliseconds (else an AdminUsageError naming them: a deadline that is not a number never
 * came, and the control plane was polled every millisecond forever).
 */
export async function waitSafe(cp: ControlPlane, o: AdminOptions & { waitMs: number; pollMs?: number }): Promise<SafeReport> {
  const waitMs = durationOption('waitMs', o.waitMs, null);
  const pollMs = durationOption('pollMs', o.pollMs, 250, 1);
  const deadline = Date.now() + waitMs;
  for (;;) {
    const r = await checkSafe(cp, o);
    if (r.safe || Date.now() >= deadline) return r;
    await new Promise((res) => setTimeout(res, Math.min(pollMs, Math.max(1, deadline - Date.now()))));
  }
}

// ---------------------------------------------------------------------------------------------
// decommission

export interface DecommissionResult extends BaselineChangeResult {
  /** With wait: true once the node holds and pulls no partition (it can be stopped). */
  drained: boolean | null;
}

/**
 * Decommission without the node's help: removes the node from the baseline (the coordinator
 * builds the new copies before the node drops its own), and with `waitMs` waits until the node
 * holds nothing. Stopping the process is left to the operator (or Kubernetes); until then, with
 * auto-adjust enabled, the node would be put back after the soft timeout.
 */
export async function decommission(cp: ControlPlane, id: string, o: ChangeOptions & { waitMs?: number } = {}): Promise<DecommissionResult> {
  // Checked before anything is written (a wait that is not a number polled forever, once applied).
  const waitMs = o.waitMs === undefined ? undefined : durationOption('waitMs', o.waitMs, 0);
  const r = await changeBaseline(cp, { kind: 'remove', id }, o);
  if (!r.applied || waitMs === undefined) return { ...r, drained: null };
  const deadline = Date.now() + waitMs;
  for (;;) {
    const rec = (await readTopology(cp, o.timeoutMs)).value;
    const holds = rec.owners.some((ow) => ow.includes(id)) || rec.syncing.some((s) => s.some((e) => e.id === id));
    if (!holds) return { ...r, drained: true, topologyVersion: rec.version };
    if (Date.now() >= deadline) return { ...r, drained: false, topologyVersion: rec.version };
    await new Promise((res) => setTimeout(res, 100));
  }
}
