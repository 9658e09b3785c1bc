import { createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GridClient } from '@gridlink/client';
import { LEASE_PREFIX, LocalCluster, MemoryControlPlane, TOPOLOGY_KEY, type TopologyRecord } from '@gridlink/node';
import { AdminUsageError, ExitCode, changeBaseline, checkSafe, clusterStatus, connectControlPlane, decommission, nodeSafe, runCli, safetyOf, topologyView, updateTopology, waitSafe, type HttpLocator } from '@gridlink/admin';
import { initialTopology, MIN_PEER_WIRE_VERSION, PEER_WIRE_VERSION, RELEASE } from '@gridlink/node/internal';
import fc from 'fast-check';
import { fencedNodes, reportedUnreachable } from '../src/model.js';
import { fencedLine, releasesLine, unreachableLine } from '../src/table.js';
import { safeText } from '../src/run.js';

interface CliRun {
  code: number;
  out: string;
  err: string;
}

function locatorOf(cluster: LocalCluster): HttpLocator {
  return (id) => {
    try {
      const port = cluster.node(id).httpPort;
      return port === undefined ? undefined : `http://127.0.0.1:${port}`;
    } catch {
      return undefined;
    }
  };
}

async function cli(cluster: LocalCluster, args: string[]): Promise<CliRun> {
  let out = '';
  let err = '';
  const code = await runCli(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) }, { controlPlane: cluster.controlPlane, env: {} });
  return { code, out, err };
}

const holders = (t: TopologyRecord, id: string): number[] =>
  t.owners.flatMap((o, p) => (o.includes(id) ? [p] : []));

describe('admin verbs on a real embedded cluster', () => {
  let cluster: LocalCluster;
  let client: GridClient;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 3, partitions: 64, backups: 1, http: true, autoAdjust: { enabled: false }, caches: { sessions: { ttlMs: 60_000 } } });
    client = await GridClient.connect({ endpoints: cluster.endpoints });
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.stop();
  });

  it('status reports members, leases, readiness and partition counts; exit 0 when settled', async () => {
    const s = await clusterStatus(cluster.controlPlane, { http: locatorOf(cluster), sampleMs: 600 });
    expect(s.members.map((m) => m.id)).toEqual(['node-1', 'node-2', 'node-3']);
    for (const m of s.members) {
      expect(m.state).toBe('member');
      expect(m.ready).toBe(true);
      expect(m.readySource).toBe('http');
      expect(m.leaseAgeMs).not.toBeNull();
      expect(m.leaseAgeMs!).toBeLessThan(1000);
      expect(m.address).toBe(cluster.endpointOf(m.id));
      expect(m.epoch).toBe(cluster.node(m.id).epoch);
      // what the lease announces (ADR 0060)
      expect(m.release).toBe(RELEASE);
      expect(m.wire).toBe(`${MIN_PEER_WIRE_VERSION}..${PEER_WIRE_VERSION}`);
    }
    expect(s.members.reduce((n, m) => n + m.partitions.primary, 0)).toBe(64);
    expect(s.members.reduce((n, m) => n + m.partitions.backup, 0)).toBe(64);
    expect(s.baseline).toEqual(['node-1', 'node-2', 'node-3']);
    expect(s.safe).toBe(true);
    expect(s.autoAdjust.enabled).toBe(false);
    expect(s.topologyVersion).toBe(cluster.topologyVersion);

    const table = await cli(cluster, ['status', '--sample', '300ms']);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/node-1\s+member/);
    expect(table.out).toMatch(new RegExp(`node-1\\s+member\\s.*\\s${RELEASE.replace(/\./g, '\\.')}\\s`));
    // one release throughout: no releases line
    expect(table.out).not.toContain('releases:');
    expect(table.out).toContain('auto-adjust: disabled');
    const json = await cli(cluster, ['status', '--json', '--sample', '0']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out).members).toHaveLength(3);
    expect(JSON.parse((await cli(cluster, ['status', '--output', 'json', '--sample', '0'])).out).partitions).toBe(64);
  });

  it('baseline add plans first, refuses without --yes, then really moves only the partitions the new node owns', async () => {
    const keys = Array.from({ length: 200 }, (_, i) => `k${i}`);
    const cache = client.cache<string, number>('data');
    await Promise.all(keys.map((k, i) => cache.put(k, i)));
    const id = await cluster.addNode();
    await cluster.waitForTopology((t) => t.members[id] !== undefined);
    const before = cluster.topology();

    const status = await clusterStatus(cluster.controlPlane, { sampleMs: 0 });
    expect(status.outsideBaseline).toEqual([id]);

    const refused = await cli(cluster, ['baseline', 'add', id]);
    expect(refused.code).toBe(4);
    expect(refused.out).toContain('PULLS');
    expect(refused.out).toContain('--yes');
    expect(cluster.topology().baseline.map((n) => n.id)).not.toContain(id);

    const dry = await changeBaseline(cluster.controlPlane, { kind: 'add', id });
    expect(dry.applied).toBe(false);
    expect(dry.plan.movesData).toBe(true);
    expect(dry.plan.perNode[id]!.gains).toBeGreaterThan(0);
    // Adding a node moves only what it now owns: nobody else pulls anything.
    for (const [n, p] of Object.entries(dry.plan.perNode)) if (n !== id) expect(p.gains).toBe(0);

    const done = await cli(cluster, ['baseline', 'add', id, '--yes', '--json']);
    expect(done.code).toBe(0);
    const result = JSON.parse(done.out);
    expect(result.applied).toBe(true);
    const after = await cluster.waitForStable(15_000);
    expect(after.baseline.map((n) => n.id)).toContain(id);
    const gained = holders(after, id);
    expect(gained.length).toBe(dry.plan.perNode[id]!.gains);
    // Every partition whose holders changed now includes the new node.
    for (let p = 0; p < 64; p++) {
      const was = before.owners[p]!;
      const now = after.owners[p]!;
      if (was.join() !== now.join() && !(was.length === now.length && was.every((x) => now.includes(x)))) expect(now).toContain(id);
    }
    // The data moved with the partitions.
    expect(await Promise.all(keys.map((k) => cache.get(k)))).toEqual(keys.map((_, i) => i));

    const show = await cli(cluster, ['baseline', 'show', '--json']);
    expect(JSON.parse(show.out).baseline.map((n: { id: string }) => n.id)).toEqual(['node-1', 'node-2', 'node-3', id]);
  });

  it('decommission moves the node\u2019s copies away first, and --wait reports it drained', async () => {
    const id = 'node-4';
    const r = await cli(cluster, ['decommission', id, '--yes', '--wait', '--wait-timeout', '15s', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    expect(out.applied).toBe(true);
    expect(out.drained).toBe(true);
    const t = await cluster.waitForStable(15_000);
    expect(holders(t, id)).toEqual([]);
    expect(t.baseline.map((n) => n.id)).toEqual(['node-1', 'node-2', 'node-3']);
    const cache = client.cache<string, number>('data');
    expect(await cache.get('k7')).toBe(7);
    await cluster.stopNode(id);
    await cluster.waitForTopology((x) => x.members[id] === undefined);
    // Removing a node that is not in the baseline is refused.
    expect((await cli(cluster, ['baseline', 'remove', id, '--yes'])).code).toBe(4);
  });

  it('auto-adjust: validates durations naming the flag and writes the policy', async () => {
    const bad = await cli(cluster, ['baseline', 'auto-adjust', '--enable', '--soft', '10x']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('--soft');
    const order = await cli(cluster, ['baseline', 'auto-adjust', '--soft', '2m', '--hard', '1m']);
    expect(order.code).toBe(1);
    expect(order.err).toContain('--hard');
    const both = await cli(cluster, ['baseline', 'auto-adjust', '--enable', '--disable']);
    expect(both.code).toBe(1);
    const ok = await cli(cluster, ['baseline', 'auto-adjust', '--enable', '--soft', '1m30s', '--hard', '5m']);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain('disabled');
    expect(cluster.topology().autoAdjust).toEqual({ enabled: true, softTimeoutMs: 90_000, hardTimeoutMs: 300_000 });
    const off = await cli(cluster, ['baseline', 'auto-adjust', '--disable']);
    expect(off.code).toBe(0);
    expect(cluster.topology().autoAdjust.enabled).toBe(false);
  });

  it('concurrent operator writes and the live coordinator lose no update (compare-and-set on the revision)', async () => {
    await updateTopology(cluster.controlPlane, (t) => ({ ...t, autoAdjust: { enabled: false, softTimeoutMs: 0, hardTimeoutMs: 3_600_000 } }));
    const start = cluster.topology();
    // Each writer increments the soft timeout by one from the record it read: a lost update shows as a smaller total.
    const writes = await Promise.all(
      Array.from({ length: 12 }, () => updateTopology(cluster.controlPlane, (t) => ({ ...t, autoAdjust: { ...t.autoAdjust, softTimeoutMs: t.autoAdjust.softTimeoutMs + 1 } }))),
    );
    const end = cluster.topology();
    expect(end.autoAdjust.softTimeoutMs).toBe(12);
    expect(new Set(writes.map((w) => w.record.version)).size).toBe(12);
    expect(end.version).toBeGreaterThanOrEqual(start.version + 12);
    // The coordinator keeps building on operator records: the cluster is still balanced and served.
    await cluster.waitForStable(10_000);
    expect(await client.cache<string, number>('data').get('k3')).toBe(3);
  });

  it('caches lists name, backups, loss policy, lost partitions, config and the size the nodes report', async () => {
    const sessions = client.cache<string, string>('sessions');
    await Promise.all(['a', 'b', 'c'].map((k) => sessions.put(k, k)));
    await client.cache('scratch').create({ backups: 0, partitionLossPolicy: 'IGNORE' });
    const r = await cli(cluster, ['caches', '--json']);
    expect(r.code).toBe(0);
    const list = JSON.parse(r.out) as { name: string }[];
    // No cluster record on an embedded cluster: a cache naming no backups has the cluster's.
    expect(list.find((c) => c.name === 'sessions')).toEqual({ name: 'sessions', config: { ttlMs: 60_000 }, backups: null, policy: 'READ_WRITE_SAFE', lost: [], size: 3, sizeError: null });
    expect(list.find((c) => c.name === 'scratch')).toEqual({ name: 'scratch', config: { backups: 0, partitionLossPolicy: 'IGNORE' }, backups: 0, policy: 'IGNORE', lost: [], size: 0, sizeError: null });
    const t = await cli(cluster, ['caches', '--skip-sizes']);
    expect(t.out).toMatch(/BACKUPS\s+LOSS POLICY\s+LOST/);
    expect(t.out).toMatch(/sessions\s+cluster\s+READ_WRITE_SAFE\s+-\s+\{"ttlMs":60000\}\s+-/);
    expect(t.out).toMatch(/scratch\s+0\s+IGNORE\s+-/);
  });

  it('safe: exit 0 on a settled cluster, per node from /health/safe or the control plane', async () => {
    const r = await checkSafe(cluster.controlPlane, { http: locatorOf(cluster) });
    expect(r.safe).toBe(true);
    expect(r.nodes.map((n) => n.id)).toEqual(['node-1', 'node-2', 'node-3']);
    for (const n of r.nodes) expect(['http', 'control-plane']).toContain(n.source);
    expect((await cli(cluster, ['safe', '--wait', '--wait-timeout', '5s'])).code).toBe(0);
  });

  it('dashboard verb serves the page until its signal aborts, then exits 0', async () => {
    const abort = new AbortController();
    let out = '';
    let url = '';
    const running = runCli(['dashboard', '--port', '0', '--interval', '200ms'], { stdout: (t) => (out += t), stderr: () => undefined }, {
      controlPlane: cluster.controlPlane,
      signal: abort.signal,
      onDashboard: (u) => (url = u),
    });
    const deadline = Date.now() + 10_000;
    while (url === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>gridlink dashboard</title>');
    const topo = (await (await fetch(new URL('/api/topology', url))).json()) as { version: number };
    expect(topo.version).toBe(cluster.topologyVersion);
    abort.abort();
    expect(await running).toBe(0);
    expect(out).toContain(url);
    await expect(fetch(url)).rejects.toThrow();
  });

  it('dashboard on a port already in use: a usage error naming --port (exit 1), not an internal error', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    try {
      const port = (taken.address() as AddressInfo).port;
      const r = await cli(cluster, ['dashboard', '--port', String(port)]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(new RegExp(`^gridlink: --port: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });

  it('a failure the CLI does not classify (a control plane implementation answering nonsense) is an internal error, exit 5', async () => {
    // A ControlPlane whose list() breaks its contract: the verbs fail on it with a TypeError.
    const real = cluster.controlPlane;
    const broken = new Proxy(real, {
      get: (target, key) => (key === 'list' ? () => Promise.resolve(null) : (Reflect.get(target, key) as unknown) instanceof Function ? (Reflect.get(target, key) as (...a: unknown[]) => unknown).bind(target) : Reflect.get(target, key)),
    });
    const run = async (args: string[]): Promise<CliRun> => {
      let out = '';
      let err = '';
      const code = await runCli(args, { stdout: (t) => (out += t), stderr: (t) => (err += t) }, { controlPlane: broken, env: {} });
      return { code, out, err };
    };
    const text = await run(['status', '--sample', '0']);
    expect(text.code).toBe(5);
    expect(text.err).toMatch(/^gridlink: internal error: TypeError: .+\nTypeError: .+\n\s+at /);
    const json = await run(['status', '--sample', '0', '--json']);
    expect(json.code).toBe(5);
    const e = JSON.parse(json.err) as { error: { code: string; message: string; retryable: boolean } };
    expect(e.error).toMatchObject({ code: 'ADMIN_INTERNAL', retryable: false });
    expect(e.error.message).toMatch(/^internal error: TypeError: /);
  });

  it('usage errors name the argument and exit 1; --help per verb exits 0', async () => {
    const cases: [string[], string][] = [
      [['frobnicate'], 'verb'],
      [['status', '--bogus'], '--bogus'],
      [['status', '--output', 'yaml'], '--output'],
      [['status', '--timeout', 'soon'], '--timeout'],
      [['status', '--http-port', '99999'], '--http-port'],
      [['status', '--http', 'node-1'], '--http'],
      [['baseline'], '<subcommand>'],
      [['baseline', 'set'], '<id>'],
      [['baseline', 'add'], '<id>'],
      [['baseline', 'add', 'bad id!'], '<id>'],
      [['baseline', 'show', '--enable'], '--enable'],
      [['reset-lost', 'x'], '<partition>'],
      [['decommission'], '<id>'],
      [['dashboard', '--port', '-1'], '--port'],
      // Decimal digits only: Number() would read these as 8080, 1000, 80 and 80.
      [['dashboard', '--port', '0x1f90'], '--port'],
      [['dashboard', '--port', '1e3'], '--port'],
      [['status', '--http-port', ' 80'], '--http-port'],
      [['status', '--http-port', '80.0'], '--http-port'],
      [['caches', '--yes'], '--yes'],
      [['status', '--nats-user', 'u'], '--nats-pass'],
      [['status', '--nats-token', 't', '--nats-creds', 'f'], '--nats-token'],
    ];
    for (const [args, arg] of cases) {
      const r = await cli(cluster, args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err, args.join(' ')).toContain(arg);
    }
    expect((await cli(cluster, [])).code).toBe(1);
    for (const verb of ['status', 'baseline', 'decommission', 'reset-lost', 'caches', 'safe', 'dashboard']) {
      const r = await cli(cluster, [verb, '--help']);
      expect(r.code).toBe(0);
      expect(r.out).toContain(`gridlink ${verb}`);
      expect(r.out).toContain('exit codes');
    }
    const json = await cli(cluster, ['baseline', 'add', 'nobody', '--json']);
    expect(json.code).toBe(4);
    expect(JSON.parse(json.err).error.code).toBe('ADMIN_UNKNOWN_NODE');
  });
});

describe('lost partitions', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 2, partitions: 32, backups: 0, autoAdjust: { enabled: false } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('status and safe exit 2, reset-lost needs --yes, then the partitions are served again', async () => {
    const gone = holders(cluster.topology(), 'node-2');
    expect(gone.length).toBeGreaterThan(0);
    await cluster.kill('node-2');
    await cluster.waitForTopology((t) => t.lost.length > 0);

    const status = await cli(cluster, ['status', '--json', '--sample', '0']);
    expect(status.code).toBe(2);
    const s = JSON.parse(status.out);
    expect(s.lost).toEqual(gone);
    expect(s.offline).toEqual(['node-2']);
    expect(s.members.find((m: { id: string }) => m.id === 'node-2').state).toBe('offline');
    expect((await cli(cluster, ['safe'])).code).toBe(2);
    expect((await cli(cluster, ['safe', '--wait', '--wait-timeout', '300ms'])).code).toBe(2);

    const refused = await cli(cluster, ['reset-lost']);
    expect(refused.code).toBe(4);
    expect(refused.out).toContain('EMPTY');
    expect(cluster.topology().lost).toEqual(gone);

    const first = gone[0]!;
    const one = await cli(cluster, ['reset-lost', String(first), '--yes', '--json']);
    expect(one.code).toBe(0);
    expect(JSON.parse(one.out).reset).toEqual([first]);
    expect(cluster.topology().lost).toEqual(gone.slice(1));

    expect((await cli(cluster, ['reset-lost', '--yes'])).code).toBe(0);
    expect(cluster.topology().lost).toEqual([]);
    // node-2 is still the target owner but offline: hand its partitions to node-1.
    const set = await cli(cluster, ['baseline', 'set', 'node-1', '--yes']);
    expect(set.code).toBe(0);
    const t = await cluster.waitForStable(10_000);
    expect(t.owners.every((o) => o.length === 1 && o[0] === 'node-1')).toBe(true);
    expect((await cli(cluster, ['status', '--sample', '0'])).code).toBe(0);
    expect((await cli(cluster, ['reset-lost', '--yes'])).out).toContain('nothing to change');
  });
});

describe('decommission with no backups', () => {
  let cluster: LocalCluster;
  let client: GridClient;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 3, partitions: 32, backups: 0, autoAdjust: { enabled: false } });
    client = await GridClient.connect({ endpoints: cluster.endpoints });
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.stop();
  });

  it('builds the new copies before the node lets go, so stopping it afterwards loses nothing', async () => {
    const cache = client.cache<string, string>('solo');
    const keys = Array.from({ length: 300 }, (_, i) => `key-${i}`);
    await Promise.all(keys.map((k) => cache.put(k, k.toUpperCase())));
    expect(holders(cluster.topology(), 'node-3').length).toBeGreaterThan(0);

    const r = await cli(cluster, ['decommission', 'node-3', '--yes', '--wait', '--wait-timeout', '15s']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('holds no partition any more');
    await cluster.stopNode('node-3');
    const t = await cluster.waitForTopology((x) => x.members['node-3'] === undefined);
    expect(t.lost).toEqual([]);
    expect(await Promise.all(keys.map((k) => cache.get(k)))).toEqual(keys.map((k) => k.toUpperCase()));
    expect((await cli(cluster, ['status', '--sample', '0'])).code).toBe(0);
  });
});

describe('a member stopping gracefully (ADR 0067)', () => {
  it('status calls a member whose record entry says leaving `leaving`, and still counts it ready from the control plane', async () => {
    const cp = new MemoryControlPlane();
    const leases = ['node-1', 'node-2', 'node-3'].map((id) => ({ id, epoch: `e-${id}`, host: '127.0.0.1', port: 1, synced: {} }));
    const t = initialTopology({ clusterId: 'c', partitions: 4, backups: 1, leases });
    await cp.put(TOPOLOGY_KEY, { ...t, members: { ...t.members, 'node-2': { ...t.members['node-2']!, leaving: true } } });
    for (const l of leases) await cp.put(LEASE_PREFIX + l.id, l.id === 'node-2' ? { ...l, leaving: true } : l);
    const s = await clusterStatus(cp, { sampleMs: 0 });
    expect(s.members.map((m) => [m.id, m.state, m.ready])).toEqual([
      ['node-1', 'member', true],
      ['node-2', 'leaving', true],
      ['node-3', 'member', true],
    ]);
    let out = '';
    const code = await runCli(['status', '--sample', '0ms'], { stdout: (t) => (out += t), stderr: () => undefined }, { controlPlane: cp, env: {} });
    expect(code).toBe(0);
    expect(out).toMatch(/^node-2\s+leaving\s/m);
  });
});

describe('the releases line of gridlink status (ADR 0060)', () => {
  const m = (id: string, release: string | null, wire: string | null, state = 'member') => ({ id, state, release, wire });
  it('is there only while the live nodes announce different releases or wire ranges, naming each with its nodes', () => {
    expect(releasesLine([m('a', '0.1.0', '1..2'), m('b', '0.1.0', '1..2')])).toEqual([]);
    expect(releasesLine([m('a', '0.1.0', '1..2'), m('b', '0.2.0', '1..3'), m('c', '0.1.0', '1..2')])).toEqual(['releases: 0.1.0 (wire 1..2): a, c; 0.2.0 (wire 1..3): b']);
    // a node of a release before leases announced one
    expect(releasesLine([m('a', null, null, 'joining'), m('b', '0.1.0', '1..2')])).toEqual(['releases: unknown: a; 0.1.0 (wire 1..2): b']);
    // an offline node's lease is a dead node's: not counted
    expect(releasesLine([m('a', '0.0.9', '1..1', 'offline'), m('b', '0.1.0', '1..2')])).toEqual([]);
  });
});

describe('the unreachable and fenced lines of gridlink status (ADR 0065)', () => {
  const topo = (members: Record<string, string>, fenced?: unknown): TopologyRecord =>
    ({ members: Object.fromEntries(Object.entries(members).map(([id, epoch]) => [id, { id, epoch, host: 'h', port: 1 }])), ...(fenced === undefined ? {} : { fenced }) }) as unknown as TopologyRecord;

  it('names what each live node reports, and nothing when none does or the node is offline', () => {
    const m = (id: string, unreachable: string[], state = 'member') => ({ id, state, unreachable });
    expect(unreachableLine([m('node-1', []), m('node-2', [])])).toEqual([]);
    expect(unreachableLine([m('node-1', []), m('node-2', ['node-3']), m('node-3', ['node-2'])])).toEqual(['unreachable: node-2 cannot reach node-3; node-3 cannot reach node-2']);
    expect(unreachableLine([m('node-1', ['node-2', 'node-3'], 'joining')])).toEqual(['unreachable: node-1 cannot reach node-2, node-3']);
    // an offline node's lease is a dead node's: not counted
    expect(unreachableLine([m('node-3', ['node-2'], 'offline')])).toEqual([]);
  });

  it('reads a lease\u2019s report defensively: absent (older nodes), malformed or odd values are no report, never a throw', () => {
    expect(reportedUnreachable({ id: 'a', epoch: 'e' })).toEqual([]);
    expect(reportedUnreachable(undefined)).toEqual([]);
    expect(reportedUnreachable(null)).toEqual([]);
    expect(reportedUnreachable({ unreachable: 'node-2' })).toEqual([]);
    expect(reportedUnreachable({ unreachable: { 0: 'node-2' } })).toEqual([]);
    expect(reportedUnreachable({ unreachable: ['node-3', 7, null, '', 'node-2', 'node-3', 'x'.repeat(500)] })).toEqual(['node-2', 'node-3']);
  });

  it('says whether the fenced life is still a member, gone, or gone with its next life held back', () => {
    expect(fencedNodes(topo({ 'node-1': 'e1' }))).toEqual([]);
    expect(fencedLine(fencedNodes(topo({ 'node-1': 'e1' })))).toEqual([]);
    const stopping = fencedNodes(topo({ 'node-1': 'e1', 'node-3': 'abcdef0123456789' }, { 'node-3': 'abcdef0123456789' }));
    expect(stopping).toEqual([{ id: 'node-3', epoch: 'abcdef0123456789', state: 'stopping', nextEpoch: null }]);
    expect(fencedLine(stopping)).toEqual(['fenced: node-3 (epoch abcdef01) asked to stop renewing: still a member until its lease runs out']);
    const gone = fencedNodes(topo({ 'node-1': 'e1' }, { 'node-3': 'abcdef0123456789' }));
    expect(fencedLine(gone)).toEqual(['fenced: node-3 (epoch abcdef01) asked to stop renewing: gone']);
    // the same life renewing is not a next life
    expect(fencedNodes(topo({ 'node-1': 'e1' }, { 'node-3': 'e3' }), () => 'e3')[0]!.state).toBe('gone');
    const held = fencedNodes(topo({ 'node-1': 'e1' }, { 'node-3': 'abcdef0123456789', 'node-2': 'e2' }), (id) => (id === 'node-3' ? '99887766554433' : null));
    expect(fencedLine(held)).toEqual([
      'fenced: node-2 (epoch e2) asked to stop renewing: gone; node-3 (epoch abcdef01) asked to stop renewing: gone; its next life (epoch 99887766) held back until it reaches every member',
    ]);
  });

  it('reads the topology\u2019s entries defensively: older coordinators write none, malformed ones are skipped', () => {
    for (const bad of [null, 'node-3', ['node-3'], 42]) expect(fencedNodes(topo({}, bad))).toEqual([]);
    expect(fencedNodes(topo({}, { 'node-3': 7, 'node-4': '', constructor: 'e', 'node-5': 'e5' })).map((f) => [f.id, f.state])).toEqual([
      ['constructor', 'gone'],
      ['node-5', 'gone'],
    ]);
  });

  it('never throws, whatever the records hold (property)', () => {
    fc.assert(
      fc.property(fc.anything(), fc.anything(), fc.anything(), (lease, fenced, members) => {
        const u = reportedUnreachable(lease);
        expect(u.every((id) => typeof id === 'string')).toBe(true);
        const f = fencedNodes({ members, fenced } as unknown as TopologyRecord, () => 'next');
        expect(fencedLine(f).length).toBe(f.length === 0 ? 0 : 1);
        expect(unreachableLine([{ id: 'a', state: 'member', unreachable: u }]).length).toBe(u.length === 0 ? 0 : 1);
      }),
    );
  });
});

describe('safety while a fence is under way (ADR 0065: a member asked to stop renewing counts for no copy)', () => {
  const ids = ['node-1', 'node-2', 'node-3'];
  /** Three members (epochs e-node-n), backups 1, partition p held by the owners given. */
  const ring = (fenced?: unknown): TopologyRecord => {
    const leases = ids.map((id) => ({ id, epoch: `e-${id}`, host: '127.0.0.1', port: 1, synced: {} }));
    const t = initialTopology({ clusterId: 'c', partitions: 3, backups: 1, leases });
    const owners = [
      ['node-1', 'node-2'],
      ['node-2', 'node-3'],
      ['node-3', 'node-1'],
    ];
    return { ...t, owners, syncing: owners.map(() => []), ...(fenced === undefined ? {} : { fenced }) } as TopologyRecord;
  };

  it('every partition with the fenced life as owner is under-replicated: gridlink safe, status and the dashboard say not safe', () => {
    expect(safetyOf(ring()).safe).toBe(true);
    const t = ring({ 'node-3': 'e-node-3' });
    expect(safetyOf(t)).toEqual({ safe: false, lost: [], moving: [], underReplicated: [1, 2], fenced: ['node-3'] });
    // each node shares a partition with node-3 here, as the node's own /health/safe judges it
    expect(ids.map((id) => nodeSafe(t, id))).toEqual([false, false, false]);
    const view = topologyView(t);
    expect(view.safe).toBe(false);
    expect(view.state).toBe('ruu');
  });

  it('a fenced member holding nothing: no partition under-replicated, yet neither it nor the cluster is safe (its /health/safe answers `fenced`)', () => {
    const base = ring({ 'node-3': 'e-node-3' });
    // node-3 holds no partition any more: every one has its two copies on node-1 and node-2.
    const t = { ...base, owners: [['node-1', 'node-2'], ['node-2', 'node-1'], ['node-1', 'node-2']] };
    expect(safetyOf(t)).toEqual({ safe: false, lost: [], moving: [], underReplicated: [], fenced: ['node-3'] });
    expect(ids.map((id) => nodeSafe(t, id))).toEqual([true, true, false]);
    expect(topologyView(t).safe).toBe(false);
    expect(safeText({ safe: false, topologyVersion: 4, lost: [], moving: [], underReplicated: [], fenced: ['node-3'], nodes: [] })).toContain('fenced: node-3');
  });

  it('an entry for an earlier life, for a node that is no member, or a malformed one counts nothing', () => {
    for (const fenced of [{ 'node-3': 'e-node-3-before' }, { 'node-4': 'e-node-4' }, { 'node-3': 7 }, ['node-3'], 'node-3', null, { 'node-3': '' }]) {
      const t = ring(fenced);
      expect(safetyOf(t).safe).toBe(true);
      expect(ids.map((id) => nodeSafe(t, id))).toEqual([true, true, true]);
      expect(topologyView(t).safe).toBe(true);
    }
  });
});

describe('safety while a fence is under way, on a real embedded cluster (ADR 0065)', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nodes: 3, partitions: 32, backups: 1, autoAdjust: { enabled: false } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('gridlink safe and status say not safe while the fenced life is still a member, then safe once its partitions have their copies again', async () => {
    await cluster.waitForStable(10_000);
    expect((await checkSafe(cluster.controlPlane)).safe).toBe(true);
    const epoch3 = cluster.node('node-3').epoch;
    expect(holders(cluster.topology(), 'node-3').length).toBeGreaterThan(0);
    // What the coordinator writes when it chooses node-3 of a cut pair (the node then stops renewing).
    const { record: fencedAt } = await updateTopology(cluster.controlPlane, (t) => ({ ...t, fenced: { ...t.fenced, 'node-3': epoch3 } }));
    // Without HTTP, gridlink safe derives every node's answer from the topology: each report read
    // while node-3 is still a member under the fenced epoch must say not safe.
    let seen = 0;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const [safe, status] = await Promise.all([checkSafe(cluster.controlPlane), clusterStatus(cluster.controlPlane, { sampleMs: 0 })]);
      if (safe.topologyVersion === fencedAt.version) {
        seen++;
        expect(safe.safe).toBe(false);
        expect(safe.underReplicated).toEqual(holders(fencedAt, 'node-3'));
        expect(safe.nodes.filter((n) => !n.safe).map((n) => n.id)).toEqual(['node-1', 'node-2', 'node-3']);
      }
      if (status.fenced.some((f) => f.id === 'node-3' && f.state === 'stopping')) {
        seen++;
        expect(status.safe).toBe(false);
      }
      if (cluster.topology().members['node-3']?.epoch !== epoch3) break;
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 20)); // the polling interval
    }
    expect(seen).toBeGreaterThan(0);
    // node-3's lease ran out and it was declared gone: its partitions are copied again.
    const safe = await cli(cluster, ['safe', '--wait', '--wait-timeout', '20s']);
    expect(safe.code).toBe(0);
  });
});

describe('connectControlPlane', () => {
  it('an option NatsControlPlane refuses is a usage error naming the option, not an unreachable control plane (was: exit code 3, retryable)', async () => {
    // Refused before any connection is tried (nothing listens on port 1 either way).
    const err = await connectControlPlane('nats://127.0.0.1:1', { timeoutMs: 2.5 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AdminUsageError);
    expect(err).toMatchObject({ argument: '--timeout', exitCode: ExitCode.USAGE, retryable: false });
    expect((err as Error).message).toMatch(/^--timeout: must be an integer >= 1, got 2\.5/);
  });
});

describe('waitSafe and decommission --wait from code', () => {
  it('a wait that is not a number of milliseconds is an AdminUsageError naming it, before anything is written (was: a deadline never reached, the control plane polled every millisecond forever)', async () => {
    const cp = new MemoryControlPlane();
    const leases = ['node-1', 'node-2', 'node-3'].map((id) => ({ id, epoch: `e-${id}`, host: '127.0.0.1', port: 1, synced: {} }));
    const t = initialTopology({ clusterId: 'c', partitions: 8, backups: 1, leases });
    // A lost partition: never safe, so a wait runs to its deadline.
    await cp.put(TOPOLOGY_KEY, { ...t, lost: [0] });
    const refusal = (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: unknown) => e);
    const cases: [Record<string, unknown>, string][] = [
      [{ waitMs: Number.NaN }, 'waitMs'],
      [{ waitMs: '5m' }, 'waitMs'],
      [{}, 'waitMs'],
      [{ waitMs: -1 }, 'waitMs'],
      [{ waitMs: 1.5 }, 'waitMs'],
      [{ waitMs: Number.POSITIVE_INFINITY }, 'waitMs'],
      [{ waitMs: 0, pollMs: 0 }, 'pollMs'],
      [{ waitMs: 0, pollMs: Number.NaN }, 'pollMs'],
    ];
    for (const [o, option] of cases) {
      const err = await refusal(waitSafe(cp, o as never));
      expect(err, JSON.stringify(o)).toBeInstanceOf(AdminUsageError);
      expect(err, JSON.stringify(o)).toMatchObject({ argument: option, exitCode: ExitCode.USAGE });
    }
    const before = (await cp.get<TopologyRecord>(TOPOLOGY_KEY))!;
    for (const waitMs of [Number.NaN, '1m', -5]) {
      const err = await refusal(decommission(cp, 'node-3', { yes: true, waitMs: waitMs as never }));
      expect(err, String(waitMs)).toBeInstanceOf(AdminUsageError);
      expect(err).toMatchObject({ argument: 'waitMs' });
    }
    // Nothing was written: node-3 is still in the baseline.
    expect((await cp.get<TopologyRecord>(TOPOLOGY_KEY))!.revision).toBe(before.revision);
    // Valid waits still run to their deadline.
    expect((await waitSafe(cp, { waitMs: 50, pollMs: 10 })).safe).toBe(false);
  }, 10_000);
});
