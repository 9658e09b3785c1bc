/**
 * Client configuration: the user-facing shape, its documented defaults, and validation at
 * construction. Every error is a GridConfigError naming the offending field.
 */
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import type { AddressFinder } from './address-finder.js';
import { checkedEndpoints, type Endpoint } from './endpoints.js';
import { describe } from './describe.js';
import { GridConfigError } from './errors.js';

export { describe };

/** Minimal logger; `console` fits. The client is silent unless one is given. */
export interface GridLogger {
  debug?(message: string, fields?: Record<string, unknown>): void;
  info?(message: string, fields?: Record<string, unknown>): void;
  warn?(message: string, fields?: Record<string, unknown>): void;
  error?(message: string, fields?: Record<string, unknown>): void;
}

export interface RetryConfig {
  /** Retries after the first attempt. Default 7. */
  retries?: number;
  /**
   * Base delay between retries, ms. Default 10. The first retry goes at once; minDelay is the
   * delay before the second retry, and each later delay is `factor` times the one before, capped
   * at maxDelay (with jitter, multiplied by a random factor in [1, 2), then capped).
   */
  minDelay?: number;
  /** Cap on any delay, ms. Default 500. */
  maxDelay?: number;
  /** Exponential factor. Default 2. */
  factor?: number;
  /** Randomise each delay (multiplied by a factor in [1, 2)). Default true. */
  jitter?: boolean;
}

export interface ReconnectConfig {
  /** First reconnect delay, ms. Default 100. */
  minDelay?: number;
  /** Cap, ms. Default 5000. */
  maxDelay?: number;
  /** Exponential factor. Default 2. */
  factor?: number;
  /** Jitter fraction in [0, 1]; the delay is drawn from [d(1-jitter), d]. Default 0.5. */
  jitter?: number;
}

export interface AuthConfig {
  /** Bearer token sent in the handshake. */
  token: string;
}

export interface GridClientConfig {
  /** Seed endpoints in order of preference: "host", "host:port", "[v6]:port", "host:p1..p2". */
  endpoints?: string[];
  /** Where addresses come from; defaults to the static `endpoints`. */
  addressFinder?: AddressFinder;
  /** Re-resolve addresses this often (ms); 0 disables the periodic re-resolution. Default 30000. */
  reResolveInterval?: number;
  /** Bound on the first connection, and on each connection attempt incl. handshake (ms). Default 5000. */
  connectTimeout?: number;
  /** Start the next endpoint after this long if earlier ones have not answered (ms). Default 250. */
  connectStagger?: number;
  /** Send a heartbeat after this long without traffic (ms). Default 1000. */
  heartbeatInterval?: number;
  /** Close a connection that received nothing for this long (ms). Default 5000. */
  heartbeatTimeout?: number;
  /** One deadline per operation, retries included (ms). Default 10000. */
  operationTimeout?: number;
  /**
   * Bound on one attempt (one request to one node) before it is retried, ms. Covers a request or
   * response lost on the way while the connection stays up. Default 3000; at most operationTimeout.
   */
  requestTimeout?: number;
  /** Operation retry policy, or false to disable retries. */
  retry?: RetryConfig | false;
  /** Reconnect backoff. */
  reconnect?: ReconnectConfig;
  /** Route single-key operations to the partition's primary. Default true. */
  partitionAware?: boolean;
  /** TLS: true for default options, or node:tls connection options. Default off. */
  tls?: boolean | TlsConnectionOptions;
  /** Authentication sent in the handshake. */
  auth?: AuthConfig;
  /** Logger; silent when absent. */
  logger?: GridLogger;
  /** Client name shown in node logs. Default "gridlink-client". */
  name?: string;
  /** Refuse nodes whose cluster id differs. Default: pinned to the first node's cluster. */
  clusterId?: string;
}

export interface ResolvedRetry {
  retries: number;
  minDelay: number;
  maxDelay: number;
  factor: number;
  jitter: boolean;
}

export interface ResolvedConfig {
  endpoints: Endpoint[];
  addressFinder: AddressFinder | undefined;
  reResolveInterval: number;
  connectTimeout: number;
  connectStagger: number;
  heartbeatInterval: number;
  heartbeatTimeout: number;
  operationTimeout: number;
  requestTimeout: number;
  retry: ResolvedRetry | false;
  reconnect: { minDelay: number; maxDelay: number; factor: number; jitter: number };
  partitionAware: boolean;
  tls: TlsConnectionOptions | undefined;
  auth: AuthConfig | undefined;
  logger: GridLogger | undefined;
  name: string;
  clusterId: string | undefined;
}

export const DEFAULTS = {
  reResolveInterval: 30_000,
  connectTimeout: 5_000,
  connectStagger: 250,
  heartbeatInterval: 1_000,
  heartbeatTimeout: 5_000,
  operationTimeout: 10_000,
  requestTimeout: 3_000,
  retry: { retries: 7, minDelay: 10, maxDelay: 500, factor: 2, jitter: true },
  reconnect: { minDelay: 100, maxDelay: 5_000, factor: 2, jitter: 0.5 },
  partitionAware: true,
  name: 'gridlink-client',
} as const;

const KNOWN_FIELDS = new Set([
  'endpoints',
  'addressFinder',
  'reResolveInterval',
  'connectTimeout',
  'connectStagger',
  'heartbeatInterval',
  'heartbeatTimeout',
  'operationTimeout',
  'requestTimeout',
  'retry',
  'reconnect',
  'partitionAware',
  'tls',
  'auth',
  'logger',
  'name',
  'clusterId',
]);

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The longest duration a Node timer can wait (ms): longer ones fire at once (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Reads a duration/count field: a finite number within [min, max], or the default when absent. */
export function num(obj: Record<string, unknown>, field: string, path: string, def: number, min: number, max = MAX_TIMER_MS, int = true): number {
  const v = obj[field];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new GridConfigError(path, `must be a finite number, got ${describe(v)}`);
  if (int && !Number.isInteger(v)) throw new GridConfigError(path, `must be an integer, got ${v}`);
  if (v < min || v > max) throw new GridConfigError(path, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

/** Refuses a key of `obj` not in `known`, naming it with `prefix` (a misspelt option would be ignored). */
export function checkKnown(obj: Record<string, unknown>, known: readonly string[], prefix: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) throw new GridConfigError(`${prefix}${k}`, 'unknown option');
  }
}

/** Names of file options other libraries take (natsAddressFinder among them) that node:tls ignores. */
const TLS_FILE_OPTIONS: Record<string, string> = { caFile: 'ca', certFile: 'cert', keyFile: 'key', pfxFile: 'pfx' };

/** A PEM certificate block's first line. */
const PEM_CERTIFICATE = /-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----/;

/** One entry of `tls.ca`: a PEM certificate (or bundle) as a string or bytes. */
function checkCa(value: unknown, field: string): void {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (ArrayBuffer.isView(value)) text = Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('latin1');
  else throw new GridConfigError(field, `must be a PEM certificate (a string or Buffer), got ${describe(value)}`);
  if (!PEM_CERTIFICATE.test(text)) {
    // node:tls takes such a value without a word and trusts no certificate from it.
    const path = typeof value === 'string' && value.length > 0 && value.length <= 4096 && !value.includes('\n');
    throw new GridConfigError(
      field,
      path
        ? `is not a PEM certificate (got ${describe(value)}: a file path? pass the file's contents, e.g. readFileSync(path))`
        : 'is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)',
    );
  }
  try {
    new X509Certificate(typeof value === 'string' ? value : text);
  } catch (e) {
    throw new GridConfigError(field, `holds a certificate that cannot be read: ${(e as Error).message}`);
  }
}

/**
 * Checks node:tls connection options up front, so that what would make every connection attempt
 * throw (or quietly trust nothing) is a GridConfigError naming the field when the client is made,
 * rather than a connection error retried for ever. The options are returned as they are.
 */
function checkTls(o: Record<string, unknown>): TlsConnectionOptions {
  for (const [k, instead] of Object.entries(TLS_FILE_OPTIONS)) {
    if (o[k] !== undefined) {
      throw new GridConfigError(`tls.${k}`, `is not a node:tls option (it would be ignored): pass the file's contents as tls.${instead}, e.g. readFileSync(path)`);
    }
  }
  if (o.rejectUnauthorized !== undefined && typeof o.rejectUnauthorized !== 'boolean') {
    throw new GridConfigError('tls.rejectUnauthorized', `must be a boolean, got ${describe(o.rejectUnauthorized)}`);
  }
  if (o.servername !== undefined && (typeof o.servername !== 'string' || o.servername.length === 0)) {
    throw new GridConfigError('tls.servername', `must be a non-empty string, got ${describe(o.servername)}`);
  }
  if (o.checkServerIdentity !== undefined && typeof o.checkServerIdentity !== 'function') {
    throw new GridConfigError('tls.checkServerIdentity', `must be a function, got ${describe(o.checkServerIdentity)}`);
  }
  if (o.ca !== undefined) {
    if (Array.isArray(o.ca)) o.ca.forEach((c: unknown, i) => checkCa(c, `tls.ca[${i}]`));
    else checkCa(o.ca, 'tls.ca');
  }
  // What node:tls itself refuses (a PEM that is not one, a key that does not match its
  // certificate, a cipher list matching nothing, an unknown protocol version, a wrong type):
  // made once here, as every connection attempt would.
  try {
    createSecureContext(o);
  } catch (e) {
    const message = (e as Error).message;
    const named = /"options\.(\w+)"/.exec(message)?.[1];
    if (named !== undefined) throw new GridConfigError(`tls.${named}`, message);
    // The option that fails on its own (with the passphrase its key or pfx may need).
    const passphrase = o.passphrase !== undefined ? { passphrase: o.passphrase } : {};
    for (const k of Object.keys(o)) {
      if (k === 'passphrase') continue;
      try {
        createSecureContext({ [k]: o[k], ...passphrase } as TlsConnectionOptions);
      } catch (alone) {
        throw new GridConfigError(`tls.${k}`, (alone as Error).message);
      }
    }
    if (o.key !== undefined && o.cert !== undefined) throw new GridConfigError('tls.key', `does not match tls.cert: ${message}`);
    throw new GridConfigError('tls', message);
  }
  return o;
}

/** Validates a user config and fills in defaults. Throws GridConfigError naming the field. */
export function resolveConfig(input: unknown): ResolvedConfig {
  if (!isObject(input)) throw new GridConfigError('config', `must be an object, got ${describe(input)}`);
  for (const k of Object.keys(input)) {
    if (!KNOWN_FIELDS.has(k)) throw new GridConfigError(k, 'unknown option');
  }

  const endpoints: Endpoint[] = input.endpoints === undefined ? [] : checkedEndpoints(input.endpoints);

  let addressFinder: AddressFinder | undefined;
  if (input.addressFinder !== undefined) {
    const f = input.addressFinder;
    if (!isObject(f) || typeof f.resolve !== 'function') {
      throw new GridConfigError('addressFinder', 'must be an object with a resolve() method');
    }
    addressFinder = f as unknown as AddressFinder;
  }
  if (endpoints.length === 0 && addressFinder === undefined) {
    throw new GridConfigError('endpoints', 'at least one endpoint (or an addressFinder) is required');
  }

  const reResolveInterval = num(input, 'reResolveInterval', 'reResolveInterval', DEFAULTS.reResolveInterval, 0);
  const connectTimeout = num(input, 'connectTimeout', 'connectTimeout', DEFAULTS.connectTimeout, 1);
  const connectStagger = num(input, 'connectStagger', 'connectStagger', DEFAULTS.connectStagger, 0);
  const heartbeatInterval = num(input, 'heartbeatInterval', 'heartbeatInterval', DEFAULTS.heartbeatInterval, 1);
  const heartbeatTimeout = num(input, 'heartbeatTimeout', 'heartbeatTimeout', DEFAULTS.heartbeatTimeout, 1);
  if (heartbeatTimeout <= heartbeatInterval) {
    throw new GridConfigError('heartbeatTimeout', `must be greater than heartbeatInterval (${heartbeatInterval}), got ${heartbeatTimeout}`);
  }
  const operationTimeout = num(input, 'operationTimeout', 'operationTimeout', DEFAULTS.operationTimeout, 1);
  const requestTimeout = num(input, 'requestTimeout', 'requestTimeout', Math.min(DEFAULTS.requestTimeout, operationTimeout), 1);
  if (requestTimeout > operationTimeout) {
    throw new GridConfigError('requestTimeout', `must not exceed operationTimeout (${operationTimeout}), got ${requestTimeout}`);
  }

  let retry: ResolvedRetry | false;
  if (input.retry === false) {
    retry = false;
  } else if (input.retry === undefined) {
    retry = { ...DEFAULTS.retry };
  } else {
    if (!isObject(input.retry)) throw new GridConfigError('retry', `must be an object or false, got ${describe(input.retry)}`);
    const r = input.retry;
    checkKnown(r, ['retries', 'minDelay', 'maxDelay', 'factor', 'jitter'], 'retry.');
    const minDelay = num(r, 'minDelay', 'retry.minDelay', DEFAULTS.retry.minDelay, 0);
    const maxDelay = num(r, 'maxDelay', 'retry.maxDelay', Math.max(DEFAULTS.retry.maxDelay, minDelay), 0);
    if (maxDelay < minDelay) throw new GridConfigError('retry.maxDelay', `must be >= retry.minDelay (${minDelay}), got ${maxDelay}`);
    if (r.jitter !== undefined && typeof r.jitter !== 'boolean') throw new GridConfigError('retry.jitter', `must be a boolean, got ${describe(r.jitter)}`);
    retry = {
      retries: num(r, 'retries', 'retry.retries', DEFAULTS.retry.retries, 0, 100),
      minDelay,
      maxDelay,
      factor: num(r, 'factor', 'retry.factor', DEFAULTS.retry.factor, 1, 100, false),
      jitter: (r.jitter) ?? DEFAULTS.retry.jitter,
    };
  }

  let reconnect: ResolvedConfig['reconnect'] = { ...DEFAULTS.reconnect };
  if (input.reconnect !== undefined) {
    if (!isObject(input.reconnect)) throw new GridConfigError('reconnect', `must be an object, got ${describe(input.reconnect)}`);
    const r = input.reconnect;
    checkKnown(r, ['minDelay', 'maxDelay', 'factor', 'jitter'], 'reconnect.');
    const minDelay = num(r, 'minDelay', 'reconnect.minDelay', DEFAULTS.reconnect.minDelay, 0);
    const maxDelay = num(r, 'maxDelay', 'reconnect.maxDelay', Math.max(DEFAULTS.reconnect.maxDelay, minDelay), 0);
    if (maxDelay < minDelay) throw new GridConfigError('reconnect.maxDelay', `must be >= reconnect.minDelay (${minDelay}), got ${maxDelay}`);
    reconnect = {
      minDelay,
      maxDelay,
      factor: num(r, 'factor', 'reconnect.factor', DEFAULTS.reconnect.factor, 1, 100, false),
      jitter: num(r, 'jitter', 'reconnect.jitter', DEFAULTS.reconnect.jitter, 0, 1, false),
    };
  }

  if (input.partitionAware !== undefined && typeof input.partitionAware !== 'boolean') {
    throw new GridConfigError('partitionAware', `must be a boolean, got ${describe(input.partitionAware)}`);
  }

  let tls: TlsConnectionOptions | undefined;
  if (input.tls === true) tls = {};
  else if (input.tls === undefined || input.tls === false) tls = undefined;
  else if (isObject(input.tls)) tls = checkTls(input.tls);
  else throw new GridConfigError('tls', `must be a boolean or TLS options object, got ${describe(input.tls)}`);

  let auth: AuthConfig | undefined;
  if (input.auth !== undefined) {
    if (!isObject(input.auth)) throw new GridConfigError('auth', `must be an object { token }, got ${describe(input.auth)}`);
    checkKnown(input.auth, ['token'], 'auth.');
    if (typeof input.auth.token !== 'string' || input.auth.token.length === 0) {
      throw new GridConfigError('auth.token', 'must be a non-empty string');
    }
    // Nodes refuse such a token at start-up (gridlink-node --auth-token), so it can match none: a
    // token read from a file or a secret with a final newline, say. Named here rather than left
    // to fail as the nodes' AUTH refusal. The token itself is not in the message.
    if (input.auth.token.trim() !== input.auth.token) {
      throw new GridConfigError('auth.token', 'has whitespace at its start or end (a final newline from a file or secret?): nodes never accept such a token');
    }
    auth = { token: input.auth.token };
  }

  let logger: GridLogger | undefined;
  if (input.logger !== undefined) {
    if (!isObject(input.logger)) throw new GridConfigError('logger', `must be an object with debug/info/warn/error methods, got ${describe(input.logger)}`);
    const l = input.logger;
    for (const m of ['debug', 'info', 'warn', 'error']) {
      if (l[m] !== undefined && typeof l[m] !== 'function') throw new GridConfigError(`logger.${m}`, 'must be a function');
    }
    logger = input.logger;
  }

  if (input.name !== undefined && (typeof input.name !== 'string' || input.name.length === 0 || input.name.length > 256)) {
    throw new GridConfigError('name', 'must be a non-empty string of at most 256 characters');
  }
  if (input.clusterId !== undefined && (typeof input.clusterId !== 'string' || input.clusterId.length === 0)) {
    throw new GridConfigError('clusterId', 'must be a non-empty string');
  }

  return {
    endpoints,
    addressFinder,
    reResolveInterval,
    connectTimeout,
    connectStagger,
    heartbeatInterval,
    heartbeatTimeout,
    operationTimeout,
    requestTimeout,
    retry,
    reconnect,
    partitionAware: (input.partitionAware) ?? DEFAULTS.partitionAware,
    tls,
    auth,
    logger,
    name: (input.name) ?? DEFAULTS.name,
    clusterId: input.clusterId,
  };
}
