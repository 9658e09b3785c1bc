/**
 * The `gridlink` command: argument parsing, output (table or JSON) and exit codes over the verbs
 * in admin.ts. `runCli` takes its I/O and, for tests and embedded use, an already open control
 * plane, and returns the exit code instead of exiting.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { GridClient, GridConnectionError, GridServerError, GridTimeoutError } from '@gridlink/client';
import { NodeConfigError, checkNatsCredsFile, envNameOf, isBucketName, type ControlPlane } from '@gridlink/node';
import {
  changeAutoAdjust,
  changeBaseline,
  checkSafe,
  clusterStatus,
  decommission,
  listCaches,
  resetLost,
  showBaseline,
  waitSafe,
  type BaselineChangeResult,
  type CacheInfo,
  type HttpLocator,
  type SafeReport,
} from './admin.js';
import { readTopology } from './control.js';
import { connectControlPlane, isHostPort, type ConnectedControlPlane, type ConnectOptions } from './connect.js';
import { startDashboard } from './dashboard/server.js';
import { formatDuration, parseDuration } from './duration.js';
import { AdminInternalError, AdminRefusedError, AdminUsageError, ExitCode, classifyError } from './errors.js';
import { hostOption } from './options.js';
import { fencedLine, ranges, releasesLine, table, unreachableLine } from './table.js';

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export interface CliDeps {
  /** Use this control plane instead of connecting to --control-plane. */
  controlPlane?: ControlPlane;
  /** Environment for GRIDLINK_* defaults. Default process.env. */
  env?: Record<string, string | undefined>;
  /** The dashboard verb runs until this aborts (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
  /** Called with the dashboard's URL once it listens. */
  onDashboard?: (url: string) => void;
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** The options every verb accepts (docs/operations.md §9, "Common options"). */
export const COMMON: OptionSpec = {
  'control-plane': { type: 'string' },
  bucket: { type: 'string' },
  'nats-token': { type: 'string' },
  'nats-user': { type: 'string' },
  'nats-pass': { type: 'string' },
  'nats-creds': { type: 'string' },
  output: { type: 'string', short: 'o' },
  json: { type: 'boolean' },
  timeout: { type: 'string' },
  'http-port': { type: 'string' },
  http: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' },
};

/** Each verb's own options; its keys are the verbs (docs/operations.md §9, "Verb options"). */
export const VERB_OPTIONS: Record<string, OptionSpec> = {
  status: { sample: { type: 'string' } },
  baseline: { yes: { type: 'boolean', short: 'y' }, enable: { type: 'boolean' }, disable: { type: 'boolean' }, soft: { type: 'string' }, hard: { type: 'string' } },
  decommission: { yes: { type: 'boolean', short: 'y' }, wait: { type: 'boolean' }, 'wait-timeout': { type: 'string' } },
  'reset-lost': { yes: { type: 'boolean', short: 'y' } },
  caches: { 'skip-sizes': { type: 'boolean' }, 'auth-token': { type: 'string' } },
  safe: { wait: { type: 'boolean' }, 'wait-timeout': { type: 'string' } },
  dashboard: { port: { type: 'string' }, host: { type: 'string' }, interval: { type: 'string' }, 'allowed-host': { type: 'string', multiple: true } },
};

/**
 * The options a GRIDLINK_<NAME> environment variable stands in for (`--nats-user`:
 * GRIDLINK_NATS_USER): the gridlink-node flags of the same names, read from the node's variables
 * (@gridlink/node's envNameOf), so one environment serves both commands.
 */
export const ENV_OPTIONS = ['control-plane', 'bucket', 'nats-token', 'nats-user', 'nats-pass', 'nats-creds'] as const;

/**
 * The defaults of options that have one, in milliseconds for durations (the bucket's is the node
 * package's own, `gridlink`: the CLI passes no bucket when none is given).
 */
export const OPTION_DEFAULTS = {
  timeout: 10_000,
  sample: 600,
  'wait-timeout': 300_000,
  port: 8090,
  host: '127.0.0.1',
  interval: 1000,
} as const;

const COMMON_HELP = `common options:
  --control-plane <url>   nats://host:port[,nats://...] (env GRIDLINK_CONTROL_PLANE)
  --bucket <name>         control plane KV bucket (env GRIDLINK_BUCKET; default: gridlink)
  --nats-token <t> | --nats-user <u> --nats-pass <p> | --nats-creds <file>
                          NATS credentials (env GRIDLINK_NATS_TOKEN, _USER, _PASS, _CREDS)
  --output table|json     output format (default table); --json is short for --output json
                          (with --output table: a usage error)
  --timeout <dur>         bound on each control plane call (default 10s)
  --http-port <n>         nodes' HTTP port (/health, /metrics) on each member's host
  --http <id>=<url>       one node's HTTP base URL (repeatable; overrides --http-port)
  --help                  this help
durations: 500ms, 10s, 2m, 1h, 1m30s
exit codes: 0 ok, 1 usage error, 2 partitions lost or moving, 3 control plane unreachable,
            4 refused (needs --yes, unknown node, no such bucket, conflict), 5 internal error`;

const HELP: Record<string, string> = {
  '': `usage: gridlink <verb> [options]
verbs:
  status                  members, partitions per node, lost/moving partitions, baseline, auto-adjust
  baseline show|set|add|remove|auto-adjust
                          show or change the baseline (the target set of data nodes)
  decommission <id>       take a node out of the baseline, its copies rebuilt first
  reset-lost [<partition>...]
                          accept the loss of lost partitions (all, or those given)
  caches                  caches: name, backups, loss policy, lost partitions, config, size
  safe [--wait]           is every partition fully replicated, nothing moving or lost?
  dashboard               serve a live web dashboard
run "gridlink <verb> --help" (or "gridlink help <verb>") for a verb's options.
${COMMON_HELP}`,
  status: `usage: gridlink status [--sample <dur>] [common options]
  Members (id, zone, address, epoch, lease age, ready), partitions per node (primary, backup,
  moving), lost partitions, baseline vs live set, auto-adjust policy and countdown, topology version.
  --sample <dur>          how long to watch lease renewals to judge lease age (default 600ms)
  exit code 2 when partitions are lost or moving.
${COMMON_HELP}`,
  baseline: `usage: gridlink baseline show
       gridlink baseline set <id> [<id>...] [--yes]
       gridlink baseline add <id> [--yes]
       gridlink baseline remove <id> [--yes]
       gridlink baseline auto-adjust --enable|--disable [--soft <dur>] [--hard <dur>] [--yes]
  A change prints its plan (partitions and copies that move per node) and is carried out only
  with --yes when it moves data (exit code 4 otherwise). Auto-adjust: the baseline follows the
  live set once it has been stable for the soft timeout, and at the latest after the hard one.
${COMMON_HELP}`,
  decommission: `usage: gridlink decommission <id> [--yes] [--wait [--wait-timeout <dur>]]
  Removes the node from the baseline: the coordinator builds new copies of its partitions on the
  remaining nodes first, then the node drops its own. --wait waits until it holds nothing (exit
  code 2 if it still does at the timeout, default 5m). The CLI does not stop the node's process:
  stop it afterwards (with auto-adjust enabled, before the soft timeout puts it back).
${COMMON_HELP}`,
  'reset-lost': `usage: gridlink reset-lost [<partition>...] --yes
  Accepts the loss of lost partitions (all, or those given; "3 5" or "3,5"): they are served again,
  empty. Always needs --yes.
${COMMON_HELP}`,
  caches: `usage: gridlink caches [--skip-sizes] [--auth-token <t>]
  Every cache's name and config from the control plane, and its size asked from the nodes
  (connecting a client to the members' addresses) unless --skip-sizes. A size that cannot be
  read shows as "? <reason>" (timeout, connection, partition-lost…) with the full reason under
  the table (with --json: "sizeError": {code, message, retryable}); the exit code stays 0.
  --auth-token <t>        the token the nodes were started with (--auth-token of gridlink-node)
${COMMON_HELP}`,
  safe: `usage: gridlink safe [--wait [--wait-timeout <dur>]]
  Safe when no partition is lost, moving or under-replicated. Asks each node's /health/safe when
  its HTTP address is known (--http-port, --http) and it serves it; otherwise derives it from the
  topology record. Exit code 0 when safe, 2 when not (after --wait-timeout, default 5m, with --wait).
${COMMON_HELP}`,
  dashboard: `usage: gridlink dashboard [--port <n>] [--host <addr>] [--interval <dur>] [--allowed-host <host>]...
  Serves a live page: members and health, a partition grid by owner and state (updated over
  server-sent events), ops/s, error rate and connected clients per node (scraped from /metrics,
  which needs --http-port or --http). Default 127.0.0.1:8090, scrape interval 1s.
  On a loopback address it answers only requests for localhost, 127.0.0.1 or [::1] at its port
  (421 otherwise: DNS rebinding); elsewhere any, unless --allowed-host is given.
  --allowed-host <host>   a Host it answers to as well: name or name:port (repeatable)
${COMMON_HELP}`,
};

interface Parsed {
  verb: string;
  args: string[];
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  json: boolean;
  timeoutMs: number;
}

/** The options `verb` takes: the common ones and its own (none of its own for no verb or `help`). */
function optionsOf(verb: string): Set<string> {
  return new Set([...Object.keys(COMMON), ...Object.keys(VERB_OPTIONS[verb] ?? {})]);
}

/** The usage error of an option `verb` does not take (another verb's, or none's). */
function notAnOption(option: string, verb: string): AdminUsageError {
  return new AdminUsageError(option, `not an option of "gridlink ${verb || '<verb>'}" (see gridlink ${verb ? `${verb} ` : ''}--help)`);
}

function unknownVerb(verb: string): AdminUsageError {
  return new AdminUsageError('verb', `unknown verb "${verb}" (try gridlink --help)`);
}

/**
 * What is wrong with a command line parseArgs refused (`err`), said in the operator's terms and
 * naming the option and the verb: an option the verb does not take (also when it is another verb's
 * and was given no value: parseArgs knows every verb's options at once, and said "argument
 * missing"), an option given no value, or a flag given one.
 */
function commandLineError(argv: string[], all: OptionSpec, err: unknown): AdminUsageError {
  const { tokens } = parseArgs({ args: argv, options: all, allowPositionals: true, strict: false, tokens: true });
  const verb = tokens.find((t) => t.kind === 'positional')?.value ?? '';
  if (verb !== '' && verb !== 'help' && !(verb in VERB_OPTIONS)) return unknownVerb(verb);
  const allowed = optionsOf(verb);
  const command = verb === '' || verb === 'help' ? 'gridlink' : `gridlink ${verb}`;
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    if (!allowed.has(t.name)) return notAnOption(t.rawName, verb);
    if (all[t.name]!.type === 'string') {
      if (t.value === undefined) return new AdminUsageError(t.rawName, `needs a value (${command} ${t.rawName} <value>)`);
      // parseArgs takes nothing that starts with - for a value: `--sample --json` is a forgotten
      // value, and `--port -1` is written `--port=-1`.
      if (!t.inlineValue && t.value.startsWith('-')) {
        const name = t.value.replace(/^--?/, '').split('=')[0]!;
        const isOption = t.value.startsWith('--') ? name in all : Object.values(all).some((o) => o.short === name);
        const got = isOption ? `got the option ${t.value}` : `a value that starts with - is written ${t.rawName.startsWith('--') ? `${t.rawName}=${t.value}` : `${t.rawName}${t.value}`}`;
        return new AdminUsageError(t.rawName, `needs a value (${command} ${t.rawName} <value>; ${got})`);
      }
    } else if (t.value !== undefined) {
      return new AdminUsageError(t.rawName, `takes no value (${command} ${t.rawName})`);
    }
  }
  const msg = err instanceof Error ? err.message : String(err);
  const m = /'(-{1,2}[^' ]+)/.exec(msg);
  return new AdminUsageError(m?.[1] ?? 'arguments', msg.replace(/\. To specify a positional.*$/s, ''));
}

function parse(argv: string[]): Parsed {
  const all: OptionSpec = { ...COMMON };
  for (const spec of Object.values(VERB_OPTIONS)) Object.assign(all, spec);
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true });
  } catch (err) {
    throw commandLineError(argv, all, err);
  }
  const { values, positionals } = parsed;
  const verb = positionals[0] ?? '';
  if (verb === 'help') {
    // `gridlink help <verb>` is `gridlink <verb> --help`.
    const target = positionals[1] ?? '';
    if (target !== '' && !(target in VERB_OPTIONS)) throw unknownVerb(target);
    return { verb: target, args: [], values: { help: true }, json: false, timeoutMs: 0 };
  }
  if (verb !== '' && !(verb in VERB_OPTIONS)) throw unknownVerb(verb);
  const allowed = optionsOf(verb);
  for (const [k, v] of Object.entries(values)) {
    if (!allowed.has(k)) throw notAnOption(`--${k}`, verb);
    // An empty value (`--bucket=`, `--host ""`) is no value, as an option given none: left out, it
    // would silently become the default (the bucket, no token) or another meaning (`--host=`: every
    // address; `--port=`: 0, any free port).
    if (v === '' || (Array.isArray(v) && v.includes(''))) throw new AdminUsageError(`--${k}`, `needs a value (gridlink ${verb ? `${verb} ` : ''}--${k} <value>)`);
  }
  const output = values['output'] as string | undefined;
  if (output !== undefined && output !== 'table' && output !== 'json') throw new AdminUsageError('--output', `must be table or json, got "${output}"`);
  // Neither wins: a script that asks for both has a bug, and either output would hide it.
  if (values['json'] === true && output === 'table') throw new AdminUsageError('--json', 'conflicts with --output table (--json is short for --output json): give one of them');
  const json = values['json'] === true || output === 'json';
  const timeout = values['timeout'] as string | undefined;
  const timeoutMs = timeout === undefined ? OPTION_DEFAULTS.timeout : parseDuration(timeout, '--timeout');
  if (timeoutMs <= 0) throw new AdminUsageError('--timeout', 'must be longer than 0');
  return { verb, args: positionals.slice(1), values, json, timeoutMs };
}

function httpLocator(values: Parsed['values']): HttpLocator | undefined {
  const byId = new Map<string, string>();
  for (const spec of (values['http'] as string[] | undefined) ?? []) {
    const i = spec.indexOf('=');
    const id = spec.slice(0, i);
    const url = spec.slice(i + 1);
    if (i <= 0 || !/^https?:\/\/[^\s/]+\/?$/.test(url) || !isHostPort(url)) throw new AdminUsageError('--http', `expected <id>=http://host:port, got "${spec}"`);
    byId.set(id, url.replace(/\/$/, ''));
  }
  const portText = values['http-port'] as string | undefined;
  let port: number | undefined;
  if (portText !== undefined) {
    port = portNumber(portText);
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new AdminUsageError('--http-port', `must be a port number in [1, 65535], got "${portText}"`);
  }
  if (byId.size === 0 && port === undefined) return undefined;
  return (id, a) => byId.get(id) ?? (port !== undefined ? `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${port}` : undefined);
}

function positiveDuration(values: Parsed['values'], name: string, dflt: number): number {
  const v = values[name] as string | undefined;
  return v === undefined ? dflt : parseDuration(v, `--${name}`);
}

function nodeId(v: string | undefined, argument: string): string {
  if (v === undefined || v === '') throw new AdminUsageError(argument, 'missing node id');
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(v)) throw new AdminUsageError(argument, `"${v}" is not a node id (1-64 characters of [A-Za-z0-9._-])`);
  return v;
}

function noExtra(args: string[], from: number, verb: string): void {
  if (args.length > from) throw new AdminUsageError('arguments', `unexpected "${args[from]}" after gridlink ${verb}`);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function planText(r: BaselineChangeResult): string {
  const p = r.plan;
  const lines = [
    `baseline: ${p.before.join(', ') || '(empty)'}  →  ${p.after.join(', ')}`,
    `  added: ${p.added.join(', ') || 'none'}; removed: ${p.removed.join(', ') || 'none'}`,
    `  partitions whose holders change: ${p.partitionsMoving}; copies to transfer: ${p.copiesToTransfer}`,
  ];
  const rows = Object.entries(p.perNode).map(([id, n]) => [id, `${n.primaryBefore} → ${n.primaryAfter}`, `${n.copiesBefore} → ${n.copiesAfter}`, n.gains, n.drops]);
  if (rows.length > 0) lines.push(table(['NODE', 'PRIMARY', 'COPIES', 'PULLS', 'DROPS'], rows));
  if (r.warning) lines.push(`warning: ${r.warning}`);
  return lines.join('\n');
}

function outcomeText(reason: 'applied' | 'confirmation-required' | 'no-change', version: number): string {
  if (reason === 'applied') return `applied: topology version ${version}`;
  if (reason === 'no-change') return 'nothing to change';
  return 'this change moves data: nothing done. Re-run with --yes to carry it out.';
}

const exitOf = (reason: 'applied' | 'confirmation-required' | 'no-change'): number => (reason === 'confirmation-required' ? ExitCode.REFUSED : ExitCode.OK);

export function safeText(r: SafeReport): string {
  const head = r.safe ? `safe (topology version ${r.topologyVersion})` : `NOT safe (topology version ${r.topologyVersion})`;
  return [
    head,
    `  lost: ${ranges(r.lost)}; moving: ${ranges(r.moving)}; under-replicated: ${ranges(r.underReplicated)}` +
      (r.fenced.length > 0 ? `; fenced: ${r.fenced.join(', ')}` : ''),
    table(['NODE', 'SAFE', 'SOURCE'], r.nodes.map((n) => [n.id, n.safe ? 'yes' : 'no', n.source])),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

/**
 * Whether the raw arguments ask for JSON output (`--json`, `--output json`, `-o json`), for the
 * errors found while parsing them, when there is no parsed `--json` to go by.
 */
function jsonRequested(argv: string[]): boolean {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '--json' || a === '--output=json' || a === '-ojson') return true;
    if ((a === '--output' || a === '-o') && argv[i + 1] === 'json') return true;
  }
  return false;
}

export async function runCli(argv: string[], io: CliIo, deps: CliDeps = {}): Promise<number> {
  let p: Parsed;
  try {
    p = parse(argv);
  } catch (err) {
    return fail(err, io, jsonRequested(argv));
  }
  if (p.values['help'] === true || p.verb === '') {
    const text = HELP[p.verb] ?? HELP['']!;
    if (p.verb === '' && p.values['help'] !== true) {
      if (p.json) return fail(new AdminUsageError('verb', 'missing (try gridlink --help)'), io, true);
      io.stderr(text + '\n');
      return ExitCode.USAGE;
    }
    io.stdout(text + '\n');
    return ExitCode.OK;
  }
  let conn: ConnectedControlPlane | null = null;
  try {
    const http = httpLocator(p.values);
    // Validate the verb's own arguments before connecting anywhere.
    const run = prepare(p, http, io, deps);
    const env = deps.env ?? process.env;
    const opt = (flag: (typeof ENV_OPTIONS)[number]): string | undefined => {
      const v = (p.values[flag] as string | undefined) ?? env[envNameOf(flag)];
      return v === '' ? undefined : v;
    };
    const o: ConnectOptions = { timeoutMs: p.timeoutMs };
    const pairs: [keyof ConnectOptions, (typeof ENV_OPTIONS)[number]][] = [['bucket', 'bucket'], ['token', 'nats-token'], ['user', 'nats-user'], ['pass', 'nats-pass'], ['credsFile', 'nats-creds']];
    for (const [k, flag] of pairs) {
      const v = opt(flag);
      if (v !== undefined) (o as Record<string, unknown>)[k] = v;
    }
    // The rule the nodes' NatsControlPlane applies; found here, it is the operator's argument and
    // not a connection that failed.
    if (o.bucket !== undefined && !isBucketName(o.bucket)) {
      const from = p.values['bucket'] === undefined ? ` (from ${envNameOf('bucket')})` : '';
      throw new AdminUsageError('--bucket', `"${o.bucket}"${from} is not a bucket name: 1-64 characters of [A-Za-z0-9_-]`);
    }
    if ((o.user === undefined) !== (o.pass === undefined)) throw new AdminUsageError(o.user === undefined ? '--nats-user' : '--nats-pass', '--nats-user and --nats-pass go together');
    if ([o.token, o.user, o.credsFile].filter((x) => x !== undefined).length > 1) throw new AdminUsageError('--nats-token', 'give one of --nats-token, --nats-user/--nats-pass, --nats-creds');
    if (o.credsFile !== undefined) {
      // NATS reads the file only once a server answers: a bad one looked like a control plane it
      // could not reach (exit 3). Checked here, it is the operator's argument.
      try {
        checkNatsCredsFile(o.credsFile);
      } catch (err) {
        if (!(err instanceof NodeConfigError)) throw err;
        const from = p.values['nats-creds'] === undefined ? ` (from ${envNameOf('nats-creds')})` : '';
        throw new AdminUsageError('--nats-creds', `${err.reason}${from}`);
      }
    }
    let cp = deps.controlPlane;
    if (!cp) {
      const url = opt('control-plane');
      if (url === undefined) throw new AdminUsageError('--control-plane', 'missing (or set GRIDLINK_CONTROL_PLANE)');
      conn = await connectControlPlane(url, o);
      cp = conn.controlPlane;
    }
    return await run(cp);
  } catch (err) {
    return fail(err, io, p.json);
  } finally {
    await conn?.close().catch(() => undefined);
  }
}

/**
 * Prints the error the command ends with and returns its exit code. An error the command does not
 * classify is an internal error (exit code 5), never a refusal; its stack follows in text output.
 */
function fail(err: unknown, io: CliIo, json: boolean): number {
  const e = classifyError(err);
  if (json) io.stderr(JSON.stringify({ error: { code: e.code, message: e.message, retryable: e.retryable } }) + '\n');
  else {
    io.stderr(`gridlink: ${e.message}\n`);
    if (e instanceof AdminInternalError && err instanceof Error && err.stack) io.stderr(`${err.stack}\n`);
  }
  return e.exitCode;
}

type Runner = (cp: ControlPlane) => Promise<number>;

/** The longest `gridlink caches` waits for the nodes to answer its client's handshake (or --timeout, when shorter). */
export const SIZES_CONNECT_MAX_MS = 5000;

/**
 * The client `gridlink caches` asks the sizes with, or the reason no node can be asked from here
 * (the nodes cannot be reached or did not answer the handshake in time): that reason then stands
 * for every cache's size. Nodes that refuse the client's token are not a size failure but a usage
 * error naming --auth-token, and any other failure (a client option the client rejects, say)
 * propagates.
 */
async function sizeClient(endpoints: string[], timeoutMs: number, authToken: string | undefined): Promise<GridClient | Error> {
  if (endpoints.length === 0) return new AdminRefusedError('ADMIN_NO_MEMBERS', 'the topology lists no member to ask', true);
  try {
    return await GridClient.connect({ endpoints, connectTimeout: Math.min(timeoutMs, SIZES_CONNECT_MAX_MS), operationTimeout: timeoutMs, ...(authToken ? { auth: { token: authToken } } : {}) });
  } catch (err) {
    if (!(err instanceof GridConnectionError || err instanceof GridTimeoutError)) throw err;
    const refused = (err instanceof GridConnectionError ? err.endpoints : []).find((e) => e.error instanceof GridServerError && e.error.code === 'GRID_AUTH_FAILED');
    if (refused) {
      throw new AdminUsageError(
        '--auth-token',
        `the nodes refused the client (${refused.cause}): give the token the nodes were started with${authToken ? '' : ' (--auth-token)'}, or --skip-sizes`,
      );
    }
    return err;
  }
}

/** The SIZE cell of a size that could not be read: `? ` and its code, short (`? timeout`). */
function sizeCell(c: CacheInfo): string | number | null {
  if (c.sizeError === null) return c.size;
  return `? ${c.sizeError.code.replace(/^(GRID|ADMIN)_/, '').toLowerCase().replace(/_/g, '-')}`;
}

/** One line per distinct reason a size could not be read, naming the caches it stands for. */
function sizeErrorLines(caches: CacheInfo[]): string[] {
  const byReason = new Map<string, string[]>();
  for (const c of caches) {
    if (c.sizeError === null) continue;
    const reason = `${c.sizeError.code}: ${c.sizeError.message}`;
    byReason.set(reason, [...(byReason.get(reason) ?? []), c.name]);
  }
  if (byReason.size === 0) return [];
  return ['sizes not read:', ...[...byReason].map(([reason, names]) => `  ${names.join(', ')}: ${reason}`)];
}

function prepare(p: Parsed, http: HttpLocator | undefined, io: CliIo, deps: CliDeps): Runner {
  const { verb, args, values, json, timeoutMs } = p;
  const base = { timeoutMs, ...(http ? { http } : {}) };
  const out = (data: unknown, text: () => string): void => {
    io.stdout(json ? JSON.stringify(data, null, 2) + '\n' : text() + '\n');
  };
  switch (verb) {
    case 'status': {
      noExtra(args, 0, verb);
      const sampleMs = positiveDuration(values, 'sample', OPTION_DEFAULTS.sample);
      return async (cp) => {
        const s = await clusterStatus(cp, { ...base, sampleMs });
        out(s, () => {
          const aa = s.autoAdjust;
          return [
            `cluster ${s.clusterId}  topology version ${s.topologyVersion}  partitions ${s.partitions}  backups ${s.backups}`,
            table(
              ['ID', 'STATE', 'ZONE', 'ADDRESS', 'EPOCH', 'RELEASE', 'LEASE AGE', 'READY', 'BASELINE', 'PRIMARY', 'BACKUP', 'MOVING'],
              s.members.map((m) => [
                m.id,
                m.state,
                m.zone,
                m.address,
                m.epoch?.slice(0, 8),
                m.release,
                m.leaseAgeMs === null ? (m.state === 'offline' ? null : 'stale') : formatDuration(m.leaseAgeMs),
                m.ready ? 'yes' : 'no',
                m.inBaseline ? 'yes' : 'no',
                m.partitions.primary,
                m.partitions.backup,
                m.partitions.moving,
              ]),
            ),
            `baseline: ${s.baseline.join(', ') || '(empty)'}`,
            `live:     ${s.live.join(', ') || '(none)'}` +
              (s.offline.length ? `   offline baseline nodes: ${s.offline.join(', ')}` : '') +
              (s.outsideBaseline.length ? `   live outside baseline: ${s.outsideBaseline.join(', ')}` : ''),
            `auto-adjust: ${aa.enabled ? 'enabled' : 'disabled'} (soft ${formatDuration(aa.softTimeoutMs)}, hard ${formatDuration(aa.hardTimeoutMs)})` +
              (aa.pending ? (aa.countdownMs !== null ? `; baseline follows the live set in ${formatDuration(aa.countdownMs)}` : '; live set differs from the baseline') : ''),
            `lost: ${ranges(s.lost)}   moving: ${ranges(s.moving)}   under-replicated: ${ranges(s.underReplicated)}`,
            ...releasesLine(s.members),
            ...unreachableLine(s.members),
            ...fencedLine(s.fenced),
          ].join('\n');
        });
        return s.lost.length > 0 || s.moving.length > 0 ? ExitCode.PARTITIONS_UNSAFE : ExitCode.OK;
      };
    }
    case 'baseline': {
      const sub = args[0];
      const yes = values['yes'] === true;
      const aaFlags = ['enable', 'disable', 'soft', 'hard'].filter((k) => values[k] !== undefined);
      if (sub !== 'auto-adjust' && aaFlags.length > 0) throw new AdminUsageError(`--${aaFlags[0]}`, 'only for "gridlink baseline auto-adjust"');
      switch (sub) {
        case 'show':
          noExtra(args, 1, 'baseline show');
          return async (cp) => {
            const v = await showBaseline(cp, base);
            out(v, () =>
              [
                `topology version ${v.topologyVersion}`,
                table(['ID', 'ZONE', 'ALIVE'], v.baseline.map((n) => [n.id, n.zone, n.alive ? 'yes' : 'no'])),
                `live: ${v.live.join(', ') || '(none)'}`,
                `auto-adjust: ${v.autoAdjust.enabled ? 'enabled' : 'disabled'} (soft ${formatDuration(v.autoAdjust.softTimeoutMs)}, hard ${formatDuration(v.autoAdjust.hardTimeoutMs)})` +
                  (v.autoAdjust.countdownMs !== null ? `; baseline follows the live set in ${formatDuration(v.autoAdjust.countdownMs)}` : ''),
              ].join('\n'),
            );
            return ExitCode.OK;
          };
        case 'set':
        case 'add':
        case 'remove': {
          let change: Parameters<typeof changeBaseline>[1];
          if (sub === 'set') {
            const ids = args.slice(1).flatMap((a) => a.split(',')).filter((s) => s !== '');
            if (ids.length === 0) throw new AdminUsageError('<id>', 'give at least one node id');
            change = { kind: 'set', ids: ids.map((id) => nodeId(id, '<id>')) };
          } else {
            noExtra(args, 2, `baseline ${sub}`);
            change = { kind: sub, id: nodeId(args[1], '<id>') };
          }
          return async (cp) => {
            const r = await changeBaseline(cp, change, { ...base, yes });
            out(r, () => `${planText(r)}\n${outcomeText(r.reason, r.topologyVersion)}`);
            return exitOf(r.reason);
          };
        }
        case 'auto-adjust': {
          noExtra(args, 1, 'baseline auto-adjust');
          if (values['enable'] === true && values['disable'] === true) throw new AdminUsageError('--enable', 'give either --enable or --disable, not both');
          const change: Parameters<typeof changeAutoAdjust>[1] = {};
          if (values['enable'] === true) change.enabled = true;
          if (values['disable'] === true) change.enabled = false;
          if (values['soft'] !== undefined) change.softTimeoutMs = positiveDuration(values, 'soft', 0);
          if (values['hard'] !== undefined) change.hardTimeoutMs = positiveDuration(values, 'hard', 0);
          if (Object.keys(change).length === 0) throw new AdminUsageError('--enable', 'give --enable, --disable, --soft or --hard');
          return async (cp) => {
            const r = await changeAutoAdjust(cp, change, { ...base, yes });
            const fmt = (a: typeof r.after): string => `${a.enabled ? 'enabled' : 'disabled'}, soft ${formatDuration(a.softTimeoutMs)}, hard ${formatDuration(a.hardTimeoutMs)}`;
            out(r, () =>
              [
                `auto-adjust: ${fmt(r.before)}  →  ${fmt(r.after)}`,
                ...(r.movesData ? ['  the live set differs from the baseline: once enabled, the baseline follows it and data moves'] : []),
                outcomeText(r.reason, r.topologyVersion),
              ].join('\n'),
            );
            return exitOf(r.reason);
          };
        }
        default:
          throw new AdminUsageError('<subcommand>', sub === undefined ? 'missing: show, set, add, remove or auto-adjust' : `unknown "${sub}": show, set, add, remove or auto-adjust`);
      }
    }
    case 'decommission': {
      const id = nodeId(args[0], '<id>');
      noExtra(args, 1, 'decommission');
      const wait = values['wait'] === true;
      const waitMs = positiveDuration(values, 'wait-timeout', OPTION_DEFAULTS['wait-timeout']);
      return async (cp) => {
        const r = await decommission(cp, id, { ...base, yes: values['yes'] === true, ...(wait ? { waitMs } : {}) });
        out(r, () => {
          const lines = [planText(r), outcomeText(r.reason, r.topologyVersion)];
          if (r.drained === true) lines.push(`${id} holds no partition any more: stop its process now (the CLI does not stop nodes).`);
          else if (r.drained === false) lines.push(`${id} still holds partitions after ${formatDuration(waitMs)}.`);
          else if (r.applied) lines.push(`the coordinator now moves ${id}'s partitions; stop its process once it holds none (gridlink status, or --wait).`);
          return lines.join('\n');
        });
        if (r.drained === false) return ExitCode.PARTITIONS_UNSAFE;
        return exitOf(r.reason);
      };
    }
    case 'reset-lost': {
      const parts = args.flatMap((a) => a.split(',')).filter((s) => s !== '').map((s) => {
        const n = Number(s);
        if (!/^\d+$/.test(s) || !Number.isSafeInteger(n)) throw new AdminUsageError('<partition>', `"${s}" is not a partition number`);
        return n;
      });
      return async (cp) => {
        const r = await resetLost(cp, parts.length > 0 ? parts : undefined, { ...base, yes: values['yes'] === true });
        out(r, () =>
          [
            `lost partitions: ${ranges(r.lostBefore)}`,
            `to reset (served again, EMPTY): ${ranges(r.reset)}`,
            ...(r.notLost.length ? [`not lost (ignored): ${ranges(r.notLost)}`] : []),
            r.reason === 'confirmation-required' ? 'resetting accepts the data loss: nothing done. Re-run with --yes to carry it out.' : outcomeText(r.reason, r.topologyVersion),
          ].join('\n'),
        );
        return exitOf(r.reason);
      };
    }
    case 'caches': {
      noExtra(args, 0, verb);
      const skip = values['skip-sizes'] === true;
      const authToken = values['auth-token'] as string | undefined;
      return async (cp) => {
        let client: GridClient | null = null;
        try {
          const o: Parameters<typeof listCaches>[1] = { ...base };
          if (!skip) {
            const rec = (await readTopology(cp, timeoutMs)).value;
            const endpoints = Object.values(rec.members).map((m) => `${m.host.includes(':') ? `[${m.host}]` : m.host}:${m.port}`);
            const asked = await sizeClient(endpoints, timeoutMs, authToken);
            if (asked instanceof GridClient) {
              client = asked;
              o.sizeOf = (name) => asked.cache(name).size();
            } else {
              o.sizeOf = () => Promise.reject(asked);
            }
          }
          const caches = await listCaches(cp, o);
          out(caches, () =>
            caches.length === 0
              ? 'no caches'
              : [
                  table(
                    ['NAME', 'BACKUPS', 'LOSS POLICY', 'LOST', 'CONFIG', 'SIZE'],
                    caches.map((c) => [c.name, c.backups ?? 'cluster', c.policy, c.lost.length === 0 ? '-' : c.lost.join(','), JSON.stringify(c.config), sizeCell(c)]),
                  ),
                  ...sizeErrorLines(caches),
                ].join('\n'),
          );
          // The listing came from the control plane; sizes are asked from the nodes on the side.
          // A size that could not be read is reported with its reason and does not change the
          // exit code (ADR 0025).
          return ExitCode.OK;
        } finally {
          await client?.close();
        }
      };
    }
    case 'safe': {
      noExtra(args, 0, verb);
      const wait = values['wait'] === true;
      const waitMs = positiveDuration(values, 'wait-timeout', OPTION_DEFAULTS['wait-timeout']);
      return async (cp) => {
        const r = wait ? await waitSafe(cp, { ...base, waitMs }) : await checkSafe(cp, base);
        out(r, () => safeText(r));
        return r.safe ? ExitCode.OK : ExitCode.PARTITIONS_UNSAFE;
      };
    }
    case 'dashboard': {
      noExtra(args, 0, verb);
      const portText = values['port'] as string | undefined;
      const port = portText === undefined ? OPTION_DEFAULTS.port : portNumber(portText);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new AdminUsageError('--port', `must be a port number in [0, 65535], got "${portText}"`);
      const host = (values['host'] as string | undefined) ?? OPTION_DEFAULTS.host;
      if (host.trim() === '') throw new AdminUsageError('--host', 'needs a value (gridlink dashboard --host <value>)');
      const intervalMs = positiveDuration(values, 'interval', OPTION_DEFAULTS.interval);
      if (intervalMs < 100) throw new AdminUsageError('--interval', 'must be at least 100ms');
      const allowedHosts = values['allowed-host'] as string[] | undefined;
      // Checked here to name the flag (startDashboard would name its option, allowedHosts).
      for (const h of allowedHosts ?? []) hostOption('--allowed-host', h);
      return async (cp) => {
        const d = await startDashboard({ controlPlane: cp, port, host, scrapeIntervalMs: intervalMs, timeoutMs, ...(http ? { http } : {}), ...(allowedHosts ? { allowedHosts } : {}) }).catch((err: unknown) => {
          // The address cannot be listened on: the operator's --port or --host, not a crash.
          const code = (err as NodeJS.ErrnoException | null)?.code;
          if (code === 'EADDRINUSE' || code === 'EACCES') throw new AdminUsageError('--port', `cannot listen on ${host}:${port}: ${(err as Error).message}`);
          if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') throw new AdminUsageError('--host', `cannot listen on ${host}:${port}: ${(err as Error).message}`);
          throw err;
        });
        // Runs until a signal, or until the control plane loses its state (ADR 0028): its watch
        // then delivers nothing more, and a page that goes on showing the old cluster would lie.
        // The handlers are in place before the URL is printed: a supervisor that stops it as soon
        // as it is up must get the clean stop, not a process killed by the signal.
        let lost: Error | undefined;
        const cleanup: (() => void)[] = [];
        const stopped = new Promise<void>((resolve) => {
          const stopReset = cp.onReset?.((err) => {
            lost = err;
            resolve();
          });
          if (stopReset) cleanup.push(stopReset);
          if (deps.signal) {
            if (deps.signal.aborted) resolve();
            else {
              const abort = (): void => resolve();
              deps.signal.addEventListener('abort', abort, { once: true });
              const signal = deps.signal;
              cleanup.push(() => signal.removeEventListener('abort', abort));
            }
            return;
          }
          const done = (): void => resolve();
          process.on('SIGINT', done);
          process.on('SIGTERM', done);
          cleanup.push(() => {
            process.off('SIGINT', done);
            process.off('SIGTERM', done);
          });
        });
        io.stdout(`gridlink dashboard on ${d.url} (Ctrl-C to stop)\n`);
        deps.onDashboard?.(d.url);
        await stopped;
        for (const c of cleanup) c();
        await d.close();
        if (lost !== undefined) throw new AdminRefusedError('ADMIN_CONTROL_PLANE_RESET', `${lost.message}; start the dashboard again to show the cluster it holds now`);
        return ExitCode.OK;
      };
    }
  }
  throw new AdminUsageError('verb', `unknown verb "${verb}"`);
}

/**
 * A port as written on the command line: decimal digits only, else NaN (refused by the caller).
 * `Number()` alone took `0x1f90`, `1e3`, ` 80` and `80.0` for ports.
 */
function portNumber(text: string): number {
  return /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
}
