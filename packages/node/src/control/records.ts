/**
 * Shape checks of the records nodes read from the control plane. Nodes write them, but a bucket is
 * shared infrastructure: a record written by hand, by another tool or by an incompatible version
 * must not crash the nodes that read it (every node reads the same record at once). A node ignores
 * a record that fails here, logs why, and goes on with what it knew.
 *
 * The checks cover what the node's code relies on (types, array lengths, ranges), not every
 * invariant of a well-formed topology: a record that passes is safe to read, not necessarily sane.
 */
import type { LeaseRecord } from './topology.js';

type Check = (v: unknown) => boolean;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isString: Check = (v) => typeof v === 'string';
const isCount = (v: unknown, min = 0): v is number => Number.isSafeInteger(v) && (v as number) >= min;
const isUint: Check = (v) => isCount(v);
const isBool: Check = (v) => typeof v === 'boolean';
const isTime: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const optional = (check: Check): Check => (v) => v === undefined || check(v);
const arrayOf = (check: Check): Check => (v) => Array.isArray(v) && v.every(check);
const recordOf = (check: Check): Check => (v) => isObject(v) && Object.values(v).every(check);
const shape =
  (fields: Record<string, Check>): Check =>
  (v) =>
    isObject(v) && Object.entries(fields).every(([k, check]) => check(v[k]));

const node = shape({ id: isString, zone: optional(isString), weight: optional(isTime) });
const member = shape({ epoch: isString, host: isString, port: isUint, zone: optional(isString), weight: optional(isTime), leaving: optional((v) => v === true) });
const address = shape({ host: isString, port: isUint, zone: optional(isString) });
const syncEntry = shape({ id: isString, since: isUint });
const autoAdjust = shape({ enabled: isBool, softTimeoutMs: isTime, hardTimeoutMs: isTime });
const pendingAdjust = shape({ firstAt: isTime, lastAt: isTime, liveKey: isString });
const adjust: Check = (v) => v === null || pendingAdjust(v);
const behindEntry = shape({ rank: isUint, since: isUint });
/** A map key that is a partition number below n. */
const inRangeKey =
  (n: number) =>
  (k: string): boolean =>
    /^(0|[1-9]\d*)$/.test(k) && Number(k) < n;

/**
 * Why `v` cannot be read as a topology record, or null when it can. With `partitions`, the record
 * must also be of that many partitions (a node's store and routing are sized by it).
 */
export function topologyProblem(v: unknown, partitions?: number): string | null {
  if (!isObject(v)) return 'not an object';
  if (!isString(v['clusterId'])) return 'clusterId: not a string';
  if (!isCount(v['version'])) return 'version: not an integer >= 0';
  const n = v['partitions'];
  if (!isCount(n, 1)) return 'partitions: not a positive integer';
  if (partitions !== undefined && n !== partitions) return `partitions: ${n}, but this node has ${partitions}`;
  if (!isCount(v['backups'])) return 'backups: not an integer >= 0';
  if (!arrayOf(node)(v['baseline'])) return 'baseline: not a list of nodes';
  if (!recordOf(member)(v['members'])) return 'members: not a map of members';
  if (!optional(recordOf(isString))(v['departed'])) return 'departed: not a map of epochs';
  if (!optional(recordOf(isString))(v['fenced'])) return 'fenced: not a map of epochs';
  if (!recordOf(address)(v['addresses'])) return 'addresses: not a map of addresses';
  const inRange = (p: unknown): boolean => isCount(p) && p < n;
  const owners = v['owners'];
  if (!Array.isArray(owners) || owners.length !== n || !owners.every(arrayOf(isString))) return `owners: not ${n} lists of node ids`;
  const syncing = v['syncing'];
  if (!Array.isArray(syncing) || syncing.length !== n || !syncing.every(arrayOf(syncEntry))) return `syncing: not ${n} lists of pulls`;
  if (!arrayOf(inRange)(v['lost'])) return 'lost: not a list of partitions';
  if (!optional(recordOf(arrayOf(inRange)))(v['lostCaches'])) return 'lostCaches: not a map of partition lists';
  if (!optional(recordOf(recordOf(behindEntry)))(v['behind'])) return 'behind: not a map of ranks';
  const behind = v['behind'];
  if (isObject(behind) && !Object.keys(behind).every(inRangeKey(n))) return 'behind: a key is not a partition';
  const floors = v['floors'];
  if (!optional(recordOf(isUint))(floors)) return 'floors: not a map of counters';
  if (isObject(floors) && !Object.keys(floors).every(inRangeKey(n))) return 'floors: a key is not a partition';
  if (!autoAdjust(v['autoAdjust'])) return 'autoAdjust: not a policy';
  if (!adjust(v['adjust'])) return 'adjust: neither null nor a pending adjustment';
  return null;
}

const lease = shape({
  id: isString,
  epoch: isString,
  host: isString,
  port: isUint,
  zone: optional(isString),
  weight: optional(isTime),
  synced: recordOf(isUint),
  leaving: optional(isBool),
  caughtUp: optional(recordOf(isUint)),
  unreachable: optional(arrayOf(isString)),
});

/** Why `v` cannot be read as the lease record under key `lease.<id>`, or null when it can. */
export function leaseProblem(v: unknown, id: string): string | null {
  if (!lease(v)) return 'not a lease record';
  if ((v as LeaseRecord).id !== id) return `id ${JSON.stringify((v as LeaseRecord).id)} under the key of ${JSON.stringify(id)}`;
  return null;
}
