/**
 * The request and option types of `@Idempotent()`, on their own so that the interceptor and the
 * route check (which the interceptor imports) can both use them without importing each other.
 */
import type { IncomingMessage } from 'node:http';
import type { DedupeOptions } from '@gridlink/dedupe';

/**
 * The request as the Express platform hands it over. On the Fastify platform the handler gets
 * Fastify's request (with `raw`, `body`, `ip`, `headers`), and `idempotency` on it too.
 */
export interface IdempotentRequest extends IncomingMessage {
  body?: unknown;
  ip?: string;
  baseUrl?: string;
  path?: string;
  route?: { path?: unknown };
  idempotency?: { keyHash: string; fencingToken: number; signal: AbortSignal };
}

export type IdempotentOptions = Omit<DedupeOptions<IdempotentRequest>, 'client'>;
