/**
 * Express 4 and 5 adapters: `dedupe(options)` (request de-duplication, per route or app-wide) and
 * `gridlink(app, clientConfig)` (the grid client's lifecycle: connect, `req.grid`,
 * `app.locals.grid`, `/health/ready`, close when the last server from `app.listen` closes).
 */
import { errorMonitor } from 'node:events';
import type { Server } from 'node:http';
import type { Application, NextFunction, Request, RequestHandler, Response } from 'express';
import { GridClient, type GridClientConfig } from '@gridlink/client';
import { Deduper, DedupeConfigError, captureResponse, checkClientConfig, describeRequest, intOption, onlyKnownOptions, sendDirect, type DedupeOptions, type Ticket } from '@gridlink/dedupe';

/** What a handler behind `dedupe()` sees as `req.idempotency`. */
export interface IdempotencyContext {
  /** SHA-256 (base64url) of the scoped key; what the grid stores. */
  keyHash: string;
  /** Strictly increasing per key: pass it to what the handler protects. */
  fencingToken: number;
  /** Aborts if the lock is lost while the handler runs. */
  signal: AbortSignal;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by `dedupe()` when the handler runs holding a key. */
      idempotency?: IdempotencyContext;
      /** Set by `gridlink()` once the client is connected. */
      grid?: GridClient;
    }
  }
}

export type ExpressDedupeOptions = DedupeOptions<Request>;

export type DedupeMiddleware = RequestHandler & { deduper: Deduper<Request> };

/**
 * The requests a `dedupe()` already holds a key for. A second `dedupe()` on their way (one
 * app-wide and one on the route) would compute the same key and find it taken by the first:
 * every request would get 409. It passes them through instead. A WeakSet, not a mark on the
 * request: a property added to a request costs a hidden-class transition, 1.5–2.5 µs each in
 * the app's profile (ADR 0082). Shared through the global symbol registry, so that two copies
 * of this package in one app see each other's requests.
 */
const HELD_KEY = Symbol.for('gridlink.express.dedupe.held');
const HELD: WeakSet<object> = ((globalThis as { [HELD_KEY]?: WeakSet<object> })[HELD_KEY] ??= new WeakSet());

function clientOf(req: Request): GridClient | undefined {
  return req.grid ?? (req.app?.locals?.grid as GridClient | undefined);
}

function routeOf(req: Request): string {
  const r = req.route as { path?: unknown } | undefined;
  if (r !== undefined && typeof r.path === 'string') return req.baseUrl + r.path;
  return req.baseUrl + req.path;
}

/**
 * The metrics label of a request: its route pattern when one matched, else (middleware mounted
 * app-wide, before routing) the mount path and `/*` — the concrete path would make one series per
 * URL (`/items/1`, `/items/2`, ...) and grow the registry without bound.
 */
function routeLabelOf(req: Request): string {
  const r = req.route as { path?: unknown } | undefined;
  if (r !== undefined && typeof r.path === 'string') return req.baseUrl + r.path;
  return `${req.baseUrl}/*`;
}

/**
 * Request de-duplication middleware. Use app-wide (`app.use(dedupe())`, after the body parser) or
 * per route (`app.post('/orders', dedupe({ required: true }), handler)`). The grid client is
 * `options.client`, else the one `gridlink(app, ...)` connected.
 */
export function dedupe(options: ExpressDedupeOptions = {}): DedupeMiddleware {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new DedupeConfigError('options', 'must be an object');
  const given = options.client;
  const deduper = new Deduper<Request>({
    ...options,
    client: given === undefined ? clientOf : given,
  });
  const limit = deduper.options.maxStoredBodyBytes;
  const methods = deduper.options.methods;
  const mw = ((req: Request, res: Response, next: NextFunction): void => {
    if (!methods.has(req.method) || HELD.has(req)) {
      next();
      return;
    }
    deduper
      .begin(describeRequest(req, routeOf(req), req.body, () => req.ip, routeLabelOf(req)))
      .then((d) => {
        if (d.action === 'bypass') {
          next();
          return;
        }
        if (d.action === 'respond') {
          sendDirect(res, d.response);
          return;
        }
        const t = d.ticket;
        if (res.destroyed || req.socket.destroyed) {
          // The client went away while the key was being taken.
          void t.abandon('connection closed before the handler ran');
          return;
        }
        req.idempotency = t.context();
        HELD.add(req);
        captureResponse(res, t as Ticket<unknown>, limit);
        next();
      })
      .catch(next);
  }) as DedupeMiddleware;
  mw.deduper = deduper;
  return mw;
}

export interface GridlinkOptions {
  /** Readiness endpoint: path (default "/health/ready"), or false for none. */
  health?: { path?: string } | false;
  /** Delay between connection attempts while the grid cannot be reached (ms). Default 1000. */
  reconnectDelayMs?: number;
  /** Called when a connection attempt fails (the app keeps serving; readiness says 503). */
  onError?: (error: unknown) => void;
}

export interface GridlinkHandle {
  /** The connected client, once connected. */
  readonly client: GridClient | undefined;
  /** Resolves with the client once connected (rejects only if closed before). */
  readonly ready: Promise<GridClient>;
  /** Whether the client has at least one live connection to a grid node. */
  isReady(): boolean;
  /**
   * Closes the client (if owned). Idempotent; also runs when the last HTTP server from
   * `app.listen` closes or fails to listen. A connection
   * attempt still in flight is waited for and the client it made closed: when this resolves,
   * nothing `gridlink()` started is left open.
   */
  close(): Promise<void>;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
const DEFAULT_HEALTH_PATH = '/health/ready';

function isClient(v: unknown): v is GridClient {
  return v instanceof GridClient || (typeof v === 'object' && v !== null && typeof (v as GridClient).lock === 'function' && typeof (v as GridClient).stats === 'function');
}

/**
 * Connects a grid client for the app: `req.grid`, `app.locals.grid`, a readiness endpoint, and
 * close when the last HTTP server from `app.listen` closes or fails to listen. Pass a config (the client is owned and
 * closed here) or a connected client (the caller closes it).
 */
export function gridlink(app: Application, config: GridClientConfig | GridClient, options: GridlinkOptions = {}): GridlinkHandle {
  if (typeof app !== 'function' || typeof (app as { use?: unknown }).use !== 'function') throw new DedupeConfigError('app', 'must be an Express application');
  // Checked before anything starts: `req.grid` is defined on it (below).
  const requestProto = (app as { request?: unknown }).request;
  if (typeof requestProto !== 'object' || requestProto === null) throw new DedupeConfigError('app', 'must be an Express application (it has no request prototype)');
  if (typeof config !== 'object' || config === null) throw new DedupeConfigError('clientConfig', 'must be a GridClientConfig or a GridClient');
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new DedupeConfigError('options', 'must be an object');
  onlyKnownOptions(options, ['health', 'reconnectDelayMs', 'onError']);
  const given = options.health;
  let health: { path: string } | false;
  if (given === false) health = false;
  else if (given === undefined) health = { path: DEFAULT_HEALTH_PATH };
  else {
    if (typeof given !== 'object' || given === null || Array.isArray(given)) throw new DedupeConfigError('health', 'must be { path } or false');
    onlyKnownOptions(given, ['path'], 'health.');
    // `{}` (or `path: undefined`) takes the default path, as the type says it may; null is
    // refused like any other non-path (as reconnectDelayMs: null is).
    const path: unknown = given.path === undefined ? DEFAULT_HEALTH_PATH : given.path;
    if (typeof path !== 'string' || !path.startsWith('/')) throw new DedupeConfigError('health.path', `must be a path starting with "/", got ${JSON.stringify(path) ?? typeof path}`);
    health = { path };
  }
  // Above 2^31-1 ms Node's timers fire after 1 ms: a retry loop with no delay. `null` is refused
  // like any other non-number (it used to be taken as the default).
  const reconnectDelayMs = intOption('reconnectDelayMs', options.reconnectDelayMs, 1000, 1, MAX_TIMER_MS);
  if (options.onError !== undefined && typeof options.onError !== 'function') throw new DedupeConfigError('onError', 'must be a function');

  const owned = !isClient(config);
  // The client's own checks, before the first attempt: a bad config failed every attempt,
  // retried every reconnectDelayMs for ever, the app answering 503s (ready never resolved).
  if (owned) checkClientConfig(config, 'clientConfig');
  let client: GridClient | undefined = owned ? undefined : config;
  let closed = false;
  let closing: Promise<void> | null = null;
  let timer: NodeJS.Timeout | null = null;
  /** The connection attempt in flight; settles once its client is installed or closed. */
  let connecting: Promise<void> | null = null;
  let resolveReady!: (c: GridClient) => void;
  let rejectReady!: (e: unknown) => void;
  const ready = new Promise<GridClient>((res, rej) => {
    resolveReady = res;
    rejectReady = rej;
  });
  ready.catch(() => undefined); // observed by whoever awaits it; never an unhandled rejection

  const install = (c: GridClient): void => {
    client = c;
    app.locals.grid = c;
    resolveReady(c);
  };
  if (!owned) install(config);
  else {
    const attempt = (): void => {
      timer = null;
      const settled: Promise<void> = GridClient.connect(config).then(
        async (c) => {
          // Closed while connecting: close() waits for this, so the client goes before it resolves.
          if (closed) await c.close().catch(() => undefined);
          else install(c);
        },
        (e: unknown) => {
          try {
            options.onError?.(e);
          } catch {
            // the app's reporter failing must not stop the retries
          }
          if (closed) return;
          timer = setTimeout(attempt, reconnectDelayMs);
          timer.unref();
        },
      );
      connecting = settled;
      void settled.finally(() => {
        if (connecting === settled) connecting = null;
      });
    };
    attempt();
  }

  const handle: GridlinkHandle = {
    get client() {
      return client;
    },
    ready,
    isReady: () => client !== undefined && !closed && client.topology().nodes.some((n) => n.connected),
    close: () => {
      closing ??= (async () => {
        closed = true;
        if (timer !== null) clearTimeout(timer);
        rejectReady(new Error('gridlink closed'));
        // GridClient.connect cannot be aborted: wait for it, and close what it made.
        if (connecting !== null) await connecting;
        if (owned && client !== undefined) await client.close();
      })();
      return closing;
    },
  };

  // req.grid: an accessor on the app's request prototype (mounted sub-apps' requests inherit
  // from it), not a middleware setting it on each request: a property added to a request costs a
  // hidden-class transition, 1.5–2.5 µs per request in the app's profile (ADR 0082). Assigning
  // req.grid still works: it makes an own property of that request.
  Object.defineProperty(requestProto, 'grid', {
    configurable: true,
    enumerable: true,
    get(): GridClient | undefined {
      return client;
    },
    set(this: Request, value: unknown) {
      Object.defineProperty(this, 'grid', { value, writable: true, configurable: true, enumerable: true });
    },
  });
  if (health !== false) {
    app.get(health.path, (_req: Request, res: Response) => {
      const up = handle.isReady();
      const nodes = client?.topology().nodes ?? [];
      res.status(up ? 200 : 503).json({
        status: up ? 'ready' : 'unavailable',
        grid: { connectedNodes: nodes.filter((n) => n.connected).length, knownNodes: nodes.length },
      });
    });
  }
  // The servers from app.listen that use the client: those listening or on their way to. The
  // client (owned or not: close() closes only an owned one) is closed when the last of them closes
  // or fails to listen — not when the first does: two app.listen() calls share the one client.
  const servers = new Set<Server>();
  const release = (server: Server): void => {
    if (servers.delete(server) && servers.size === 0) void handle.close();
  };
  const listen = app.listen.bind(app) as (...args: unknown[]) => Server;
  (app as { listen: unknown }).listen = (...args: unknown[]): Server => {
    let server: Server;
    try {
      server = listen(...args);
    } catch (e) {
      // Bad listen arguments throw before there is a server: a failure to listen like EADDRINUSE.
      if (servers.size === 0) void handle.close();
      throw e;
    }
    servers.add(server);
    server.on('close', () => release(server));
    // Listening again after a failure (a retry on the same server) uses the client again, if
    // another server kept it open meanwhile; once closed, it stays closed.
    server.on('listening', () => {
      if (!closed) servers.add(server);
    });
    // A listen that fails (port in use, no permission) emits 'error', never 'listening' or
    // 'close'. Watched through errorMonitor, not an 'error' listener: one would swallow the error
    // that, with no listener of the app's, crashes the process as it does without gridlink().
    (server as NodeJS.EventEmitter).on(errorMonitor, () => {
      if (!server.listening) release(server);
    });
    return server;
  };
  return handle;
}
