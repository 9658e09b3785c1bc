import { ControlPlaneBucketMissingError, NodeConfigError, type ControlPlane } from '@gridlink/node';
import { AdminRefusedError, AdminUsageError, ControlPlaneUnreachableError } from './errors.js';

export interface ConnectedControlPlane {
  controlPlane: ControlPlane;
  close(): Promise<void>;
}

type NatsControlPlaneModule = Record<string, unknown>;

/**
 * Connects to the control plane named by a URL. `nats://host:port[,nats://...]` uses the node
 * package's NatsControlPlane (JetStream KV), loaded at run time so that this package works with
 * any @gridlink/node that ships it. Accepted shapes: a static `connect(options)` returning the
 * control plane, or a constructor taking the options (with an optional `connect()`/`start()`);
 * options are `{ servers, bucket, create: false, token | user + pass | credsFile, connectTimeoutMs }`.
 * A `close()` on the result is called when the command ends.
 *
 * The bucket is only opened, never created: a bucket that does not exist (a mistyped --bucket, or
 * no node started yet) is refused (AdminRefusedError `ADMIN_NO_BUCKET`, exit code 4) and left
 * absent, so that the nodes create it later with their own replica count.
 */
export interface ConnectOptions {
  bucket?: string;
  /** Give up connecting after this long. Default 10 s. */
  timeoutMs?: number;
  /** NATS credentials: a token, user + password, or a .creds file. */
  token?: string;
  user?: string;
  pass?: string;
  credsFile?: string;
  /** Where NatsControlPlane comes from. Default: the installed @gridlink/node. */
  load?: () => Promise<NatsControlPlaneModule>;
}

/**
 * Whether a URL names a host and, if any, a port in [1, 65535]: `nats://h:99999`, `nats://h:x`
 * or `nats://:4222` is the operator's typo, not a server that cannot be reached (exit code 3,
 * retryable, after the whole --timeout).
 */
export function isHostPort(url: string): boolean {
  try {
    const u = new URL(url);
    return u.hostname !== '' && u.port !== '0';
  } catch {
    return false;
  }
}

/** The option of the command each NatsControlPlane option it refuses comes from. */
const CONFIG_FLAGS: Record<string, string> = { servers: '--control-plane', bucket: '--bucket', token: '--nats-token', user: '--nats-user', pass: '--nats-pass', credsFile: '--nats-creds', credentials: '--nats-token', connectTimeoutMs: '--timeout', requestTimeoutMs: '--timeout' };

export async function connectControlPlane(url: string, o: ConnectOptions = {}): Promise<ConnectedControlPlane> {
  const servers = url.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (servers.length === 0 || !servers.every((s) => /^(nats|tls):\/\/[^\s/]+\/?$/.test(s) && isHostPort(s))) {
    throw new AdminUsageError('--control-plane', `expected nats://host:port (comma-separated for several servers), got "${url}"`);
  }
  const load = o.load ?? (async (): Promise<NatsControlPlaneModule> => await import('@gridlink/node'));
  const mod = await load();
  const Nats = mod['NatsControlPlane'] as
    | (((new (opts: unknown) => unknown) & { connect?: (opts: unknown) => Promise<unknown> }) | undefined);
  if (typeof Nats !== 'function') {
    throw new ControlPlaneUnreachableError('this @gridlink/node has no NatsControlPlane export: the NATS control plane is not available');
  }
  const timeoutMs = o.timeoutMs ?? 10_000;
  // The check above takes a trailing slash (nats://h:4222/); NatsControlPlane takes none.
  const options: Record<string, unknown> = { servers: servers.map((s) => s.replace(/\/$/, '')), name: 'gridlink-admin', create: false, connectTimeoutMs: timeoutMs, requestTimeoutMs: Math.min(timeoutMs, 5000) };
  for (const k of ['bucket', 'token', 'user', 'pass', 'credsFile'] as const) if (o[k] !== undefined) options[k] = o[k];
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ControlPlaneUnreachableError(`could not connect to ${url} within ${timeoutMs} ms`)), timeoutMs);
  });
  const open = async (): Promise<unknown> => {
    if (typeof Nats.connect === 'function') return Nats.connect(options);
    const cp = new Nats(options) as { connect?: () => Promise<unknown>; start?: () => Promise<unknown> };
    if (typeof cp.connect === 'function') await cp.connect();
    else if (typeof cp.start === 'function') await cp.start();
    return cp;
  };
  let cp: unknown;
  const opening = open();
  try {
    cp = await Promise.race([opening, deadline]);
  } catch (err) {
    // A connection that completes after we gave up must not keep the process alive.
    opening.then(
      (late) => void Promise.resolve((late as { close?: () => unknown }).close?.()).catch(() => undefined),
      () => undefined,
    );
    if (err instanceof ControlPlaneUnreachableError) throw err;
    if (err instanceof ControlPlaneBucketMissingError) {
      throw new AdminRefusedError('ADMIN_NO_BUCKET', `${err.message}: no gridlink node has used it (check --bucket)`);
    }
    // What NatsControlPlane refuses in its options is the operator's argument, not a control
    // plane that cannot be reached (exit code 3, retryable).
    if (err instanceof NodeConfigError) throw new AdminUsageError(CONFIG_FLAGS[err.field] ?? '--control-plane', err.reason);
    throw new ControlPlaneUnreachableError(`could not connect to ${url}: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    clearTimeout(timer);
  }
  const closable = cp as { close?: () => Promise<void> | void };
  return {
    controlPlane: cp as ControlPlane,
    close: async () => {
      if (typeof closable.close === 'function') await closable.close();
    },
  };
}
