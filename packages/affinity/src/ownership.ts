/**
 * Partition ownership by rendezvous (highest-random-weight) hashing. Pure functions, no state
 * besides a cache of node-id hashes. The rules (specified in docs/affinity.md):
 *
 * - nodeHash(id) = murmur3x86_32(UTF-8(id), 0), computed once per id.
 * - score(p, node) = murmur3x86_32(le32(p), seed = nodeHash(id)): one 4-byte block, unsigned.
 * - Unweighted (all weights equal) nodes rank by score, highest first. Weighted nodes rank by
 *   -weight / ln(u) with u = (score + 0.5) / 2^32 in (0, 1); with equal weights this is the same
 *   order. Equal scores happen only when two ids' hashes collide (the score is a bijection of
 *   the node hash for a given partition); they are ordered by a second score,
 *   murmur3x86_32(le32(p), seed = tieHash(id)) with tieHash(id) = murmur3x86_32(UTF-8(id), 1),
 *   higher first, and if that ties too, by node id (Unicode code point order).
 * - Zones: the first node of the ranking is the primary. Each next place goes to the best-ranked
 *   remaining node of a zone not yet represented; once every zone is represented (or none of
 *   the remaining nodes brings a new zone) places are filled in ranking order. A node without a
 *   zone belongs to the zone "" (the empty string).
 */
import { AffinityArgumentError } from './errors.js';
import { hashMixedWord, mixBlock, murmur3x86_32 } from './murmur3.js';

export interface NodeSpec {
  id: string;
  zone?: string;
  /** Relative capacity, a finite number > 0 (default 1). */
  weight?: number;
}

export interface Assignment {
  partitions: number;
  backups: number;
  /** owners[p]: ranked owner list over the baseline (primary first), length min(backups + 1, baseline size). */
  owners: string[][];
  /** primaries[p]: the first alive owner of p, or null when none is alive (partition lost). */
  primaries: (string | null)[];
}

export interface AssignmentChange {
  partition: number;
  primaryChanged: boolean;
  /** The ordered owner list differs (a member changed, or the same members in another order). */
  ownersChanged: boolean;
  before: string[];
  after: string[];
}

export interface ComputeAssignmentOptions {
  partitions: number;
  backups: number;
  baseline: readonly NodeSpec[];
  alive: Iterable<string>;
}

const NODE_HASH_CACHE_LIMIT = 65_536;
const nodeHashCache = new Map<string, number>();
const tieHashCache = new Map<string, number>();
const utf8 = new TextEncoder();

function cachedHash(cache: Map<string, number>, id: string, seed: number): number {
  let h = cache.get(id);
  if (h === undefined) {
    h = murmur3x86_32(utf8.encode(id), seed);
    if (cache.size >= NODE_HASH_CACHE_LIMIT) cache.clear();
    cache.set(id, h);
  }
  return h;
}

/** murmur3x86_32 of the node id's UTF-8 bytes, seed 0 (cached per id). */
export function nodeHash(id: string): number {
  return cachedHash(nodeHashCache, id, 0);
}

/** murmur3x86_32 of the node id's UTF-8 bytes, seed 1: orders nodes whose nodeHash collides. */
export function tieHash(id: string): number {
  return cachedHash(tieHashCache, id, 1);
}

/** The rendezvous score of a node for a partition: murmur3x86_32(le32(partition), nodeHash(id)). */
export function ownerScore(partition: number, id: string): number {
  return hashMixedWord(mixBlock(partition), nodeHash(id));
}

/** Compares node ids by Unicode code point (the same order as their UTF-8 bytes). */
export function compareNodeIds(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca !== cb) return codePointOrder(ca) - codePointOrder(cb);
  }
  return a.length - b.length;
}

// UTF-16 code unit order differs from code point order only between surrogates (D800-DFFF) and
// E000-FFFF: moving E000-FFFF down to D800-F7FF and surrogates up to F800-FFFF restores it.
function codePointOrder(u: number): number {
  if (u < 0xd800) return u;
  return u >= 0xe000 ? u - 0x800 : u + 0x2000;
}

/** Validated, precomputed view of a node list. */
interface Prepared {
  n: number;
  ids: string[];
  hashes: Int32Array;
  tieHashes: Int32Array;
  weights: Float64Array;
  weighted: boolean;
  zoneOf: Int32Array;
  zoneCount: number;
  // Per-call scratch: the partition's mixed block and the nodes' scores for it.
  block: number;
  scores: Float64Array;
  chosen: Uint8Array;
  zoneUsed: Uint8Array;
}

function prepare(nodes: readonly NodeSpec[], field: string): Prepared {
  if (!Array.isArray(nodes)) throw new AffinityArgumentError(field, 'must be an array of { id, zone?, weight? }');
  const n = nodes.length;
  const ids = new Array<string>(n);
  const hashes = new Int32Array(n);
  const tieHashes = new Int32Array(n);
  const weights = new Float64Array(n);
  const zoneOf = new Int32Array(n);
  const zones = new Map<string, number>();
  const seen = new Set<string>();
  let weighted = false;
  for (let i = 0; i < n; i++) {
    const spec = nodes[i];
    if (typeof spec !== 'object' || spec === null) {
      throw new AffinityArgumentError(`${field}[${i}]`, 'must be an object { id, zone?, weight? }');
    }
    const { id, zone, weight } = spec;
    if (typeof id !== 'string' || id.length === 0) {
      throw new AffinityArgumentError(`${field}[${i}].id`, 'must be a non-empty string');
    }
    if (seen.has(id)) throw new AffinityArgumentError(`${field}[${i}].id`, `duplicate node id "${id}"`);
    seen.add(id);
    if (zone !== undefined && typeof zone !== 'string') {
      throw new AffinityArgumentError(`${field}[${i}].zone`, 'must be a string when given');
    }
    const w = weight ?? 1;
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) {
      throw new AffinityArgumentError(`${field}[${i}].weight`, `must be a finite number > 0, got ${String(weight)}`);
    }
    ids[i] = id;
    hashes[i] = nodeHash(id);
    tieHashes[i] = tieHash(id);
    weights[i] = w;
    if (i > 0 && w !== weights[0]) weighted = true;
    const z = zone ?? '';
    let zi = zones.get(z);
    if (zi === undefined) {
      zi = zones.size;
      zones.set(z, zi);
    }
    zoneOf[i] = zi;
  }
  return {
    n,
    ids,
    hashes,
    tieHashes,
    weights,
    weighted,
    zoneOf,
    zoneCount: zones.size,
    block: 0,
    scores: new Float64Array(n),
    chosen: new Uint8Array(n),
    zoneUsed: new Uint8Array(zones.size),
  };
}

const TWO_POW_32 = 4294967296;

/** Fills prep.scores for partition p; a larger value ranks higher. */
function score(prep: Prepared, p: number): void {
  const k = mixBlock(p);
  prep.block = k;
  const { n, hashes, scores } = prep;
  if (!prep.weighted) {
    for (let i = 0; i < n; i++) scores[i] = hashMixedWord(k, hashes[i]!);
    return;
  }
  const { weights } = prep;
  for (let i = 0; i < n; i++) {
    const u = (hashMixedWord(k, hashes[i]!) + 0.5) / TWO_POW_32;
    scores[i] = -weights[i]! / Math.log(u);
  }
}

/** Order of two nodes with equal scores: negative when i goes first. */
function compareTied(prep: Prepared, i: number, j: number): number {
  const ti = hashMixedWord(prep.block, prep.tieHashes[i]!);
  const tj = hashMixedWord(prep.block, prep.tieHashes[j]!);
  return tj - ti || compareNodeIds(prep.ids[i]!, prep.ids[j]!);
}

/** True when node i ranks above node j. */
function above(prep: Prepared, i: number, j: number): boolean {
  const si = prep.scores[i]!;
  const sj = prep.scores[j]!;
  return si > sj || (si === sj && compareTied(prep, i, j) < 0);
}

/**
 * Writes the first `slots` owners of partition p (indices into prep) to `out`, zone-aware.
 * O(n * slots): each place is one scan for the best remaining node (of an unused zone, while
 * any zone is unused).
 */
function selectByScan(prep: Prepared, slots: number, out: number[]): void {
  const { n, chosen, zoneUsed, zoneOf, zoneCount } = prep;
  chosen.fill(0);
  zoneUsed.fill(0);
  let zonesUsed = 0;
  out.length = 0;
  for (let s = 0; s < slots; s++) {
    let bestAny = -1;
    let bestNew = -1;
    const wantNew = zonesUsed < zoneCount && s > 0;
    for (let i = 0; i < n; i++) {
      if (chosen[i] === 1) continue;
      if (bestAny < 0 || above(prep, i, bestAny)) bestAny = i;
      if (wantNew && zoneUsed[zoneOf[i]!] === 0 && (bestNew < 0 || above(prep, i, bestNew))) bestNew = i;
    }
    const pick = bestNew >= 0 ? bestNew : bestAny;
    chosen[pick] = 1;
    const z = zoneOf[pick]!;
    if (zoneUsed[z] === 0) {
      zoneUsed[z] = 1;
      zonesUsed++;
    }
    out.push(pick);
  }
}

/** Node indices ordered best first (higher key; equal keys by the tie rule). */
function rankAll(prep: Prepared): Int32Array {
  const { n, scores } = prep;
  const order = new Int32Array(n);
  if (!prep.weighted && n <= 0x100000) {
    // Unweighted scores are 32-bit integers: pack (inverted score, index) into one exactly
    // representable double and let the typed array sort natively, then reorder equal-score
    // runs by the tie rule.
    const packed = new Float64Array(n);
    for (let i = 0; i < n; i++) packed[i] = (0xffffffff - scores[i]!) * 0x100000 + i;
    packed.sort();
    for (let i = 0; i < n; i++) order[i] = packed[i]! % 0x100000;
    for (let i = 1; i < n; i++) {
      if (scores[order[i]!] === scores[order[i - 1]!]) {
        let j = i;
        while (j < n && scores[order[j]!] === scores[order[i - 1]!]) j++;
        const run = Array.from(order.subarray(i - 1, j)).sort((a, b) => compareTied(prep, a, b));
        order.set(run, i - 1);
        i = j - 1;
      }
    }
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => scores[b]! - scores[a]! || compareTied(prep, a, b));
  return order;
}

/** Same result as selectByScan, via a full sort: O(n log n + n * zones). For long owner lists. */
function selectBySort(prep: Prepared, slots: number, out: number[]): void {
  const { n, chosen, zoneUsed, zoneOf, zoneCount } = prep;
  const order = rankAll(prep);
  out.length = 0;
  if (zoneCount === 1) {
    for (let s = 0; s < slots; s++) out.push(order[s]!);
    return;
  }
  chosen.fill(0);
  zoneUsed.fill(0);
  const first = order[0]!;
  out.push(first);
  chosen[first] = 1;
  zoneUsed[zoneOf[first]!] = 1;
  let zonesUsed = 1;
  while (out.length < slots && zonesUsed < zoneCount) {
    let pick = -1;
    for (const i of order) {
      if (chosen[i] === 0 && zoneUsed[zoneOf[i]!] === 0) {
        pick = i;
        break;
      }
    }
    if (pick < 0) break;
    out.push(pick);
    chosen[pick] = 1;
    zoneUsed[zoneOf[pick]!] = 1;
    zonesUsed++;
  }
  for (let k = 0; k < n && out.length < slots; k++) {
    const i = order[k]!;
    if (chosen[i] === 0) out.push(i);
  }
}

const SCAN_SLOTS_LIMIT = 6;

function select(prep: Prepared, p: number, slots: number, out: number[]): void {
  if (slots === 0) {
    out.length = 0;
    return;
  }
  score(prep, p);
  if (slots <= SCAN_SLOTS_LIMIT) selectByScan(prep, slots, out);
  else selectBySort(prep, slots, out);
}

function checkPartition(partition: number): void {
  if (!(Number.isInteger(partition) && partition >= 0 && partition < TWO_POW_32)) {
    throw new AffinityArgumentError('partition', `must be an integer from 0 to 2^32 - 1, got ${String(partition)}`);
  }
}

/**
 * Every node, in preference order for `partition`: primary first, then zone-aware backups, then
 * the rest. Owners for `backups` b are the first b + 1 entries.
 */
export function rankOwners(partition: number, nodes: readonly NodeSpec[]): string[] {
  checkPartition(partition);
  const prep = prepare(nodes, 'nodes');
  const out: number[] = [];
  select(prep, partition, prep.n, out);
  return out.map((i) => prep.ids[i]!);
}

/**
 * Owners of every partition over the baseline and the effective primary given the alive set:
 * the first alive owner, or null when all owners are down (the partition is lost).
 */
export function computeAssignment(opts: ComputeAssignmentOptions): Assignment {
  if (typeof opts !== 'object' || opts === null) throw new AffinityArgumentError('options', 'must be an object');
  const { partitions, backups, baseline, alive } = opts;
  if (!(Number.isInteger(partitions) && partitions >= 1 && partitions <= 0x100000000)) {
    throw new AffinityArgumentError('partitions', `must be an integer from 1 to 2^32, got ${String(partitions)}`);
  }
  if (!(Number.isInteger(backups) && backups >= 0)) {
    throw new AffinityArgumentError('backups', `must be an integer >= 0, got ${String(backups)}`);
  }
  if (alive === null || typeof alive !== 'object' || typeof alive[Symbol.iterator] !== 'function') {
    throw new AffinityArgumentError('alive', 'must be an iterable of node ids');
  }
  const prep = prepare(baseline, 'baseline');
  const aliveSet = alive instanceof Set ? (alive as Set<string>) : new Set(alive);
  const aliveIdx = new Uint8Array(prep.n);
  for (let i = 0; i < prep.n; i++) aliveIdx[i] = aliveSet.has(prep.ids[i]!) ? 1 : 0;

  const slots = Math.min(backups + 1, prep.n);
  const owners = new Array<string[]>(partitions);
  const primaries = new Array<string | null>(partitions);
  const picked: number[] = [];
  for (let p = 0; p < partitions; p++) {
    select(prep, p, slots, picked);
    const list = new Array<string>(picked.length);
    let primary: string | null = null;
    for (let s = 0; s < picked.length; s++) {
      const i = picked[s]!;
      list[s] = prep.ids[i]!;
      if (primary === null && aliveIdx[i] === 1) primary = prep.ids[i]!;
    }
    owners[p] = list;
    primaries[p] = primary;
  }
  return { partitions, backups, owners, primaries };
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Partitions whose effective primary or ordered owner list differs between two assignments. */
export function diffAssignments(a: Assignment, b: Assignment): AssignmentChange[] {
  if (a.partitions !== b.partitions) {
    throw new AffinityArgumentError('b.partitions', `assignments cover ${a.partitions} and ${b.partitions} partitions`);
  }
  const changes: AssignmentChange[] = [];
  for (let p = 0; p < a.partitions; p++) {
    const before = a.owners[p] ?? [];
    const after = b.owners[p] ?? [];
    const primaryChanged = (a.primaries[p] ?? null) !== (b.primaries[p] ?? null);
    const ownersChanged = !sameList(before, after);
    if (primaryChanged || ownersChanged) changes.push({ partition: p, primaryChanged, ownersChanged, before, after });
  }
  return changes;
}
