/**
 * Per-cache backups on one partition (ADR 0038). The topology ranks the owners of every
 * partition (primary first) as deep as the cache that wants the most backups; a cache with b
 * backups is held by the first b + 1 owners only. A copy ranked r (its index in the owners list)
 * therefore holds exactly the caches with at least r backups; a node pulling a partition takes
 * everything and trims once it is ranked. Pure functions: no store, no sockets.
 */
import { rankIn, type TopologyRecord } from '../control/topology.js';
import type { ReplicationRecord } from '../store/index.js';

/** Does a copy ranked `rank` hold a cache with `backups` backups? The primary (0) holds all. */
export function holds(backups: number, rank: number): boolean {
  return backups >= rank;
}

/**
 * The rank of node `id` for p: its index among the owners. 0 (it holds everything) while it
 * pulls, and for every owner while a move is in progress (more owners than the ranking's depth:
 * the copies being built and the ones being retired each take a whole snapshot).
 */
export function rankOf(t: TopologyRecord, id: string, p: number): number {
  return rankIn(t, id, p);
}

/**
 * A copy that held the caches of rank `held` and is now ranked `rank`: does it miss a cache
 * (one with backups in [rank, held)) that it must now hold? Then it needs a snapshot.
 */
export function missesCaches(held: number, rank: number, cacheBackups: Iterable<number>): boolean {
  if (rank >= held) return false;
  for (const b of cacheBackups) if (b >= rank && b < held) return true;
  return false;
}

/**
 * The record as a copy ranked `rank` applies it: effects on caches it does not hold are left
 * out (the update counter still moves on, so gap detection is unchanged). The record itself
 * when nothing is left out.
 */
export function recordForRank(rec: ReplicationRecord, rank: number, backupsOf: (cache: string) => number): ReplicationRecord {
  if (rank === 0) return rec;
  let keep: ReplicationRecord['effects'] | null = null;
  for (let i = 0; i < rec.effects.length; i++) {
    const e = rec.effects[i]!;
    const held = !('cache' in e) || holds(backupsOf(e.cache), rank);
    if (keep === null) {
      if (held) continue;
      keep = rec.effects.slice(0, i);
    } else if (held) keep.push(e);
  }
  return keep === null ? rec : { ...rec, effects: keep };
}
