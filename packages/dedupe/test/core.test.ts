/**
 * The pure parts of the core: circuit breaker transitions, key canonicalisation and hashing,
 * header key checks, option validation, prom-client counters, a replay's Accept-Encoding.
 */
import { createHash } from 'node:crypto';
import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { brotliCompressSync, deflateRawSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import * as prom from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  checkHeaderKey,
  CircuitBreaker,
  Deduper,
  DedupeConfigError,
  defaultStoreStatus,
  headerLineCount,
  isGridFault,
  payloadHash,
  serializeSfString,
  resolveDedupeOptions,
  scopedKeyHash,
  sha256,
  type BreakerState,
} from '@gridlink/dedupe';
import {
  ClusterMismatchError,
  GridAbortError,
  GridClosedError,
  GridConfigError,
  GridConnectionError,
  GridSerializationError,
  GridServerError,
  GridTimeoutError,
  LockNotHeldError,
  PartitionLostError,
} from '@gridlink/client';
import { ErrorCode } from '@gridlink/protocol';
import { DecodedTooLarge, codingsToKeep, contentCodings, decode, parseAcceptEncoding } from '../src/encoding.js';

describe('CircuitBreaker', () => {
  it('follows its model for any sequence of calls, results and clock steps', () => {
    type Step = { kind: 'call'; ok: boolean; dt: number } | { kind: 'tick'; dt: number };
    const step = fc.oneof(
      fc.record({ kind: fc.constant('call' as const), ok: fc.boolean(), dt: fc.integer({ min: 0, max: 300 }) }),
      fc.record({ kind: fc.constant('tick' as const), dt: fc.integer({ min: 0, max: 300 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 500 }), fc.array(step, { maxLength: 80 }), (threshold, openMs, steps: Step[]) => {
        const changes: [BreakerState, BreakerState][] = [];
        const b = new CircuitBreaker({ failureThreshold: threshold, openMs }, (s, p) => changes.push([s, p]));
        // Reference model.
        let state: BreakerState = 'closed';
        let fails = 0;
        let openedAt = 0;
        let now = 0;
        for (const s of steps) {
          now += s.dt;
          if (s.kind === 'tick') continue;
          let allowed: boolean;
          if (state === 'closed') allowed = true;
          else if (state === 'open' && now - openedAt < openMs) allowed = false;
          else {
            state = 'half-open';
            allowed = true; // no probe is in flight between steps: each call reports at once
          }
          const token = b.allow(now);
          expect(token !== 0).toBe(allowed);
          if (!allowed) continue;
          if (s.ok) {
            b.success(token);
            state = 'closed';
            fails = 0;
          } else {
            b.failure(now, token);
            if (state === 'half-open') {
              state = 'open';
              openedAt = now;
            } else if (++fails >= threshold) {
              state = 'open';
              openedAt = now;
            }
          }
          expect(b.state).toBe(state);
        }
        // Every reported change is a real transition.
        for (const [s, p] of changes) expect(s).not.toBe(p);
      }),
    );
  });

  it('lets only one probe through while half-open', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 10 });
    b.failure(0, b.allow(0));
    expect(b.allow(5)).toBe(0);
    const probe = b.allow(10);
    expect(probe).toBeGreaterThan(0);
    expect(b.state).toBe('half-open');
    expect(b.allow(11)).toBe(0);
    b.cancel(probe);
    const next = b.allow(12);
    expect(next).toBeGreaterThan(0);
    expect(next).not.toBe(probe);
    b.success(next);
    expect(b.state).toBe('closed');
  });
});

describe('a circuit breaker shared by routes', () => {
  it('reports each change to every deduper using it, as an event and a log line', () => {
    const shared = new CircuitBreaker({ failureThreshold: 2, openMs: 100 });
    const seen: string[] = [];
    const lines: unknown[] = [];
    const routes = ['a', 'b'].map((name) => {
      const d = new Deduper({ metrics: false, breaker: shared, logger: { warn: (m, f) => lines.push([name, m, f]) } });
      d.on('breaker', (e) => seen.push(`${name}:${e.previous}->${e.state}`));
      return d;
    });
    expect(routes[0]!.breaker).toBe(shared);
    shared.failure(0, shared.allow(0));
    expect(seen).toEqual([]);
    shared.failure(0, shared.allow(0));
    const probe = shared.allow(100);
    expect(probe).toBeGreaterThan(0);
    shared.success(probe);
    expect(seen).toEqual(['a:closed->open', 'b:closed->open', 'a:open->half-open', 'b:open->half-open', 'a:half-open->closed', 'b:half-open->closed']);
    expect(lines).toHaveLength(6);
    expect(lines[0]).toEqual(['a', expect.any(String), { event: 'dedupe.breaker', state: 'open', previous: 'closed' }]);
  });

  it('keeps deciding, and keeps reporting to the others, when a listener throws; a stopped listener hears nothing', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, openMs: 100 });
    const heard: BreakerState[] = [];
    b.onStateChange(() => {
      throw new Error('listener failed');
    });
    const stop = b.onStateChange((s) => heard.push(s));
    b.failure(0, b.allow(0));
    expect(b.state).toBe('open');
    expect(heard).toEqual(['open']);
    stop();
    expect(b.allow(100)).toBeGreaterThan(0);
    expect(b.state).toBe('half-open');
    expect(heard).toEqual(['open']);
  });
});

describe('keys', () => {
  it('canonical JSON ignores object key order and undefined fields', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (obj) => {
        const reversed = Object.fromEntries(Object.entries(obj).reverse());
        expect(canonicalJson(reversed)).toBe(canonicalJson(obj));
        expect(canonicalJson({ ...obj, zzzUndefined: undefined })).toBe(canonicalJson(obj));
      }),
    );
  });

  it('different payloads hash differently; the hash never contains the raw material', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (a, b) => {
        if (canonicalJson(a) !== canonicalJson(b)) expect(payloadHash(a)).not.toBe(payloadHash(b));
        else expect(payloadHash(a)).toBe(payloadHash(b));
      }),
    );
    const h = scopedKeyHash({ method: 'POST', route: '/orders', tenant: 't1' }, 'h', 'secret-card-number-4111');
    expect(h).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('scopes keys by method, route, tenant and key kind', () => {
    const base = { method: 'POST', route: '/orders', tenant: undefined };
    const k = scopedKeyHash(base, 'h', 'k1');
    expect(scopedKeyHash({ ...base, method: 'post' }, 'h', 'k1')).toBe(k);
    for (const other of [
      scopedKeyHash({ ...base, method: 'PUT' }, 'h', 'k1'),
      scopedKeyHash({ ...base, route: '/payments' }, 'h', 'k1'),
      scopedKeyHash({ ...base, tenant: 'acme' }, 'h', 'k1'),
      scopedKeyHash(base, 'f', 'k1'),
      scopedKeyHash(base, 'h', 'k2'),
    ]) {
      expect(other).not.toBe(k);
    }
  });

  it('the fast key hash is the canonical one: same digests as before the shortcut', () => {
    const str = fc.string({ unit: 'binary', maxLength: 40 });
    fc.assert(
      fc.property(str, str, fc.option(str, { nil: undefined }), str, fc.constantFrom('h' as const, 'f' as const), (method, route, tenant, material, kind) => {
        const canonical = createHash('sha256')
          .update(canonicalJson([kind, method.toUpperCase(), route, tenant ?? null, material]))
          .digest('base64url');
        expect(scopedKeyHash({ method, route, tenant }, kind, material)).toBe(canonical);
        expect(sha256(material)).toBe(createHash('sha256').update(material).digest('base64url'));
      }),
    );
  });

  it('checks header keys: sf-string quotes, length, printable ASCII', () => {
    expect(checkHeaderKey('abc', 10)).toEqual({ key: 'abc' });
    expect(checkHeaderKey('"abc"', 10)).toEqual({ key: 'abc' });
    expect(checkHeaderKey('"a\\"b"', 10)).toEqual({ key: 'a"b' });
    expect(checkHeaderKey('  abc  ', 10)).toEqual({ key: 'abc' });
    expect(checkHeaderKey('', 10)).toHaveProperty('error');
    expect(checkHeaderKey('""', 10)).toHaveProperty('error');
    expect(checkHeaderKey('x'.repeat(11), 10)).toHaveProperty('error');
    expect(checkHeaderKey('caf\u00e9', 10)).toHaveProperty('error');
    expect(checkHeaderKey('a\u0000b', 10)).toHaveProperty('error');
    // Quoted keys are parsed strictly as an sf-string (RFC 8941 4.2.5).
    for (const bad of ['"abc', '"a\\qb"', '"a\\"', '"abc"x', '"abc" "d"', '"abc";p=1', '"abc";p', '"a\tb"', '"caf\u00e9"', '"', '"a\u007fb"', '"abc""']) {
      const r = checkHeaderKey(bad, 100);
      expect(r, JSON.stringify(bad)).toHaveProperty('error');
    }
    expect(checkHeaderKey('"abc";p=1', 100)).toEqual({ error: expect.stringContaining('parameters') });
    expect(checkHeaderKey('"a\\qb"', 100)).toEqual({ error: expect.stringContaining('escape') });
    expect(checkHeaderKey('"a\\\\b"', 10)).toEqual({ key: 'a\\b' });
    expect(checkHeaderKey('" a b "', 10)).toEqual({ key: ' a b ' });
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'abcXYZ019-_.:~ '.split('')), minLength: 1, maxLength: 40 }), (s) => {
        const r = checkHeaderKey(s, 40);
        if (s.trim().length === 0) expect(r).toHaveProperty('error');
        else expect(r).toEqual({ key: s.trim() });
      }),
    );
  });
});

const PRINTABLE = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i));

describe('Idempotency-Key as an sf-string (properties)', () => {
  it('every key serialised as an sf-string parses back to itself', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...PRINTABLE), minLength: 1, maxLength: 255 }), (key) => {
        expect(checkHeaderKey(serializeSfString(key), 255)).toEqual({ key });
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts a quoted value only when it is the sf-string of the key it yields: no lax forms', () => {
    const quotedish = fc.string({ unit: fc.constantFrom('"', '\\', 'a', ' ', ';', '=', '\t', '\u00e9', '\u0000', '\u007f'), maxLength: 12 }).map((s) => `"${s}`);
    fc.assert(
      fc.property(quotedish, (v) => {
        const r = checkHeaderKey(v, 255);
        // Only the optional whitespace around a field value may differ.
        if ('key' in r) expect(serializeSfString(r.key)).toBe(v.replace(/[ \t]+$/, ''));
        else expect(r.error.length).toBeGreaterThan(0);
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on random bytes: a key or an error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 300 }), (bytes, max) => {
        const r = checkHeaderKey(Buffer.from(bytes).toString('latin1'), max);
        if ('key' in r) {
          expect(r.key.length).toBeGreaterThan(0);
          expect(r.key.length).toBeLessThanOrEqual(max);
          expect(r.key).toMatch(/^[\x20-\x7e]+$/);
        } else expect(typeof r.error).toBe('string');
      }),
      { numRuns: 3000 },
    );
  });

  it('trims the whitespace around a value in time linear in its length: a long run of spaces inside a key does not stall the event loop', () => {
    expect(checkHeaderKey('\t a b \t ', 10)).toEqual({ key: 'a b' });
    expect(checkHeaderKey(' \t\t ', 10)).toEqual({ error: 'key is empty' });
    // The trim used to be /^[ \t]+|[ \t]+$/, tried from each position of such a run: 110 ms for
    // a 16 KB header (Node's default limit), about 70 s for this one (a server with a larger
    // maxHeaderSize). A scan from each end takes well under a millisecond.
    const value = `a${' '.repeat(400_000)}b`;
    const started = performance.now();
    expect(checkHeaderKey(value, 8192)).toEqual({ error: 'key is longer than 8192 characters' });
    expect(checkHeaderKey(`"${value.slice(0, 8000)}"   `, 8192)).toEqual({ key: value.slice(0, 8000) });
    expect(performance.now() - started).toBeLessThan(2000);
  });
});

describe('dedupers on a shared breaker', () => {
  it('a deduper dropped without close() does not keep a listener on the breaker; close() detaches at once', async () => {
    const shared = new CircuitBreaker({ failureThreshold: 1, openMs: 100 });
    const kept = new Deduper({ metrics: false, breaker: shared });
    const heard: string[] = [];
    kept.on('breaker', (e) => heard.push(e.state));
    // Per-request middleware: a deduper built and dropped for each of many requests.
    for (let i = 0; i < 2000; i++) new Deduper({ metrics: false, breaker: shared }).on('breaker', () => undefined);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const deadline = Date.now() + 10_000;
    for (;;) {
      // Collect first, in a task of its own: a WeakRef read (listenerCount) keeps its target
      // alive until the end of the task that read it.
      gc();
      await new Promise((r) => setTimeout(r, 10));
      if (shared.listenerCount <= 1) break;
      if (Date.now() > deadline) throw new Error(`listeners still attached: ${shared.listenerCount}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(shared.listenerCount).toBe(1);
    // The deduper still in use still hears its breaker.
    shared.failure(0, shared.allow(0));
    expect(heard).toEqual(['open']);
    kept.close();
    kept.close();
    expect(shared.listenerCount).toBe(0);
    expect(shared.allow(100)).toBeGreaterThan(0);
    expect(heard).toEqual(['open']);
  });
});

describe('which grid errors feed the breaker', () => {
  it('counts what says the grid is unhealthy, not what the app or the request caused', () => {
    const faults = [
      new GridConnectionError('reset'),
      new GridTimeoutError('deadline'),
      new GridTimeoutError('one attempt', { code: 'GRID_REQUEST_TIMEOUT', retryable: true }),
      new GridServerError(ErrorCode.NOT_PRIMARY, 'moved'),
      new GridServerError(ErrorCode.OVERLOADED, 'busy'),
      new GridServerError(ErrorCode.INTERNAL, 'bug'),
      new GridServerError(ErrorCode.REPLICATION_FAILED, 'backup'),
      new PartitionLostError('lost'),
      new ClusterMismatchError('other cluster'),
    ];
    const notFaults = [
      new GridClosedError(),
      new GridAbortError(),
      new GridConfigError('leaseMs', 'bad'),
      new GridSerializationError('cannot deserialise value'),
      new GridServerError(ErrorCode.BAD_REQUEST, 'bad'),
      new GridServerError(ErrorCode.FRAME_TOO_LARGE, 'too large'),
      new GridServerError(ErrorCode.VALUE_TYPE, 'type'),
      new GridServerError(ErrorCode.UNKNOWN_OP, 'op'),
      new LockNotHeldError('not held'),
      new TypeError('a bug'),
      'a string',
      undefined,
    ];
    for (const e of faults) expect(isGridFault(e), String(e)).toBe(true);
    for (const e of notFaults) expect(isGridFault(e), String(e)).toBe(false);
  });
});

describe('options', () => {
  it.each([
    [{ leaseMs: 0 }, 'leaseMs'],
    [{ leaseMs: 1.5 }, 'leaseMs'],
    [{ retentionMs: -1 }, 'retentionMs'],
    [{ header: 'bad header' }, 'header'],
    [{ header: false }, 'fingerprint'],
    [{ fingerprint: 'body.id' }, 'fingerprint'],
    [{ methods: [] }, 'methods'],
    [{ failMode: 'maybe' }, 'failMode'],
    [{ breaker: { failureThreshold: 0 } }, 'breaker.failureThreshold'],
    [{ breaker: { openMs: 'soon' } }, 'breaker.openMs'],
    [{ maxStoredBodyBytes: -5 }, 'maxStoredBodyBytes'],
    [{ replayHeaders: ['ok', 'not ok'] }, 'replayHeaders[1]'],
    [{ metrics: { client: {} } }, 'metrics'],
    [{ client: 42 }, 'client'],
    [{ retentionMS: 5 }, 'retentionMS'],
    [{ breaker: null }, 'breaker'],
    [{ breaker: { failureTreshold: 5 } }, 'breaker.failureTreshold'],
    [{ breaker: { openMs: Number.NaN } }, 'breaker.openMs'],
    [{ breaker: { openMs: 2 ** 31 } }, 'breaker.openMs'],
    [{ leaseMs: Number.POSITIVE_INFINITY }, 'leaseMs'],
    [{ gridTimeoutMs: 2 ** 31 }, 'gridTimeoutMs'],
    [{ logger: { warn: 'yes' } }, 'logger.warn'],
    [{ logger: { error: null } }, 'logger.error'],
    [{ cache: 'c'.repeat(256) }, 'cache'],
    [{ metrics: { client: prom, prefix: 'bad prefix' } }, 'metrics.prefix'],
    [{ metrics: { client: prom, registery: {} } }, 'metrics.registery'],
    [{ metrics: { client: prom, registry: 5 } }, 'metrics.registry'],
    // An array is an object to typeof, but no options object (`breaker: []` was already refused).
    [[], 'options'],
    [[{ leaseMs: 5 }], 'options'],
    [{ logger: [] }, 'logger'],
    [{ logger: [console.warn] }, 'logger'],
  ])('rejects %j naming %s', (opts, field) => {
    let err: unknown;
    try {
      resolveDedupeOptions(opts as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DedupeConfigError);
    expect((err as DedupeConfigError).field).toBe(field);
    expect((err as DedupeConfigError).code).toBe('DEDUPE_CONFIG');
    expect((err as DedupeConfigError).retryable).toBe(false);
    expect((err as Error).message).toContain(field);
  });

  it('has documented defaults', () => {
    const o = resolveDedupeOptions({});
    expect(o.header).toBe('idempotency-key');
    expect([...o.methods]).toEqual(['POST', 'PUT', 'PATCH', 'DELETE']);
    expect(o.failMode).toBe('closed');
    expect(o.leaseMs).toBe(10_000);
    expect(o.retentionMs).toBe(86_400_000);
    expect(o.maxStoredBodyBytes).toBe(1024 * 1024);
    // ADR 0051: 2xx, 3xx and 4xx except the "try again later" ones; no 5xx.
    expect([200, 201, 204, 301, 302, 303, 307, 308, 400, 404, 409, 422, 451, 499].every(o.storeStatus)).toBe(true);
    expect([408, 425, 429, 500, 502, 503, 504, 100, 199, 599].some(o.storeStatus)).toBe(false);
    expect(o.storeStatus).toBe(defaultStoreStatus);
    for (let s = 100; s < 600; s++) expect(o.storeStatus(s), String(s)).toBe(s >= 200 && s < 500 && s !== 408 && s !== 425 && s !== 429);
    expect(o.replayHeaders.has('content-encoding')).toBe(true);
  });
});

describe('canonical JSON of what cannot be fingerprinted', () => {
  it('throws for values whose contents would all hash alike ({}) and for functions and symbols', () => {
    for (const v of [new Map([['a', 1]]), new Set([1]), Promise.resolve(1), { then: () => undefined }, () => 1, Symbol('s'), [new Map()], { a: new Set() }]) {
      expect(() => canonicalJson(v)).toThrow(TypeError);
    }
    expect(canonicalJson([undefined, null])).toBe('[null,null]');
  });
});

describe('decisions without a grid', () => {
  const req = (headers: Record<string, string>, method = 'POST') => ({
    method,
    route: '/orders',
    header: (n: string) => headers[n],
    body: { a: 1 },
    clientAddress: '127.0.0.1',
    userAgent: 'test',
    raw: {},
  });

  it('passes other methods and keyless requests through, and answers 400 for required or bad keys', async () => {
    const d = new Deduper({ metrics: false });
    expect(await d.begin(req({}, 'GET'))).toEqual({ action: 'bypass', outcome: 'bypass' });
    expect(await d.begin(req({}))).toEqual({ action: 'bypass', outcome: 'bypass' });
    const bad = await d.begin(req({ 'idempotency-key': 'x'.repeat(300) }));
    expect(bad).toMatchObject({ action: 'respond', outcome: 'invalid_key', response: { status: 400 } });
    const strict = new Deduper({ metrics: false, required: true });
    expect(await strict.begin(req({}))).toMatchObject({ action: 'respond', outcome: 'missing_key', response: { status: 400 } });
  });

  it('fails closed with 503 + Retry-After, or open, when there is no grid client', async () => {
    const closed = new Deduper({ metrics: false });
    const r = await closed.begin(req({ 'idempotency-key': 'k' }));
    expect(r).toMatchObject({ action: 'respond', outcome: 'fail_closed', response: { status: 503 } });
    if (r.action === 'respond') expect(r.response.headers).toContainEqual(['retry-after', '5']);
    const events: unknown[] = [];
    const lines: unknown[] = [];
    const open = new Deduper({ metrics: false, failMode: 'open', logger: { warn: (m, f) => lines.push([m, f]) } });
    open.on('failOpen', (e) => events.push(e));
    expect(await open.begin(req({ 'idempotency-key': 'k' }))).toEqual({ action: 'bypass', outcome: 'fail_open' });
    expect(events).toHaveLength(1);
    expect(lines[0]).toMatchObject([expect.any(String), { event: 'dedupe.fail_open', route: '/orders', clientAddress: '127.0.0.1', userAgent: 'test' }]);
  });

  it('answers 400 when the fingerprint function cannot read the request', async () => {
    const d = new Deduper<{ body?: { id: string } }>({
      metrics: false,
      header: false,
      fingerprint: (r) => r.body!.id,
    });
    const r = await d.begin({ ...req({}), raw: {} });
    expect(r).toMatchObject({ action: 'respond', outcome: 'invalid_key', response: { status: 400 } });
  });

  it('answers 400, not 500, when a tenant or payload function throws or the body is cyclic', async () => {
    const throwing = new Deduper({ metrics: false, tenant: () => { throw new Error('no tenant'); } });
    expect(await throwing.begin(req({ 'idempotency-key': 'k' }))).toMatchObject({ action: 'respond', response: { status: 400 } });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const d = new Deduper({ metrics: false });
    expect(await d.begin({ ...req({ 'idempotency-key': 'k' }), body: cyclic })).toMatchObject({ action: 'respond', outcome: 'invalid_key', response: { status: 400 } });
  });

  it('counts outcomes with prom-client', async () => {
    const registry = new prom.Registry();
    const d = new Deduper({ metrics: { client: prom as never, registry }, failMode: 'open' });
    await d.begin(req({ 'idempotency-key': 'k' }));
    await d.begin(req({}));
    // A second deduper on the same registry reuses the counter.
    const d2 = new Deduper({ metrics: { client: prom as never, registry }, required: true });
    await d2.begin(req({}));
    const text = await registry.metrics();
    expect(text).toContain('gridlink_dedupe_requests_total{route="/orders",outcome="fail_open"} 1');
    expect(text).toContain('gridlink_dedupe_requests_total{route="/orders",outcome="bypass"} 1');
    expect(text).toContain('gridlink_dedupe_requests_total{route="/orders",outcome="missing_key"} 1');
  });
});

describe('Accept-Encoding of a replay (RFC 9110 section 12.5.3)', () => {
  const keep = (stored: string, ae: string | undefined): number | null => codingsToKeep(contentCodings(stored), parseAcceptEncoding(ae));

  it('keeps the stored codings the request accepts, peels the outer ones it does not, and gives up when not even identity is acceptable', () => {
    expect(keep('gzip', 'gzip, deflate')).toBe(1);
    expect(keep('gzip', 'x-gzip')).toBe(1);
    expect(keep('x-gzip', 'GZIP;Q=0.001')).toBe(1);
    expect(keep('gzip', '*')).toBe(1);
    expect(keep('gzip', undefined)).toBe(0); // no field: identity only
    expect(keep('gzip', '')).toBe(0);
    expect(keep('gzip', 'gzip;q=0')).toBe(0);
    expect(keep('gzip', 'gzip;q=0.000, *')).toBe(0);
    expect(keep('gzip', 'gzip;q=1.5')).toBe(0); // a weight that does not parse: not taken as accepting
    expect(keep('gzip', 'gzip, gzip;q=0')).toBe(0); // listed twice: the lowest weight
    expect(keep('gzip, br', 'gzip')).toBe(1);
    expect(keep('gzip, br', 'br')).toBe(0);
    expect(keep('gzip, identity', 'identity')).toBe(0);
    expect(keep('gzip', 'br, identity;q=0')).toBeNull();
    expect(keep('gzip', '*;q=0')).toBeNull();
    expect(keep('gzip', '*;q=0, identity')).toBe(0);
  });

  it('decodes within the bound: a body that inflates past it stops there (a decompression bomb), however small it is encoded', async () => {
    const text = Buffer.from('x'.repeat(1000));
    expect((await decode('gzip', gzipSync(text), 1000)).equals(text)).toBe(true);
    expect((await decode('deflate', deflateRawSync(text), 1000)).equals(text)).toBe(true);
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.byteLength).toBeLessThan(128 * 1024);
    const heap = process.memoryUsage().arrayBuffers;
    await expect(decode('gzip', bomb, 1024 * 1024)).rejects.toBeInstanceOf(DecodedTooLarge);
    await expect(decode('br', brotliCompressSync(Buffer.alloc(1001)), 1000)).rejects.toBeInstanceOf(DecodedTooLarge);
    expect(process.memoryUsage().arrayBuffers - heap).toBeLessThan(32 * 1024 * 1024);
    await expect(decode('gzip', Buffer.from('not gzip'), 1000)).rejects.toThrow();
  });
});

describe('counting header lines without headersDistinct', () => {
  // headerLineCount must give what Node's own headersDistinct would: a duplicated
  // Idempotency-Key is refused by that count (400), a single one never is.
  const name = fc.constantFrom('idempotency-key', 'Idempotency-Key', 'IDEMPOTENCY-KEY', 'idempotency-kex', 'x-idempotency-key', 'content-type', 'Accept');
  it('equals the length of headersDistinct[name] for any raw header list (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(name, fc.string({ maxLength: 8 })), { maxLength: 12 }), fc.constantFrom('idempotency-key', 'content-type', 'accept'), (pairs, asked) => {
        const msg = new IncomingMessage(new Socket());
        // What Node's HTTP parser calls with the header lines it read (it sets the count that
        // headersDistinct walks; assigning rawHeaders alone leaves that count at 0).
        const raw = pairs.flat();
        (msg as unknown as { _addHeaderLines(h: string[], n: number): void })._addHeaderLines(raw, raw.length);
        expect(headerLineCount(msg.rawHeaders, asked)).toBe(msg.headersDistinct[asked]?.length ?? 0);
      }),
    );
  });
  it('counts every line of the name, in any case', () => {
    expect(headerLineCount(['Idempotency-Key', 'a', 'host', 'h', 'idempotency-key', 'b'], 'idempotency-key')).toBe(2);
    expect(headerLineCount(['host', 'h'], 'idempotency-key')).toBe(0);
  });
});
