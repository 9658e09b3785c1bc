/**
 * The cluster record: the settings fixed when a cluster is created (id, partition count,
 * backups), kept under the `cluster` key of the control plane. The first node creates it
 * (compare-and-set, so two first nodes cannot both win); every other node reads it, adopts the
 * settings it was not given, and is refused when a setting it was given differs.
 */
import { CasConflictError, NodeConfigError } from '../errors.js';
import type { ControlPlane } from '../control/kv.js';
import { ControlPlaneUnavailableError } from '../control/nats.js';
import type { Logger } from '../logger.js';
import type { TopologyRecord } from '../control/topology.js';

export const CLUSTER_KEY = 'cluster';

export interface ClusterRecord {
  clusterId: string;
  partitions: number;
  backups: number;
}

export interface WantedClusterSettings {
  clusterId?: string | undefined;
  partitions?: number | undefined;
  backups?: number | undefined;
}

export const CLUSTER_DEFAULTS: ClusterRecord = { clusterId: 'gridlink', partitions: 1024, backups: 1 };

const FLAG: Record<keyof ClusterRecord, string> = { clusterId: 'cluster-id', partitions: 'partitions', backups: 'backups' };

/**
 * Pure: the settings a node runs with in an existing cluster, or a NodeConfigError naming the
 * first setting it was explicitly given that the cluster does not have.
 */
export function reconcileClusterSettings(existing: ClusterRecord, wanted: WantedClusterSettings): ClusterRecord {
  for (const k of ['clusterId', 'partitions', 'backups'] as const) {
    const w = wanted[k];
    if (w !== undefined && w !== existing[k]) {
      throw new NodeConfigError(
        FLAG[k],
        `this node is configured with ${FLAG[k]} ${JSON.stringify(w)} but the cluster ${JSON.stringify(existing.clusterId)} has ${JSON.stringify(existing[k])}; ` +
          'a joining node must match (or leave it unset)',
      );
    }
  }
  return { ...existing };
}

function isClusterRecord(v: unknown): v is ClusterRecord {
  const r = v as Partial<ClusterRecord> | null;
  return typeof r === 'object' && r !== null && typeof r.clusterId === 'string' && Number.isInteger(r.partitions) && Number.isInteger(r.backups);
}

/**
 * Creates the cluster record if there is none (from `wanted` + defaults, or from a topology
 * written before the record existed), else reconciles with it.
 */
export async function joinOrCreateCluster(cp: ControlPlane, wanted: WantedClusterSettings): Promise<{ record: ClusterRecord; created: boolean }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const cur = await cp.get<unknown>(CLUSTER_KEY);
    if (cur !== null) {
      if (!isClusterRecord(cur.value)) throw new NodeConfigError('control-plane', `the "${CLUSTER_KEY}" key holds no cluster record`);
      return { record: reconcileClusterSettings(cur.value, wanted), created: false };
    }
    const topo = await cp.get<TopologyRecord>('topology');
    let record: ClusterRecord;
    if (topo !== null) {
      record = { clusterId: topo.value.clusterId, partitions: topo.value.partitions, backups: topo.value.backups };
      reconcileClusterSettings(record, wanted);
    } else {
      record = {
        clusterId: wanted.clusterId ?? CLUSTER_DEFAULTS.clusterId,
        partitions: wanted.partitions ?? CLUSTER_DEFAULTS.partitions,
        backups: wanted.backups ?? CLUSTER_DEFAULTS.backups,
      };
    }
    try {
      await cp.create(CLUSTER_KEY, record);
      return { record, created: topo === null };
    } catch (err) {
      if (!(err instanceof CasConflictError)) throw err;
      // Another node created it first: read and reconcile.
    }
  }
  throw new NodeConfigError('control-plane', 'could not read or create the cluster record');
}

/**
 * Runs a start-up step, and again while the control plane answers "unavailable", until
 * `deadline`. Connecting already waits out NATS for the whole `--nats-connect-timeout-ms`; the
 * reads and writes after it need the same: a JetStream leader election after a server restart
 * keeps the KV failing for 10 s and more (the plane's own read retries give up after 10 s), and a
 * pod that exits then goes into a crash-loop back-off instead of joining a moment later. Safe to
 * repeat: a failed step wrote nothing that a new attempt does not write again (`startNode` ends
 * the node it started, which gets a new epoch next time). Once `abandoned()` holds (the process
 * was asked to stop meanwhile) it tries no more: the last attempt's error is thrown.
 */
export async function retriedWhileUnavailable<T>(step: string, deadline: number, log: Logger, fn: () => Promise<T>, pauseMs = 500, abandoned: () => boolean = () => false): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof ControlPlaneUnavailableError) || Date.now() + pauseMs >= deadline || abandoned()) throw err;
      log.warn('control plane not ready at start-up; retrying', { step, attempt, err: err.message });
      await new Promise((r) => setTimeout(r, pauseMs));
      if (abandoned()) throw err;
    }
  }
}
