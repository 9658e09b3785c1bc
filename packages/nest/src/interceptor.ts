/**
 * `@Idempotent(options)` and its interceptor: request de-duplication (the shared core) for Nest
 * routes on the Express platform (`@nestjs/platform-express`) and the Fastify platform
 * (`@nestjs/platform-fastify`).
 */
import { applyDecorators, Inject, Injectable, Logger, SetMetadata, UseInterceptors, type CallHandler, type ExecutionContext, type NestInterceptor, type Type } from '@nestjs/common';
import { ServerResponse, type IncomingMessage } from 'node:http';
import { EMPTY, Observable, of, tap, throwError } from 'rxjs';
import type { GridClient } from '@gridlink/client';
import { BODY_HEADERS, DedupeConfigError, Deduper, captureResponse, describeRequest, headerLineCount, headersByName, mergeVary, resolveDedupeOptions, sendDirect, type DedupeRequest, type DirectResponse, type Ticket } from '@gridlink/dedupe';
import { checkRoute, isSseHandler } from './route-check.js';
import { GRID_CLIENT, GRIDLINK_OPTIONS, IDEMPOTENT_METADATA } from './tokens.js';
import type { GridlinkModuleOptions } from './options.js';
import type { IdempotentOptions, IdempotentRequest } from './types.js';

export type { IdempotentOptions, IdempotentRequest } from './types.js';

/** De-duplicates the route (or every route of the controller) with these options. */
export function Idempotent(options: IdempotentOptions = {}): MethodDecorator & ClassDecorator {
  checkIdempotentOptions(options, '');
  return applyDecorators(SetMetadata(IDEMPOTENT_METADATA, options), UseInterceptors(IdempotencyInterceptor));
}

/**
 * Validates a part of a route's options (module defaults, a controller's or a route's own) where
 * it is written, so a bad option fails at startup instead of answering every request with a 500.
 * Each part may leave `fingerprint` to another (`header: false` here, `fingerprint` there); the
 * merged options are checked again when the route's deduper is built. Field names are prefixed
 * with `prefix` (`idempotency.` for the module defaults).
 */
export function checkIdempotentOptions(options: unknown, prefix: string): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new DedupeConfigError(prefix === '' ? 'options' : prefix.slice(0, -1), 'must be an object');
  }
  const o = options as IdempotentOptions;
  if ('client' in o) throw new DedupeConfigError(`${prefix}client`, 'is not an option here: routes use the GridlinkModule client');
  try {
    resolveDedupeOptions<IdempotentRequest>(o.header === false && o.fingerprint === undefined ? { ...o, fingerprint: () => null } : o);
  } catch (e) {
    if (e instanceof DedupeConfigError && prefix !== '') {
      throw new DedupeConfigError(prefix + e.field, e.reason);
    }
    throw e;
  }
}

/**
 * The options a route runs with: the module defaults, then the controller's `@Idempotent()`
 * options, then the route's, each overriding the one before (checked at startup, see module.ts).
 */
export function routeOptions(module: GridlinkModuleOptions, classOpts: IdempotentOptions | undefined, routeOpts: IdempotentOptions | undefined): IdempotentOptions {
  return { ...(module.idempotency as IdempotentOptions | undefined), ...classOpts, ...routeOpts };
}

/** What the interceptor uses of Fastify's request and reply (`@nestjs/platform-fastify`, Fastify 4 and 5). */
interface FastifyRequestLike {
  raw: IncomingMessage;
  body?: unknown;
  ip?: string;
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  routeOptions?: { url?: unknown };
  idempotency?: IdempotentRequest['idempotency'];
}
interface FastifyReplyLike {
  raw: ServerResponse;
  code(status: number): FastifyReplyLike;
  header(name: string, value: string | string[]): FastifyReplyLike;
  removeHeader(name: string): FastifyReplyLike;
  getHeader(name: string): unknown;
  send(payload?: unknown): FastifyReplyLike;
}

function isFastifyReply(res: unknown): res is FastifyReplyLike {
  const r = res as Partial<FastifyReplyLike> | null;
  return typeof r === 'object' && r !== null && r.raw instanceof ServerResponse && typeof r.code === 'function' && typeof r.send === 'function' && typeof r.header === 'function';
}

/** Describes a Fastify request for the core; the functions of the options get Fastify's request. */
function describeFastify(req: FastifyRequestLike): DedupeRequest<IdempotentRequest> {
  const pattern = req.routeOptions?.url;
  const route = typeof pattern === 'string' ? pattern : (req.url.split('?')[0] ?? req.url);
  return {
    method: req.method,
    route,
    header: (name) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    },
    headerLines: (name) => headerLineCount(req.raw.rawHeaders, name),
    body: req.body,
    clientAddress: req.ip ?? req.raw.socket.remoteAddress,
    userAgent: req.headers['user-agent'],
    raw: req as unknown as IdempotentRequest,
  };
}

/** Calls `fn` once the response has gone out or the connection closed, whichever comes first. */
function whenDone(res: ServerResponse, fn: () => void): void {
  if (res.writableFinished || res.destroyed) {
    fn();
    return;
  }
  const once = (): void => {
    res.off('finish', once);
    res.off('close', once);
    fn();
  };
  res.on('finish', once);
  res.on('close', once);
}

/**
 * Sends a direct answer through Fastify's reply (its hooks still apply: CORS headers, ...); `then`
 * runs once it has gone out, and the reply then ignores what Nest does next: Nest still finishes
 * the route with its own status (201 for a POST) and an empty body, or a redirect, which must not
 * change or resend the answer. Not before: Fastify runs its onSend hooks before it writes
 * (later, when one is async), and one that fails hands its error to the error handler (Nest's,
 * a 500), which answers through these very methods; ignored, the request would hang (ADR 0052).
 */
function answerFastify(reply: FastifyReplyLike, d: DirectResponse, then: () => void): void {
  const grouped = headersByName(d.headers);
  for (const name of BODY_HEADERS) {
    if (grouped.has(name)) continue;
    reply.removeHeader(name);
    reply.raw.removeHeader(name);
  }
  reply.code(d.status);
  for (const [k, v] of grouped) reply.header(k, k === 'vary' ? mergeVary(reply.getHeader('vary') ?? reply.raw.getHeader('vary'), v) : v);
  reply.send(Buffer.from(d.body.buffer, d.body.byteOffset, d.body.byteLength));
  whenDone(reply.raw, () => {
    const ignore = (): FastifyReplyLike => reply;
    for (const m of ['code', 'status', 'send', 'header', 'headers', 'redirect', 'view']) {
      if (typeof (reply as unknown as Record<string, unknown>)[m] === 'function') Object.defineProperty(reply, m, { value: ignore, configurable: true, writable: true });
    }
    then();
  });
}

/**
 * The requests an IdempotencyInterceptor already handles (a controller's and a route's
 * @Idempotent, or a global one). A WeakSet rather than a mark on the request: on Express a
 * property added to a request costs a new hidden class each time (ADR 0082).
 */
const HANDLED = new WeakSet<object>();

function routeOf(req: IdempotentRequest): string {
  const p = req.route?.path;
  if (typeof p === 'string') return (req.baseUrl ?? '') + p;
  return (req.baseUrl ?? '') + (req.path ?? req.url ?? '');
}

/**
 * After a direct answer the handler does not run, but Nest still finishes the route: a plain
 * reply finds the response sent and does nothing, while `@Redirect()` and `@Render()` call
 * `res.redirect` / `res.render`, which would set headers on the sent response (an
 * ERR_HTTP_HEADERS_SENT logged by Nest for every duplicate). On this response they do nothing.
 */
function answered(res: ServerResponse): void {
  const r = res as ServerResponse & { redirect?: unknown; render?: unknown };
  if (typeof r.redirect === 'function') r.redirect = () => undefined;
  if (typeof r.render === 'function') r.render = () => undefined;
}

/**
 * The answer to a request on a route the interceptor refuses to de-duplicate (an `@Sse()` route
 * no startup check saw): a 500 problem+json whose detail is the startup check's error.
 */
function misconfigured(e: DedupeConfigError): DirectResponse {
  const detail = `${e.message} (refused at request time: an IdempotencyInterceptor cannot apply to an @Sse() route; one given to useGlobalInterceptors() after init() is not checked at startup)`;
  const body = Buffer.from(JSON.stringify({ type: 'urn:gridlink:problem:idempotency-misconfigured', title: 'Idempotency misconfigured', status: 500, detail }));
  return { status: 500, headers: [['content-type', 'application/problem+json']], body };
}

export class IdempotencyInterceptor implements NestInterceptor {
  /**
   * Per controller class and handler: one handler function can be the route of several
   * controllers (a base class's method), each with its own `@Idempotent()` options.
   */
  private readonly dedupers = new WeakMap<object, WeakMap<object, Deduper<IdempotentRequest>>>();
  /**
   * Per controller class and `@Sse()` handler, the refusal of the route check (null: the stream
   * passes through untouched), found, and logged, at its first request.
   */
  private readonly sseChecks = new WeakMap<object, WeakMap<object, DedupeConfigError | null>>();
  private readonly logger = new Logger('IdempotencyInterceptor');

  constructor(
    private readonly client: GridClient,
    private readonly moduleOptions: GridlinkModuleOptions,
  ) {}

  /**
   * What `make` builds for the route of `context`, once per controller class and handler (one
   * handler function can be the route of several controllers, a base class's method, each with
   * its own `@Idempotent()` options), given the route's options as written: the controller's and
   * the route's.
   */
  private perRoute<T>(memo: WeakMap<object, WeakMap<object, T>>, context: ExecutionContext, make: (cls: Type, handler: { readonly name: string }, classOpts: IdempotentOptions | undefined, routeOpts: IdempotentOptions | undefined) => T): T {
    const cls = context.getClass();
    const handler = context.getHandler();
    let byHandler = memo.get(cls);
    if (byHandler === undefined) memo.set(cls, (byHandler = new WeakMap()));
    if (!byHandler.has(handler)) {
      const classOpts = Reflect.getMetadata(IDEMPOTENT_METADATA, cls) as IdempotentOptions | undefined;
      const routeOpts = Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotentOptions | undefined;
      byHandler.set(handler, make(cls, handler, classOpts, routeOpts));
    }
    return byHandler.get(handler) as T;
  }

  /**
   * The deduper of a route (built once): the module defaults, then the controller's
   * `@Idempotent()` options, then the route's, each overriding the one before.
   */
  deduperFor(context: ExecutionContext): Deduper<IdempotentRequest> {
    return this.perRoute(this.dedupers, context, (_cls, _handler, classOpts, routeOpts) => new Deduper<IdempotentRequest>({ ...routeOptions(this.moduleOptions, classOpts, routeOpts), client: this.client }));
  }

  /**
   * The route check of the startup (route-check.ts) for an `@Sse()` route, run at its first
   * request: an IdempotencyInterceptor given to `useGlobalInterceptors()` after `init()` runs on
   * a request-scoped controller's routes without any startup check having seen it. A refusal is
   * logged once per route; null when the stream passes through (its method not de-duplicated).
   */
  private sseRefusal(context: ExecutionContext): DedupeConfigError | null {
    return this.perRoute(this.sseChecks, context, (cls, handler, classOpts, routeOpts) => {
      try {
        checkRoute(routeOptions(this.moduleOptions, classOpts, routeOpts), handler, classOpts, routeOpts, cls.name, handler.name);
        return null;
      } catch (e) {
        if (!(e instanceof DedupeConfigError)) throw e;
        this.logger.error(`${e.message} (refused at request time: an IdempotencyInterceptor cannot apply to an @Sse() route; one given to useGlobalInterceptors() after init() is not checked at startup: call it before init()/listen(), or register it as APP_INTERCEPTOR)`);
        return e;
      }
    });
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<IdempotentRequest | FastifyRequestLike>();
    const res = http.getResponse<unknown>();
    // Once per request: `@Idempotent()` on a controller and on one of its routes (or a global
    // interceptor besides) chain the interceptor twice; the second would find its own key taken.
    if (HANDLED.has(req)) return next.handle();
    // A stream is never de-duplicated: it passes through, or its route is refused (no lock taken).
    const sse = isSseHandler(context.getHandler());
    const refusal = sse ? this.sseRefusal(context) : null;
    if (sse && refusal === null) return next.handle();
    const deduper = refusal === null ? this.deduperFor(context) : null;
    if (deduper !== null && !deduper.options.methods.has((req.method ?? '').toUpperCase())) return next.handle();
    let describe: () => DedupeRequest<IdempotentRequest>;
    let raw: ServerResponse;
    /** Sends a direct answer; `then` once Nest may finish the route. */
    let answer: (d: DirectResponse, then: () => void) => void;
    if (res instanceof ServerResponse) {
      const r = req as IdempotentRequest;
      describe = () => describeRequest(r, routeOf(r), r.body, () => r.ip);
      raw = res;
      answer = (d, then) => {
        // Answered here; Nest's own reply then finds the response already sent.
        sendDirect(res, d);
        answered(res);
        then();
      };
    } else if (isFastifyReply(res)) {
      describe = () => describeFastify(req as FastifyRequestLike);
      raw = res.raw;
      answer = (d, then) => answerFastify(res, d, then);
    } else {
      return throwError(() => new TypeError('@Idempotent() supports the Express and Fastify platforms of Nest (@nestjs/platform-express, @nestjs/platform-fastify); this response is neither'));
    }
    HANDLED.add(req);
    if (deduper === null) {
      // Written to the raw response at once, on Fastify too (as Nest writes an @Sse() stream, past
      // Fastify's onSend hooks, an async one of which would let the stream's headers go out
      // first): Nest's SSE stream commits its headers a macrotask later at the earliest, then
      // finds the response ended and completes without a write.
      const problem = misconfigured(refusal!);
      return new Observable<unknown>((subscriber) => {
        sendDirect(raw, problem);
        EMPTY.subscribe(subscriber);
      });
    }
    return new Observable<unknown>((subscriber) => {
      let inner: { unsubscribe(): void } | undefined;
      deduper.begin(describe()).then(
        (d) => {
          if (subscriber.closed) {
            if (d.action === 'proceed') void d.ticket.abandon('request torn down before the handler ran');
            return;
          }
          if (d.action === 'respond') {
            answer(d.response, () => {
              inner = of(undefined).subscribe(subscriber);
            });
            return;
          }
          if (d.action !== 'proceed') {
            inner = next.handle().subscribe(subscriber);
            return;
          }
          const t = d.ticket;
          if (raw.destroyed || raw.req.socket.destroyed) {
            // The client went away while the key was being taken: the handler does not run (its
            // answer could go nowhere, and the key would stay taken until it finished, forever
            // for a handler that waits on the client), and the key is freed. Nest then finishes
            // the route on the closed response, which writes nothing.
            void t.abandon('connection closed before the handler ran');
            if (res instanceof ServerResponse) answered(res);
            inner = of(undefined).subscribe(subscriber);
            return;
          }
          req.idempotency = t.context();
          captureResponse(raw, t as Ticket<unknown>, deduper.options.maxStoredBodyBytes);
          inner = next
            .handle()
            .pipe(
              tap({
                error: () => {
                  // The handler failed after its response started (an `@Res()` handler that wrote
                  // part of it): Nest's exception filter can only end() it, which would store the
                  // truncated answer with its 2xx status and replay it. Freed instead, before the
                  // filter runs; a failure before anything went out is answered (and, a 4xx,
                  // stored) as usual.
                  if (raw.headersSent) void t.abandon('the handler failed after its response started');
                },
              }),
            )
            .subscribe(subscriber);
        },
        (e: unknown) => subscriber.error(e),
      );
      return () => inner?.unsubscribe();
    });
  }
}
Injectable()(IdempotencyInterceptor);
Inject(GRID_CLIENT)(IdempotencyInterceptor, undefined, 0);
Inject(GRIDLINK_OPTIONS)(IdempotencyInterceptor, undefined, 1);
