/**
 * `@Idempotent(options)` and its interceptor: request de-duplication (the shared core) for Nest
 * routes on the Express platform.
 */
import { applyDecorators, Inject, Injectable, SetMetadata, UseInterceptors, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Observable, of } from 'rxjs';
import type { GridClient } from '@gridlink/client';
import { DedupeConfigError, Deduper, captureResponse, describeRequest, resolveDedupeOptions, sendDirect, type DedupeOptions, type Ticket } from '@gridlink/dedupe';
import { GRID_CLIENT, GRIDLINK_OPTIONS, IDEMPOTENT_METADATA } from './tokens.js';
import type { GridlinkModuleOptions } from './options.js';

/** The request as the Express platform hands it over. */
export interface IdempotentRequest extends IncomingMessage {
  body?: unknown;
  ip?: string;
  baseUrl?: string;
  path?: string;
  route?: { path?: unknown };
  idempotency?: { keyHash: string; fencingToken: number; signal: AbortSignal };
}

export type IdempotentOptions = Omit<DedupeOptions<IdempotentRequest>, 'client'>;

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
      throw new DedupeConfigError(prefix + e.field, e.message.slice(`invalid dedupe option "${e.field}": `.length));
    }
    throw e;
  }
}

/** Marks a request one IdempotencyInterceptor already handles (a controller's and a route's @Idempotent, or a global one). */
const HANDLED = Symbol('gridlink.nest.idempotent');

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

export class IdempotencyInterceptor implements NestInterceptor {
  private readonly dedupers = new WeakMap<object, Deduper<IdempotentRequest>>();

  constructor(
    private readonly client: GridClient,
    private readonly moduleOptions: GridlinkModuleOptions,
  ) {}

  /**
   * The deduper of a route (built once): the module defaults, then the controller's
   * `@Idempotent()` options, then the route's, each overriding the one before.
   */
  deduperFor(context: ExecutionContext): Deduper<IdempotentRequest> {
    const handler = context.getHandler();
    let d = this.dedupers.get(handler);
    if (d === undefined) {
      const classOpts = Reflect.getMetadata(IDEMPOTENT_METADATA, context.getClass()) as IdempotentOptions | undefined;
      const routeOpts = Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotentOptions | undefined;
      d = new Deduper<IdempotentRequest>({ ...(this.moduleOptions.idempotency as IdempotentOptions | undefined), ...classOpts, ...routeOpts, client: this.client });
      this.dedupers.set(handler, d);
    }
    return d;
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<IdempotentRequest & { [HANDLED]?: true }>();
    const res = http.getResponse<ServerResponse>();
    // Once per request: `@Idempotent()` on a controller and on one of its routes (or a global
    // interceptor besides) chain the interceptor twice; the second would find its own key taken.
    if (req[HANDLED] === true) return next.handle();
    const deduper = this.deduperFor(context);
    if (!deduper.options.methods.has((req.method ?? '').toUpperCase())) return next.handle();
    req[HANDLED] = true;
    return new Observable<unknown>((subscriber) => {
      let inner: { unsubscribe(): void } | undefined;
      deduper.begin(describeRequest(req, routeOf(req), req.body, req.ip)).then(
        (d) => {
          if (subscriber.closed) {
            if (d.action === 'proceed') void d.ticket.abandon('request torn down before the handler ran');
            return;
          }
          if (d.action === 'respond') {
            // Answered here; Nest's own reply then finds the response already sent.
            sendDirect(res, d.response);
            answered(res);
            inner = of(undefined).subscribe(subscriber);
            return;
          }
          if (d.action === 'proceed') {
            const t = d.ticket;
            req.idempotency = t.context();
            captureResponse(res, t as Ticket<unknown>, deduper.options.maxStoredBodyBytes);
          }
          inner = next.handle().subscribe(subscriber);
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
