import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CLI_OPTIONS, envNameOf, parseCli, unknownVariables, usage, versionLine, type CliConfig } from '../src/cli/options.js';
import { RELEASE } from '../src/release.js';
import { peerLocalAddress } from '../src/peers/local-address.js';
import { CLUSTER_DEFAULTS, joinOrCreateCluster, reconcileClusterSettings } from '../src/cli/cluster.js';
import { MemoryControlPlane, NODE_V8_FLAGS, NodeConfigError, resolveNodeOptions, youngGenerationConfigured, type NodeOptions } from '@gridlink/node';

const cfg = (argv: string[], env: Record<string, string> = {}, host = 'pod-0'): CliConfig => {
  const r = parseCli(argv, env, host);
  if (r.help) throw new Error('unexpected help');
  return r.config;
};
const fieldOf = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(NodeConfigError);
    return (err as NodeConfigError).field;
  }
  throw new Error('did not throw');
};

describe('gridlink-node option parser (pure)', () => {
  it('defaults: id from the host name, memory control plane, loopback', () => {
    expect(cfg([])).toEqual({ id: 'pod-0', host: '127.0.0.1', port: 10800, advertiseHost: '127.0.0.1', controlPlane: { kind: 'memory' }, logLevel: 'info' });
  });

  it('a NATS control plane with bucket, credentials and TLS', () => {
    const c = cfg([
      '--control-plane',
      'nats://h1:4222, nats://h2:4222',
      '--bucket=grid',
      '--bucket-replicas',
      '3',
      '--nats-user',
      'u',
      '--nats-pass',
      'p',
      '--nats-tls-ca',
      '/ca.pem',
      '--host',
      '0.0.0.0',
      '--advertise-host',
      'pod-0.grid',
    ]);
    expect(c.controlPlane).toEqual({
      kind: 'nats',
      servers: ['nats://h1:4222', 'nats://h2:4222'],
      bucket: 'grid',
      replicas: 3,
      user: 'u',
      pass: 'p',
      tls: { caFile: '/ca.pem' },
      connectTimeoutMs: 30_000,
    });
    expect([c.host, c.advertiseHost]).toEqual(['0.0.0.0', 'pod-0.grid']);
  });

  it('--advertise-port / GRIDLINK_ADVERTISE_PORT: the port others dial, defaulting to the listen port', () => {
    expect(cfg([]).advertisePort).toBeUndefined();
    expect(cfg(['--port', '10801', '--advertise-port', '31001'])).toMatchObject({ port: 10801, advertisePort: 31001 });
    expect(cfg(['--port', '0'], { GRIDLINK_ADVERTISE_PORT: '31002' })).toMatchObject({ port: 0, advertisePort: 31002 });
    expect(cfg(['--advertise-port', '31003'], { GRIDLINK_ADVERTISE_PORT: '31002' }).advertisePort).toBe(31003);
    expect(fieldOf(() => cfg(['--advertise-port', '0']))).toBe('advertise-port');
    expect(fieldOf(() => cfg(['--advertise-port', '65536']))).toBe('advertise-port');
    expect(fieldOf(() => cfg(['--advertise-port', 'http']))).toBe('advertise-port');
    expect(fieldOf(() => cfg([], { GRIDLINK_ADVERTISE_PORT: '-5' }))).toBe('advertise-port');
  });

  it('every option can come from its GRIDLINK_* variable, and a flag wins over it (property)', () => {
    const intFlags = CLI_OPTIONS.filter((o) => o.kind === 'int').map((o) => o.flag);
    // Values 1-5, above the flag's least value when that is larger (--transfer-unit-bytes).
    const low = (flag: string): number => Math.max(0, (CLI_OPTIONS.find((o) => o.flag === flag)?.min ?? 0) - 1);
    fc.assert(
      fc.property(fc.constantFrom(...intFlags), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.boolean(), (flag, envDelta, argDelta, both) => {
        const [envV, argV] = [low(flag) + envDelta, low(flag) + argDelta];
        const base = flag.startsWith('bucket') || flag.startsWith('nats') || flag === 'bootstrap-nodes' ? ['--control-plane', 'nats://h:4222'] : [];
        const env = { [envNameOf(flag)]: String(envV) };
        const argv = both ? [...base, `--${flag}`, String(argV)] : base;
        let c: CliConfig;
        try {
          c = cfg(argv, env);
        } catch (err) {
          // A lease of 1-5 ms is shorter than the default renewal interval: refused, naming a timing flag.
          expect(err).toBeInstanceOf(NodeConfigError);
          expect(['lease-ms', 'renew-interval-ms', 'lease-margin-ms']).toContain((err as NodeConfigError).field);
          return;
        }
        const json = JSON.stringify(c);
        expect(json).toContain(String(both ? argV : envV));
      }),
      { numRuns: 200 },
    );
    expect(cfg([], { GRIDLINK_ID: 'from-env' }).id).toBe('from-env');
    expect(cfg(['--id', 'from-flag'], { GRIDLINK_ID: 'from-env' }).id).toBe('from-flag');
    expect(cfg([], { GRIDLINK_CONTROL_PLANE: 'nats://a:1', GRIDLINK_NATS_TOKEN: 's3cret' }).controlPlane).toMatchObject({ kind: 'nats', token: 's3cret' });
  });

  it('a value of only whitespace is no value, from a flag or a variable (--advertise-host " " was advertised as " :<port>"), and an address has no whitespace', () => {
    const NATS_BASE = ['--control-plane', 'nats://h:4222'];
    for (const o of CLI_OPTIONS.filter((x) => x.kind === 'string')) {
      const base = /^(bucket|nats)/.test(o.flag) ? NATS_BASE : [];
      for (const blank of [' ', '\t', '  \n']) {
        expect([o.flag, fieldOf(() => cfg([...base, `--${o.flag}`, blank]))]).toEqual([o.flag, o.flag]);
        // A variable of only whitespace is refused naming the variable (an empty one is unset).
        let err: unknown;
        try {
          cfg(base, { [envNameOf(o.flag)]: blank });
        } catch (e) {
          err = e;
        }
        expect([o.flag, err instanceof NodeConfigError ? err.field : err]).toEqual([o.flag, o.flag]);
        expect((err as Error).message).toContain(envNameOf(o.flag));
      }
    }
    expect(() => cfg(['--advertise-host', ' '])).toThrow('advertise-host: --advertise-host needs a value, got only whitespace " "');
    expect(() => cfg([], { GRIDLINK_ZONE: ' ' })).toThrow('zone: --zone needs a value, got only whitespace " " (--zone given as GRIDLINK_ZONE)');
    // Whitespace inside or around an address: refused naming the flag before the node joins a
    // cluster (the listen failed later with "getaddrinfo ENOTFOUND 127.0.0.1 ", naming nothing).
    for (const h of ['127.0.0.1 ', ' 10.0.0.5', 'a b', '10.0.0.5\n']) {
      expect([h, fieldOf(() => cfg(['--host', h]))]).toEqual([h, 'host']);
      expect([h, fieldOf(() => cfg(['--advertise-host', h]))]).toEqual([h, 'advertise-host']);
      expect([h, fieldOf(() => cfg(['--host', '0.0.0.0'], { GRIDLINK_ADVERTISE_HOST: h }))]).toEqual([h, 'advertise-host']);
    }
    // Values with spaces where spaces belong stay accepted.
    expect(cfg(['--auth-token', 'a b c']).authToken).toBe('a b c');
    expect(cfg([], { GRIDLINK_AUTH_TOKEN: 's3cret' }).authToken).toBe('s3cret');
    expect(cfg(['--zone', 'eu west 1']).zone).toBe('eu west 1');
    expect(cfg(['--host', '0.0.0.0', '--advertise-host', 'pod-0.grid.svc']).advertiseHost).toBe('pod-0.grid.svc');
  });

  it('an --auth-token with whitespace at its start or end is refused naming the flag (and the variable) and the whitespace, not the token: clients present the token byte for byte, so a trailing newline from a secret made every client be refused, with no hint why', () => {
    const refusal = (argv: string[], env: Record<string, string> = {}): NodeConfigError => {
      try {
        cfg(argv, env);
      } catch (err) {
        expect(err).toBeInstanceOf(NodeConfigError);
        return err as NodeConfigError;
      }
      throw new Error(`accepted ${JSON.stringify([argv, env])}`);
    };
    for (const [token, said] of [
      ['s3cret\n', 'trailing "\\n"'],
      ['s3cret\r\n', 'trailing "\\r\\n"'],
      [' s3cret', 'leading " "'],
      ['\ts3cret ', 'leading "\\t" and trailing " "'],
    ] as const) {
      for (const err of [refusal(['--auth-token', token]), refusal([`--auth-token=${token}`]), refusal([], { GRIDLINK_AUTH_TOKEN: token })]) {
        expect(err.field).toBe('auth-token');
        expect(err.message).toContain(`--auth-token has whitespace around it (${said})`);
        expect(err.message).not.toContain('s3cret');
      }
      expect(refusal([], { GRIDLINK_AUTH_TOKEN: token }).message).toMatch(/\(--auth-token given as GRIDLINK_AUTH_TOKEN\)$/);
    }
    // Whitespace inside the token is the token's.
    expect(cfg(['--auth-token', 'two words']).authToken).toBe('two words');
  });

  it('every option is documented in the usage text with its flag', () => {
    const text = usage();
    for (const o of CLI_OPTIONS) expect(text).toContain(`--${o.flag}`);
    expect(parseCli(['--help'], {}, 'h')).toMatchObject({ help: true, version: false, usage: text });
  });

  it('--version: the release line instead of the usage, nothing to run; --help wins over it, and it takes no value', () => {
    expect(parseCli(['--version'], {}, 'h')).toEqual({ help: true, version: true, usage: `gridlink-node ${RELEASE}` });
    expect(versionLine()).toBe(`gridlink-node ${RELEASE}`);
    // Not a configuration to check: values are not looked at (as for --help), the flags are.
    expect(parseCli(['--port', 'x', '--version'], {}, 'h')).toMatchObject({ help: true, version: true });
    expect(parseCli(['--version', '--help'], {}, 'h')).toMatchObject({ help: true, version: false, usage: usage() });
    expect(fieldOf(() => parseCli(['--version=1'], {}, 'h'))).toBe('version');
    expect(fieldOf(() => parseCli(['--version', '--nope'], {}, 'h'))).toBe('nope');
    // No variable runs it: GRIDLINK_VERSION is none of the command's.
    expect(parseCli([], { GRIDLINK_VERSION: '1' }, 'h')).toMatchObject({ help: false });
    expect(unknownVariables({ GRIDLINK_VERSION: '1' })).toEqual([{ name: 'GRIDLINK_VERSION', meant: [] }]);
  });

  it('refuses bad input with an error naming the flag', () => {
    expect(fieldOf(() => cfg(['--port', 'x']))).toBe('port');
    expect(fieldOf(() => cfg(['--port', '70000']))).toBe('port');
    expect(fieldOf(() => cfg(['--nope']))).toBe('nope');
    expect(fieldOf(() => cfg(['stray']))).toBe('arguments');
    expect(fieldOf(() => cfg(['--id']))).toBe('id');
    expect(fieldOf(() => cfg([], {}, 'bad host name!'))).toBe('id');
    expect(fieldOf(() => cfg(['--host', '0.0.0.0']))).toBe('advertise-host');
    expect(fieldOf(() => cfg(['--control-plane', 'redis://x']))).toBe('control-plane');
    expect(fieldOf(() => cfg(['--bucket', 'b']))).toBe('bucket');
    expect(fieldOf(() => cfg(['--control-plane', 'nats://a:1', '--bucket', 'a.b']))).toBe('bucket');
    expect(fieldOf(() => cfg(['--control-plane', 'nats://a:1', '--nats-user', 'u']))).toBe('nats-pass');
    expect(fieldOf(() => cfg(['--control-plane', 'nats://a:1', '--nats-token', 't', '--nats-creds', '/c']))).toBe('nats-token');
    expect(fieldOf(() => cfg(['--tls-cert', '/c']))).toBe('tls-key');
    expect(fieldOf(() => cfg(['--log-level', 'loud']))).toBe('log-level');
    expect(fieldOf(() => cfg(['--id', 'a', '--id', 'b']))).toBe('id');
    expect(fieldOf(() => cfg(['--advertise-host=']))).toBe('advertise-host');
    expect(fieldOf(() => cfg(['--zone', '--port', '1']))).toBe('zone');
    expect(cfg(['--auth-token=--x']).authToken).toBe('--x');
    expect(fieldOf(() => cfg(['--bootstrap-nodes', '2']))).toBe('bootstrap-nodes');
    expect(cfg(['--control-plane', 'nats://h:1', '--bootstrap-nodes', '2']).bootstrapNodes).toBe(2);
    expect(fieldOf(() => cfg(['--port', '8080', '--http-port', '8080']))).toBe('http-port');
    expect(cfg(['--port', '0', '--http-port', '0']).httpPort).toBe(0);
    expect(cfg(['--host', '[::]', '--advertise-host', 'pod-0.grid']).host).toBe('::');
    expect(fieldOf(() => cfg(['--host', '::', '--advertise-host', '[::]']))).toBe('advertise-host');
    expect(() => cfg([], { GRIDLINK_PORT: 'x' })).toThrow('port: must be an integer, got "x" (given as GRIDLINK_PORT)');
  });

  it('accepts exactly the timings the node accepts, naming the flag otherwise (property)', () => {
    const timing = { 'lease-ms': 'leaseMs', 'renew-interval-ms': 'renewIntervalMs', 'lease-margin-ms': 'leaseMarginMs', 'handoff-timeout-ms': 'handoffTimeoutMs' } as const;
    const value = fc.option(fc.oneof(fc.integer({ min: 0, max: 1200 }), fc.constantFrom(0, 1, 150, 250, 400, 1000)), { nil: undefined });
    fc.assert(
      fc.property(fc.record({ 'lease-ms': value, 'renew-interval-ms': value, 'lease-margin-ms': value, 'handoff-timeout-ms': value }), (t) => {
        const argv = Object.entries(t).flatMap(([flag, v]) => (v === undefined ? [] : [`--${flag}`, String(v)]));
        const options: Record<string, unknown> = { id: 'n', controlPlane: new MemoryControlPlane() };
        for (const [flag, v] of Object.entries(t)) if (v !== undefined) options[timing[flag as keyof typeof timing]] = v;
        let nodeAccepts = true;
        try {
          resolveNodeOptions(options as unknown as NodeOptions);
        } catch (err) {
          expect(err).toBeInstanceOf(NodeConfigError);
          nodeAccepts = false;
        }
        let field: string | undefined;
        try {
          cfg(argv);
        } catch (err) {
          expect(err).toBeInstanceOf(NodeConfigError);
          field = (err as NodeConfigError).field;
        }
        expect(field === undefined).toBe(nodeAccepts);
        if (field !== undefined) expect(Object.keys(timing)).toContain(field);
      }),
      { numRuns: 500 },
    );
    expect(fieldOf(() => cfg(['--handoff-timeout-ms', '0']))).toBe('handoff-timeout-ms');
    expect(fieldOf(() => cfg(['--renew-interval-ms', '1000']))).toBe('renew-interval-ms');
    expect(fieldOf(() => cfg(['--lease-ms', '300']))).toBe('lease-ms');
    expect(fieldOf(() => cfg(['--lease-ms', '2000', '--lease-margin-ms', '1800']))).toBe('lease-margin-ms');
    expect(cfg(['--lease-ms', '2000', '--renew-interval-ms', '500', '--lease-margin-ms', '300'])).toMatchObject({ leaseMs: 2000, renewIntervalMs: 500, leaseMarginMs: 300 });
  });

  it('never throws anything but NodeConfigError on arbitrary argv and env (property)', () => {
    const flags = CLI_OPTIONS.map((o) => `--${o.flag}`);
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constantFrom(...flags), fc.string(), fc.constantFrom('0', '1', '-1', '0.0.0.0', 'nats://h:1', 'memory'))),
        fc.dictionary(fc.constantFrom(...CLI_OPTIONS.map((o) => envNameOf(o.flag))), fc.string()),
        (argv, env) => {
          try {
            parseCli(argv, env, 'h');
          } catch (err) {
            expect(err).toBeInstanceOf(NodeConfigError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('GRIDLINK_* variables the command does not read', () => {
  const meant = (name: string): string[] | undefined => unknownVariables({ [name]: 'x' })[0]?.meant;

  it('every option but --help and --version has its variable, and none of those is unknown; nor are other variables', () => {
    const env = Object.fromEntries(CLI_OPTIONS.filter((o) => o.kind !== 'bool').map((o) => [envNameOf(o.flag), '1']));
    expect(Object.keys(env)).toHaveLength(CLI_OPTIONS.length - 2);
    expect(unknownVariables({ ...env, PATH: '/bin', NODE_OPTIONS: '--max-semi-space-size=4', gridlink_partitions: '8' })).toEqual([]);
    expect(unknownVariables({ GRIDLINK_HELP: '1' })).toEqual([{ name: 'GRIDLINK_HELP', meant: [] }]);
  });

  it('names the variable probably meant: a misspelling of an edit or two, a name cut short or run on', () => {
    expect(meant('GRIDLINK_PARTITION')).toEqual(['GRIDLINK_PARTITIONS']);
    expect(meant('GRIDLINK_partitions')).toEqual(['GRIDLINK_PARTITIONS']);
    expect(meant('GRIDLINK_CONTROLPLANE')).toEqual(['GRIDLINK_CONTROL_PLANE']);
    expect(meant('GRIDLINK_NATS_CRED')).toEqual(['GRIDLINK_NATS_CREDS']);
    expect(meant('GRIDLINK_HTTP_PROT')).toEqual(['GRIDLINK_HTTP_PORT']);
    expect(meant('GRIDLINK_PORT_NUMBER')).toEqual(['GRIDLINK_PORT']);
    expect(meant('GRIDLINK_LEASE')).toEqual(['GRIDLINK_LEASE_MS', 'GRIDLINK_LEASE_MARGIN_MS']);
    // A misspelling wins over a name that merely begins the same.
    expect(meant('GRIDLINK_HOSTS')).toEqual(['GRIDLINK_HOST']);
  });

  it('guesses nothing when nothing is close, or too many are', () => {
    expect(meant('GRIDLINK_SOMETHING_NEW')).toEqual([]);
    expect(meant('GRIDLINK_XY')).toEqual([]);
    expect(meant('GRIDLINK_')).toEqual([]);
    expect(meant('GRIDLINK_NATS')).toEqual([]);
  });
});

describe('peer connections dial from the listen address (--host)', () => {
  it('binds to a specific listen address, never to a wildcard, a host name or across families', () => {
    expect(peerLocalAddress('127.0.1.2', '127.0.0.1')).toBe('127.0.1.2');
    expect(peerLocalAddress('10.0.0.5', '10.0.0.6')).toBe('10.0.0.5');
    expect(peerLocalAddress('fd00::5', 'fd00::6')).toBe('fd00::5');
    expect(peerLocalAddress('[fd00::5]', 'fd00::6')).toBe('fd00::5');
    expect(peerLocalAddress('0.0.0.0', '10.0.0.6')).toBeUndefined();
    expect(peerLocalAddress('::', 'fd00::6')).toBeUndefined();
    expect(peerLocalAddress('[::]', 'fd00::6')).toBeUndefined();
    expect(peerLocalAddress('pod-0.grid', '10.0.0.6')).toBeUndefined();
    expect(peerLocalAddress('10.0.0.5', 'pod-1.grid')).toBeUndefined();
    expect(peerLocalAddress('10.0.0.5', 'fd00::6')).toBeUndefined();
    // A loopback listen address cannot reach another host: let the OS choose.
    expect(peerLocalAddress('127.0.0.1', '10.0.0.6')).toBeUndefined();
    expect(peerLocalAddress('::1', 'fd00::6')).toBeUndefined();
  });

  it('the bound address, when there is one, is the listen address itself (property)', () => {
    const ip4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
    fc.assert(
      fc.property(fc.oneof(ip4, fc.constantFrom('0.0.0.0', '::', '::1', 'localhost', 'fd00::1')), fc.oneof(ip4, fc.constantFrom('::1', 'fd00::2', 'h')), (host, target) => {
        const a = peerLocalAddress(host, target);
        if (a !== undefined) {
          expect(a).toBe(host);
          expect(host.startsWith('127.') && !target.startsWith('127.')).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('cluster record', () => {
  it('a joining node adopts unset settings and is refused on an explicit mismatch naming it (property)', () => {
    const rec = fc.record({ clusterId: fc.constantFrom('a', 'b'), partitions: fc.constantFrom(16, 64), backups: fc.constantFrom(0, 1) });
    const want = fc.record({ clusterId: fc.option(fc.constantFrom('a', 'b'), { nil: undefined }), partitions: fc.option(fc.constantFrom(16, 64), { nil: undefined }), backups: fc.option(fc.constantFrom(0, 1), { nil: undefined }) });
    fc.assert(
      fc.property(rec, want, (r, w) => {
        const mismatch = (['clusterId', 'partitions', 'backups'] as const).find((k) => w[k] !== undefined && w[k] !== r[k]);
        if (mismatch === undefined) expect(reconcileClusterSettings(r, w)).toEqual(r);
        else {
          const field = fieldOf(() => reconcileClusterSettings(r, w));
          expect(field).toBe({ clusterId: 'cluster-id', partitions: 'partitions', backups: 'backups' }[mismatch]);
        }
      }),
    );
  });

  it('the first node creates the record; concurrent first nodes agree on one', async () => {
    const cp = new MemoryControlPlane();
    const results = await Promise.all([joinOrCreateCluster(cp, { partitions: 64 }), joinOrCreateCluster(cp, {}), joinOrCreateCluster(cp, {})]);
    const records = results.map((r) => r.record);
    expect(new Set(records.map((r) => JSON.stringify(r))).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    await expect(joinOrCreateCluster(cp, { clusterId: 'other' })).rejects.toThrow(/cluster-id/);
    const fresh = new MemoryControlPlane();
    expect((await joinOrCreateCluster(fresh, {})).record).toEqual(CLUSTER_DEFAULTS);
  });
});

describe('youngGenerationConfigured (ADR 0046)', () => {
  it('sees --max-semi-space-size in the exec arguments or NODE_OPTIONS, in any spelling V8 accepts', () => {
    expect(NODE_V8_FLAGS).toEqual(['--max-semi-space-size=4']);
    expect(youngGenerationConfigured([...NODE_V8_FLAGS], undefined)).toBe(true);
    expect(youngGenerationConfigured(['--max_semi_space_size=8'], undefined)).toBe(true);
    expect(youngGenerationConfigured(['--max-semi-space-size', '4'], undefined)).toBe(true);
    expect(youngGenerationConfigured([], '--enable-source-maps  --max-semi-space-size=2')).toBe(true);
    expect(youngGenerationConfigured([], '--max_semi_space_size=2')).toBe(true);
  });

  it('does not mistake other flags for it', () => {
    expect(youngGenerationConfigured([], undefined)).toBe(false);
    expect(youngGenerationConfigured(['--max-old-space-size=4096', '--enable-source-maps'], '')).toBe(false);
    expect(youngGenerationConfigured(['--max-semi-space-sizes=4'], '--min-semi-space-size=4')).toBe(false);
  });
});
