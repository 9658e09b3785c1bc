/**
 * Partition service: holds the partition map, refreshes it (single-flight) when a newer topology
 * version is seen, when a node sets REFRESH_MAP, or on a TOPOLOGY_CHANGED push; never lets an
 * older map replace a newer one (see partition-table.ts).
 */
import { EventEmitter } from 'eventemitter3';
import { Op, ResponseFlag, type PartitionMap } from '@gridlink/protocol';
import type { Connection } from './connection.js';
import type { ConnectionManager } from './connection-manager.js';
import { GridError } from './errors.js';
import { EMPTY_MAP_STATE, acceptMap, isStale, observeVersion, type MapState } from './partition-table.js';
import { RoundRobin } from './routing.js';

export interface PartitionServiceEvents {
  /** A newer map was installed. */
  changed: (map: PartitionMap, previous: PartitionMap | null) => void;
}

export class PartitionService extends EventEmitter<PartitionServiceEvents> {
  private state: MapState = EMPTY_MAP_STATE;
  private inflight: Promise<void> | null = null;
  /** Node the in-flight refresh is waiting on. */
  private asking: string | undefined;
  /** Node that announced the newest version seen; asked first. */
  private announcer: string | undefined;
  private hedging = false;
  private readonly rr = new RoundRobin();
  private closed = false;
  /** Partition count from the handshake (before the first map arrives). */
  partitions = 0;
  refreshes = 0;
  refreshFailures = 0;

  constructor(
    private readonly manager: ConnectionManager,
    private readonly requestTimeout: number,
  ) {
    super();
  }

  get map(): PartitionMap | null {
    return this.state.map;
  }

  /** A refresh (or a hedged TOPOLOGY request beside one) is under way. */
  get refreshing(): boolean {
    return this.inflight !== null || this.hedging;
  }

  get knownVersion(): number {
    return this.state.knownVersion;
  }

  /** Forgets everything (the cluster identity changed). */
  reset(): void {
    this.state = EMPTY_MAP_STATE;
  }

  /**
   * A version seen in a handshake/response/push from `nodeId`; refreshes when newer or asked to.
   * The node that announced the newest version holds that map, so the refresh asks it first; if a
   * refresh is already waiting on another node (which may be the one that hung), the announcer is
   * asked at once as well, and whichever answer is newer wins.
   */
  observe(version: number, refreshFlag = false, nodeId?: string): void {
    // The common case (every response): nothing newer than the installed map, no refresh asked.
    const st = this.state;
    if (!refreshFlag && st.map !== null && version <= st.knownVersion && st.knownVersion <= st.map.version) return;
    const newer = version > st.knownVersion;
    const r = observeVersion(st, version, refreshFlag);
    this.state = r.state;
    if (!r.refresh) return;
    if (nodeId !== undefined && newer) this.announcer = nodeId;
    if (this.inflight !== null && nodeId !== undefined && newer && nodeId !== this.asking) void this.hedge(nodeId);
    else void this.refresh();
  }

  /** One extra TOPOLOGY request to `nodeId` beside a refresh that waits on another node. */
  private async hedge(nodeId: string): Promise<void> {
    if (this.hedging || this.closed) return;
    const conn = this.manager.connection(nodeId);
    if (conn === undefined) return;
    this.hedging = true;
    try {
      await this.fetchFrom(conn);
    } catch {
      // counted in fetchFrom; the refresh under way goes on
    } finally {
      this.hedging = false;
    }
  }

  /** One TOPOLOGY request; installs the answer if it is newer. Throws what the request threw. */
  private async fetchFrom(conn: Connection): Promise<void> {
    try {
      const frame = await conn.request(Op.TOPOLOGY, { knownVersion: Math.max(0, this.state.map?.version ?? 0) }, { timeoutMs: this.requestTimeout });
      this.refreshes++;
      if ((frame.flags & ResponseFlag.ERROR) === 0) this.install(frame.payload);
      else this.refreshFailures++;
    } catch (e) {
      this.refreshFailures++;
      throw e;
    }
  }

  /** Installs a map if it is newer than the current one. Returns whether it was installed. */
  install(map: unknown): boolean {
    const previous = this.state.map;
    const r = acceptMap(this.state, map);
    this.state = r.state;
    if (r.accepted && this.state.map !== null) {
      this.partitions = this.state.map.partitions;
      this.emit('changed', this.state.map, previous);
    }
    return r.accepted;
  }

  /**
   * Fetches the map from a connected node. Concurrent callers share one request; if a newer
   * version becomes known meanwhile, one more round follows.
   */
  refresh(): Promise<void> {
    if (this.inflight !== null) return this.inflight;
    this.inflight = this.doRefresh().finally(() => {
      this.inflight = null;
      this.asking = undefined;
    });
    return this.inflight;
  }

  private async doRefresh(): Promise<void> {
    // Ask one node; if it fails (gone, hung, slow), ask another one not tried yet in this refresh.
    const tried = new Set<string>();
    for (let round = 0; round < 5 && !this.closed; round++) {
      const all = this.manager.healthyNodeIds();
      const fresh = all.filter((id) => !tried.has(id));
      const ids = fresh.length > 0 ? fresh : all;
      if (ids.length === 0) return;
      const announcer = this.announcer;
      const nodeId = announcer !== undefined && fresh.includes(announcer) ? announcer : (ids[this.rr.next(ids.length)] as string);
      const conn = this.manager.connection(nodeId);
      if (conn === undefined) return;
      tried.add(nodeId);
      this.asking = nodeId;
      try {
        await this.fetchFrom(conn);
      } catch (e) {
        if (e instanceof GridError && e.retryable) continue;
        return;
      }
      // Still behind: that node lags too; ask another one if any is left untried.
      if (!isStale(this.state) || this.manager.healthyNodeIds().every((id) => tried.has(id))) return;
    }
  }

  close(): void {
    this.closed = true;
    this.removeAllListeners();
  }
}
