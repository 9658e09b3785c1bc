/**
 * The node's documentation against its code, as an operator reads it: docs/operations.md §4 (every
 * gridlink-node flag, its variable, default and values) against CLI_OPTIONS, parseCli and the
 * defaults the node applies; §5's lease and promise figures against DEFAULT_TIMING and
 * promiseTiming; docs/node.md's `NodeOptions` table against resolveNodeOptions.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_FRAME_SIZE, HANDSHAKE_TIMEOUT_MS, MAX_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE } from '@gridlink/protocol';
import { CLI_OPTIONS, envNameOf, parseCli, unknownVariableWarning, unknownVariables, usage, type CliConfig } from '../src/cli/options.js';
import { CLUSTER_DEFAULTS } from '../src/cli/cluster.js';
import { DEFAULT_TIMING, resolveNodeOptions, type NodeOptions } from '../src/config.js';
import { MemoryControlPlane } from '../src/control/kv.js';
import { MAX_CACHE_BACKUPS, unsupportedCacheConfig } from '../src/control/routing.js';
import { LocalCluster } from '../src/local-cluster.js';
import { promiseTiming } from '../src/membership/promises.js';
import { NodeConfigError } from '../src/errors.js';
import { silentLogger } from '../src/logger.js';

const doc = (name: string): string => readFileSync(new URL(`../../../docs/${name}`, import.meta.url), 'utf8');

function section(text: string, heading: string): string {
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`no section ${heading}`);
  const end = text.indexOf('\n## ', start + heading.length + 2);
  return text.slice(start, end < 0 ? undefined : end);
}

/** A markdown table's rows (header and separator left out) as trimmed cells. */
function tableRows(text: string, header: string): string[][] {
  const lines = text.split('\n');
  const at = lines.indexOf(header);
  if (at < 0) throw new Error(`no table ${header}`);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    // Split on the | that are not escaped (`debug \| info`).
    rows.push(line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim()));
  }
  return rows;
}

const unquote = (s: string): string => s.replace(/`/g, '');
const num = (s: string): number => Number(s.replace(/[\s ]/g, ''));

interface FlagRow {
  flag: string;
  arg: string | undefined;
  variable: string;
  def: string;
  values: string;
}

function flagTable(): FlagRow[] {
  return tableRows(section(doc('operations.md'), '## 4. Every flag and variable'), '| flag | variable | default | values | meaning |').map((c) => {
    const m = /^`--([a-z-]+)(?: <([a-z]+)>)?`$/.exec(c[0] ?? '');
    if (m === null) throw new Error(`not a flag cell: ${c[0]}`);
    return { flag: m[1] as string, arg: m[2], variable: c[1] as string, def: c[2] as string, values: c[3] as string };
  });
}

const parsed = (argv: string[]): CliConfig => {
  const r = parseCli(argv, {}, 'the-host-name');
  if (r.help) throw new Error('help');
  return r.config;
};
const refusal = (argv: string[]): NodeConfigError | undefined => {
  try {
    parsed(argv);
    return undefined;
  } catch (err) {
    if (err instanceof NodeConfigError) return err;
    throw err;
  }
};
const refusedFlag = (argv: string[]): string | undefined => refusal(argv)?.field;
const NATS = ['--control-plane', 'nats://h:4222'];

describe('docs/operations.md §4: every flag and variable', () => {
  const rows = flagTable();

  it('lists every flag the command accepts, in usage order, with its placeholder and variable, and no other', () => {
    expect(rows.map((r) => r.flag)).toEqual(CLI_OPTIONS.map((o) => o.flag));
    for (const o of CLI_OPTIONS) {
      const row = rows.find((r) => r.flag === o.flag)!;
      expect([o.flag, row.arg]).toEqual([o.flag, o.arg]);
      expect([o.flag, row.variable]).toEqual([o.flag, o.kind === 'bool' ? '—' : `\`${envNameOf(o.flag)}\``]);
    }
  });

  it('gives the default the node runs with when the flag and its variable are unset', () => {
    const memory = parsed([]);
    const nats = parsed(NATS);
    if (nats.controlPlane.kind !== 'nats') throw new Error('nats');
    const node = resolveNodeOptions({ id: 'n', controlPlane: new MemoryControlPlane() });
    // What each default cell stands for, and where the code keeps that default.
    const actual: Record<string, unknown> = {
      id: memory.id === 'the-host-name' ? 'the host name' : memory.id,
      host: memory.host,
      port: memory.port,
      'advertise-host': memory.advertiseHost === memory.host ? '--host' : memory.advertiseHost,
      'advertise-port': memory.advertisePort === undefined && node.advertisePort === undefined ? '--port' : memory.advertisePort,
      'http-port': memory.httpPort === undefined && node.httpPort === undefined ? 'off' : memory.httpPort,
      zone: memory.zone ?? node.zone ?? 'none',
      'cluster-id': CLUSTER_DEFAULTS.clusterId,
      partitions: CLUSTER_DEFAULTS.partitions,
      backups: CLUSTER_DEFAULTS.backups,
      'bootstrap-nodes': node.bootstrapNodes,
      'control-plane': memory.controlPlane.kind,
      bucket: nats.controlPlane.bucket,
      'bucket-replicas': nats.controlPlane.replicas,
      'nats-token': nats.controlPlane.token ?? 'none',
      'nats-user': nats.controlPlane.user ?? 'none',
      'nats-pass': nats.controlPlane.pass ?? 'none',
      'nats-creds': nats.controlPlane.credsFile ?? 'none',
      'nats-tls-ca': nats.controlPlane.tls?.caFile ?? 'none',
      'nats-tls-cert': nats.controlPlane.tls?.certFile ?? 'none',
      'nats-tls-key': nats.controlPlane.tls?.keyFile ?? 'none',
      'nats-connect-timeout-ms': nats.controlPlane.connectTimeoutMs,
      'tls-cert': memory.tls?.certFile ?? node.tls ?? 'none',
      'tls-key': memory.tls?.keyFile ?? node.tls ?? 'none',
      'tls-ca': memory.tls?.caFile ?? node.tls ?? 'none',
      'auth-token': memory.authToken ?? node.authToken ?? 'none',
      'max-entries': memory.maxEntries ?? node.maxEntries ?? 'unbounded',
      'max-bytes': memory.maxBytes ?? node.maxBytes ?? 'unbounded',
      'transfer-unit-bytes': memory.transferUnitBytes ?? node.transferUnitBytes,
      'lease-ms': memory.leaseMs ?? node.leaseMs,
      'renew-interval-ms': memory.renewIntervalMs ?? node.renewIntervalMs,
      'lease-margin-ms': memory.leaseMarginMs ?? node.leaseMarginMs,
      'handoff-timeout-ms': memory.handoffTimeoutMs ?? node.handoffTimeoutMs,
      'handoff-outage-ms': memory.handoffOutageMs ?? node.handoffOutageMs,
      'log-level': memory.logLevel,
      help: '—',
      version: '—',
    };
    expect(Object.keys(actual)).toEqual(CLI_OPTIONS.map((o) => o.flag));
    for (const r of rows) {
      const want = actual[r.flag];
      expect([r.flag, typeof want === 'number' ? num(r.def) : unquote(r.def)]).toEqual([r.flag, want]);
    }
  });

  it("agrees with --help's own defaults", () => {
    const text = usage();
    for (const o of CLI_OPTIONS) {
      const line = text.split('\n').find((l) => l.startsWith(`  --${o.flag} `) || l === `  --${o.flag}` || l.startsWith(`  --${o.flag}  `));
      expect(line, o.flag).toBeDefined();
      const said = /\(default: ([^;)]+)[;)]/.exec(line!)?.[1];
      const row = rows.find((r) => r.flag === o.flag)!;
      if (said !== undefined) expect([o.flag, unquote(row.def)]).toEqual([o.flag, said]);
      else expect([o.flag, row.def]).toEqual([o.flag, o.kind === 'bool' ? '—' : 'none']);
    }
  });

  it('gives the range each integer flag is held to, and parseCli holds it there (bounds accepted, one beyond refused naming the flag)', () => {
    const ints = CLI_OPTIONS.filter((o) => o.kind === 'int');
    expect(ints.length).toBeGreaterThan(10);
    for (const o of ints) {
      const row = rows.find((r) => r.flag === o.flag)!;
      const m = /^(\d+)–(\d+)/.exec(row.values);
      expect(m, `${o.flag}: ${row.values}`).not.toBeNull();
      const [min, max] = [num(m![1]!), num(m![2]!)];
      expect([o.flag, min, max]).toEqual([o.flag, o.min, o.max]);
      // Above 1 bootstrap node needs a control plane other nodes can join.
      const base = /^(bucket|nats|bootstrap-nodes)/.test(o.flag) ? NATS : [];
      for (const v of [min, max]) {
        // A bound the range allows may still break the lease relations (a 1 ms lease, a renewal as
        // long as the longest lease): refused for that then, never for the range.
        const err = refusal([...base, `--${o.flag}`, String(v)]);
        if (err !== undefined) expect([o.flag, v, err.message]).toEqual([o.flag, v, expect.stringMatching(/shorter than the lease/)]);
      }
      expect([o.flag, refusedFlag([...base, `--${o.flag}`, String(min - 1)])]).toEqual([o.flag, o.flag]);
      if (max < Number.MAX_SAFE_INTEGER) expect([o.flag, refusedFlag([...base, `--${o.flag}`, String(max + 1)])]).toEqual([o.flag, o.flag]);
      expect([o.flag, refusedFlag([...base, `--${o.flag}`, `${min}.5`])]).toEqual([o.flag, o.flag]);
    }
  });

  it('names the log levels parseCli accepts', () => {
    const row = rows.find((r) => r.flag === 'log-level')!;
    const levels = [...row.values.matchAll(/`([a-z]+)`/g)].map((m) => m[1]!);
    expect(levels).toEqual(['debug', 'info', 'warn', 'error']);
    for (const l of levels) expect(parsed(['--log-level', l]).logLevel).toBe(l);
    expect(refusedFlag(['--log-level', 'verbose'])).toBe('log-level');
  });

  it('quotes the warning the command prints for a GRIDLINK_* variable that is no flag\'s, as it prints it', () => {
    const s4 = section(doc('operations.md'), '## 4. Every flag and variable').replace(/\s+/g, ' ');
    const quoted = /\(`(gridlink-node: warning: (GRIDLINK_[A-Z_]+) [^`]*)`\)/.exec(s4);
    expect(quoted).not.toBeNull();
    const [u] = unknownVariables({ [quoted![2]!]: '512' });
    expect(quoted![1]).toBe(`gridlink-node: ${unknownVariableWarning(u!)}`);
    expect(u!.meant).not.toEqual([]);
  });

  it('"needs nats://" where parseCli refuses the flag on the memory control plane', () => {
    for (const r of rows) {
      const o = CLI_OPTIONS.find((x) => x.flag === r.flag)!;
      if (o.kind === 'bool') continue;
      const value = o.kind === 'int' ? String(o.min ?? 1) : 'x';
      const field = refusedFlag([`--${r.flag}`, value]);
      expect([r.flag, field === r.flag && /needs nats:\/\//.test(r.values)]).toEqual([r.flag, /needs nats:\/\//.test(r.values)]);
    }
  });
});

describe('docs/operations.md §5 and elsewhere: timing figures stated as defaults', () => {
  const ops = doc('operations.md');
  const promise = promiseTiming(DEFAULT_TIMING);

  it('the lease and promise figures of §5 are the defaults the node runs with', () => {
    const s5 = section(ops, '## 5. Timing, and what happens when NATS is slow or down');
    const m = /Leases \(ADR 0003\): (\d+) ms, renewed every (\d+) ms, (\d+) ms margin; the coordinator ticks every\s+(\d+) ms\. Promises \(ADR 0007, derived from the lease timings\): (\d+) ms, asked every (\d+) ms while a\s+renewal is late, counted (\d+) ms short\./.exec(s5);
    expect(m).not.toBeNull();
    expect(m!.slice(1).map(Number)).toEqual([
      DEFAULT_TIMING.leaseMs,
      DEFAULT_TIMING.renewIntervalMs,
      DEFAULT_TIMING.leaseMarginMs,
      DEFAULT_TIMING.coordinatorIntervalMs,
      promise.promiseMs,
      promise.intervalMs,
      promise.marginMs,
    ]);
    // A node asks for promises once its lease has less than askBelowMs left: that many ms after a
    // renewal was due.
    const late = DEFAULT_TIMING.leaseMs - DEFAULT_TIMING.leaseMarginMs - promise.askBelowMs - DEFAULT_TIMING.renewIntervalMs;
    expect(s5).toContain(`once a node's renewal is\n  late (~${late} ms)`);
    expect(s5).toContain(`every ${promise.intervalMs} ms`);
    expect(s5).toContain(`(${promise.promiseMs} ms per promise)`);
    expect(s5).toContain(`stops within ${promise.promiseMs} ms`);
    // Served on the lease alone: until the lease end minus the margin.
    const leaseAlone = DEFAULT_TIMING.leaseMs - DEFAULT_TIMING.leaseMarginMs;
    expect(s5).toContain(`NOT_READY (retryable) from ${leaseAlone} ms after the last\n  successful renewal`);
    const flat = s5.replace(/\s+/g, ' ');
    expect(flat).toContain(`it stops ${leaseAlone} ms after its last renewal`);
    expect(flat).toContain(`is declared gone ${DEFAULT_TIMING.leaseMs} ms after its last renewal, as before`);
    // ADR 0062/0063: every member asked every renewal interval, kept up to two leases past its lease.
    expect(flat).toContain(`whether it is alive every ${DEFAULT_TIMING.renewIntervalMs} ms (ADR 0063)`);
    expect(flat).toContain(`Back on NATS within ${(3 * DEFAULT_TIMING.leaseMs) / 1000} s of its last renewal`);
    expect(s5).toContain(`\`--nats-connect-timeout-ms\` (${parsedNatsTimeout() / 1000} s)`);
  });

  it('§2, §7 and §11 give the renewal period and handoff timeouts the node defaults to', () => {
    const { handoffTimeoutMs, handoffOutageMs } = DEFAULT_TIMING;
    expect(section(ops, '## 2. Three grid nodes')).toContain(`renewed every ${DEFAULT_TIMING.renewIntervalMs} ms`);
    expect(ops).toContain(`### The handoff timeout (\`--handoff-timeout-ms\`, default ${handoffTimeoutMs}; \`--handoff-outage-ms\`, default ${handoffOutageMs})`);
    const k8s = section(ops, '## 11. Kubernetes');
    expect(k8s).toContain(`\`handoffTimeoutMs\`\n(default ${handoffTimeoutMs / 1000} s) plus \`handoffOutageMs\` (default ${handoffOutageMs / 1000} s,`);
    // The sum the grace period must exceed: both waits, the 2 s drain and 1 s for the lease.
    expect(k8s).toContain(`${(handoffTimeoutMs + handoffOutageMs) / 1000 + 3} s by default`);
  });

  it('docs/node.md explains the lease numbers the node defaults to', () => {
    const node = doc('node.md');
    const { leaseMs, renewIntervalMs, leaseMarginMs } = DEFAULT_TIMING;
    expect(node).toContain(`With ${leaseMs}/${renewIntervalMs}/${leaseMarginMs} that is`);
    // A renewal may be late by the lease, less the margin and the renewal period, before the node stops serving.
    expect(node).toContain(`a renewal can be late by up to\n${leaseMs - leaseMarginMs - renewIntervalMs} ms`);
  });
});

function parsedNatsTimeout(): number {
  const c = parsed(NATS).controlPlane;
  if (c.kind !== 'nats') throw new Error('nats');
  return c.connectTimeoutMs;
}

describe('docs/node.md: the NodeOptions table', () => {
  const rows = tableRows(section(doc('node.md'), '## Configuration (`startNode` / `NodeOptions`)'), '| option | default | meaning |');
  /** `host` / `port` and `zone`, `weight` rows: each name with its part of the default cell. */
  const documented = new Map<string, string>();
  for (const [names, def] of rows as [string, string][]) {
    const ns = [...names.matchAll(/`([A-Za-z]+)`/g)].map((m) => m[1]!);
    const defs = ns.length === 1 ? [def] : def.split(/ \/ |, /);
    // One default for several options (`maxEntries` / `maxBytes` | unbounded) is each one's.
    if (defs.length === 1) while (defs.length < ns.length) defs.push(def);
    expect([names, defs.length]).toEqual([names, ns.length]);
    ns.forEach((n, i) => documented.set(n, defs[i]!.trim()));
  }
  const resolved = resolveNodeOptions({ id: 'n', controlPlane: new MemoryControlPlane() }) as unknown as Record<string, unknown>;

  it('documents every option the node knows, and only those', () => {
    expect([...documented.keys()].sort()).toEqual(Object.keys(resolved).sort());
  });

  it('gives the defaults resolveNodeOptions applies', () => {
    const words: Record<string, (name: string) => unknown> = {
      required: () => 'required',
      none: () => undefined,
      off: () => undefined,
      unbounded: () => undefined,
      'the listen port': () => undefined,
      silent: () => silentLogger,
      '`host`': () => resolved['host'],
      '`{}`': () => ({}),
    };
    const expected: Record<string, unknown> = { ...resolved, id: 'required', controlPlane: 'required' };
    for (const [name, cell] of documented) {
      let value: unknown;
      if (words[cell] !== undefined) value = words[cell](name);
      else if (/^\d[\d\s ]*$/.test(cell)) value = num(cell);
      else if (/^\d+ MiB$/.test(cell)) value = num(cell.slice(0, -4)) * 1024 * 1024;
      else if (/^`[^`{]+`$/.test(cell)) value = /^`\d+`$/.test(cell) ? num(unquote(cell)) : unquote(cell);
      else if (/^`\{.*\}`$/.test(cell)) {
        value = Object.fromEntries(
          unquote(cell)
            .slice(1, -1)
            .split(',')
            .map((p) => p.split(':').map((x) => x.trim()))
            .map(([k, v]) => [k, v === 'true' ? true : v === 'false' ? false : num(v!)]),
        );
      } else throw new Error(`${name}: cannot read the default ${cell}`);
      // `weight` is documented as 1: unset means the weight of one (the assignment's default).
      if (name === 'weight') expect([name, value, resolved['weight']]).toEqual([name, 1, undefined]);
      else expect([name, value]).toEqual([name, expected[name]]);
    }
  });

  it('gives the maxFrameSize range the node enforces', () => {
    const row = rows.find((r) => r[0] === '`maxFrameSize`')!;
    expect(row[2]).toMatch(new RegExp(`^${MIN_MAX_FRAME_SIZE} to 2\\^32 − 1\\.`));
    expect(MAX_MAX_FRAME_SIZE).toBe(2 ** 32 - 1);
    expect(DEFAULT_MAX_FRAME_SIZE).toBe(4 * 1024 * 1024);
    const opts = (maxFrameSize: number): NodeOptions => ({ id: 'n', controlPlane: new MemoryControlPlane(), maxFrameSize });
    expect(resolveNodeOptions(opts(MIN_MAX_FRAME_SIZE)).maxFrameSize).toBe(MIN_MAX_FRAME_SIZE);
    expect(resolveNodeOptions(opts(MAX_MAX_FRAME_SIZE)).maxFrameSize).toBe(MAX_MAX_FRAME_SIZE);
    expect(() => resolveNodeOptions(opts(MIN_MAX_FRAME_SIZE - 1))).toThrow(NodeConfigError);
    expect(() => resolveNodeOptions(opts(MAX_MAX_FRAME_SIZE + 1))).toThrow(NodeConfigError);
  });
});

describe('docs/node.md: LocalCluster.start defaults', () => {
  it('starts the nodes, backups and partitions the docs give when it is told none', async () => {
    const m = /`LocalCluster\.start` takes `nodes` \((\d+)\), `backups` \((\d+)\), `partitions` \((\d+)\)/.exec(doc('node.md'));
    expect(m).not.toBeNull();
    const cluster = await LocalCluster.start();
    try {
      const t = cluster.topology();
      expect([cluster.nodeIds.length, t.backups, t.partitions]).toEqual(m!.slice(1).map(Number));
    } finally {
      await cluster.stop();
    }
  }, 30_000);
});

describe('docs/node.md: the metrics table', () => {
  it('lists every gridlink_node_* metric a node serves on /metrics, with its type, and no other', async () => {
    const section = doc('node.md').split('\n## Operating it\n')[1]!.split('\n## ')[0]!;
    const documented = new Map<string, string>();
    for (const line of section.split('\n')) {
      const m = /^\s*\| (`gridlink_node_[^|]*(?:\\\|[^|]*)*) \| ([a-z]+) \|/.exec(line);
      if (m === null) continue;
      for (const name of m[1]!.matchAll(/`(gridlink_node_[a-z_]+)/g)) documented.set(name[1]!, m[2]!);
    }
    const cluster = await LocalCluster.start({ nodes: 1, partitions: 8, http: true });
    try {
      const text = await (await fetch(`http://127.0.0.1:${cluster.node('node-1').httpPort}/metrics`)).text();
      const served = new Map<string, string>();
      for (const m of text.matchAll(/^# TYPE (gridlink_node_[a-z_]+) ([a-z]+)$/gm)) served.set(m[1]!, m[2]!);
      expect(served.size).toBeGreaterThan(15);
      expect([...documented].sort()).toEqual([...served].sort());
    } finally {
      await cluster.stop();
    }
  }, 30_000);
});

describe('docs/protocol.md and docs/affinity.md: the figures that are the node’s defaults', () => {
  const protocol = doc('protocol.md');
  const resolved = resolveNodeOptions({ id: 'n', controlPlane: new MemoryControlPlane() });

  it('§1 timeouts: handshake, idle and frame timeout are the node’s DEFAULT_TIMING', () => {
    const header = protocol.split('\n').find((l) => /^\|\s*timeout\s*\|\s*default\s*\|/.test(l));
    expect(header, 'the timeouts table').toBeDefined();
    const rows = tableRows(protocol, header!);
    const ms = (name: string): number => {
      const row = rows.find((r) => r[0] === name);
      expect(row, name).toBeDefined();
      const m = /^(\d+) ms$/.exec(row![1]!);
      expect(m, `${name}: ${row![1]}`).not.toBeNull();
      return Number(m![1]);
    };
    expect(ms('handshake timeout')).toBe(DEFAULT_TIMING.handshakeTimeoutMs);
    expect(ms('idle timeout')).toBe(DEFAULT_TIMING.idleTimeoutMs);
    expect(ms('frame timeout')).toBe(DEFAULT_TIMING.frameTimeoutMs);
    // the row names the protocol package's constant: the node's default is that constant
    expect(HANDSHAKE_TIMEOUT_MS).toBe(DEFAULT_TIMING.handshakeTimeoutMs);
  });

  it('CACHE_CREATE’s backups bound and the dedup window are what the node enforces and defaults to', () => {
    const bound = /`config\.backups`\s+\(absent: the cluster's\) is at most (\d+)/.exec(protocol);
    expect(bound).not.toBeNull();
    expect(Number(bound![1])).toBe(MAX_CACHE_BACKUPS);
    expect(unsupportedCacheConfig({ backups: MAX_CACHE_BACKUPS })).toBeNull();
    expect(unsupportedCacheConfig({ backups: MAX_CACHE_BACKUPS + 1 })).toMatchObject({ field: 'backups' });
    const window = /the node's `dedupWindowMs`, default (\d+) s/.exec(protocol);
    expect(window).not.toBeNull();
    expect(Number(window![1]) * 1000).toBe(resolved.dedupWindowMs);
  });

  it('affinity.md: the partition count a cluster is created with by default', () => {
    const m = /fixed when a cluster is created \(default (\d+)\)/.exec(doc('affinity.md'));
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBe(resolved.partitions);
    expect(Number(m![1])).toBe(CLUSTER_DEFAULTS.partitions);
  });
});
