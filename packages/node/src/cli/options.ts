/**
 * The gridlink-node command line, as a pure function: argv + environment + host name in, a
 * validated configuration out (or a NodeConfigError naming the flag). No I/O, so it can be tested
 * exhaustively and reused to check deployment manifests.
 *
 * Every flag `--some-flag` but `--help` and `--version` can also be given as the environment variable
 * `GRIDLINK_SOME_FLAG`; a flag on the command line wins over the variable.
 */
import { DEFAULT_TIMING, MAX_TRANSFER_UNIT_BYTES, MIN_TRANSFER_UNIT_BYTES } from '../config.js';
import { NodeConfigError } from '../errors.js';
import { isBucketName } from '../control/keys.js';
import { RELEASE } from '../release.js';

type Kind = 'string' | 'int' | 'bool';

export interface CliOptionSpec {
  flag: string;
  kind: Kind;
  help: string;
  /** Shown as the value placeholder in the usage text. */
  arg?: string;
  /** An int option's accepted range, inclusive (docs/operations.md §4 lists it; test/docs.test.ts holds the two together). */
  min?: number;
  max?: number;
}

const HOUR_MS = 3_600_000;

/** Every option the command accepts, in usage order. */
export const CLI_OPTIONS: readonly CliOptionSpec[] = [
  { flag: 'id', kind: 'string', arg: 'id', help: 'node id, stable across restarts (default: the host name)' },
  { flag: 'host', kind: 'string', arg: 'addr', help: 'listen address (default: 127.0.0.1)' },
  { flag: 'port', kind: 'int', min: 0, max: 65_535, arg: 'n', help: 'listen port (default: 10800; 0 = ephemeral)' },
  { flag: 'advertise-host', kind: 'string', arg: 'h', help: 'address clients and peers dial (default: --host; required when --host is 0.0.0.0 or ::)' },
  { flag: 'advertise-port', kind: 'int', min: 1, max: 65_535, arg: 'n', help: 'port clients and peers dial, when port mapping/NAT/a proxy forwards it to --port (default: --port)' },
  { flag: 'http-port', kind: 'int', min: 0, max: 65_535, arg: 'n', help: '/health and /metrics port (default: off)' },
  { flag: 'zone', kind: 'string', arg: 'zone', help: 'availability zone (backups prefer other zones)' },
  { flag: 'cluster-id', kind: 'string', arg: 'id', help: 'cluster id (default: gridlink; a joining node must match the cluster)' },
  { flag: 'partitions', kind: 'int', min: 1, max: 65_536, arg: 'n', help: 'partition count of a new cluster (default: 1024; a joining node must match)' },
  { flag: 'backups', kind: 'int', min: 0, max: 16, arg: 'n', help: 'backups per partition of a new cluster (default: 1; a joining node must match)' },
  { flag: 'bootstrap-nodes', kind: 'int', min: 1, max: 1000, arg: 'n', help: 'the first topology is written once this many nodes hold a lease (default: 1)' },
  { flag: 'control-plane', kind: 'string', arg: 'url', help: '"memory" (a one-node cluster) or nats://h1:4222,nats://h2:4222 (default: memory)' },
  { flag: 'bucket', kind: 'string', arg: 'name', help: 'NATS KV bucket (default: gridlink)' },
  { flag: 'bucket-replicas', kind: 'int', min: 1, max: 5, arg: 'n', help: 'replicas when this node creates the bucket (default: 1; 3 on a 3-server NATS)' },
  { flag: 'nats-token', kind: 'string', arg: 't', help: 'NATS token' },
  { flag: 'nats-user', kind: 'string', arg: 'u', help: 'NATS user (with --nats-pass)' },
  { flag: 'nats-pass', kind: 'string', arg: 'p', help: 'NATS password' },
  { flag: 'nats-creds', kind: 'string', arg: 'file', help: 'NATS credentials file (JWT + nkey seed)' },
  { flag: 'nats-tls-ca', kind: 'string', arg: 'file', help: 'CA (PEM) that verifies the NATS servers' },
  { flag: 'nats-tls-cert', kind: 'string', arg: 'file', help: 'client certificate (PEM) for NATS mutual TLS' },
  { flag: 'nats-tls-key', kind: 'string', arg: 'file', help: 'client key (PEM) for NATS mutual TLS' },
  { flag: 'nats-connect-timeout-ms', kind: 'int', min: 1, max: HOUR_MS, arg: 'ms', help: 'give up reaching NATS at start-up after this (default: 30000)' },
  { flag: 'tls-cert', kind: 'string', arg: 'file', help: 'serve clients and peers over TLS with this certificate (PEM)' },
  { flag: 'tls-key', kind: 'string', arg: 'file', help: 'private key (PEM) for --tls-cert' },
  { flag: 'tls-ca', kind: 'string', arg: 'file', help: 'CA (PEM) used to verify peers over TLS' },
  { flag: 'auth-token', kind: 'string', arg: 't', help: 'token clients and peers must present, without leading or trailing whitespace (default: none)' },
  { flag: 'max-entries', kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER, arg: 'n', help: 'per-node entry bound, LRU eviction (default: unbounded)' },
  { flag: 'max-bytes', kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER, arg: 'n', help: 'per-node key+value byte bound, LRU eviction (default: unbounded)' },
  { flag: 'transfer-unit-bytes', kind: 'int', min: MIN_TRANSFER_UNIT_BYTES, max: MAX_TRANSFER_UNIT_BYTES, arg: 'n', help: 'most entry bytes per state-transfer answer: larger re-syncs faster, pauses writes longer (default: 131072)' },
  { flag: 'lease-ms', kind: 'int', min: 1, max: HOUR_MS, arg: 'ms', help: 'membership lease length (default: 1000)' },
  { flag: 'renew-interval-ms', kind: 'int', min: 1, max: HOUR_MS, arg: 'ms', help: 'lease renewal period (default: 250)' },
  { flag: 'lease-margin-ms', kind: 'int', min: 1, max: HOUR_MS, arg: 'ms', help: 'safety margin before a lease is considered lapsed (default: 150)' },
  { flag: 'handoff-timeout-ms', kind: 'int', min: 1, max: HOUR_MS, arg: 'ms', help: 'on SIGTERM, how long to wait for primaries to be handed over before stopping anyway, counting the time the control plane answers (default: 5000)' },
  { flag: 'handoff-outage-ms', kind: 'int', min: 1, max: HOUR_MS, arg: 'ms', help: 'on SIGTERM, how much longer to wait while the control plane does not answer (default: 15000)' },
  { flag: 'log-level', kind: 'string', arg: 'l', help: 'debug | info | warn | error (default: info)' },
  { flag: 'help', kind: 'bool', help: 'print this text' },
  { flag: 'version', kind: 'bool', help: 'print the release of gridlink-node and exit' },
];

/** `--advertise-host` → `GRIDLINK_ADVERTISE_HOST`. */
export function envNameOf(flag: string): string {
  return 'GRIDLINK_' + flag.toUpperCase().replace(/-/g, '_');
}

/** An environment variable named like the command's but that it does not read, and the ones it probably meant. */
export interface UnknownVariable {
  name: string;
  /** The command's own variables closest to `name` (an edit or two away, or one's name begins the other's); may be empty. */
  meant: string[];
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur.push(Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = cur;
  }
  return prev[b.length]!;
}

/**
 * The `GRIDLINK_*` variables of `env` that are no option's variable (every flag but --help and
 * --version has one: envNameOf), each with the variables it was probably meant to be. The command
 * warns of them and runs on: a variable may be meant for a newer version. Empty for what the
 * container image and deploy/kubernetes set.
 */
export function unknownVariables(env: Readonly<Record<string, string | undefined>>): UnknownVariable[] {
  const known = CLI_OPTIONS.filter((o) => o.kind !== 'bool').map((o) => envNameOf(o.flag));
  const unknown: UnknownVariable[] = [];
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('GRIDLINK_') || known.includes(name)) continue;
    const given = name.slice('GRIDLINK_'.length).toUpperCase();
    let best = Infinity;
    let meant: string[] = [];
    for (const k of known) {
      const want = k.slice('GRIDLINK_'.length);
      const d = editDistance(given, want);
      // An edit or two (not a name rewritten whole: `ID` is not meant by any two letters), or a
      // name cut short or run on (`PARTITION`, `PORT_NUMBER`), counted as one edit more than
      // the nearest misspelling.
      const score = d <= 2 && d < want.length ? d : given !== '' && (want.startsWith(given) || given.startsWith(want)) ? 3 : Infinity;
      if (score < best) [best, meant] = [score, [k]];
      else if (score === best && score !== Infinity) meant.push(k);
    }
    // Many equally near (`GRIDLINK_NATS`) is no guess.
    unknown.push({ name, meant: meant.length <= 3 ? meant : [] });
  }
  return unknown;
}

/** The warning line (without the command's name) for an unknown variable. */
export function unknownVariableWarning(u: UnknownVariable): string {
  const meant = u.meant.length === 0 ? '' : ` (did you mean ${u.meant.join(' or ')}?)`;
  return `warning: ${u.name} is not a gridlink-node variable and is ignored${meant}`;
}

export type ControlPlaneSpec =
  | { kind: 'memory' }
  | {
      kind: 'nats';
      servers: string[];
      bucket: string;
      replicas: number;
      token?: string;
      user?: string;
      pass?: string;
      credsFile?: string;
      tls?: { caFile?: string; certFile?: string; keyFile?: string };
      connectTimeoutMs: number;
    };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** What the command runs with. Cluster settings not given explicitly are `undefined` (taken from the cluster). */
export interface CliConfig {
  id: string;
  host: string;
  port: number;
  advertiseHost: string;
  /** Undefined: the listen port. */
  advertisePort?: number;
  httpPort?: number;
  zone?: string;
  clusterId?: string;
  partitions?: number;
  backups?: number;
  bootstrapNodes?: number;
  controlPlane: ControlPlaneSpec;
  tls?: { certFile: string; keyFile: string; caFile?: string };
  authToken?: string;
  maxEntries?: number;
  maxBytes?: number;
  transferUnitBytes?: number;
  leaseMs?: number;
  renewIntervalMs?: number;
  leaseMarginMs?: number;
  handoffTimeoutMs?: number;
  handoffOutageMs?: number;
  logLevel: LogLevel;
}

/**
 * What the command does. `help: true`: it runs nothing, prints `usage` and exits 0: the usage text
 * for `--help`, or for `--version` (`version: true`) the line `gridlink-node <release>` (`--help`
 * wins when both are given). Otherwise it runs with `config`.
 */
export type CliParseResult = { help: true; version: boolean; usage: string } | { help: false; config: CliConfig };

/** What `gridlink-node --version` prints (without the newline). */
export function versionLine(): string {
  return `gridlink-node ${RELEASE}`;
}

export function usage(): string {
  const lines = ['usage: gridlink-node [options]   (every --flag but --help and --version also reads GRIDLINK_FLAG; the flag wins)'];
  for (const o of CLI_OPTIONS) {
    const left = `  --${o.flag}${o.arg ? ` <${o.arg}>` : ''}`;
    lines.push(`${left.padEnd(34)} ${o.help}`);
  }
  return lines.join('\n');
}

const ID_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Parses the command line and environment. `hostname` is the default id (a StatefulSet pod keeps
 * its name across restarts). Throws NodeConfigError naming the flag on any bad value.
 */
export function parseCli(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, hostname: string): CliParseResult {
  try {
    return parse(argv, env, hostname);
  } catch (err) {
    throw namingVariable(err, argv, env);
  }
}

/**
 * `err`, a refusal of a flag's value (NodeConfigError), saying that the value came from the flag's
 * GRIDLINK_* variable when it did: a value from a variable is not on the command line the operator
 * looks at. Any other error is returned as it is. For refusals found after parseCli too (the
 * command's checks of the files the flags name, the cluster's settings).
 */
export function namingVariable(err: unknown, argv: readonly string[], env: Readonly<Record<string, string | undefined>>): unknown {
  if (!(err instanceof NodeConfigError)) return err;
  const flag = err.field;
  const onCommandLine = argv.some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
  const variable = CLI_OPTIONS.some((o) => o.flag === flag) ? envNameOf(flag) : undefined;
  if (onCommandLine || variable === undefined || (env[variable] ?? '') === '') return err;
  const message = err.reason;
  return new NodeConfigError(flag, `${message} (${message.includes(`--${flag}`) ? `--${flag} ` : ''}given as ${variable})`);
}

function parse(argv: readonly string[], env: Readonly<Record<string, string | undefined>>, hostname: string): CliParseResult {
  const specs = new Map(CLI_OPTIONS.map((o) => [o.flag, o]));
  const fromArgs = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new NodeConfigError('arguments', `unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf('=');
    const flag = eq >= 0 ? a.slice(2, eq) : a.slice(2);
    const spec = specs.get(flag);
    if (!spec) throw new NodeConfigError(flag, `unknown option --${flag} (see --help)`);
    if (spec.kind === 'bool') {
      if (eq >= 0) throw new NodeConfigError(flag, `--${flag} takes no value`);
      fromArgs.set(flag, true);
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = a.slice(eq + 1);
    else {
      value = argv[i + 1];
      i++;
    }
    // An empty value is no value (an empty variable counts as unset, below), and a known flag in
    // a value's place is a value forgotten, not a value that happens to start with --.
    if (value === undefined || value === '') throw new NodeConfigError(flag, `--${flag} needs a value`);
    if (eq < 0 && value.startsWith('--') && specs.has(value.slice(2).split('=')[0]!)) {
      throw new NodeConfigError(flag, `--${flag} needs a value (got the flag ${value}; write --${flag}=${value} if that is the value)`);
    }
    if (fromArgs.has(flag)) throw new NodeConfigError(flag, `--${flag} given twice`);
    fromArgs.set(flag, value);
  }
  if (fromArgs.get('help') === true) return { help: true, version: false, usage: usage() };
  if (fromArgs.get('version') === true) return { help: true, version: true, usage: versionLine() };

  const raw = (flag: string): string | undefined => {
    const v = fromArgs.get(flag);
    if (typeof v === 'string') return v;
    const e = env[envNameOf(flag)];
    return e === undefined || e === '' ? undefined : e;
  };
  // Only whitespace is no value either, from a flag or a variable (a blank in a manifest's
  // template): --advertise-host " " was advertised as " :<port>", which nobody can dial.
  const str = (flag: string): string | undefined => {
    const v = raw(flag);
    if (v !== undefined && v.trim() === '') throw new NodeConfigError(flag, `--${flag} needs a value, got only whitespace ${JSON.stringify(v)}`);
    return v;
  };
  const int = (flag: string): number | undefined => {
    const v = raw(flag);
    if (v === undefined) return undefined;
    const { min = 0, max = Number.MAX_SAFE_INTEGER } = specs.get(flag) ?? {};
    if (!/^-?\d+$/.test(v.trim())) throw new NodeConfigError(flag, `must be an integer, got ${JSON.stringify(v)}`);
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new NodeConfigError(flag, `must be an integer in [${min}, ${max}], got ${v}`);
    return n;
  };
  const file = (flag: string): string | undefined => {
    const v = str(flag);
    if (v !== undefined && v.trim() === '') throw new NodeConfigError(flag, 'must be a file path');
    return v;
  };

  const id = str('id') ?? hostname;
  if (!ID_RE.test(id)) {
    throw new NodeConfigError('id', `must be 1-64 characters of [A-Za-z0-9._-], got ${JSON.stringify(id)}${str('id') === undefined ? ' (from the host name; pass --id)' : ''}`);
  }
  // An IPv6 address may be written in brackets, as in a URL ([::], [fd00::5]); the listen address is the address itself.
  const host = (str('host') ?? '127.0.0.1').replace(/^\[(.*:.*)\]$/, '$1');
  // An address or a host name has no whitespace: " 10.0.0.5" (a stray space in a manifest) was
  // advertised as is, or failed the listen with a bare getaddrinfo error naming no flag.
  const spaced = (flag: string, h: string): void => {
    if (/\s/.test(h)) throw new NodeConfigError(flag, `must be an address or host name, without whitespace, got ${JSON.stringify(h)}`);
  };
  spaced('host', host);
  const isWildcard = (h: string): boolean => h === '0.0.0.0' || h === '::' || h === '[::]';
  const advertiseHost = str('advertise-host') ?? (isWildcard(host) ? undefined : host);
  if (advertiseHost !== undefined) spaced('advertise-host', advertiseHost);
  if (advertiseHost === undefined) throw new NodeConfigError('advertise-host', `required when --host is ${host} (the address clients and peers dial)`);
  if (isWildcard(advertiseHost)) throw new NodeConfigError('advertise-host', 'must be an address others can dial, not a wildcard');

  const level = (str('log-level') ?? 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new NodeConfigError('log-level', `must be debug, info, warn or error, got ${JSON.stringify(level)}`);

  const cpRaw = str('control-plane') ?? 'memory';
  let controlPlane: ControlPlaneSpec;
  const natsFlags = ['bucket', 'bucket-replicas', 'nats-token', 'nats-user', 'nats-pass', 'nats-creds', 'nats-tls-ca', 'nats-tls-cert', 'nats-tls-key', 'nats-connect-timeout-ms'];
  if (cpRaw === 'memory') {
    const stray = natsFlags.find((f) => raw(f) !== undefined);
    if (stray) throw new NodeConfigError(stray, `--${stray} needs --control-plane nats://...`);
    controlPlane = { kind: 'memory' };
  } else {
    const servers = cpRaw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    if (servers.length === 0) throw new NodeConfigError('control-plane', 'needs "memory" or at least one nats:// URL');
    for (const s of servers) {
      if (!/^(nats|tls):\/\/[^\s/,]+$/.test(s)) throw new NodeConfigError('control-plane', `not "memory" or a nats://host:port URL: ${JSON.stringify(s)}`);
    }
    const bucket = str('bucket') ?? 'gridlink';
    if (!isBucketName(bucket)) throw new NodeConfigError('bucket', 'must be 1-64 characters of [A-Za-z0-9_-]');
    const nats: Extract<ControlPlaneSpec, { kind: 'nats' }> = {
      kind: 'nats',
      servers,
      bucket,
      replicas: int('bucket-replicas') ?? 1,
      connectTimeoutMs: int('nats-connect-timeout-ms') ?? 30_000,
    };
    const token = str('nats-token');
    const user = str('nats-user');
    const pass = str('nats-pass');
    const creds = file('nats-creds');
    if ([token !== undefined, user !== undefined || pass !== undefined, creds !== undefined].filter(Boolean).length > 1) {
      throw new NodeConfigError('nats-token', 'give one of --nats-token, --nats-user/--nats-pass, --nats-creds');
    }
    if ((user === undefined) !== (pass === undefined)) throw new NodeConfigError(user === undefined ? 'nats-user' : 'nats-pass', '--nats-user and --nats-pass go together');
    if (token !== undefined) nats.token = token;
    if (user !== undefined) nats.user = user;
    if (pass !== undefined) nats.pass = pass;
    if (creds !== undefined) nats.credsFile = creds;
    const ca = file('nats-tls-ca');
    const cert = file('nats-tls-cert');
    const key = file('nats-tls-key');
    if ((cert === undefined) !== (key === undefined)) throw new NodeConfigError(cert === undefined ? 'nats-tls-cert' : 'nats-tls-key', '--nats-tls-cert and --nats-tls-key go together');
    if (ca !== undefined || cert !== undefined) {
      const tls: { caFile?: string; certFile?: string; keyFile?: string } = {};
      if (ca !== undefined) tls.caFile = ca;
      if (cert !== undefined) tls.certFile = cert;
      if (key !== undefined) tls.keyFile = key;
      nats.tls = tls;
    }
    controlPlane = nats;
  }

  const config: CliConfig = {
    id,
    host,
    port: int('port') ?? 10800,
    advertiseHost,
    controlPlane,
    logLevel: level,
  };
  const optional: [keyof CliConfig, number | string | undefined][] = [
    ['advertisePort', int('advertise-port')],
    ['httpPort', int('http-port')],
    ['zone', str('zone')],
    ['clusterId', str('cluster-id')],
    ['partitions', int('partitions')],
    ['backups', int('backups')],
    ['bootstrapNodes', int('bootstrap-nodes')],
    ['authToken', authToken(str('auth-token'))],
    ['maxEntries', int('max-entries')],
    ['maxBytes', int('max-bytes')],
    ['transferUnitBytes', int('transfer-unit-bytes')],
    ['leaseMs', int('lease-ms')],
    ['renewIntervalMs', int('renew-interval-ms')],
    ['leaseMarginMs', int('lease-margin-ms')],
    ['handoffTimeoutMs', int('handoff-timeout-ms')],
    ['handoffOutageMs', int('handoff-outage-ms')],
  ];
  for (const [k, v] of optional) if (v !== undefined) (config as unknown as Record<string, unknown>)[k] = v;
  if (config.httpPort !== undefined && config.httpPort !== 0 && config.httpPort === config.port) {
    // Both listen on --host: the second listen would fail, after the node has joined the cluster.
    throw new NodeConfigError('http-port', `must differ from --port (${config.port})`);
  }
  if (controlPlane.kind === 'memory' && config.bootstrapNodes !== undefined && config.bootstrapNodes > 1) {
    // A memory control plane is this process's own: no other node can ever join it, so the first
    // topology would wait for ever.
    throw new NodeConfigError('bootstrap-nodes', `--bootstrap-nodes ${config.bootstrapNodes} needs --control-plane nats://... (the memory control plane is a cluster of one node)`);
  }
  // The relations the node checks again at start (resolveNodeOptions), checked here so that a bad
  // combination is refused naming its flag before the process connects to the control plane.
  const lease = config.leaseMs ?? DEFAULT_TIMING.leaseMs;
  const renew = config.renewIntervalMs ?? DEFAULT_TIMING.renewIntervalMs;
  const margin = config.leaseMarginMs ?? DEFAULT_TIMING.leaseMarginMs;
  if (renew >= lease) {
    throw new NodeConfigError(config.renewIntervalMs !== undefined ? 'renew-interval-ms' : 'lease-ms', `the renewal interval (${renew} ms) must be shorter than the lease (${lease} ms)`);
  }
  if (margin + renew >= lease) {
    throw new NodeConfigError(
      config.leaseMarginMs !== undefined ? 'lease-margin-ms' : config.leaseMs !== undefined ? 'lease-ms' : 'renew-interval-ms',
      `the lease margin (${margin} ms) plus the renewal interval (${renew} ms) must be shorter than the lease (${lease} ms)`,
    );
  }
  if (config.zone === '') throw new NodeConfigError('zone', 'must not be empty');
  if (config.clusterId !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(config.clusterId)) throw new NodeConfigError('cluster-id', 'must be 1-64 characters of [A-Za-z0-9._-]');
  const tlsCert = file('tls-cert');
  const tlsKey = file('tls-key');
  const tlsCa = file('tls-ca');
  if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new NodeConfigError(tlsCert === undefined ? 'tls-cert' : 'tls-key', '--tls-cert and --tls-key go together');
  if (tlsCa !== undefined && tlsCert === undefined) throw new NodeConfigError('tls-ca', '--tls-ca needs --tls-cert and --tls-key');
  if (tlsCert !== undefined && tlsKey !== undefined) {
    config.tls = { certFile: tlsCert, keyFile: tlsKey };
    if (tlsCa !== undefined) config.tls.caFile = tlsCa;
  }
  return { help: false, config };
}

/**
 * `--auth-token`'s value, refused (naming the flag, not the token) when it begins or ends with
 * whitespace: the node compares the token clients present byte for byte, and a value from a
 * secret written with `echo` or a file with a final newline carries one that nobody types, so
 * every client was refused with no hint why. Whitespace inside the token stays accepted.
 */
function authToken(v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  const leading = v.slice(0, v.length - v.trimStart().length);
  const trailing = v.slice(v.trimEnd().length);
  if (leading === '' && trailing === '') return v;
  const where = [leading !== '' ? `leading ${JSON.stringify(leading)}` : '', trailing !== '' ? `trailing ${JSON.stringify(trailing)}` : ''].filter((w) => w !== '').join(' and ');
  throw new NodeConfigError(
    'auth-token',
    `--auth-token has whitespace around it (${where}): clients must present the token byte for byte, so the node would refuse every one; remove it (a secret made with echo, or a file ending in a newline, carries one)`,
  );
}
