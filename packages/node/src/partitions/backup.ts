/**
 * Backup side of replication: records, snapshot pushes (whole or in parts) and promotion probes
 * from the primary. What a record does (apply, buffer, answer "gap") is the replica state
 * machine's decision; this module checks the sender and does the store work.
 */
import { Feature } from '@gridlink/protocol';
import type { ResolvedNodeOptions } from '../config.js';
import type { ClusterView } from '../membership/view.js';
import { decodeReplicate, putView, readReplicate, wellFormedPut, wellFormedView, type PutView } from '../peers/replicate-codec.js';
import { NODE_FEATURES } from '../peers/wire-version.js';
import type { NodeStore, PartitionSnapshot } from '../store/index.js';
import type { ReplicaDriver } from './driver.js';
import type { ReplicateBatchMsg, ReplicateBatchReply, ReplicateMsg, ReplicateReply } from './messages.js';
import { holds, recordForRank } from './depth.js';
import { onRecord } from './replica.js';
import type { PartitionTable } from './table.js';

const OK: ReplicateReply = Object.freeze({ s: 'ok' });
const GAP: ReplicateReply = Object.freeze({ s: 'gap' });
const STALE: ReplicateReply = Object.freeze({ s: 'stale' });
const GONE_REPLY: ReplicateReply = Object.freeze({ s: 'gone' });
/** `refusal`'s answer for a record to take as the previous primary's last one (ADR 0079). */
const LATE = 'late';
const NO_BYTES = new Uint8Array(0);

export class BackupReceiver {
  constructor(
    private readonly opts: ResolvedNodeOptions,
    private readonly view: ClusterView,
    private readonly store: NodeStore,
    private readonly table: PartitionTable,
    private readonly driver: ReplicaDriver,
  ) {}

  /** Where binary records are read into (one at a time: the read is synchronous). */
  private readonly put = putView();

  /** Synchronous unless the sender knows a newer topology than this node (then it waits for it). */
  onReplicate(raw: ReplicateMsg | Uint8Array): ReplicateReply | Promise<ReplicateReply> {
    if (raw instanceof Uint8Array) {
      const h = readReplicate(raw, this.put);
      if (h.v <= this.view.topologyVersion()) {
        try {
          return this.onPutNow(h);
        } finally {
          h.bytes = NO_BYTES; // the frame is not kept for the next record
        }
      }
      const m = decodeReplicate(raw);
      return this.view.awaitTopology(m.v, this.opts.leaseMs).then(() => this.onReplicateNow(m, true));
    }
    const m = raw;
    if (m.v > this.view.topologyVersion()) return this.view.awaitTopology(m.v, this.opts.leaseMs).then(() => this.onReplicateNow(m, false));
    return this.onReplicateNow(m, false);
  }

  /**
   * Whether a record of p from `from` under `epoch` (sent at topology v) is this copy's to take
   * (null), to take as the previous primary's last one (LATE), or else the refusal.
   */
  private refusal(p: number, from: string, epoch: string, v: number): ReplicateReply | null | typeof LATE {
    const view = this.view;
    if (epoch !== view.epoch || !view.isMember()) return GONE_REPLY;
    const t = view.topo!;
    const owners = t.owners[p] ?? [];
    if (owners[0] !== from) {
      if (this.lateFromPrevious(p, owners, from)) return LATE;
      return t.version >= v ? STALE : GONE_REPLY;
    }
    const role = view.roleOf(p);
    if (role === 'none' || role === 'primary') return GONE_REPLY;
    return null;
  }

  /**
   * A record of p from its previous primary that reached this node after it became p's primary,
   * while its promotion fence still runs (ADR 0079): `from` holds p in this node's topology (it
   * stays an owner: a handback or a reorder, not a failover), and this node has served nothing of
   * p yet — requests wait for the fence. The record is one the previous primary applied before it
   * learned the new topology; taken here as its backup would take it (the next counter, or
   * refused), this copy stays equal to the previous primary's, so the fence finds nothing to
   * overwrite with a snapshot. Only plain records: no probe, snapshot or part.
   */
  private lateFromPrevious(p: number, owners: readonly string[], from: string): boolean {
    if (this.view.roleOf(p) !== 'primary') return false;
    const st = this.table.get(p);
    return st !== undefined && st.replica.fencing !== 0 && owners.includes(from);
  }

  /**
   * onReplicateNow for a binary put read in place (ADR 0041): applied straight from its bytes;
   * the record's objects are built only when it has to wait (buffered while a snapshot is on its
   * way) or is malformed (the store's check refuses it as before).
   */
  private onPutNow(h: PutView): ReplicateReply {
    const refused = this.refusal(h.p, h.from, h.epoch, h.v);
    if (refused !== null && refused !== LATE) return refused;
    const late = refused === LATE;
    const st = this.table.part(h.p);
    switch (late ? 'apply' : onRecord(st.replica)) {
      case 'buffer':
        st.buffer!.push(decodeReplicate(h.bytes).rec!);
        return OK;
      case 'gap':
        return GAP;
      case 'apply': {
        let applied: boolean;
        if (wellFormedView(h)) {
          const keep = st.held === 0 || holds(this.driver.backupsOf(h.cache), st.held);
          applied = this.store.applyPut(h.p, h, keep);
        } else {
          // The store's check refuses it, exactly as for the decoded record.
          const rec = decodeReplicate(h.bytes).rec!;
          applied = this.store.applyRecord(h.p, st.held === 0 ? rec : recordForRank(rec, st.held, this.driver.backupsOf));
        }
        if (!applied) {
          // A late record that does not follow on is refused as stale, not resynced from here.
          if (late) return STALE;
          this.driver.gapDetected(st);
          return GAP;
        }
        return OK;
      }
    }
  }

  /**
   * Several messages of one frame, handled as if they had arrived back to back (each starts now,
   * in order). With `compactAck`, an all-OK answer is the compact `{ ok: n }` (ADR 0035).
   */
  onReplicateBatch(m: ReplicateBatchMsg): ReplicateBatchReply | Promise<ReplicateBatchReply> {
    const batch = m.batch;
    const replies: (ReplicateReply | Promise<ReplicateReply>)[] = new Array<ReplicateReply | Promise<ReplicateReply>>(batch.length);
    let allOk = true;
    let waits = false;
    for (let i = 0; i < batch.length; i++) {
      // A malformed message throws: the whole frame is answered with the error, as before.
      const r = this.onReplicate(batch[i]!);
      replies[i] = r;
      if (r !== OK) {
        allOk = false;
        if (r instanceof Promise) waits = true;
      }
    }
    if (allOk && m.compactAck === true) return { ok: batch.length };
    if (!waits) return { batch: replies as ReplicateReply[] };
    return Promise.all(replies.map((r) => Promise.resolve(r))).then((batch) => ({ batch }));
  }

  /** `binary`: m came from the compact form, whose record the store may take as it is when well formed. */
  private onReplicateNow(m: ReplicateMsg, binary: boolean): ReplicateReply {
    const refused = this.refusal(m.p, m.from, m.epoch, m.v);
    if (refused !== null && refused !== LATE) return refused;
    const late = refused === LATE;
    // Late, only a plain record is taken: no probe, snapshot or part.
    if (late && (m.probe || m.part || m.snap || !m.rec)) return STALE;
    const st = this.table.part(m.p);
    if (m.probe) return { s: 'ok', counter: this.store.updateCounter(m.p) };
    if (m.part) {
      const { id, index, total } = m.part;
      const snap = this.asGranted(m.part.snap);
      const reply = this.driver.feed(m.p, st, { type: 'snapshot-part', id, index, total, have: st.parts.length }, undefined, snap);
      return reply === 'gap' ? GAP : OK;
    }
    if (m.snap) {
      this.store.install(m.p, this.asGranted(m.snap));
      this.driver.installed(m.p, st);
      return OK;
    }
    if (!m.rec) return GONE_REPLY;
    switch (late ? 'apply' : onRecord(st.replica)) {
      case 'buffer':
        st.buffer!.push(m.rec);
        return OK;
      case 'gap':
        return GAP;
      case 'apply': {
        // A well-formed binary put stays in the store's typed form whatever recordForRank keeps
        // of it (itself, or the same record without its effect), so it skips the checked copy
        // on a ranked backup too.
        const rec = st.held === 0 ? m.rec : recordForRank(m.rec, st.held, this.driver.backupsOf);
        if (!this.store.applyRecord(m.p, rec, binary && wellFormedPut(m.rec))) {
          if (late) return STALE;
          this.driver.gapDetected(st);
          return GAP;
        }
        return OK;
      }
    }
  }

  /**
   * A snapshot as this node takes it: as is, unless this node does not grant
   * Feature.PACKED_SNAPSHOTS (withNodeFeatures, a testing hook): then without its packed entries,
   * as a node of an older release, which does not know the field, installs it (ADR 0080).
   */
  private asGranted(snap: PartitionSnapshot): PartitionSnapshot {
    if ((this.opts[NODE_FEATURES] & Feature.PACKED_SNAPSHOTS) !== 0 || typeof snap !== 'object' || snap === null || !Array.isArray(snap.caches)) return snap;
    return { ...snap, caches: snap.caches.map((c) => ({ name: c.name, config: c.config, entries: c.entries })) };
  }
}
