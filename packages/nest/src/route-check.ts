/**
 * The check of one route's de-duplication options, shared by the startup check (module.ts, every
 * route before connecting and, under a global IdempotencyInterceptor, in init()) and the
 * interceptor itself (an `@Sse()` route it meets at request time, which no startup check saw).
 */
import { RequestMethod } from '@nestjs/common';
import { DedupeConfigError, resolveDedupeOptions } from '@gridlink/dedupe';
import type { IdempotentOptions, IdempotentRequest } from './types.js';

/** The metadata key Nest's `@Sse()` sets on its handler (`SSE_METADATA`, the same in Nest 11 and 12). */
export const SSE_METADATA = '__sse__';

/** Whether the handler is an `@Sse()` route. */
export function isSseHandler(handler: object): boolean {
  return Reflect.getMetadata(SSE_METADATA, handler) === true;
}

/**
 * An `@Sse()` route answers with an event stream that ends only when the client goes away: a key
 * taken for it would stay held as long (every retry 409), and a stream is neither stored nor
 * replayed. `@Idempotent()` on such a route is refused; on its controller, only if its merged
 * `methods` take the stream's method (GET unless `@Sse(path, { method })` says otherwise), else
 * the stream passes through it untouched.
 */
function checkSse(handler: object, onRoute: boolean, onController: boolean, methods: ReadonlySet<string>, where: string): void {
  const why = 'an @Sse() route answers with an event stream that ends only when the client goes away: its key would stay held as long, and a stream cannot be replayed';
  if (onRoute) throw new DedupeConfigError('@Idempotent()', `cannot apply to an @Sse() route (${why}) — ${where}`);
  const method = RequestMethod[Reflect.getMetadata('method', handler) as RequestMethod] ?? 'GET';
  if (method === 'ALL' || methods.has(method)) {
    const [by, fix] = onController ? ["the controller's @Idempotent()", "the controller's methods"] : ['the global IdempotencyInterceptor', "GridlinkModule's idempotency.methods"];
    throw new DedupeConfigError('methods', `includes ${method}, the method of this @Sse() route, so ${by} would de-duplicate it (${why}): leave ${method} out of ${fix} — ${where}`);
  }
}

/**
 * Throws the DedupeConfigError that refuses a route: its merged options (module defaults,
 * controller, route) from which no key could ever be derived, or that would de-duplicate an
 * `@Sse()` stream (`checkSse`). `controller` and `name` name the route in the error.
 */
export function checkRoute(merged: IdempotentOptions, handler: object, classOpts: IdempotentOptions | undefined, routeOpts: IdempotentOptions | undefined, controller: string, name: string): void {
  const marked = classOpts !== undefined || routeOpts !== undefined;
  const where = marked ? `@Idempotent() route ${controller}.${name}` : `route ${controller}.${name} (global IdempotencyInterceptor)`;
  let methods: ReadonlySet<string>;
  try {
    methods = resolveDedupeOptions<IdempotentRequest>(merged).methods;
  } catch (e) {
    if (e instanceof DedupeConfigError) {
      throw new DedupeConfigError(e.field, `${e.reason} — ${where} (module idempotency, controller and route options merged)`);
    }
    throw e;
  }
  if (isSseHandler(handler)) checkSse(handler, routeOpts !== undefined, classOpts !== undefined, methods, where);
}
