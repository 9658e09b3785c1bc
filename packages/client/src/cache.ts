/**
 * A named cache: typed key/value operations over the grid. Keys are encoded with the affinity
 * package's canonical encoding; values with the cache's serializer (MessagePack by default).
 */
import { InvalidKeyError, decodeKey, encodeKey, partitionOfBytes, type GridKey } from '@gridlink/affinity';
import { MAX_SCAN_COUNT, MAX_TTL_MS, Op, type CacheConfig } from '@gridlink/protocol';
import { NO_OPTIONS, callOptionsError, optionNamesError, type Invoker } from './invoker.js';
import type { PartitionService } from './partition-service.js';
import type { ConnectionManager } from './connection-manager.js';
import { splitByPrimary } from './routing.js';
import { copyBytes, msgpackSerializer, type Serializer } from './serializer.js';
import { describe } from './config.js';
import { GridClosedError, GridConfigError, GridError, GridSerializationError } from './errors.js';

export interface CacheOptions<V> {
  /** Value serializer; MessagePack by default. */
  serializer?: Serializer<V>;
}

export interface OpOptions {
  /** Abort this operation. */
  signal?: AbortSignal;
  /** Deadline for this operation instead of operationTimeout (ms). */
  timeoutMs?: number;
}

export interface PutOptions extends OpOptions {
  /** Time to live of the entry (ms); absent = the cache's default. */
  ttlMs?: number;
}

export interface IncrementOptions extends PutOptions {
  /** Value to start from when the key is absent (default 0): a safe integer. */
  initial?: number;
}

export interface ScanOptions extends OpOptions {
  /** Keys per request, 1 to 65536. Default 256. */
  batchSize?: number;
}

/** Internal context shared by caches and locks. */
export interface ClientContext {
  invoker: Invoker;
  partitions: PartitionService;
  manager: ConnectionManager;
  partitionCount(): number;
  partitionAware: boolean;
  operationTimeout: number;
}

/** A `ttlMs` option: absent, or an integer from 0 (no expiry) to the protocol's MAX_TTL_MS (2^52). */
export function checkTtl(ttlMs: number | undefined): void {
  if (ttlMs === undefined) return;
  if (!Number.isInteger(ttlMs) || ttlMs < 0 || ttlMs > MAX_TTL_MS) throw new GridConfigError('ttlMs', `must be an integer from 0 to ${MAX_TTL_MS} (ms), got ${describe(ttlMs)}`);
}

function opts(o: OpOptions | undefined, partition?: number): { partition?: number; signal?: AbortSignal; timeoutMs?: number } {
  const bad = optionNamesError(o);
  if (bad !== null) throw bad;
  const out: { partition?: number; signal?: AbortSignal; timeoutMs?: number } = {};
  if (partition !== undefined) out.partition = partition;
  if (o?.signal !== undefined) out.signal = o.signal;
  if (o?.timeoutMs !== undefined) out.timeoutMs = o.timeoutMs;
  return out;
}

function withTtl<T extends Record<string, unknown>>(payload: T, ttlMs: number | undefined): T {
  checkTtl(ttlMs);
  if (ttlMs !== undefined) (payload as Record<string, unknown>).ttlMs = ttlMs;
  return payload;
}

const toUndefined = (): undefined => undefined;

/** A serializer's failure as a GridSerializationError (its cause what was thrown); GridErrors pass. */
function serializationError(what: string, e: unknown): GridError {
  if (e instanceof GridError) return e;
  return new GridSerializationError(`cannot ${what} value: ${e instanceof Error ? e.message : describe(e)}`, { cause: e });
}

export class GridCache<K extends GridKey = GridKey, V = unknown> {
  private readonly serializer: Serializer<V>;

  constructor(
    readonly name: string,
    private readonly ctx: ClientContext,
    options: CacheOptions<V> = {},
  ) {
    this.serializer = options.serializer ?? (msgpackSerializer as Serializer<V>);
  }

  private key(key: K): { bytes: Uint8Array; partition: number | undefined } {
    const bytes = encodeKey(key);
    const n = this.ctx.partitionCount();
    return { bytes, partition: n > 0 ? partitionOfBytes(bytes, n) : undefined };
  }

  private value(bytes: Uint8Array | null | undefined): V | undefined {
    if (bytes === null || bytes === undefined) return undefined;
    try {
      return this.serializer.deserialize(bytes);
    } catch (e) {
      throw serializationError('deserialise', e);
    }
  }

  /**
   * @internal Serialises a value with this cache's serializer (also used by the compound lock
   * ops). What a custom serializer throws, or a result that is not bytes, is a
   * GridSerializationError here, before anything is sent; another ArrayBufferView (a Uint16Array,
   * a DataView) is taken as its bytes.
   */
  encodeValue(value: V): Uint8Array {
    let out: unknown;
    try {
      out = this.serializer.serialize(value);
    } catch (e) {
      throw serializationError('serialise', e);
    }
    if (out instanceof Uint8Array) return out;
    if (ArrayBuffer.isView(out)) return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    throw new GridSerializationError(`cannot serialise value: the serializer returned ${describe(out)}, not a Uint8Array`);
  }

  /** @internal Deserialises a value read by a compound lock op (undefined when absent). */
  decodeValue(bytes: Uint8Array | null | undefined): V | undefined {
    return this.value(bytes);
  }

  private call<T>(op: Op, payload: Record<string, unknown>, o: OpOptions | undefined, partition?: number): Promise<T> {
    return this.ctx.invoker.invoke<T>(op, payload, opts(o, partition));
  }

  /** Creates the cache on the cluster with the given config (idempotent). */
  async create(config: CacheConfig = {}, o?: OpOptions): Promise<void> {
    await this.call(Op.CACHE_CREATE, { cache: this.name, config }, o);
  }

  /** A `{ value }` response payload as the caller's value (undefined when absent). */
  private readonly valueOf = (payload: unknown): V | undefined => this.value((payload as { value: Uint8Array | null }).value);

  get(key: K, o?: OpOptions): Promise<V | undefined> {
    try {
      const bytes = encodeKey(key);
      const n = this.ctx.partitionCount();
      const partition = n > 0 ? partitionOfBytes(bytes, n) : undefined;
      if (o === undefined) return this.ctx.invoker.invoke(Op.CACHE_GET, { cache: this.name, key: bytes }, NO_OPTIONS, this.valueOf, partition);
      return this.ctx.invoker.invoke(Op.CACHE_GET, { cache: this.name, key: bytes }, opts(o, partition), this.valueOf);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /** Values for many keys (undefined where absent), split by primary and fetched in parallel. */
  async getAll(keys: readonly K[], o?: OpOptions): Promise<(V | undefined)[]> {
    if (!Array.isArray(keys)) throw new GridConfigError('keys', `must be an array of keys, got ${describe(keys)}`);
    if (keys.length === 0) {
      // Nothing to send, but a closed client refuses every call alike, and so are bad options.
      if (this.ctx.invoker.isClosed) throw new GridClosedError();
      const bad = optionNamesError(o) ?? callOptionsError(o ?? {});
      if (bad !== null) throw bad;
      return [];
    }
    const encoded = keys.map((k) => this.key(k));
    const out = new Array<V | undefined>(keys.length);
    const groups = this.group(encoded.map((e) => e.partition));
    await Promise.all(
      [...groups].map(async ([partition, idx]) => {
        const r = await this.call<{ values: (Uint8Array | null)[] }>(
          Op.CACHE_GET_ALL,
          { cache: this.name, keys: idx.map((i) => (encoded[i] as { bytes: Uint8Array }).bytes) },
          o,
          partition,
        );
        idx.forEach((i, j) => {
          out[i] = this.value(r.values[j]);
        });
      }),
    );
    return out;
  }

  /** Groups item indices by primary; returns a representative partition per group for routing. */
  private group(partitions: (number | undefined)[]): Map<number | undefined, number[]> {
    const healthy = new Set(this.ctx.manager.healthyNodeIds());
    const parts = partitions.map((p) => p ?? -1);
    const byNode = splitByPrimary(parts, this.ctx.partitions.map, healthy, this.ctx.partitionAware);
    const out = new Map<number | undefined, number[]>();
    for (const [node, idx] of byNode) {
      const rep = node === null ? undefined : partitions[idx[0] as number];
      // Groups with no connected primary may still be merged under `undefined`.
      const prev = out.get(rep);
      if (prev !== undefined) prev.push(...idx);
      else out.set(rep, idx);
    }
    return out;
  }

  put(key: K, value: V, o?: PutOptions): Promise<void> {
    try {
      const bytes = encodeKey(key);
      const n = this.ctx.partitionCount();
      const partition = n > 0 ? partitionOfBytes(bytes, n) : undefined;
      const payload = withTtl({ cache: this.name, key: bytes, value: this.encodeValue(value) }, o?.ttlMs);
      if (o === undefined) return this.ctx.invoker.invoke(Op.CACHE_PUT, payload, NO_OPTIONS, toUndefined, partition);
      return this.ctx.invoker.invoke(Op.CACHE_PUT, payload, opts(o, partition), toUndefined);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
  }

  /**
   * Stores many entries, split by primary and written in parallel. Each group is exactly-once. A
   * key given twice gets its last value. `entries` is an iterable (array, Map) of [key, value]
   * pairs; anything else is GridConfigError naming `entries` or the entry (`entries[3]`).
   */
  async putAll(entries: Iterable<readonly [K, V]> | Map<K, V>, o?: PutOptions): Promise<void> {
    const iterable = typeof entries === 'object' && entries !== null && typeof (entries as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function';
    if (!iterable) throw new GridConfigError('entries', `must be an iterable of [key, value] pairs, got ${describe(entries)}`);
    const list = [...entries];
    list.forEach((e, i) => {
      if (!Array.isArray(e) || e.length !== 2) throw new GridConfigError(`entries[${i}]`, `must be a [key, value] pair, got ${describe(e)}`);
    });
    if (list.length === 0) {
      // Nothing to send, but a closed client refuses every call alike, and so are bad options.
      if (this.ctx.invoker.isClosed) throw new GridClosedError();
      const bad = optionNamesError(o) ?? callOptionsError(o ?? {});
      if (bad !== null) throw bad;
      checkTtl(o?.ttlMs);
      return;
    }
    checkTtl(o?.ttlMs);
    const encoded = list.map(([k, v]) => ({ ...this.key(k), value: this.encodeValue(v) }));
    const groups = this.group(encoded.map((e) => e.partition));
    await Promise.all(
      [...groups].map(([partition, idx]) =>
        this.call(
          Op.CACHE_PUT_ALL,
          withTtl(
            {
              cache: this.name,
              entries: idx.map((i) => {
                const e = encoded[i] as { bytes: Uint8Array; value: Uint8Array };
                return [e.bytes, e.value];
              }),
            },
            o?.ttlMs,
          ),
          o,
          partition,
        ),
      ),
    );
  }

  /** Stores the value only if the key is absent; true when stored. */
  async putIfAbsent(key: K, value: V, o?: PutOptions): Promise<boolean> {
    const k = this.key(key);
    const r = await this.call<{ applied: boolean }>(
      Op.CACHE_PUT_IF_ABSENT,
      withTtl({ cache: this.name, key: k.bytes, value: this.encodeValue(value) }, o?.ttlMs),
      o,
      k.partition,
    );
    return r.applied;
  }

  /** Replaces the value only if the key is present; true when replaced. */
  async replace(key: K, value: V, o?: PutOptions): Promise<boolean> {
    const k = this.key(key);
    const r = await this.call<{ applied: boolean }>(
      Op.CACHE_REPLACE,
      withTtl({ cache: this.name, key: k.bytes, value: this.encodeValue(value) }, o?.ttlMs),
      o,
      k.partition,
    );
    return r.applied;
  }

  /** Replaces the value only if it currently equals `expected` (compared as serialised bytes). */
  async replaceIfEquals(key: K, expected: V, value: V, o?: PutOptions): Promise<boolean> {
    const k = this.key(key);
    const r = await this.call<{ applied: boolean }>(
      Op.CACHE_REPLACE_IF_EQUALS,
      withTtl(
        { cache: this.name, key: k.bytes, expected: this.encodeValue(expected), value: this.encodeValue(value) },
        o?.ttlMs,
      ),
      o,
      k.partition,
    );
    return r.applied;
  }

  /** Removes the key; true when it was present. */
  async remove(key: K, o?: OpOptions): Promise<boolean> {
    const k = this.key(key);
    const r = await this.call<{ applied: boolean }>(Op.CACHE_REMOVE, { cache: this.name, key: k.bytes }, o, k.partition);
    return r.applied;
  }

  /** Removes the key only if its value equals `expected` (compared as serialised bytes). */
  async removeIfEquals(key: K, expected: V, o?: OpOptions): Promise<boolean> {
    const k = this.key(key);
    const r = await this.call<{ applied: boolean }>(
      Op.CACHE_REMOVE_IF_EQUALS,
      { cache: this.name, key: k.bytes, expected: this.encodeValue(expected) },
      o,
      k.partition,
    );
    return r.applied;
  }

  /** Stores the value and returns the previous one. */
  async getAndPut(key: K, value: V, o?: PutOptions): Promise<V | undefined> {
    const k = this.key(key);
    const r = await this.call<{ value: Uint8Array | null }>(
      Op.CACHE_GET_AND_PUT,
      withTtl({ cache: this.name, key: k.bytes, value: this.encodeValue(value) }, o?.ttlMs),
      o,
      k.partition,
    );
    return this.value(r.value);
  }

  /** Removes the key and returns its value. */
  async getAndRemove(key: K, o?: OpOptions): Promise<V | undefined> {
    const k = this.key(key);
    const r = await this.call<{ value: Uint8Array | null }>(Op.CACHE_GET_AND_REMOVE, { cache: this.name, key: k.bytes }, o, k.partition);
    return this.value(r.value);
  }

  /**
   * Adds `delta` to the integer stored at `key` (starting from `initial`, default 0) and returns the
   * new value. Exactly once even when retried after a failover.
   */
  async increment(key: K, delta = 1, o?: IncrementOptions): Promise<number> {
    if (!Number.isSafeInteger(delta)) throw new GridConfigError('delta', `must be a safe integer, got ${describe(delta)}`);
    // Checked here like delta: the node refuses it too, but only after the request took a seq and went out.
    if (o?.initial !== undefined && !Number.isSafeInteger(o.initial)) throw new GridConfigError('initial', `must be a safe integer, got ${describe(o.initial)}`);
    const k = this.key(key);
    const payload: Record<string, unknown> = withTtl({ cache: this.name, key: k.bytes, delta }, o?.ttlMs);
    if (o?.initial !== undefined) payload.initial = o.initial;
    const r = await this.call<{ value: number }>(Op.CACHE_INCREMENT, payload, o, k.partition);
    return Number(r.value);
  }

  async containsKey(key: K, o?: OpOptions): Promise<boolean> {
    const k = this.key(key);
    const r = await this.call<{ found: boolean }>(Op.CACHE_CONTAINS_KEY, { cache: this.name, key: k.bytes }, o, k.partition);
    return r.found;
  }

  /** Number of entries in the cache across the cluster. */
  async size(o?: OpOptions): Promise<number> {
    const r = await this.call<{ size: number }>(Op.CACHE_SIZE, { cache: this.name }, o);
    return Number(r.size);
  }

  /** Removes every entry of the cache. */
  async clear(o?: OpOptions): Promise<void> {
    await this.call(Op.CACHE_CLEAR, { cache: this.name }, o);
  }

  /**
   * Iterates over every key of the cache (as canonical key bytes), partition by partition. Keys
   * written or removed during the scan may or may not be seen; none is seen twice within a
   * partition unless it moved between partitions' owners meanwhile. Each yielded array is a copy
   * the caller may keep; `decodeKey` from `@gridlink/affinity` (or `keys()`) turns it back into a key.
   */
  async *scan(o?: ScanOptions): AsyncGenerator<Uint8Array, void, undefined> {
    for await (const { bytes } of this.scanPages(o)) yield copyBytes(bytes);
  }

  /**
   * Iterates over every key of the cache, decoded: `decodeKey` of each key `scan` yields, with the
   * same options, order and consistency (keys written or removed during the iteration may or may
   * not be seen; none is seen twice within a partition unless it moved between owners meanwhile).
   *
   * Yields `GridKey`, not the cache's `K`: `K` is a compile-time claim of this handle only (another
   * handle or client may have stored other kinds of keys in the same cache), and a decoded key is
   * in the encoding's normal form, which need not be of type `K`: an integer comes back as a
   * `number` when it is a safe integer and as a `bigint` otherwise (`5n` as `5`, `2 ** 60` as
   * `2n ** 60n`, `-0` as `0`), and a `Buffer` key as a plain `Uint8Array`. Narrow with a type check
   * where needed; strings, booleans, non-integral numbers and composites of them come back as
   * they went in. Every yielded key re-encodes to the bytes `scan` yields for it, so it addresses
   * the same entry (`get(key)` finds it).
   *
   * A stored key that is not a canonical encoding (only a writer bypassing the encoder can store
   * one) ends the iteration with `InvalidKeyError` (`GRID_INVALID_KEY`) naming the cache, the
   * partition and the bytes; `scan` still yields such keys as bytes.
   */
  async *keys(o?: ScanOptions): AsyncGenerator<GridKey, void, undefined> {
    for await (const { bytes, partition } of this.scanPages(o)) {
      let key: GridKey;
      try {
        key = decodeKey(bytes);
      } catch (err) {
        if (!(err instanceof InvalidKeyError)) throw err;
        const hex = Buffer.from(bytes.subarray(0, 32)).toString('hex') + (bytes.length > 32 ? '…' : '');
        throw new InvalidKeyError(`cache '${this.name}' partition ${partition} holds key bytes ${hex} that do not decode: ${err.message}`);
      }
      yield key;
    }
  }

  /** Every stored key's bytes as received (not copied), with its partition: what scan and keys share. */
  private async *scanPages(o: ScanOptions | undefined): AsyncGenerator<{ bytes: Uint8Array; partition: number }, void, undefined> {
    const bad = optionNamesError(o);
    if (bad !== null) throw bad;
    // Only an absent batchSize takes the default: null is refused, as ttlMs and timeoutMs are.
    const count = o?.batchSize === undefined ? 256 : o.batchSize;
    // The node refuses a larger count, but only once the first page's request has gone out.
    if (!Number.isInteger(count) || count < 1 || count > MAX_SCAN_COUNT) {
      throw new GridConfigError('batchSize', `must be an integer from 1 to ${MAX_SCAN_COUNT}, got ${describe(count)}`);
    }
    const partitions = this.ctx.partitionCount();
    for (let p = 0; p < partitions; p++) {
      let cursor: Uint8Array | null = null;
      do {
        const r: { keys: Uint8Array[]; cursor: Uint8Array | null } = await this.call(
          Op.CACHE_SCAN,
          { cache: this.name, partition: p, cursor, count },
          o,
          p,
        );
        for (const bytes of r.keys) yield { bytes, partition: p };
        cursor = r.cursor;
      } while (cursor !== null);
    }
  }
}
