/**
 * `@Idempotent(options)` and its interceptor: request de-duplication (the shared core) for Nest
 * routes on the Express platform.
 */
import { applyDecorators, Inject, Injectable, SetMetadata, UseInterceptors, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Observable, of } from 'rxjs';
import type { GridClient } from '@gridlink/client';
import { Deduper, captureResponse, describeRequest, sendDirect, type DedupeOptions, type Ticket } from '@gridlink/dedupe';
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
  return applyDecorators(SetMetadata(IDEMPOTENT_METADATA, options), UseInterceptors(IdempotencyInterceptor));
}

function routeOf(req: IdempotentRequest): string {
  const p = req.route?.path;
  if (typeof p === 'string') return (req.baseUrl ?? '') + p;
  return (req.baseUrl ?? '') + (req.path ?? req.url ?? '');
}

export class IdempotencyInterceptor implements NestInterceptor {
  private readonly dedupers = new WeakMap<object, Deduper<IdempotentRequest>>();

  constructor(
    private readonly client: GridClient,
    private readonly moduleOptions: GridlinkModuleOptions,
  ) {}

  /** The deduper of a route (built once, from the module defaults and the route's options). */
  deduperFor(context: ExecutionContext): Deduper<IdempotentRequest> {
    const handler = context.getHandler();
    let d = this.dedupers.get(handler);
    if (d === undefined) {
      const routeOpts =
        (Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotentOptions | undefined) ??
        (Reflect.getMetadata(IDEMPOTENT_METADATA, context.getClass()) as IdempotentOptions | undefined) ??
        {};
      d = new Deduper<IdempotentRequest>({ ...(this.moduleOptions.idempotency as IdempotentOptions | undefined), ...routeOpts, client: this.client });
      this.dedupers.set(handler, d);
    }
    return d;
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const req = http.getRequest<IdempotentRequest>();
    const res = http.getResponse<ServerResponse>();
    const deduper = this.deduperFor(context);
    if (!deduper.options.methods.has((req.method ?? '').toUpperCase())) return next.handle();
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
