/**
 * Shape checks for payloads: every client op's request (`validateRequest`) and response
 * (`validateResponse`), handshake bodies, error payloads and pushes. All throw ProtocolError.
 *
 * Rules (docs/protocol.md, "Payloads"):
 * - a payload is a MessagePack map with string keys;
 * - optional fields are omitted when absent (nil is not "absent", except where a field is
 *   documented as nullable);
 * - request and response payloads of client ops accept no fields beyond the documented ones;
 *   handshake bodies, error payloads and pushes ignore unknown fields (they are read before or
 *   across version negotiation);
 * - keys, values, lock names and cursors are bin (Uint8Array); integers are safe integers
 *   (|n| < 2^53); strings have bounded UTF-8 lengths.
 */
import { ErrorCode, ProtocolError } from './errors.js';
import { MIN_MAX_FRAME_SIZE, Op, PushKind, type ErrorPayload, type RequestFrame } from './messages.js';

/** Longest cache name, in UTF-8 bytes. */
export const MAX_CACHE_NAME_BYTES = 255;
/** Longest session id, in UTF-8 bytes. */
export const MAX_SESSION_ID_BYTES = 128;
/** Longest auth token, in UTF-8 bytes. */
export const MAX_AUTH_TOKEN_BYTES = 4096;
/** Longest node id, cluster id or client name, in UTF-8 bytes. */
export const MAX_LABEL_BYTES = 256;
/** Longest error message, in UTF-8 bytes. */
export const MAX_ERROR_MESSAGE_BYTES = 4096;
/** Largest `count` of a CACHE_SCAN. */
export const MAX_SCAN_COUNT = 65536;

/** UTF-8 length of a JS string (lone surrogates count as the 3 bytes of U+FFFD). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

function stringOf(min: number, max: number): (v: unknown) => boolean {
  return (v) => {
    if (typeof v !== 'string' || v.length < min || v.length > max) return false;
    return v.length * 3 <= max || utf8Length(v) <= max;
  };
}

const isBytes = (v: unknown): boolean => v instanceof Uint8Array;
const isBytesOrNull = (v: unknown): boolean => v === null || v instanceof Uint8Array;
const isBool = (v: unknown): boolean => typeof v === 'boolean';
const isUint = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isPositive = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;
/** Durations a node arms a timer for (lock leases and waits): at most 2^31 - 1 ms, the longest a timer takes. */
export const MAX_LOCK_DURATION_MS = 2 ** 31 - 1;
const isLease = (v: unknown): boolean => isPositive(v) && (v as number) <= MAX_LOCK_DURATION_MS;
const isWait = (v: unknown): boolean => isUint(v) && (v as number) <= MAX_LOCK_DURATION_MS;
const LEASE = `a positive integer of at most ${MAX_LOCK_DURATION_MS} (ms)`;
const WAIT = `an integer from 0 to ${MAX_LOCK_DURATION_MS} (ms)`;
const isInt = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v);
const isU16 = (v: unknown): boolean => typeof v === 'number' && (v & 0xffff) === v;
const isU32 = (v: unknown): boolean => typeof v === 'number' && v >>> 0 === v;
const isCacheName = stringOf(1, MAX_CACHE_NAME_BYTES);
const isLabel = stringOf(0, MAX_LABEL_BYTES);
const isNonEmptyLabel = stringOf(1, MAX_LABEL_BYTES);
const isScanCount = (v: unknown): boolean => isPositive(v) && (v as number) <= MAX_SCAN_COUNT;
const isBytesArray = (v: unknown): boolean => {
  if (!Array.isArray(v)) return false;
  for (const x of v) if (!(x instanceof Uint8Array)) return false;
  return true;
};
const isBytesOrNullArray = (v: unknown): boolean => {
  if (!Array.isArray(v)) return false;
  for (const x of v) if (x !== null && !(x instanceof Uint8Array)) return false;
  return true;
};
const isEntries = (v: unknown): boolean => {
  if (!Array.isArray(v)) return false;
  for (const e of v) {
    if (!Array.isArray(e) || e.length !== 2 || !(e[0] instanceof Uint8Array) || !(e[1] instanceof Uint8Array)) return false;
  }
  return true;
};

/** A MessagePack map as decoded: a plain object (not an array, byte array, Date, ...). */
export function isMap(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

interface Field {
  readonly name: string;
  readonly check: (v: unknown) => boolean;
  readonly expect: string;
  readonly optional: boolean;
}

function req(name: string, check: (v: unknown) => boolean, expect: string): Field {
  return { name, check, expect, optional: false };
}
function opt(name: string, check: (v: unknown) => boolean, expect: string): Field {
  return { name, check, expect, optional: true };
}

const UINT = 'a non-negative safe integer';
const BYTES = 'bytes (bin)';
const CACHE = `a cache name (string of 1..${MAX_CACHE_NAME_BYTES} UTF-8 bytes)`;

function bad(message: string): ProtocolError {
  return new ProtocolError(message, ErrorCode.BAD_REQUEST);
}

/** Short human description of a decoded value, for error messages. */
export function describeValue(v: unknown): string {
  if (v === null) return 'nil';
  if (v instanceof Uint8Array) return `bin(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (typeof v === 'string') return v.length > 40 ? `string(${v.length})` : JSON.stringify(v);
  switch (typeof v) {
    case 'number':
    case 'boolean':
    case 'bigint':
      return v.toString();
    case 'undefined':
      return 'undefined';
    case 'object':
      return 'map';
    default:
      return typeof v;
  }
}

/**
 * Checks `p` is a map whose fields match `fields`. With `strict`, fields not listed are rejected.
 * Fields whose value is `undefined` (only possible for payloads built in JS) count as absent.
 */
function checkFields(p: unknown, fields: readonly Field[], what: string, strict: boolean): void {
  if (!isMap(p)) throw bad(`${what}: payload must be a map, got ${describeValue(p)}`);
  let present = 0;
  for (const f of fields) {
    const v = p[f.name];
    if (v === undefined) {
      if (!f.optional) throw bad(`${what}: missing field "${f.name}" (${f.expect})`);
      continue;
    }
    if (!f.check(v)) throw bad(`${what}: field "${f.name}" must be ${f.expect}, got ${describeValue(v)}`);
    present++;
  }
  if (!strict) return;
  let count = 0;
  for (const k in p) if (p[k] !== undefined) count++;
  if (count !== present) {
    for (const k in p) {
      if (p[k] !== undefined && !fields.some((f) => f.name === k)) throw bad(`${what}: unknown field "${k}"`);
    }
  }
}

const key = req('key', isBytes, BYTES);
const cache = req('cache', isCacheName, CACHE);
const seq = req('seq', isUint, UINT);
const value = req('value', isBytes, BYTES);
/**
 * Longest time to live a write may give (`ttlMs`): 2^52 ms, some 142,000 years, whose expiry
 * (now + ttlMs) stays a safe integer. Also the longest default TTL of a cache, which the node
 * checks (`config.ttlMs`). A longer `ttlMs` of a write passed here: the node stored it while
 * now + ttlMs was still a safe integer, and refused it past that, a bound that moves with the clock.
 */
export const MAX_TTL_MS = 2 ** 52;
const isTtl = (v: unknown): boolean => isUint(v) && (v as number) <= MAX_TTL_MS;
const ttl = opt('ttlMs', isTtl, `an integer from 0 to ${MAX_TTL_MS} (ms; a longer ttlMs is too large for an expiry time)`);
const lockName = req('name', isBytes, BYTES);
/** Longest lock owner id, in characters (ASCII). */
export const MAX_LOCK_OWNER = 64;
const isOwner = (v: unknown): boolean => {
  if (typeof v !== 'string' || v.length < 1 || v.length > MAX_LOCK_OWNER) return false;
  for (let i = 0; i < v.length; i++) if (v.charCodeAt(i) > 0x7f) return false;
  return true;
};
const owner = opt('owner', isOwner, `an ASCII string of 1..${MAX_LOCK_OWNER} characters`);
const ack = opt('ack', isUint, UINT);
/** `seq` and the optional `ack` of every mutation. */
const mut = [seq, ack] as const;

const isLossPolicy = (v: unknown): boolean => v === 'READ_WRITE_SAFE' || v === 'READ_ONLY_SAFE' || v === 'IGNORE';
const CACHE_CONFIG_FIELDS: readonly Field[] = [
  opt('ttlMs', isUint, UINT),
  opt('backups', isUint, UINT),
  opt('partitionLossPolicy', isLossPolicy, 'READ_WRITE_SAFE | READ_ONLY_SAFE | IGNORE'),
];
const isCacheConfig = (v: unknown): boolean => {
  try {
    checkFields(v, CACHE_CONFIG_FIELDS, 'config', true);
    return true;
  } catch {
    return false;
  }
};

/** Fields of each client op's request payload. */
const REQUEST_FIELDS: Readonly<Record<number, readonly Field[]>> = {
  [Op.HEARTBEAT]: [],
  [Op.TOPOLOGY]: [opt('knownVersion', isUint, UINT)],
  [Op.CACHE_CREATE]: [cache, req('config', isCacheConfig, 'a map { ttlMs?: uint, backups?: uint, partitionLossPolicy?: READ_WRITE_SAFE | READ_ONLY_SAFE | IGNORE }')],
  [Op.CACHE_GET]: [cache, key],
  [Op.CACHE_GET_ALL]: [cache, req('keys', isBytesArray, 'an array of bin')],
  [Op.CACHE_PUT]: [cache, key, ...mut, value, ttl],
  [Op.CACHE_PUT_ALL]: [cache, ...mut, req('entries', isEntries, 'an array of [bin, bin] pairs'), ttl],
  [Op.CACHE_PUT_IF_ABSENT]: [cache, key, ...mut, value, ttl],
  [Op.CACHE_REPLACE]: [cache, key, ...mut, value, ttl],
  [Op.CACHE_REPLACE_IF_EQUALS]: [cache, key, ...mut, req('expected', isBytes, BYTES), value, ttl],
  [Op.CACHE_REMOVE]: [cache, key, ...mut],
  [Op.CACHE_REMOVE_IF_EQUALS]: [cache, key, ...mut, req('expected', isBytes, BYTES)],
  [Op.CACHE_GET_AND_PUT]: [cache, key, ...mut, value, ttl],
  [Op.CACHE_GET_AND_REMOVE]: [cache, key, ...mut],
  [Op.CACHE_INCREMENT]: [cache, key, ...mut, req('delta', isInt, 'a safe integer'), opt('initial', isInt, 'a safe integer'), ttl],
  [Op.CACHE_CONTAINS_KEY]: [cache, key],
  [Op.CACHE_SIZE]: [cache],
  [Op.CACHE_CLEAR]: [cache, ...mut],
  [Op.CACHE_SCAN]: [
    cache,
    req('partition', isUint, UINT),
    req('cursor', isBytesOrNull, 'bin or nil'),
    req('count', isScanCount, `an integer in 1..${MAX_SCAN_COUNT}`),
  ],
  [Op.LOCK_TRY_ACQUIRE]: [...mut, lockName, owner, req('leaseMs', isLease, LEASE)],
  [Op.LOCK_ACQUIRE]: [...mut, lockName, owner, req('leaseMs', isLease, LEASE), req('waitMs', isWait, WAIT)],
  [Op.LOCK_RELEASE]: [...mut, lockName, owner, req('token', isUint, UINT)],
  [Op.LOCK_RENEW]: [...mut, lockName, owner, req('token', isUint, UINT), req('leaseMs', isLease, LEASE)],
  [Op.LOCK_TRY_ACQUIRE_GET]: [cache, key, ...mut, owner, req('leaseMs', isLease, LEASE), opt('ifAbsent', isBool, 'a boolean')],
  [Op.LOCK_PUT_RELEASE]: [cache, key, ...mut, owner, req('token', isUint, UINT), value, ttl],
};

const applied = [req('applied', isBool, 'a boolean')];
const valueOrNull = [req('value', isBytesOrNull, 'bin or nil')];
const lockResult = [req('acquired', isBool, 'a boolean'), opt('token', isUint, UINT), opt('heldForMs', isUint, UINT)];

const NODE_INFO_FIELDS: readonly Field[] = [
  req('id', isNonEmptyLabel, 'a node id'),
  req('host', isLabel, 'a host string'),
  req('port', isU16, 'a u16'),
  opt('zone', isLabel, 'a zone string'),
  req('alive', isBool, 'a boolean'),
];
const PARTITION_MAP_FIELDS: readonly Field[] = [
  req('version', isUint, UINT),
  req('partitions', isPositive, 'a positive safe integer'),
  req('backups', isUint, UINT),
  req('nodes', Array.isArray, 'an array of node infos'),
  req('primaries', Array.isArray, 'an array of node indexes'),
];

function checkPartitionMap(p: unknown, what: string): void {
  checkFields(p, PARTITION_MAP_FIELDS, what, true);
  const m = p as { partitions: number; nodes: unknown[]; primaries: unknown[] };
  m.nodes.forEach((n, i) => checkFields(n, NODE_INFO_FIELDS, `${what} nodes[${i}]`, true));
  if (m.primaries.length !== m.partitions) {
    throw bad(`${what}: primaries has ${m.primaries.length} entries for ${m.partitions} partitions`);
  }
  for (const x of m.primaries) {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < -1 || x >= m.nodes.length) {
      throw bad(`${what}: primaries entry ${describeValue(x)} is not -1 or an index into nodes`);
    }
  }
}

/** Fields of each client op's response payload (TOPOLOGY is checked by checkPartitionMap). */
const RESPONSE_FIELDS: Readonly<Record<number, readonly Field[]>> = {
  [Op.HEARTBEAT]: [],
  [Op.TOPOLOGY]: PARTITION_MAP_FIELDS,
  [Op.CACHE_CREATE]: [],
  [Op.CACHE_GET]: valueOrNull,
  [Op.CACHE_GET_ALL]: [req('values', isBytesOrNullArray, 'an array of bin or nil')],
  [Op.CACHE_PUT]: [],
  [Op.CACHE_PUT_ALL]: [],
  [Op.CACHE_PUT_IF_ABSENT]: applied,
  [Op.CACHE_REPLACE]: applied,
  [Op.CACHE_REPLACE_IF_EQUALS]: applied,
  [Op.CACHE_REMOVE]: applied,
  [Op.CACHE_REMOVE_IF_EQUALS]: applied,
  [Op.CACHE_GET_AND_PUT]: valueOrNull,
  [Op.CACHE_GET_AND_REMOVE]: valueOrNull,
  [Op.CACHE_INCREMENT]: [req('value', isInt, 'a safe integer')],
  [Op.CACHE_CONTAINS_KEY]: [req('found', isBool, 'a boolean')],
  [Op.CACHE_SIZE]: [req('size', isUint, UINT)],
  [Op.CACHE_CLEAR]: [],
  [Op.CACHE_SCAN]: [req('keys', isBytesArray, 'an array of bin'), req('cursor', isBytesOrNull, 'bin or nil')],
  [Op.LOCK_TRY_ACQUIRE]: lockResult,
  [Op.LOCK_ACQUIRE]: lockResult,
  [Op.LOCK_RELEASE]: [req('released', isBool, 'a boolean')],
  [Op.LOCK_RENEW]: [req('renewed', isBool, 'a boolean')],
  [Op.LOCK_TRY_ACQUIRE_GET]: [...lockResult, ...valueOrNull],
  [Op.LOCK_PUT_RELEASE]: [req('released', isBool, 'a boolean')],
};

const OP_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));

/** Name of an op code ("CACHE_GET"), or "op <n>" when unknown. */
export function opName(op: number): string {
  return OP_NAMES[op] ?? `op ${op}`;
}

/** First op code of the node-internal (peer) range. */
export const FIRST_PEER_OP = 100;

/** Whether `op` is a node-to-node op (>= 100), whose payload is opaque to this package. */
export function isPeerOp(op: number): boolean {
  return op >= FIRST_PEER_OP;
}

/**
 * Checks a request's payload against its op's shape. Throws ProtocolError with wire code
 * UNKNOWN_OP for an op code below 100 that this version does not define, BAD_REQUEST for a payload
 * that does not match. Peer ops (>= 100) pass unchecked.
 */
export function validateRequest(frame: RequestFrame): void {
  const op = frame.op as number;
  const fields = REQUEST_FIELDS[op];
  if (fields === undefined) {
    if (typeof op === 'number' && isPeerOp(op) && op <= 0xffff) return;
    throw new ProtocolError(`unknown op code ${String(op)}`, ErrorCode.UNKNOWN_OP);
  }
  checkFields(frame.payload, fields, opName(op), true);
}

/**
 * Checks a (non-error) response payload against the shape of `op`'s result; the client side's
 * counterpart of validateRequest. Peer ops pass unchecked; unknown client ops throw UNKNOWN_OP.
 */
export function validateResponse(op: number, payload: unknown): void {
  if (op === Op.TOPOLOGY) {
    checkPartitionMap(payload, 'TOPOLOGY response');
    return;
  }
  const fields = RESPONSE_FIELDS[op];
  if (fields === undefined) {
    if (isPeerOp(op) && op <= 0xffff) return;
    throw new ProtocolError(`unknown op code ${op}`, ErrorCode.UNKNOWN_OP);
  }
  checkFields(payload, fields, `${opName(op)} response`, true);
}

// ---------------------------------------------------------------------------------------------
// Handshake, errors, pushes (checked by the frame decoder itself)

/** A frame size limit announced in a handshake: what a `maxFrameSize` option accepts. */
const isFrameLimit = (v: unknown): boolean => isU32(v) && (v as number) >= MIN_MAX_FRAME_SIZE;
const FRAME_LIMIT = `a u32 of at least ${MIN_MAX_FRAME_SIZE}`;

const HANDSHAKE_REQUEST_FIELDS: readonly Field[] = [
  req('minVersion', isU16, 'a u16'),
  req('maxVersion', isU16, 'a u16'),
  req('features', isU32, 'a u32'),
  req('sessionId', stringOf(1, MAX_SESSION_ID_BYTES), `a string of 1..${MAX_SESSION_ID_BYTES} UTF-8 bytes`),
  opt('authToken', stringOf(0, MAX_AUTH_TOKEN_BYTES), `a string of at most ${MAX_AUTH_TOKEN_BYTES} UTF-8 bytes`),
  opt('clientName', isLabel, `a string of at most ${MAX_LABEL_BYTES} UTF-8 bytes`),
  opt('clusterId', isLabel, `a string of at most ${MAX_LABEL_BYTES} UTF-8 bytes`),
  opt('maxFrameSize', isFrameLimit, FRAME_LIMIT),
];

export function checkHandshakeRequest(body: unknown): void {
  checkFields(body, HANDSHAKE_REQUEST_FIELDS, 'HANDSHAKE', false);
  const b = body as { minVersion: number; maxVersion: number };
  if (b.minVersion > b.maxVersion) throw bad(`HANDSHAKE: minVersion ${b.minVersion} > maxVersion ${b.maxVersion}`);
}

const HANDSHAKE_OK_FIELDS: readonly Field[] = [
  req('version', isU16, 'a u16'),
  req('features', isU32, 'a u32'),
  req('nodeId', isNonEmptyLabel, `a string of 1..${MAX_LABEL_BYTES} UTF-8 bytes`),
  req('clusterId', isLabel, `a string of at most ${MAX_LABEL_BYTES} UTF-8 bytes`),
  req('topologyVersion', isUint, UINT),
  req('partitions', (v) => isPositive(v) && isU32(v), 'a positive u32'),
  req('idleTimeoutMs', isUint, UINT),
  opt('maxFrameSize', isFrameLimit, FRAME_LIMIT),
];

export function checkHandshakeOk(body: unknown): void {
  checkFields(body, HANDSHAKE_OK_FIELDS, 'HANDSHAKE_OK', false);
}

const isMessage = stringOf(0, MAX_ERROR_MESSAGE_BYTES);
const CODED_MESSAGE_FIELDS: readonly Field[] = [
  req('code', isU16, 'a u16 error code'),
  req('message', isMessage, `a string of at most ${MAX_ERROR_MESSAGE_BYTES} UTF-8 bytes`),
];

export function checkHandshakeError(body: unknown): void {
  checkFields(body, CODED_MESSAGE_FIELDS, 'HANDSHAKE_ERROR', false);
}

const ERROR_PAYLOAD_FIELDS: readonly Field[] = [...CODED_MESSAGE_FIELDS, opt('partition', isUint, UINT)];

/** Checks the payload of a response with the ERROR flag. */
export function checkErrorPayload(p: unknown): asserts p is ErrorPayload {
  checkFields(p, ERROR_PAYLOAD_FIELDS, 'error payload', false);
}

const PUSH_FIELDS: Readonly<Record<number, readonly Field[]>> = {
  [PushKind.TOPOLOGY_CHANGED]: [req('version', isUint, UINT)],
  [PushKind.NODE_STOPPING]: [],
};

/** Checks a push's payload for the push kinds this version knows; others pass (ignore them). */
export function checkPushPayload(kind: number, p: unknown): void {
  const fields = PUSH_FIELDS[kind];
  if (fields === undefined) return;
  checkFields(p, fields, `push ${kind}`, false);
}
