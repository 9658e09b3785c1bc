/**
 * Checks of replication records from peers (ADR 0005): a record is turned into the store's own
 * typed form or refused with StoreError 'bad-record' before anything is applied. Recorded
 * outcomes are copied here (they are kept as given); entry bytes are copied when stored.
 */
import { ErrorCode } from '@gridlink/protocol';
import { isBytes, type Bytes } from './bytes.js';
import { StoreError } from './errors.js';
import { MAX_CACHE_NAME, MAX_OWNER, isSafeNonNegative, ownResult, type Payload } from './payload.js';
import type { DedupOutcome, Effect, ReplicationRecord } from './types.js';

export function badRecord(message: string): StoreError {
  return new StoreError(ErrorCode.BAD_REQUEST, 'bad-record', `replication record: ${message}`);
}

export function isOwner(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_OWNER;
}

function normaliseEffect(v: unknown): Effect {
  if (typeof v !== 'object' || v === null) throw badRecord('effect must be an object');
  const e = v as Payload;
  const cache = (): string => {
    const c = e['cache'];
    if (typeof c !== 'string' || c.length === 0 || c.length > MAX_CACHE_NAME) throw badRecord('effect cache must be a name');
    return c;
  };
  const bytes = (f: string): Bytes => {
    const b = e[f];
    if (!isBytes(b)) throw badRecord(`effect ${f} must be bytes`);
    return b;
  };
  const num = (f: string): number => {
    const n = e[f];
    if (!isSafeNonNegative(n)) throw badRecord(`effect ${f} must be a non-negative integer`);
    return n;
  };
  switch (e['t']) {
    case 'put':
      return { t: 'put', cache: cache(), key: bytes('key'), value: bytes('value'), expireAt: num('expireAt') };
    case 'del':
      return { t: 'del', cache: cache(), key: bytes('key') };
    case 'clear':
      return { t: 'clear', cache: cache() };
    case 'lock': {
      const session = e['session'];
      if (typeof session !== 'string') throw badRecord('lock effect session must be a string');
      const owner = e['owner'];
      if (owner === undefined || owner === null) return { t: 'lock', name: bytes('name'), session, token: num('token'), expireAt: num('expireAt') };
      if (!isOwner(owner)) throw badRecord('lock effect owner must be a short string');
      return { t: 'lock', name: bytes('name'), session, owner, token: num('token'), expireAt: num('expireAt') };
    }
    case 'unlock':
      return { t: 'unlock', name: bytes('name') };
    default:
      throw badRecord(`unknown effect ${String(e['t'])}`);
  }
}

export function normaliseDedup(v: unknown, fail: (m: string) => StoreError): DedupOutcome {
  if (typeof v !== 'object' || v === null) throw fail('dedup must be an object');
  const d = v as Payload;
  if (typeof d['session'] !== 'string' || !isSafeNonNegative(d['seq']) || !isSafeNonNegative(d['op'])) {
    throw fail('dedup needs session, seq and op');
  }
  const out: DedupOutcome = { session: d['session'], seq: d['seq'], op: d['op'], result: ownResult(d['result']) };
  const ack = d['ack'];
  if (ack !== undefined && ack !== null) {
    if (!isSafeNonNegative(ack) || ack > d['seq']) throw fail('dedup ack must be an integer not above seq');
    out.ack = ack;
  }
  return out;
}

export function normaliseRecord(v: unknown): ReplicationRecord {
  if (typeof v !== 'object' || v === null) throw badRecord('must be an object');
  const r = v as Payload;
  if (r['v'] !== 1) throw badRecord(`unsupported version ${String(r['v'])}`);
  if (!isSafeNonNegative(r['counter']) || r['counter'] < 1) throw badRecord('counter must be a positive integer');
  if (typeof r['at'] !== 'number' || !Number.isFinite(r['at'])) throw badRecord('at must be a number');
  if (!Array.isArray(r['effects'])) throw badRecord('effects must be an array');
  const dedup = r['dedup'] === null || r['dedup'] === undefined ? null : normaliseDedup(r['dedup'], badRecord);
  return { v: 1, counter: r['counter'], at: r['at'], effects: (r['effects'] as unknown[]).map(normaliseEffect), dedup };
}
