/**
 * A call's options with a name no option has (`ttl` for `ttlMs`, `timeout` for `timeoutMs`) are
 * refused with a GridConfigError naming it, before anything is sent: such a typo used to do
 * nothing at all (an entry written without its expiry stayed for good). Options that are not an
 * object are refused likewise. One options object may still serve every call (a get given a put's
 * `ttlMs`), and null or absent options mean none. Against a scripted node that would answer every
 * call, so that a refused call shows as a request sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Op } from '@gridlink/protocol';
import { GridClient, GridConfigError } from '@gridlink/client';
import { ScriptedNode } from '@gridlink/testkit';
import { rejection, show } from './helpers/wait.js';

let node: ScriptedNode;
let client: GridClient;
let token = 0;

beforeAll(async () => {
  node = await new ScriptedNode('n1', 8, (req, n) => {
    if (req.op === Op.TOPOLOGY) return { payload: n.map(1) };
    if (req.op === Op.HEARTBEAT || req.op === Op.CACHE_PUT || req.op === Op.CACHE_CREATE) return { payload: {} };
    if (req.op === Op.CACHE_GET) return { payload: { value: null } };
    if (req.op === Op.LOCK_ACQUIRE || req.op === Op.LOCK_TRY_ACQUIRE) return { payload: { acquired: true, token: ++token } };
    if (req.op === Op.LOCK_RELEASE) return { payload: { released: true } };
    return undefined;
  }).start();
  client = await GridClient.connect({ endpoints: [node.endpoint], operationTimeout: 2000 });
});

afterAll(async () => {
  await client?.close();
  await node?.close();
});

/** Requests other than heartbeats and topology the node received so far. */
function sent(): number {
  return node.requests.filter((r) => r.op !== Op.HEARTBEAT && r.op !== Op.TOPOLOGY).length;
}

async function refused(call: () => Promise<unknown> | AsyncIterable<unknown>, field: string): Promise<void> {
  const before = sent();
  const run = async (): Promise<unknown> => {
    const r = call();
    if (Symbol.asyncIterator in (r as object)) {
      for await (const _ of r as AsyncIterable<unknown>) break;
      return undefined;
    }
    return r;
  };
  const e = await rejection(run());
  expect(e, show(e)).toBeInstanceOf(GridConfigError);
  expect((e as GridConfigError).field).toBe(field);
  expect(sent(), `nothing sent for a call refused on ${field}`).toBe(before);
}

/** Options as a JavaScript caller could pass them (any names). */
const typo = (o: unknown): never => o as never;

describe('a misspelt option name is refused, naming it', () => {
  it('by every cache operation', async () => {
    const c = client.cache<string, number>('option-names');
    await refused(() => c.put('k', 1, typo({ ttl: 1000 })), 'ttl');
    await refused(() => c.get('k', typo({ timeout: 50 })), 'timeout');
    await refused(() => c.getAll(['k'], typo({ timeout: 50 })), 'timeout');
    await refused(() => c.getAll([], typo({ timeout: 50 })), 'timeout');
    await refused(() => c.putAll([['k', 1]], typo({ ttl: 1000 })), 'ttl');
    await refused(() => c.putAll([], typo({ ttl: 1000 })), 'ttl');
    await refused(() => c.putIfAbsent('k', 1, typo({ ttl: 1000 })), 'ttl');
    await refused(() => c.increment('k', 1, typo({ initialValue: 5 })), 'initialValue');
    await refused(() => c.remove('k', typo({ signl: new AbortController().signal })), 'signl');
    await refused(() => c.scan(typo({ batch: 10 })), 'batch');
    await refused(() => c.keys(typo({ batch: 10 })), 'batch');
  });

  it('by every way of taking, renewing and releasing a lock', async () => {
    const c = client.cache<string, number>('option-names');
    await refused(() => client.lock('l').acquire(typo({ wait: 100 })), 'wait');
    await refused(() => client.lock('l').attempt(typo({ lease: 100 })), 'lease');
    await refused(() => client.lock('l').tryAcquire(typo({ lease: 100 })), 'lease');
    await refused(() => client.lock('l').attemptGet(c, typo({ ifabsent: true })), 'ifabsent');
    await refused(() => client.withLock('l', () => 1, typo({ nowait: true })), 'nowait');
    const h = await client.lock('l').acquire();
    await refused(() => h.renew(typo({ lease: 100 })), 'lease');
    await refused(() => h.putAndRelease(c, 1, typo({ ttl: 100 })), 'ttl');
    await refused(() => h.release(typo({ timeout: 100 })), 'timeout');
    // Still held: a refused release or putAndRelease gave nothing up.
    expect(h.held).toBe(true);
    await h.release();
  });

  it('by cache() and createCache()', async () => {
    const before = sent();
    expect(() => client.cache('x', typo({ serialiser: {} }))).toThrow(expect.objectContaining({ field: 'serialiser' }) as Error);
    // A call option belongs to createCache (its request), not to cache() (a view).
    expect(() => client.cache('x', typo({ timeoutMs: 100 }))).toThrow(expect.objectContaining({ field: 'timeoutMs' }) as Error);
    await refused(() => client.createCache('x', {}, typo({ ttlMs: 100 })), 'ttlMs');
    expect(sent()).toBe(before);
    const made = await client.createCache<string, number>('x', {}, { timeoutMs: 1000 });
    expect(made.name).toBe('x');
  });
});

describe('options that are not an object are refused', () => {
  it('a number, a string or an array', async () => {
    const c = client.cache<string, number>('option-names');
    await refused(() => c.put('k', 1, typo(5000)), 'options');
    await refused(() => c.get('k', typo('fast')), 'options');
    await refused(() => client.lock('l').acquire(typo([])), 'options');
    expect(() => client.cache('x', typo(1))).toThrow(expect.objectContaining({ field: 'options' }) as Error);
  });
});

describe('what stays accepted', () => {
  it('one options object for a get and a put, and null or absent options', async () => {
    const c = client.cache<string, number>('option-names');
    const shared = { timeoutMs: 1000, ttlMs: 60_000 };
    const before = sent();
    await c.put('k', 1, shared);
    expect(await c.get('k', shared)).toBeUndefined();
    await c.put('k', 1, null as unknown as undefined);
    expect(await c.get('k')).toBeUndefined();
    const h = await client.lock('shared').acquire({ ...shared, waitMs: 100 });
    await h.release(null);
    expect(await client.withLock('shared', (l) => l.fencingToken > 0, { ...shared, waitMs: 100, noWait: true })).toBe(true);
    expect(sent()).toBe(before + 8);
  });
});
