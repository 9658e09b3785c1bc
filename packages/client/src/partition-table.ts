/**
 * Partition map state (pure): which map the client routes with and which version it knows exists.
 * An older (or equal) map never replaces a newer one; a response or push carrying a newer version,
 * or the REFRESH_MAP flag, asks for a refresh.
 */
import type { NodeInfo, PartitionMap } from '@gridlink/protocol';

export interface MapState {
  /** The map in use, or null before the first one arrives. */
  readonly map: PartitionMap | null;
  /** Highest topology version seen anywhere (handshakes, responses, pushes, maps). */
  readonly knownVersion: number;
}

export const EMPTY_MAP_STATE: MapState = { map: null, knownVersion: -1 };

/** Structural check of a map received from a node. */
export function isValidMap(m: unknown): m is PartitionMap {
  if (typeof m !== 'object' || m === null) return false;
  const map = m as Partial<PartitionMap>;
  if (!Number.isSafeInteger(map.version) || (map.version as number) < 0) return false;
  if (!Number.isSafeInteger(map.partitions) || (map.partitions as number) < 1) return false;
  if (!Array.isArray(map.nodes) || !Array.isArray(map.primaries)) return false;
  if (map.primaries.length !== map.partitions) return false;
  const n = map.nodes.length;
  for (const node of map.nodes) {
    if (typeof node !== 'object' || node === null || typeof node.id !== 'string') return false;
  }
  for (const p of map.primaries) {
    if (!Number.isInteger(p) || p < -1 || p >= n) return false;
  }
  return true;
}

/** Applies a received map: accepted only when valid and strictly newer than the current one. */
export function acceptMap(state: MapState, incoming: unknown): { state: MapState; accepted: boolean } {
  if (!isValidMap(incoming)) return { state, accepted: false };
  if (state.map !== null && incoming.version <= state.map.version) {
    return { state, accepted: false };
  }
  if (state.map !== null && incoming.partitions !== state.map.partitions) {
    // The partition count is fixed for a cluster's life: a different count means a new cluster,
    // which is accepted only as a newer map (checked above).
  }
  return {
    state: { map: incoming, knownVersion: Math.max(state.knownVersion, incoming.version) },
    accepted: true,
  };
}

/**
 * Records a topology version seen in a response/push/handshake. Returns whether the map should be
 * refreshed: the version is newer than the map's, or the node asked for it.
 */
export function observeVersion(state: MapState, version: number, refreshFlag = false): { state: MapState; refresh: boolean } {
  const knownVersion = Number.isSafeInteger(version) ? Math.max(state.knownVersion, version) : state.knownVersion;
  const next = knownVersion === state.knownVersion ? state : { ...state, knownVersion };
  const mapVersion = state.map?.version ?? -1;
  return { state: next, refresh: refreshFlag || knownVersion > mapVersion };
}

/** Whether the map is behind the newest version known to exist. */
export function isStale(state: MapState): boolean {
  return state.map === null || state.knownVersion > state.map.version;
}

/** The primary of a partition in a map, or null when lost/unknown. */
export function primaryOf(map: PartitionMap | null, partition: number): NodeInfo | null {
  if (map === null) return null;
  const idx = map.primaries[partition];
  if (idx === undefined || idx < 0) return null;
  return map.nodes[idx] ?? null;
}

/** Partitions whose primary node id differs between two maps. */
export function changedPrimaries(a: PartitionMap | null, b: PartitionMap): number[] {
  const out: number[] = [];
  for (let p = 0; p < b.partitions; p++) {
    if (primaryOf(a, p)?.id !== primaryOf(b, p)?.id) out.push(p);
  }
  return out;
}
