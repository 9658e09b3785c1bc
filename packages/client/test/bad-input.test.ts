/**
 * Hostile input to the client's public API, against a real one-node LocalCluster (and scripted
 * nodes where a real one cannot be made to hold or refuse a request on demand). The standard:
 * every input is either accepted or gets a typed error (a GridError, or InvalidKeyError for a
 * key), and nothing else breaks — no operation or sequence number left open, no lock left taken,
 * the connection keeps serving and close() completes.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidKeyError } from '@gridlink/affinity';
import { ErrorCode, Op, ResponseFlag } from '@gridlink/protocol';
import {
  GridClient,
  GridClosedError,
  GridConfigError,
  GridError,
  GridSerializationError,
  GridTimeoutError,
  LockNotHeldError,
  bytesSerializer,
  msgpackSerializer,
  type GridCache,
  type GridKey,
  type LockHandle,
  type Serializer,
} from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { oneNodeGrid } from './helpers/grid.js';
import { rejection, settle, show, waitFor } from './helpers/wait.js';

const grid = oneNodeGrid();

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The option names of the client's calls (one set for every call, as the client's docs say). */
const LOCK_OPTION_NAMES = ['signal', 'timeoutMs', 'ttlMs', 'initial', 'batchSize', 'leaseMs', 'autoRenew', 'ifAbsent', 'waitMs', 'noWait'];

/**
 * The field a refusal of options `o` names when only `names` are options: `options` when they are
 * not an object, else the first name that is not an option; undefined when neither applies.
 */
function expectedOptionsField(o: unknown, names: readonly string[]): string | undefined {
  if (o === undefined || o === null) return undefined;
  if (typeof o !== 'object' || Array.isArray(o)) return 'options';
  return Object.keys(o).find((k) => !names.includes(k));
}

function expectConfigError(e: unknown, field: string | RegExp): void {
  expect(e, show(e)).toBeInstanceOf(GridConfigError);
  const err = e as GridConfigError;
  if (typeof field === 'string') expect(err.field).toBe(field);
  else expect(err.field).toMatch(field);
  expect(err.code).toBe('GRID_CONFIG');
  expect(err.retryable).toBe(false);
}

/** A typed error of the client: a GridError, or InvalidKeyError for a key. */
function expectTyped(e: unknown): void {
  expect(e instanceof GridError || e instanceof InvalidKeyError, `untyped error: ${show(e)}`).toBe(true);
}

async function closeWithin(client: GridClient, ms: number): Promise<void> {
  if ((await settle(client.close(), ms)) === 'pending') throw new Error(`close() did not complete within ${ms} ms`);
}

/** A client of the grid of its own (closed after the test, and close() must complete). */
async function connect(): Promise<GridClient> {
  const client = await GridClient.connect({ endpoints: grid.cluster.endpoints, connectTimeout: 3000 });
  client.on('error', () => undefined); // lost locks of tiny leases are expected here
  cleanups.push(() => closeWithin(client, 5000));
  return client;
}

/** Nothing in flight, no seq open, and the connection still serves. */
async function expectIdleAndHealthy(client: GridClient): Promise<void> {
  await waitFor(
    () => {
      const b = client.bookkeeping();
      return b.operations === 0 && b.openSeqs === 0;
    },
    5000,
    `no operation or seq left open (${JSON.stringify(client.bookkeeping())})`,
  );
  const health = client.cache<string, number>('bad-input-health');
  await health.put('h', 7);
  expect(await health.get('h')).toBe(7);
  expect(client.bookkeeping().connections).toBe(1);
}

/** Drains an async iterator. */
async function drain(it: AsyncIterable<unknown>): Promise<void> {
  for await (const x of it) void x;
}

/** Values that are not AbortSignals: null, primitives, and look-alikes missing part of one. */
const notSignals: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, {}, { aborted: false }, { aborted: true, reason: 'x' }, { aborted: false, addEventListener: 1 }, new EventTarget(), 'signal', 0, true),
  fc.anything().filter((v) => v !== undefined),
);

/** A cyclic object: MessagePack cannot encode it. */
function cyclic(): unknown {
  const o: Record<string, unknown> = { a: 1 };
  o.self = o;
  return o;
}

describe('per-call options: signal and timeoutMs', () => {
  it('property: a signal that is not an AbortSignal is refused with GridConfigError naming it; nothing is left open and close() completes', async () => {
    const client = await connect();
    const c = client.cache<string, number>('bad-signal');
    const lock = client.lock('bad-signal-lock');
    await fc.assert(
      fc.asyncProperty(notSignals, async (signal) => {
        const o = { signal } as unknown as { signal: AbortSignal };
        const calls: Promise<unknown>[] = [
          c.get('k', o),
          c.put('k', 1, o),
          c.putIfAbsent('k', 1, o),
          c.remove('k', o),
          c.increment('n', 1, o),
          c.getAll(['a', 'b', 'c'], o),
          c.putAll([['a', 1]], o),
          c.size(o),
          c.clear(o),
          c.create({}, o),
          drain(c.scan(o)),
          lock.tryAcquire(o),
          lock.acquire(o),
          lock.attemptGet(c, o),
          client.withLock('bad-signal-lock', () => 1, o),
        ];
        for (const p of calls) expectConfigError(await rejection(p), 'signal');
      }),
      { numRuns: 60 },
    );
    await expectIdleAndHealthy(client);
    await closeWithin(client, 5000);
  });

  it('a lock handle refuses a bad signal before it stops renewing: the lock stays held and renewed', async () => {
    const client = await connect();
    const c = client.cache<string, number>('bad-signal-handle');
    const h = await client.lock('bad-signal-handle').acquire({ leaseMs: 150, autoRenew: true });
    for (const call of [
      () => h.putAndRelease(c, 1, { signal: null as unknown as AbortSignal }),
      () => h.release({ signal: 'no' as unknown as AbortSignal }),
      () => h.renew({ signal: {} as unknown as AbortSignal }),
    ]) {
      expectConfigError(await rejection(call()), 'signal');
    }
    const before = h.renewals;
    await waitFor(() => h.renewals >= before + 3, 5000, 'renewals going on after the refused calls');
    expect(h.held).toBe(true);
    await h.putAndRelease(c, 2);
    expect(await c.get('bad-signal-handle')).toBe(2);
    await expectIdleAndHealthy(client);
  });

  it('property: timeoutMs is a deadline kept even when the node never answers, or is refused with GridConfigError naming it', async () => {
    // Answers the handshake, the map and heartbeats; never a cache operation.
    const node = await new ScriptedNode('mute', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({
      endpoints: [node.endpoint],
      requestTimeout: 100,
      heartbeatInterval: 50,
      heartbeatTimeout: 5000,
      retry: { minDelay: 5, maxDelay: 20 },
    });
    cleanups.push(() => closeWithin(client, 5000));
    const timeouts: fc.Arbitrary<unknown> = fc.oneof(
      fc.constantFrom(NaN, 0, -0, -1, Infinity, -Infinity, 0.5, 1.5, 2 ** 31, 1e12, Number.MAX_SAFE_INTEGER, '100', null, true, {}, [50]),
      fc.double({ noInteger: true }),
      fc.integer({ min: -(2 ** 31), max: 0 }),
      fc.integer({ min: 2 ** 31, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: 30, max: 200 }),
    );
    await fc.assert(
      fc.asyncProperty(timeouts, async (timeoutMs) => {
        const t0 = performance.now();
        const r = await settle(client.cache('mute').get('k', { timeoutMs: timeoutMs as number }), 2000);
        const elapsed = performance.now() - t0;
        if (r === 'pending') throw new Error(`timeoutMs ${show(timeoutMs)}: the operation is still pending after 2 s`);
        expect(r.ok).toBe(false);
        const e = (r as { error: unknown }).error;
        if (e instanceof GridConfigError) {
          expectConfigError(e, 'timeoutMs');
          return;
        }
        // Accepted: a deadline of timeoutMs, kept.
        expect(e, show(e)).toBeInstanceOf(GridTimeoutError);
        expect((e as GridTimeoutError).code).toBe('GRID_TIMEOUT');
        expect(typeof timeoutMs).toBe('number');
        expect(elapsed).toBeGreaterThanOrEqual((timeoutMs as number) - 5);
        expect(elapsed).toBeLessThan((timeoutMs as number) + 1000);
      }),
      { numRuns: 40 },
    );
    await waitFor(() => client.bookkeeping().operations === 0, 5000, 'every operation settled');
    await closeWithin(client, 5000);
  });

  it('acquire with a wait longer than a timer can arm still keeps its deadline across a retry', async () => {
    // The first LOCK_ACQUIRE is refused as NOT_PRIMARY (retryable), the second granted.
    let acquires = 0;
    const node = await new ScriptedNode('lock-retry', 8, (req, n) => {
      if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
      if (req.op === Op.HEARTBEAT) return { payload: {} };
      if (req.op === Op.LOCK_ACQUIRE) {
        if (++acquires === 1) return { flags: ResponseFlag.ERROR, payload: { code: ErrorCode.NOT_PRIMARY, message: 'not yet' } };
        return { payload: { acquired: true, token: 9 } };
      }
      if (req.op === Op.LOCK_RELEASE) return { payload: { released: true } };
      return undefined;
    }).start();
    cleanups.push(() => node.close());
    const client = await GridClient.connect({ endpoints: [node.endpoint] });
    cleanups.push(() => closeWithin(client, 5000));
    // The longest wait allowed: with the operation timeout added, longer than a timer takes.
    const r = await settle(client.lock('x').acquire({ waitMs: 2 ** 31 - 1 }), 5000);
    if (r === 'pending' || !r.ok) throw new Error(`acquire failed: ${r === 'pending' ? 'pending' : show(r.error)}`);
    expect(r.value.fencingToken).toBe(9);
    expect(acquires).toBe(2);
    await r.value.release();
    // One millisecond more is refused before anything is sent (the node would refuse it too).
    expectConfigError(await rejection(client.lock('y').acquire({ waitMs: 2 ** 31 })), 'waitMs');
    expect(acquires).toBe(2);
  });

  it('property: no input to put leaves anything pending: it settles with success or a typed error, and the client stays idle and healthy', async () => {
    const client = await connect();
    const c = client.cache<GridKey, unknown>('bad-put');
    const tooLong = 'k'.repeat(4 * 1024 * 1024 + 1);
    const rarely = <T,>(a: fc.Arbitrary<T>): fc.WeightedArbitrary<T> => ({ arbitrary: a, weight: 1 });
    const often = <T,>(a: fc.Arbitrary<T>): fc.WeightedArbitrary<T> => ({ arbitrary: a, weight: 10 });
    const keys = fc.oneof(often(fc.anything()), often(fc.string()), often(fc.integer()), rarely(fc.constant(tooLong)), rarely(fc.constant(NaN)));
    const values = fc.oneof(
      often(fc.anything()),
      rarely(fc.func(fc.anything())),
      rarely(fc.bigInt()),
      rarely(fc.constant(Symbol('s'))),
      rarely(fc.constant(cyclic())),
      rarely(fc.constant(tooLong)),
    );
    const options = fc.option(
      fc.record(
        {
          signal: fc.oneof(notSignals, fc.constant(AbortSignal.abort())),
          timeoutMs: fc.oneof(fc.anything(), fc.integer({ min: 1, max: 5000 })),
          ttlMs: fc.oneof(fc.anything(), fc.nat()),
        },
        { requiredKeys: [] },
      ),
      { nil: undefined },
    );
    await fc.assert(
      fc.asyncProperty(keys, values, options, async (key, value, o) => {
        const r = await settle(c.put(key as GridKey, value, o as { ttlMs?: number }), 5000);
        if (r === 'pending') throw new Error('put still pending after 5 s');
        if (!r.ok) expectTyped(r.error);
        await waitFor(() => client.bookkeeping().operations === 0 && client.bookkeeping().openSeqs === 0, 5000, 'nothing left open');
      }),
      { numRuns: 100 },
    );
    await expectIdleAndHealthy(client);
    await closeWithin(client, 5000);
  });
});

/** What a custom serializer does with each call: throw this, or return this. */
type Behaviour = { throws: unknown } | { returns: unknown };

const behaviours: fc.Arbitrary<Behaviour> = fc.oneof(
  fc.anything().map((thrown) => ({ throws: thrown })),
  fc.constantFrom(new Error('boom'), new TypeError('bad type')).map((thrown) => ({ throws: thrown })),
  fc
    .oneof(fc.anything(), fc.constantFrom(new ArrayBuffer(4), Uint16Array.of(1, 2), new DataView(new ArrayBuffer(3)), Buffer.from('ok'), Uint8Array.of(1, 2, 3)))
    .map((returned) => ({ returns: returned })),
);

function act(b: Behaviour): unknown {
  if ('throws' in b) throw b.throws;
  return b.returns;
}

/** The bytes of a view, as a plain Uint8Array. */
function bytesOf(v: ArrayBufferView): Uint8Array {
  return Uint8Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
}

describe('custom serializers', () => {
  it('property: a serializer that throws anything or returns anything: writes reject with GridSerializationError (its cause what was thrown) or store the bytes, and reads whose deserialize throws reject with GridSerializationError', async () => {
    const client = await connect();
    const raw = client.cache<string, Uint8Array>('bad-ser', { serializer: bytesSerializer });
    let n = 0;
    await fc.assert(
      fc.asyncProperty(behaviours, behaviours, async (onWrite, onRead) => {
        const serializer: Serializer<unknown> = { serialize: () => act(onWrite) as Uint8Array, deserialize: () => act(onRead) };
        const c = client.cache<string, unknown>('bad-ser', { serializer });
        const key = `k${n++}`;
        const writes: [string, () => Promise<unknown>][] = [
          ['put', () => c.put(key, 1)],
          ['putAll', () => c.putAll([[key, 1]])],
          ['putIfAbsent', () => c.putIfAbsent(`${key}-pia`, 1)],
          ['replace', () => c.replace(key, 1)],
          ['replaceIfEquals', () => c.replaceIfEquals(key, 1, 2)],
          ['removeIfEquals', () => c.removeIfEquals(`${key}-rie`, 1)],
          ['getAndPut', () => c.getAndPut(`${key}-gap`, 1)],
        ];
        const storable = 'returns' in onWrite && ArrayBuffer.isView(onWrite.returns);
        for (const [name, write] of writes) {
          const r = await settle(write(), 5000);
          if (r === 'pending') throw new Error(`${name} still pending`);
          if (storable) {
            // getAndPut reads the previous value (none): only a throwing deserialize could fail it.
            if (!r.ok) throw new Error(`${name} refused bytes: ${show(r.error)}`);
            continue;
          }
          expect(r.ok, `${name} accepted a value its serializer could not make`).toBe(false);
          const e = (r as { error: unknown }).error;
          expect(e, `${name}: ${show(e)}`).toBeInstanceOf(GridSerializationError);
          if ('throws' in onWrite) expect((e as GridSerializationError).cause).toBe(onWrite.throws);
        }
        if (storable) expect(await raw.get(key)).toEqual(bytesOf(onWrite.returns as ArrayBufferView));
        // Reads of a stored entry through this serializer.
        for (const [name, read] of [
          ['get', () => c.get(key)],
          ['getAll', () => c.getAll([key])],
          ['getAndPut', () => c.getAndPut(key, 1)],
        ] as [string, () => Promise<unknown>][]) {
          await raw.put(key, Uint8Array.of(0xc0));
          const r = await settle(read(), 5000);
          if (r === 'pending') throw new Error(`${name} still pending`);
          if ('throws' in onRead) {
            expect(r.ok, `${name} resolved though deserialize threw`).toBe(false);
            const e = (r as { error: unknown }).error;
            if (e instanceof GridSerializationError && Object.is(e.cause, onRead.throws)) continue;
            // getAndPut serialises first: its write-side refusal comes first.
            expect(name === 'getAndPut' && !storable && e instanceof GridSerializationError, `${name}: ${show(e)}`).toBe(true);
          } else if (name !== 'getAndPut' || storable) {
            expect(r.ok, `${name}: ${r.ok ? '' : show(r.error)}`).toBe(true);
          }
        }
      }),
      { numRuns: 80 },
    );
    await expectIdleAndHealthy(client);
  });

  it('attemptGet of an entry the serializer cannot read: GridSerializationError, and the lock it took is released', async () => {
    const client = await connect();
    const raw = client.cache<string, Uint8Array>('bad-ser-lock', { serializer: bytesSerializer });
    await raw.put('job', Uint8Array.of(0xc1)); // not MessagePack
    const thrown = new Error('unreadable');
    const c = client.cache<string, unknown>('bad-ser-lock', { serializer: { serialize: () => Uint8Array.of(0xc0), deserialize: () => { throw thrown; } } });
    const e = await rejection(client.lock('job').attemptGet(c));
    expect(e).toBeInstanceOf(GridSerializationError);
    expect((e as GridSerializationError).cause).toBe(thrown);
    const h = await client.lock('job').tryAcquire();
    expect(h, 'the lock attemptGet took was left held').not.toBeNull();
    await h!.release();
    // With the default serializer the same entry fails the same way, and frees the lock too.
    expect(await rejection(client.lock('job').attemptGet(client.cache('bad-ser-lock')))).toBeInstanceOf(GridSerializationError);
    const h2 = await client.lock('job').tryAcquire();
    expect(h2).not.toBeNull();
    await h2!.release();
    await expectIdleAndHealthy(client);
  });
});

describe('client.cache(name, options)', () => {
  it('property: a name is accepted and usable, or refused with GridConfigError naming it', async () => {
    const client = await connect();
    const names = fc.oneof(
      fc.anything(),
      fc.string({ maxLength: 300 }),
      fc.string({ unit: 'grapheme', minLength: 50, maxLength: 120 }),
      fc.constantFrom('', 'x'.repeat(255), 'x'.repeat(256), '€'.repeat(85), '€'.repeat(86), 'a\uD800', null, 42),
    );
    await fc.assert(
      fc.asyncProperty(names, async (name) => {
        let c: GridCache<string, number>;
        try {
          c = client.cache<string, number>(name as string);
        } catch (e) {
          expectConfigError(e, 'name');
          return;
        }
        await c.put('k', 1);
        expect(await c.get('k')).toBe(1);
      }),
      { numRuns: 150 },
    );
    await expectIdleAndHealthy(client);
  });

  it('property: options and serializer are accepted and usable, or refused with GridConfigError naming the serializer, the unknown option or the options', async () => {
    const client = await connect();
    const options = fc.oneof(
      fc.constantFrom(undefined, null, {}, { serializer: undefined }, { serializer: bytesSerializer }),
      fc.anything(),
      fc.record({ serializer: fc.oneof(fc.anything(), fc.record({ serialize: fc.anything(), deserialize: fc.anything() }, { requiredKeys: [] })) }),
    );
    await fc.assert(
      fc.asyncProperty(options, async (o) => {
        let c: GridCache<string, Uint8Array>;
        try {
          c = client.cache<string, Uint8Array>('bad-options', o as { serializer?: Serializer<Uint8Array> });
        } catch (e) {
          expectConfigError(e, expectedOptionsField(o, ['serializer']) ?? 'serializer');
          return;
        }
        expect(expectedOptionsField(o, ['serializer']), `cache() accepted ${show(o)}`).toBeUndefined();
        await c.put('k', Uint8Array.of(1, 2));
        expect(await c.get('k')).toEqual(Uint8Array.of(1, 2));
      }),
      { numRuns: 100 },
    );
    await expectIdleAndHealthy(client);
  });
});

describe('getAll and putAll', () => {
  it('property: getAll takes an array of keys: values in key order, InvalidKeyError for a bad key, GridConfigError naming keys for anything else', async () => {
    const client = await connect();
    const c = client.cache<GridKey, string>('bad-getall');
    await c.putAll([
      ['a', 'A'],
      [1, 'one'],
    ]);
    const keys = fc.oneof(
      fc.anything(),
      fc.array(fc.oneof(fc.constantFrom('a', 1, 'zz'), fc.string(), fc.integer())),
      fc.constantFrom(new Set(['a']), new Map([['a', 1]]), 'ab', { length: 1, 0: 'a' }, null, undefined, [], ['a', 'a', 'zz', 'a']),
    );
    await fc.assert(
      fc.asyncProperty(keys, async (k) => {
        const r = await settle(c.getAll(k as GridKey[]), 5000);
        if (r === 'pending') throw new Error('getAll still pending');
        if (!Array.isArray(k)) {
          expect(r.ok, `getAll accepted ${show(k)}`).toBe(false);
          expectConfigError((r as { error: unknown }).error, 'keys');
          return;
        }
        if (!r.ok) {
          expect(r.error, show(r.error)).toBeInstanceOf(InvalidKeyError);
          return;
        }
        expect(r.value).toEqual(k.map((x) => (x === 'a' ? 'A' : x === 1 ? 'one' : undefined)));
      }),
      { numRuns: 150 },
    );
    await expectIdleAndHealthy(client);
  });

  it('property: putAll takes [key, value] pairs: stored (the last of a duplicate key wins), or a typed error naming the entry', async () => {
    const client = await connect();
    const c = client.cache<GridKey, unknown>('bad-putall');
    const raw = client.cache<string, Uint8Array>('bad-putall', { serializer: bytesSerializer });
    const hex = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : Buffer.from(b).toString('hex'));
    const entries = fc.oneof(
      fc.anything(),
      fc.array(fc.tuple(fc.oneof(fc.constantFrom('d', 'e'), fc.string()), fc.integer())),
      fc.array(fc.oneof(fc.tuple(fc.string(), fc.integer()), fc.anything())),
      fc.constantFrom(null, undefined, {}, 'ab', [null], [['a']], [['a', 1, 2]], new Map([['m', 1]]), new Set([['s', 1]])),
    );
    await fc.assert(
      fc.asyncProperty(entries, async (e) => {
        const r = await settle(c.putAll(e as [GridKey, unknown][]), 5000);
        if (r === 'pending') throw new Error('putAll still pending');
        if (!r.ok) {
          const err = r.error;
          if (err instanceof InvalidKeyError || err instanceof GridSerializationError) return;
          expectConfigError(err, /^entries(\[\d+\])?$/);
          return;
        }
        // Accepted: every pair was a [key, value] array, and each key holds its last value.
        const pairs = [...(e as Iterable<unknown>)] as unknown[];
        const last = new Map<string, [unknown, unknown]>();
        for (const p of pairs) {
          expect(Array.isArray(p) && p.length === 2, `accepted entry ${show(p)}`).toBe(true);
          const [k, v] = p as [unknown, unknown];
          last.set(JSON.stringify(k), [k, v]);
        }
        const got = await raw.getAll([...last.values()].map(([k]) => k as string));
        expect(got.map(hex)).toEqual([...last.values()].map(([, v]) => hex(msgpackSerializer.serialize(v))));
      }),
      { numRuns: 150 },
    );
    await expectIdleAndHealthy(client);
  });

  it('empty batches send nothing; duplicate keys read back at every position', async () => {
    const client = await connect();
    const c = client.cache<string, number>('dup-keys');
    const ops = client.stats().operations;
    expect(await c.getAll([])).toEqual([]);
    await c.putAll([]);
    await c.putAll(new Map());
    expect(client.stats().operations).toBe(ops);
    await c.putAll([
      ['d', 1],
      ['d', 2],
      ['d', 3],
    ]);
    expect(await c.getAll(['d', 'x', 'd', 'd'])).toEqual([3, undefined, 3, 3]);
  });

  it('empty batches refuse bad options as a batch with entries does: GridConfigError naming the option', async () => {
    const client = await connect();
    const c = client.cache<string, number>('empty-bad-options');
    const badSignal = { signal: 'stop' } as unknown as { signal: AbortSignal };
    for (const o of [{ timeoutMs: -1 }, { timeoutMs: null as unknown as number }, { timeoutMs: 1.5 }, badSignal]) {
      const field = 'signal' in o ? 'signal' : 'timeoutMs';
      expectConfigError(await rejection(c.getAll([], o)), field);
      expectConfigError(await rejection(c.putAll([], o)), field);
      expectConfigError(await rejection(c.putAll(new Map(), o)), field);
      // The same options with one key or entry: refused alike.
      expectConfigError(await rejection(c.getAll(['k'], o)), field);
      expectConfigError(await rejection(c.putAll([['k', 1]], o)), field);
    }
    for (const ttlMs of [-1, NaN, null as unknown as number, 2.5]) {
      expectConfigError(await rejection(c.putAll([], { ttlMs })), 'ttlMs');
      expectConfigError(await rejection(c.putAll([['k', 1]], { ttlMs })), 'ttlMs');
    }
    // Good options, or none (null too): still nothing to do.
    expect(await c.getAll([], { timeoutMs: 100 })).toEqual([]);
    await c.putAll([], { ttlMs: 0, signal: new AbortController().signal });
    await c.putAll([], null as unknown as undefined);
    await expectIdleAndHealthy(client);
  });
});

describe('locks', () => {
  it('property: leaseMs is refused with GridConfigError naming it, or held and auto-renewed on timers Node can arm', async () => {
    const client = await connect();
    let overflows = 0;
    const onWarning = (w: Error): void => {
      if (w.name === 'TimeoutOverflowWarning') overflows++;
    };
    process.on('warning', onWarning);
    cleanups.push(() => {
      process.off('warning', onWarning);
    });
    const leases = fc.oneof(
      fc.constantFrom(NaN, 0, -1, 1.5, Infinity, 2 ** 31 - 1, 2 ** 31, 1e12, Number.MAX_SAFE_INTEGER, 2 ** 53, '100', null),
      fc.integer({ min: 2 ** 31, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: 50, max: 2 ** 31 - 1 }),
      fc.anything(),
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(leases, async (leaseMs) => {
        overflows = 0;
        const r = await settle(client.lock(`lease-${n++}`).tryAcquire({ leaseMs: leaseMs as number, autoRenew: true }), 5000);
        if (r === 'pending') throw new Error('tryAcquire still pending');
        if (!r.ok) {
          expectConfigError(r.error, 'leaseMs');
          return;
        }
        const h = r.value as LockHandle;
        expect(h).not.toBeNull();
        // The renewal timer is armed when the handle is made; a warning would be out by now.
        await h.release().catch((e: unknown) => expect(e).toBeInstanceOf(LockNotHeldError));
        expect(overflows, `leaseMs ${show(leaseMs)} armed a timer Node cannot wait for`).toBe(0);
      }),
      { numRuns: 80 },
    );
    await expectIdleAndHealthy(client);
  });

  it('property: lock options are accepted (null meaning none) or refused with GridConfigError naming the option', async () => {
    const client = await connect();
    const c = client.cache<string, number>('bad-lock-options');
    const options = fc.oneof(
      fc.constantFrom(null, undefined, {}, 'opts', 5, { autoRenew: 'yes' }, { noWait: 1 }, { ifAbsent: 'no' }),
      fc.record(
        {
          leaseMs: fc.oneof(fc.constant(500), fc.anything()),
          waitMs: fc.oneof(fc.constant(50), fc.anything()),
          autoRenew: fc.anything(),
          noWait: fc.anything(),
          ifAbsent: fc.anything(),
        },
        { requiredKeys: [] },
      ),
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(options, async (o) => {
        const key = `opts-${n++}`;
        const calls: [string, () => Promise<unknown>][] = [
          ['tryAcquire', () => client.lock(`${key}-t`).tryAcquire(o as object)],
          ['attempt', () => client.lock(`${key}-a`).attempt(o as object)],
          ['attemptGet', () => client.lock(`${key}-g`).attemptGet(c, o as object)],
          ['acquire', () => client.lock(`${key}-q`).acquire(o as object)],
          ['withLock', () => client.withLock(`${key}-w`, (h) => h.fencingToken, o as object)],
        ];
        for (const [name, call] of calls) {
          const r = await settle(call(), 5000);
          if (r === 'pending') throw new Error(`${name} still pending`);
          if (!r.ok) {
            // A lease of a few ms may run out before the release.
            if (r.error instanceof LockNotHeldError) continue;
            expectConfigError(r.error, expectedOptionsField(o, LOCK_OPTION_NAMES) ?? /^(leaseMs|waitMs|autoRenew|noWait|ifAbsent)$/);
            continue;
          }
          expect(expectedOptionsField(o, LOCK_OPTION_NAMES), `${name} accepted ${show(o)}`).toBeUndefined();
          const v = r.value as LockHandle | { acquired: boolean; handle?: LockHandle } | number | null;
          const h = v !== null && typeof v === 'object' && 'acquired' in v ? v.handle : v;
          if (h !== null && typeof h === 'object') await h.release().catch((e: unknown) => expect(e).toBeInstanceOf(LockNotHeldError));
        }
        // The handle's calls take null for "no options" too.
        const h = await client.lock(`${key}-h`).acquire();
        await h.renew(null);
        await h.putAndRelease(c, 1, null);
        await h.release(null);
      }),
      { numRuns: 60 },
    );
    await expectIdleAndHealthy(client);
  });

  it('withLock without a function, and attemptGet / putAndRelease without a cache, are refused with GridConfigError before anything is sent', async () => {
    const client = await connect();
    const c = client.cache<string, number>('bad-lock-args');
    for (const fn of [undefined, null, 'fn', {}]) {
      const ops = client.stats().operations;
      expectConfigError(await rejection(client.withLock('args', fn as () => number)), 'fn');
      expect(client.stats().operations).toBe(ops);
    }
    for (const cache of [undefined, null, 'bad-lock-args', { name: 'bad-lock-args' }]) {
      expectConfigError(await rejection(client.lock('args').attemptGet(cache as unknown as GridCache<string, number>)), 'cache');
    }
    const h = await client.lock('args').acquire({ leaseMs: 150, autoRenew: true });
    for (const cache of [undefined, null, 'bad-lock-args', { name: 'bad-lock-args' }]) {
      expectConfigError(await rejection(h.putAndRelease(cache as unknown as GridCache<string, number>, 1)), 'cache');
    }
    const before = h.renewals;
    await waitFor(() => h.renewals >= before + 2, 5000, 'the handle still renewing');
    expect(h.held).toBe(true);
    await h.putAndRelease(c, 5);
    expect(await c.get('args')).toBe(5);
    await expectIdleAndHealthy(client);
  });
});

describe('requests larger than a frame', () => {
  it('a key, value or batch whose request would exceed the 4 MiB frame limit is refused with GridSerializationError before it is sent; the connection keeps serving', async () => {
    const client = await connect();
    let disconnects = 0;
    client.on('disconnected', () => disconnects++);
    const MiB = 1024 * 1024;
    const bigKey = 'k'.repeat(4 * MiB + 1);
    const bigValue = new Uint8Array(4 * MiB + 1);
    const c = client.cache<string, unknown>('too-big');
    const raw = client.cache<string, Uint8Array>('too-big', { serializer: bytesSerializer });
    const quarter = (i: number): string => `${i}`.padEnd(1.1 * MiB, 'q');
    const calls: [string, () => Promise<unknown>][] = [
      ['get', () => c.get(bigKey)],
      ['put key', () => c.put(bigKey, 1)],
      ['put value', () => c.put('k', 'v'.repeat(4 * MiB + 1))],
      ['put bytes', () => raw.put('k', bigValue)],
      ['getAll', () => c.getAll([0, 1, 2, 3].map(quarter))],
      ['putAll', () => c.putAll([0, 1, 2, 3].map((i) => [quarter(i), 1] as [string, number]))],
      ['increment', () => c.increment(bigKey)],
      ['lock', () => client.lock(bigKey).tryAcquire()],
    ];
    for (const [name, call] of calls) {
      const e = await rejection(call());
      expect(e, `${name}: ${show(e)}`).toBeInstanceOf(GridSerializationError);
      expect((e as GridSerializationError).message).toMatch(/exceeds the maximum frame size/);
      expect(((e as GridSerializationError).cause as { code?: string }).code).toBe('GRID_FRAME_TOO_LARGE');
    }
    expect(await c.get('k')).toBeUndefined(); // nothing was stored
    await expectIdleAndHealthy(client);
    expect(disconnects).toBe(0);
  });
});

describe('values with no string form', () => {
  it('an argument that cannot be converted to a string is still refused with GridConfigError naming it', async () => {
    const client = await connect();
    const c = client.cache<string, number>('no-string-form');
    const h = await client.lock('no-string-form-held').acquire({ leaseMs: 5000 });
    const hostile: unknown[] = [
      Object.create(null),
      { toString: {} },
      {
        [Symbol.toPrimitive]: () => {
          throw new Error('no primitive');
        },
      },
    ];
    for (const v of hostile) {
      const x = v as never;
      const calls: [string, () => unknown][] = [
        ['ttlMs', () => c.put('k', 1, { ttlMs: x })],
        ['ttlMs', () => c.putAll([['k', 1]], { ttlMs: x })],
        ['ttlMs', () => c.putIfAbsent('k', 1, { ttlMs: x })],
        ['delta', () => c.increment('k', x)],
        ['initial', () => c.increment('k', 1, { initial: x })],
        ['batchSize', () => drain(c.scan({ batchSize: x }))],
        ['timeoutMs', () => c.get('k', { timeoutMs: x })],
        ['signal', () => c.get('k', { signal: x })],
        ['keys', () => c.getAll(x)],
        ['entries', () => c.putAll(x)],
        ['name', () => client.cache(x)],
        ['serializer', () => client.cache('no-string-form', { serializer: x })],
        ['leaseMs', () => client.lock('l').tryAcquire({ leaseMs: x })],
        ['waitMs', () => client.lock('l').acquire({ waitMs: x })],
        ['autoRenew', () => client.lock('l').acquire({ autoRenew: x })],
        ['cache', () => client.lock('l').attemptGet(x)],
        ['fn', () => client.withLock('l', x)],
        ['waitMs', () => client.withLock('l', () => undefined, { noWait: true, waitMs: x })],
        ['leaseMs', () => h.renew({ leaseMs: x })],
        ['ttlMs', () => h.putAndRelease(c, 1, { ttlMs: x })],
        ['listener', () => h.onLost(x)],
      ];
      for (const [field, call] of calls) {
        const e = await rejection(Promise.resolve().then(call));
        expectConfigError(e, field);
      }
    }
    expect(h.held).toBe(true);
    await h.release();
    await expectIdleAndHealthy(client);
  });
});

describe('increment and onLost arguments', () => {
  it("increment's initial is checked as delta is, before a request goes out", async () => {
    const client = await connect();
    const c = client.cache<string, number>('bad-initial');
    for (const initial of [1.5, Number.MAX_SAFE_INTEGER + 1, '3', NaN]) {
      const before = client.stats().operations;
      expectConfigError(await rejection(c.increment('k', 1, { initial: initial as number })), 'initial');
      expect(client.stats().operations).toBe(before); // refused before routing: nothing sent
    }
    expect(await c.increment('k', 1, { initial: 41 })).toBe(42);
    await expectIdleAndHealthy(client);
  });

  it('onLost refuses a listener that is not a function, so a later loss cannot throw out of the renewal', async () => {
    const client = await connect();
    const h = await client.lock('bad-listener').acquire({ leaseMs: 5000 });
    for (const listener of [undefined, null, 'log', {}]) expectConfigError(rejectionOf(() => h.onLost(listener as never)), 'listener');
    expect(h.held).toBe(true);
    await h.release();
  });
});

function rejectionOf(call: () => unknown): unknown {
  try {
    call();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('closing', () => {
  it('every call on a closed client, its caches, locks and handles rejects with GridClosedError', async () => {
    const client = await connect();
    const c = client.cache<string, number>('closed');
    const lock = client.lock('closed-lock');
    const h = await client.lock('closed-held').acquire({ leaseMs: 5000 });
    await closeWithin(client, 5000);
    expect(() => client.cache('x')).toThrow(GridClosedError);
    expect(() => client.lock('x')).toThrow(GridClosedError);
    const calls: [string, () => Promise<unknown>][] = [
      ['get', () => c.get('k')],
      ['getAll', () => c.getAll(['k'])],
      ['getAll (no keys)', () => c.getAll([])],
      ['putAll (no entries)', () => c.putAll([])],
      ['put', () => c.put('k', 1)],
      ['putAll', () => c.putAll([['k', 1]])],
      ['putIfAbsent', () => c.putIfAbsent('k', 1)],
      ['replace', () => c.replace('k', 1)],
      ['replaceIfEquals', () => c.replaceIfEquals('k', 1, 2)],
      ['remove', () => c.remove('k')],
      ['removeIfEquals', () => c.removeIfEquals('k', 1)],
      ['getAndPut', () => c.getAndPut('k', 1)],
      ['getAndRemove', () => c.getAndRemove('k')],
      ['increment', () => c.increment('k')],
      ['containsKey', () => c.containsKey('k')],
      ['size', () => c.size()],
      ['clear', () => c.clear()],
      ['create', () => c.create({})],
      ['scan', () => drain(c.scan())],
      ['keys', () => drain(c.keys())],
      ['createCache', () => client.createCache('y')],
      ['tryAcquire', () => lock.tryAcquire()],
      ['attempt', () => lock.attempt()],
      ['attemptGet', () => lock.attemptGet(c)],
      ['acquire', () => lock.acquire()],
      ['withLock', () => client.withLock('z', () => 1)],
      ['renew', () => h.renew()],
      ['putAndRelease', () => h.putAndRelease(c, 1)],
    ];
    for (const [name, call] of calls) {
      const e = await rejection(call());
      expect(e, `${name}: ${show(e)}`).toBeInstanceOf(GridClosedError);
    }
    // The held lock was released by close(): releasing it again is harmless.
    expect(h.held).toBe(false);
    await expect(h.release()).resolves.toBeUndefined();
  });

  it('close() during calls of every kind: each call settles (done, or a typed error) and close() completes', async () => {
    const client = await connect();
    const c = client.cache<string, number>('closing');
    await c.putAll(Array.from({ length: 50 }, (_, i) => [`k${i}`, i] as [string, number]));
    const held = await client.lock('closing-held').acquire({ leaseMs: 200, autoRenew: true });
    const calls: Promise<unknown>[] = [];
    for (let i = 0; i < 50; i++) {
      calls.push(c.put(`k${i}`, i), c.get(`k${i}`), c.increment('n'), c.getAll([`k${i}`, 'x']), c.putAll([[`p${i}`, i]]));
      calls.push(client.withLock(`closing-${i % 5}`, (h) => h.fencingToken, { waitMs: 500 }));
    }
    calls.push(drain(c.scan({ batchSize: 3 })), held.renew());
    const closing = client.close();
    calls.push(c.get('late'), held.release());
    const results = await Promise.all(calls.map((p) => settle(p, 10_000)));
    expect(results.filter((r) => r === 'pending')).toEqual([]);
    for (const r of results) if (r !== 'pending' && !r.ok) expectTyped(r.error);
    expect((await settle(closing, 10_000)) === 'pending').toBe(false);
    expect(client.bookkeeping().operations).toBe(0);
    expect(client.bookkeeping().openSeqs).toBe(0);
    expect(client.bookkeeping().renewals).toBe(0);
  });
});

describe('TTL edge cases', () => {
  it('property: ttlMs is refused with GridConfigError naming it (above 2^52 too, before anything is sent), or applied, and the connection keeps serving', async () => {
    const client = await connect();
    const c = client.cache<string, number>('ttl-edges');
    const ttls = fc.oneof(
      fc.constantFrom(NaN, -1, -0, 0.5, Infinity, 2 ** 52, 2 ** 52 + 1, 2 ** 53, Number.MAX_SAFE_INTEGER, 1e15, '100', null, true),
      fc.integer({ min: -(2 ** 31), max: -1 }),
      fc.integer({ min: 1e13, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: 60_000, max: 1e12 }),
      fc.anything(),
    );
    let n = 0;
    await fc.assert(
      fc.asyncProperty(ttls, async (ttlMs) => {
        const key = `t${n++}`;
        const r = await settle(c.put(key, 1, { ttlMs: ttlMs as number }), 5000);
        if (r === 'pending') throw new Error('put still pending');
        if (!r.ok) {
          expectConfigError(r.error, 'ttlMs');
          expect(await c.containsKey(key)).toBe(false);
          return;
        }
        expect(ttlMs === undefined || (Number.isInteger(ttlMs) && (ttlMs as number) >= 0 && (ttlMs as number) <= 2 ** 52), `put accepted ttlMs ${show(ttlMs)}`).toBe(true);
        // Long enough not to have run out yet.
        if ((ttlMs as number) === 0 || (ttlMs as number) >= 60_000) expect(await c.get(key)).toBe(1);
      }),
      { numRuns: 120 },
    );
    await expectIdleAndHealthy(client);
  });

  it('ttlMs 0 means no expiry, even in a cache whose default ttl is short; ttlMs 1 expires', async () => {
    const client = await connect();
    const c = await client.createCache<string, number>('ttl-zero', { ttlMs: 30 });
    await c.put('forever', 1, { ttlMs: 0 });
    await c.put('default', 2);
    await c.put('soon', 3, { ttlMs: 1 });
    await waitFor(async () => (await c.get('default')) === undefined && (await c.get('soon')) === undefined, 5000, 'the short ttls to expire');
    expect(await c.get('forever')).toBe(1);
  });
});
