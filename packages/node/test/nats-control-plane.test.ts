/**
 * The ControlPlane contract, run over the in-memory plane and over NatsControlPlane on real
 * nats-server processes (one server, and a 3-server JetStream cluster with an R3 bucket), plus
 * what only NATS can do to a watch: lose its server, or its stream leader.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CasConflictError, MemoryControlPlane, type ControlPlane, type KvEvent } from '@gridlink/node';
import { NatsCluster, waitFor } from '@gridlink/testkit';
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { ControlPlaneBucketMissingError, ControlPlaneUnavailableError, NatsControlPlane, nextServer, parseNatsServers } from '../src/control/nats.js';
import { NodeConfigError } from '../src/errors.js';

interface Harness {
  name: string;
  /** A plane on a fresh namespace (bucket) plus a second handle on the same namespace. */
  open(): Promise<{ a: ControlPlane; b: ControlPlane }>;
  runs: number;
}

let single: NatsCluster;
let bucketSeq = 0;
const opened: NatsControlPlane[] = [];

async function natsPair(urls: string[], replicas = 1): Promise<{ a: NatsControlPlane; b: NatsControlPlane }> {
  const bucket = `contract${++bucketSeq}`;
  const a = await NatsControlPlane.connect({ servers: urls, bucket, replicas, connectTimeoutMs: 20_000 });
  const b = await NatsControlPlane.connect({ servers: [...urls].reverse(), bucket, replicas, connectTimeoutMs: 20_000 });
  opened.push(a, b);
  return { a, b };
}

/**
 * The 3-server clusters of the three tests that take one (each its own, closed by it), started with
 * the file: a new JetStream cluster elects its meta leader ~2 s after its servers are up, which the
 * tests would otherwise each wait out in turn, after the tests before them.
 */
const THREE = { leaderKill: 0, watchHang: 1, writeHang: 2 } as const;
let threes: Promise<NatsCluster>[] = [];
const three = (which: keyof typeof THREE): Promise<NatsCluster> => threes[THREE[which]]!;

beforeAll(async () => {
  threes = Object.keys(THREE).map(() => NatsCluster.start({ servers: 3 }));
  // Each is awaited by its test (a failed start fails that test), and closed in afterAll too.
  for (const t of threes) t.catch(() => undefined);
  single = await NatsCluster.start({ servers: 1 });
});

afterAll(async () => {
  await Promise.all(opened.map((p) => p.close()));
  await single?.close();
  for (const t of await Promise.allSettled(threes)) if (t.status === 'fulfilled') await t.value.close();
});

/** Collects a watch's events; `until(n)` waits for n of them. */
function collect<T>(plane: ControlPlane, prefix: string): { events: KvEvent<T>[]; stop: () => void; until: (n: number) => Promise<void> } {
  const events: KvEvent<T>[] = [];
  const stop = plane.watch<T>(prefix, (e) => events.push(e));
  return { events, stop, until: (n) => waitFor(`${n} watch events (have ${events.length})`, () => events.length >= n, 20_000) };
}

const harnesses: Harness[] = [
  {
    name: 'MemoryControlPlane',
    runs: 50,
    open: () => {
      const m = new MemoryControlPlane();
      return Promise.resolve({ a: m, b: m });
    },
  },
  { name: 'NatsControlPlane (1 server)', runs: 8, open: () => natsPair(single.urls) },
];

for (const h of harnesses) {
  describe(`ControlPlane contract: ${h.name}`, () => {
    it('create and update are compare-and-set; revisions strictly increase across keys', async () => {
      const { a, b } = await h.open();
      const r1 = await a.create('k.a', { n: 1 });
      await expect(b.create('k.a', { n: 2 })).rejects.toBeInstanceOf(CasConflictError);
      const r2 = await b.put('k.b', { n: 1 });
      expect(r2).toBeGreaterThan(r1);
      const r3 = await b.update('k.a', { n: 3 }, r1);
      expect(r3).toBeGreaterThan(r2);
      await expect(a.update('k.a', { n: 4 }, r1)).rejects.toBeInstanceOf(CasConflictError);
      await expect(a.update('k.missing', { n: 1 }, r3)).rejects.toBeInstanceOf(CasConflictError);
      expect(await a.get('k.a')).toEqual({ key: 'k.a', value: { n: 3 }, revision: r3 });
      expect(await a.get('k.none')).toBeNull();
      expect((await b.list('k.')).map((e) => e.key).sort()).toEqual(['k.a', 'k.b']);
      await a.delete('k.a');
      expect(await b.get('k.a')).toBeNull();
      // A deleted key can be created again.
      const r4 = await b.create('k.a', { n: 5 });
      expect(r4).toBeGreaterThan(r3);
      expect((await a.list('k.')).map((e) => [e.key, e.value])).toEqual(
        expect.arrayContaining([
          ['k.a', { n: 5 }],
          ['k.b', { n: 1 }],
        ]),
      );
    });

    it('a delete with a revision is compare-and-set: refused when the key moved on or is absent', async () => {
      const { a, b } = await h.open();
      const r1 = await a.put('d.k', { n: 1 });
      const r2 = await b.put('d.k', { n: 2 });
      await expect(a.delete('d.k', r1)).rejects.toBeInstanceOf(CasConflictError);
      expect((await b.get('d.k'))?.value).toEqual({ n: 2 });
      await expect(a.delete('d.none', r1)).rejects.toBeInstanceOf(CasConflictError);
      await b.delete('d.k', r2);
      expect(await a.get('d.k')).toBeNull();
      // Deleted: a delete at the old revision is refused too, and a new put is untouched by it.
      await expect(a.delete('d.k', r2)).rejects.toBeInstanceOf(CasConflictError);
      const r3 = await a.put('d.k', { n: 3 });
      await expect(b.delete('d.k', r2)).rejects.toBeInstanceOf(CasConflictError);
      expect(await a.get('d.k')).toEqual({ key: 'd.k', value: { n: 3 }, revision: r3 });
    });

    it('watch reports every put and delete under its prefix once, in revision order (property)', async () => {
      const op = fc.oneof(
        fc.record({ t: fc.constant('put' as const), k: fc.constantFrom('w.a', 'w.b', 'x.c', 'w.d.e'), v: fc.integer() }),
        fc.record({ t: fc.constant('delete' as const), k: fc.constantFrom('w.a', 'w.b', 'x.c') }),
        fc.record({ t: fc.constant('update' as const), k: fc.constantFrom('w.a', 'w.b'), v: fc.integer() }),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
          const { a, b } = await h.open();
          const w = collect<number>(b, 'w.');
          // Watch, then list: together they miss nothing written after the watch was asked for.
          await b.list('w.');
          const expected: [string, string, number][] = [];
          const present = new Map<string, number>();
          for (const o of ops) {
            if (o.t === 'put') {
              const rev = await a.put(o.k, o.v);
              present.set(o.k, rev);
              if (o.k.startsWith('w.')) expected.push(['put', o.k, rev]);
            } else if (o.t === 'update') {
              const cur = present.get(o.k);
              if (cur === undefined) continue;
              const rev = await a.update(o.k, o.v, cur);
              present.set(o.k, rev);
              if (o.k.startsWith('w.')) expected.push(['put', o.k, rev]);
            } else {
              const had = present.delete(o.k);
              await a.delete(o.k);
              if (had && o.k.startsWith('w.')) expected.push(['delete', o.k, -1]);
            }
          }
          await w.until(expected.length);
          // Nothing beyond what was expected shows up either.
          const marker = await a.put('w.zz-end', 0);
          await w.until(expected.length + 1);
          w.stop();
          const got = w.events.map((e) => [e.type, e.key, e.type === 'put' ? e.revision : -1]);
          expect(got).toEqual([...expected, ['put', 'w.zz-end', marker]]);
          const revs = w.events.map((e) => e.revision);
          for (let i = 1; i < revs.length; i++) expect(revs[i]!).toBeGreaterThan(revs[i - 1]!);
          await Promise.all(['w.a', 'w.b', 'x.c', 'w.d.e', 'w.zz-end'].map((k) => a.delete(k)));
        }),
        { numRuns: h.runs },
      );
    });
  });
}

describe('NatsControlPlane configuration', () => {
  it('refuses bad options with a message naming the field', async () => {
    expect(() => parseNatsServers('')).toThrow(NodeConfigError);
    expect(() => parseNatsServers('http://x:1')).toThrow(/servers/);
    expect(parseNatsServers('nats://a:1, nats://b:2')).toEqual(['nats://a:1', 'nats://b:2']);
    await expect(NatsControlPlane.connect({ servers: single.urls, bucket: 'bad bucket' })).rejects.toThrow(/bucket/);
    await expect(NatsControlPlane.connect({ servers: single.urls, replicas: 0 })).rejects.toThrow(/replicas/);
    await expect(NatsControlPlane.connect({ servers: single.urls, token: 't', user: 'u', pass: 'p' })).rejects.toThrow(/credentials/);
    await expect(NatsControlPlane.connect({ servers: single.urls, user: 'u' })).rejects.toThrow(/user/);
  });

  it('create: false opens an existing bucket only: a missing one is a typed error at once, and is not created', async () => {
    const bucketNames = async (): Promise<string[]> => {
      const nc = await NatsControlPlane.connect({ servers: single.urls, bucket: 'lister', connectTimeoutMs: 20_000 });
      opened.push(nc);
      const names: string[] = [];
      for await (const st of new Kvm(nc.connection).list()) names.push(st.bucket);
      return names;
    };
    const started = Date.now();
    const err = await NatsControlPlane.connect({ servers: single.urls, bucket: 'nosuchbucket', create: false, connectTimeoutMs: 20_000 }).catch((e: unknown) => e);
    // Not retried until connectTimeoutMs: a missing bucket does not appear by waiting.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toBeInstanceOf(ControlPlaneBucketMissingError);
    const missing = err as ControlPlaneBucketMissingError;
    expect(missing.code).toBe('GRID_CONTROL_PLANE_BUCKET_MISSING');
    expect(missing.retryable).toBe(false);
    expect(missing.bucket).toBe('nosuchbucket');
    expect(missing.message).toBe(`bucket "nosuchbucket" does not exist on ${single.urls.join(',')}`);
    expect(await bucketNames()).not.toContain('nosuchbucket');
    await expect(NatsControlPlane.connect({ servers: single.urls, create: 'no' as unknown as boolean })).rejects.toThrow(/create/);

    // An existing bucket (created by a node, with its replica count) is opened as it is.
    const creator = await NatsControlPlane.connect({ servers: single.urls, bucket: 'existing', connectTimeoutMs: 20_000 });
    opened.push(creator);
    const rev = await creator.put('k.x', { n: 1 });
    const reader = await NatsControlPlane.connect({ servers: single.urls, bucket: 'existing', create: false, connectTimeoutMs: 20_000 });
    opened.push(reader);
    expect(await reader.get('k.x')).toEqual({ key: 'k.x', value: { n: 1 }, revision: rev });
    const rev2 = await reader.update('k.x', { n: 2 }, rev);
    expect((await creator.get('k.x'))?.value).toEqual({ n: 2 });
    expect(rev2).toBeGreaterThan(rev);
    expect((await reader.bucketStatus()).replicas).toBe(1);
  });

  it('opening an existing bucket asks JetStream for its stream once, which also says which stream it is', async () => {
    const bucket = 'askedonce';
    const creator = await NatsControlPlane.connect({ servers: single.urls, bucket, connectTimeoutMs: 20_000 });
    // Closed before counting: its watchdog asks about the same stream every second.
    await creator.close();
    const counter = await connect({ servers: single.urls });
    try {
      let asked = 0;
      counter.subscribe(`$JS.API.STREAM.INFO.KV_${bucket}`, {
        callback: () => {
          asked++;
        },
      });
      await counter.flush();
      for (const create of [false, true]) {
        asked = 0;
        // watchStallMs puts the watchdog's first stream check 30 s away, outside the count.
        const p = await NatsControlPlane.connect({ servers: single.urls, bucket, create, watchStallMs: 60_000, connectTimeoutMs: 20_000 });
        opened.push(p);
        // The requests reached the server before their replies: a round trip of the counter's
        // connection delivers every copy of them before it ends.
        await counter.flush();
        expect(asked, `create: ${create}`).toBe(1);
        expect((p as unknown as { streamCreated?: string }).streamCreated).toMatch(/^\d{4}-\d\d-\d\dT/);
      }
    } finally {
      await counter.close();
    }
  });

  it('gives up connecting after connectTimeoutMs with a retryable typed error', async () => {
    const err = await NatsControlPlane.connect({ servers: 'nats://127.0.0.1:1', connectTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlPlaneUnavailableError);
    expect((err as ControlPlaneUnavailableError).retryable).toBe(true);
  });
});

/**
 * Writes continuously through `writer` while `fault` runs, then checks that `watcher` saw every
 * acknowledged write, once, in revision order.
 */
async function watchSurvives(writer: NatsControlPlane, watcher: NatsControlPlane, fault: () => Promise<void>): Promise<{ acked: number; failed: number }> {
  const w = collect<number>(watcher, 'r.');
  await watcher.list('r.');
  const acked: number[] = [];
  let failed = 0;
  let stop = false;
  let i = 0;
  const load = (async () => {
    while (!stop) {
      try {
        acked.push(await writer.put(`r.${i % 4}`, i));
      } catch {
        failed++;
        await new Promise((r) => setTimeout(r, 50));
      }
      i++;
    }
  })();
  await waitFor('writes before the fault', () => acked.length >= 10);
  await fault();
  const after = acked.length;
  await waitFor('writes after the fault', () => acked.length >= after + 10, 40_000);
  stop = true;
  await load;
  // Wait for the last acknowledged revision, not for a count: a write that failed on the client may
  // still have been committed and reported, so a count can be reached before the last one arrives.
  const lastAcked = Math.max(...acked);
  await waitFor(`watch event of revision ${lastAcked}`, () => (w.events.at(-1)?.revision ?? 0) >= lastAcked, 20_000);
  w.stop();
  const seen = w.events.map((e) => e.revision);
  // Every acknowledged revision is there, nothing twice, in order. (A write that failed on the
  // client may still have been committed; the watch may report it, in its place.)
  for (let k = 1; k < seen.length; k++) expect(seen[k]!).toBeGreaterThan(seen[k - 1]!);
  const seenSet = new Set(seen);
  expect(acked.filter((r) => !seenSet.has(r))).toEqual([]);
  return { acked: acked.length, failed };
}

describe('NatsControlPlane watches resume', () => {
  it('across a restart of the only server', async () => {
    const cluster = await NatsCluster.start({ servers: 1 });
    try {
      const { a, b } = await natsPair(cluster.urls);
      const r = await watchSurvives(a, b, async () => {
        await cluster.servers[0]!.kill();
        await cluster.servers[0]!.start();
      });
      expect(r.failed).toBeGreaterThanOrEqual(0);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await cluster.close();
    }
  });

  it('on a 3-server cluster (R3) when the stream leader is killed', async () => {
    const cluster = await three('leaderKill');
    try {
      const { a, b } = await natsPair(cluster.urls, 3);
      const status = await (async () => {
        let leader: string | undefined;
        await waitFor('a stream leader', async () => {
          leader = await streamLeader(a);
          return leader !== undefined;
        });
        return leader!;
      })();
      const victim = cluster.servers.find((s) => s.name === status)!;
      await watchSurvives(a, b, async () => {
        await victim.kill();
      });
      // The contract still holds on the new leader, and the old one rejoins.
      const r = await a.put('r.after', 1);
      await expect(b.update('r.after', 2, r - 1 > 0 ? r - 1 : 1)).rejects.toBeInstanceOf(CasConflictError);
      await victim.start();
      await Promise.all([a.close(), b.close()]);
    } finally {
      await cluster.close();
    }
  });
});

describe('NatsControlPlane watch on a hung server', () => {
  it('resumes on another server when its own hangs (SIGSTOP), missing nothing', async () => {
    const cluster = await three('watchHang');
    try {
      const a = await NatsControlPlane.connect({ servers: cluster.urls, bucket: 'hang', replicas: 3, connectTimeoutMs: 20_000 });
      let leader: string | undefined;
      await waitFor('a stream leader', async () => (leader = await streamLeader(a)) !== undefined);
      // The watcher knows one server only, not the stream leader (writes keep flowing); it learns
      // the others from the cluster and moves there when its server hangs.
      const watched = cluster.servers.find((s) => s.name !== leader)!;
      const b = await NatsControlPlane.connect({ servers: watched.url, bucket: 'hang', replicas: 3, connectTimeoutMs: 20_000 });
      opened.push(a, b);
      // A plane that only watches sends no request of its own that could go unanswered but the
      // watchdog's stream check: that one must make it move, not NATS's pings 4-6 s later (and a
      // first reconnect back to the hung server, 5 s more: the watch was blind ~11-12 s).
      let hungAt = 0;
      let mark = Infinity;
      let seenAfter = 0;
      const stopSeeing = b.watch('r.', (e) => {
        if (e.revision >= mark && seenAfter === 0) seenAfter = Date.now();
      });
      await watchSurvives(a, b, async () => {
        watched.hang();
        // SIGSTOP takes effect asynchronously: what the server sent until then may still arrive.
        await waitFor('the server stopped', () => readFileSync(`/proc/${watched.pid!}/stat`, 'utf8').split(') ')[1]?.startsWith('T') === true);
        hungAt = Date.now();
        // The writer may be on the hung server too: it moves within a lease (the test below).
        for (let i = 0; mark === Infinity; i++) {
          try {
            mark = await a.put('r.mark', i);
          } catch (err) {
            expect(err).toBeInstanceOf(ControlPlaneUnavailableError);
          }
        }
      });
      stopSeeing();
      watched.resume();
      expect(seenAfter).toBeGreaterThan(0);
      expect(seenAfter - hungAt, 'the watch delivered again before NATS pings could notice the hung server').toBeLessThan(4000);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await cluster.close();
    }
  });
});

describe('NatsControlPlane close', () => {
  it('ends within about requestTimeoutMs when its only server hangs with a watch open, and leaves the connection closed', async () => {
    const cluster = await NatsCluster.start({ servers: 1 });
    const server = cluster.servers[0]!;
    try {
      const a = await NatsControlPlane.connect({ servers: cluster.urls, bucket: 'closing', requestTimeoutMs: 500, connectTimeoutMs: 20_000 });
      const seen: number[] = [];
      a.watch('c.', (e) => seen.push(e.revision));
      const rev = await a.put('c.1', 1);
      await waitFor('the watch event', () => seen.includes(rev));
      server.hang();
      await waitFor('the server stopped', () => readFileSync(`/proc/${server.pid!}/stat`, 'utf8').split(') ')[1]?.startsWith('T') === true);
      const t0 = Date.now();
      await a.close();
      // The drain waits for a pong the hung server never sends; nats.js gave up after ~11 s.
      expect(Date.now() - t0, 'close waited for the hung server').toBeLessThan(4000);
      expect(a.connection.isClosed()).toBe(true);
    } finally {
      server.resume();
      await cluster.close();
    }
  });
});

async function streamLeader(plane: NatsControlPlane): Promise<string | undefined> {
  return (await plane.bucketStatus()).leader;
}

describe('NatsControlPlane write on a hung server', () => {
  it('nextServer dials another server than the one just left, while it is avoided (property)', () => {
    const listen = fc.constantFrom('a:1', 'b:2', 'c:3');
    fc.assert(
      fc.property(fc.array(listen.map((l) => ({ listen: l }))), listen, fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 100 }), (pool, left, until, now) => {
        const pick = nextServer(pool, { listen: left, until }, now);
        const other = pool.find((s) => s.listen !== left);
        if (now < until && pool[0]?.listen === left && other !== undefined) expect(pick).toBe(other);
        else expect(pick).toBeNull(); // nats.js's own choice
      }),
    );
  });

  // A node whose NATS server hangs (SIGSTOP, a paused VM, a server cut off from its clients) must
  // renew its lease through another server before the lease runs out, else the coordinator,
  // on a healthy server, declares it gone; and every node on that server with it, which loses
  // the partitions they held together. NATS's own pings notice a hung server only after
  // (maxPingOut + 1) × pingInterval, 4–6 s: the plane probes the server itself when a request
  // goes unanswered (ADR 0061).
  it('moves to another server and writes again within two leases, not after the pings time out', async () => {
    const cluster = await three('writeHang');
    try {
      const a = await NatsControlPlane.connect({ servers: cluster.urls, bucket: 'stuck', replicas: 3, connectTimeoutMs: 20_000 });
      opened.push(a);
      let leader: string | undefined;
      await waitFor('a stream leader', async () => (leader = await streamLeader(a)) !== undefined);
      // The writer knows one server, not the stream leader; it learns the others from the cluster.
      const stuck = cluster.servers.find((s) => s.name !== leader)!;
      const lines: string[] = [];
      const logger = { debug: () => {}, info: () => {}, warn: (m: string) => void lines.push(m), error: (m: string) => void lines.push(m) };
      const b = await NatsControlPlane.connect({ servers: stuck.url, bucket: 'stuck', replicas: 3, connectTimeoutMs: 20_000, logger });
      opened.push(b);
      await waitFor('the writer learns the other servers', () => b.connection.info !== undefined && (b.connection.info.connect_urls?.length ?? 0) >= 2);
      await b.put('lease.x', 0);
      stuck.hang();
      // SIGSTOP takes effect asynchronously: a request could still be answered meanwhile.
      await waitFor('the server stopped', () => readFileSync(`/proc/${stuck.pid!}/stat`, 'utf8').split(') ')[1]?.startsWith('T') === true);
      try {
        const hungAt = Date.now();
        let writtenAt = 0;
        for (let i = 1; writtenAt === 0 && Date.now() - hungAt < 20_000; i++) {
          try {
            await b.put('lease.x', i);
            writtenAt = Date.now();
          } catch (err) {
            expect(err).toBeInstanceOf(ControlPlaneUnavailableError);
          }
        }
        expect(writtenAt).toBeGreaterThan(0);
        // Two default leases (1 s); NATS's pings alone take 4 s at the least.
        expect(writtenAt - hungAt).toBeLessThan(2000);
        expect(lines.some((l) => l.includes('not answering'))).toBe(true);
        expect((await a.get<number>('lease.x'))?.value).toBeGreaterThan(0);
      } finally {
        stuck.resume();
      }
    } finally {
      await cluster.close();
    }
  });
});
