/**
 * Plans of the mutating cache ops: what an op returns and the effects it has, decided from the
 * current state without changing it (the store applies the effects). See index.ts, "Ops".
 */
import { decode, encode } from '@msgpack/msgpack';
import { ErrorCode, Op } from '@gridlink/protocol';
import { isBytes, type Bytes } from './bytes.js';
import { NONE, type EntryArena } from './entries.js';
import { StoreError, badRequest } from './errors.js';
import { bytesField, cacheName, optSafeInt, safeInt, valueTypeError, type Payload } from './payload.js';
import type { Effect } from './types.js';

export interface CachePlan {
  result: unknown;
  effects: Effect[];
}

/** What planning reads from the store. */
export interface CacheOpContext {
  readonly entries: EntryArena;
  /** Absolute expiry of a write to `cache` with the op's `ttlMs` (0 = never). */
  expireAtFor(cache: string, ttlMs: number | undefined, now: number): number;
  /** Slot of the live entry (NONE when absent or expired; an expired one is removed). */
  live(cache: string, key: Bytes, now: number): number;
}

// Constant outcomes are shared (and frozen): they are remembered per mutation for the dedup
// window, so not allocating one per write matters.
export const EMPTY: Record<string, never> = Object.freeze({});
const APPLIED = Object.freeze({ applied: true });
const NOT_APPLIED = Object.freeze({ applied: false });
const applied = (ok: boolean): unknown => (ok ? APPLIED : NOT_APPLIED);

/** Reads a stored counter: the MessagePack encoding of a safe integer. */
export function decodeCounter(value: Bytes): number {
  let v: unknown;
  try {
    v = decode(value, { useBigInt64: true });
  } catch {
    throw valueTypeError('stored value is not a MessagePack integer');
  }
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw valueTypeError('stored integer is outside the safe integer range');
    }
    return Number(v);
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  throw valueTypeError('stored value is not a MessagePack integer');
}

export function encodeCounter(n: number): Bytes {
  return encode(n);
}

/** Effects reference the request's byte arrays; the store itself keeps its own copies. */
function put(cache: string, key: Bytes, value: Bytes, expireAt: number): Effect {
  return { t: 'put', cache, key, value, expireAt };
}

/** An entry's value for an outcome that is remembered: an own buffer. */
function valueOf(e: EntryArena, slot: number): Bytes | null {
  return slot === NONE ? null : e.ownValue(slot);
}

export function planCacheOp(ctx: CacheOpContext, op: Op, p: Payload, now: number): CachePlan {
  const e = ctx.entries;
  switch (op) {
    case Op.CACHE_PUT: {
      const cache = cacheName(p);
      const key = bytesField(p, 'key');
      const value = bytesField(p, 'value');
      const expireAt = ctx.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
      return { result: EMPTY, effects: [put(cache, key, value, expireAt)] };
    }
    case Op.CACHE_PUT_ALL: {
      const cache = cacheName(p);
      const entries = p['entries'];
      if (!Array.isArray(entries)) throw badRequest('entries must be an array of [key, value]');
      const expireAt = ctx.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
      const effects: Effect[] = [];
      for (const pair of entries as unknown[]) {
        if (!Array.isArray(pair) || pair.length !== 2 || !isBytes(pair[0]) || !isBytes(pair[1])) {
          throw badRequest('entries must be an array of [key, value]');
        }
        effects.push(put(cache, pair[0], pair[1], expireAt));
      }
      return { result: EMPTY, effects };
    }
    case Op.CACHE_PUT_IF_ABSENT:
    case Op.CACHE_REPLACE:
    case Op.CACHE_GET_AND_PUT: {
      const cache = cacheName(p);
      const key = bytesField(p, 'key');
      const value = bytesField(p, 'value');
      const expireAt = ctx.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
      const cur = ctx.live(cache, key, now);
      const effects = [put(cache, key, value, expireAt)];
      if (op === Op.CACHE_GET_AND_PUT) return { result: { value: valueOf(e, cur) }, effects };
      const ok = op === Op.CACHE_PUT_IF_ABSENT ? cur === NONE : cur !== NONE;
      return { result: applied(ok), effects: ok ? effects : [] };
    }
    case Op.CACHE_REPLACE_IF_EQUALS: {
      const cache = cacheName(p);
      const key = bytesField(p, 'key');
      const expected = bytesField(p, 'expected');
      const value = bytesField(p, 'value');
      const expireAt = ctx.expireAtFor(cache, optSafeInt(p, 'ttlMs', 0), now);
      const cur = ctx.live(cache, key, now);
      const ok = cur !== NONE && e.valueEquals(cur, expected);
      return { result: applied(ok), effects: ok ? [put(cache, key, value, expireAt)] : [] };
    }
    case Op.CACHE_REMOVE:
    case Op.CACHE_REMOVE_IF_EQUALS:
    case Op.CACHE_GET_AND_REMOVE: {
      const cache = cacheName(p);
      const key = bytesField(p, 'key');
      const expected = op === Op.CACHE_REMOVE_IF_EQUALS ? bytesField(p, 'expected') : null;
      const cur = ctx.live(cache, key, now);
      const ok = cur !== NONE && (expected === null || e.valueEquals(cur, expected));
      const effects: Effect[] = ok ? [{ t: 'del', cache, key }] : [];
      if (op === Op.CACHE_GET_AND_REMOVE) return { result: { value: valueOf(e, cur) }, effects };
      return { result: applied(ok), effects };
    }
    case Op.CACHE_INCREMENT: {
      const cache = cacheName(p);
      const key = bytesField(p, 'key');
      const delta = safeInt(p, 'delta');
      const initial = optSafeInt(p, 'initial');
      const ttlMs = optSafeInt(p, 'ttlMs', 0);
      const cur = ctx.live(cache, key, now);
      const base = cur === NONE ? (initial ?? 0) : decodeCounter(e.valueBytes(cur));
      const next = base + delta;
      if (!Number.isSafeInteger(next)) {
        throw new StoreError(ErrorCode.BAD_REQUEST, 'overflow', `increment of ${base} by ${delta} leaves the safe integer range`);
      }
      // An increment keeps an existing entry's expiry unless it sets a new TTL.
      const expireAt = cur !== NONE && ttlMs === undefined ? e.expireAt(cur) : ctx.expireAtFor(cache, ttlMs, now);
      return { result: { value: next }, effects: [put(cache, key, encodeCounter(next), expireAt)] };
    }
    case Op.CACHE_CLEAR:
      return { result: EMPTY, effects: [{ t: 'clear', cache: cacheName(p) }] };
    default:
      throw new StoreError(ErrorCode.UNKNOWN_OP, 'unknown-op', `op ${String(op)} is not a mutating op`);
  }
}
