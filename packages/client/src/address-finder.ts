/**
 * Address finders: where the client learns the addresses it may connect to. The connection
 * manager calls `resolve()` at startup, periodically, on connection loss and on topology change.
 * A finder may return the same list every time (static), ask DNS (a Kubernetes headless service),
 * or anything else (e.g. node announcements on a message bus) by implementing the interface.
 */
import { promises as dns } from 'node:dns';
import { DEFAULT_PORT } from '@gridlink/protocol';
import { describe } from './describe.js';
import { checkedEndpoints, parseEndpoints, type Endpoint } from './endpoints.js';
import { GridConfigError } from './errors.js';

export interface AddressFinder {
  /** Current addresses, in order of preference. May reject; the previous list is then kept. */
  resolve(signal?: AbortSignal): Promise<string[]>;
}

/**
 * Always answers the same list. Each entry is an endpoint as in the client's `endpoints`; anything
 * else is a GridConfigError naming it (`endpoints[1]`), as it would be there.
 */
export function staticAddressFinder(endpoints: readonly string[]): AddressFinder {
  checkedEndpoints(endpoints);
  const list = [...endpoints];
  return { resolve: async () => [...list] };
}

/** The two lookups the DNS finder needs; `node:dns` promises (or a `Resolver`) fit. */
export interface DnsResolver {
  resolve4(hostname: string): Promise<string[]>;
  resolve6(hostname: string): Promise<string[]>;
}

export interface DnsAddressFinderOptions {
  /** Port of every resolved address. Default 10800. */
  port?: number;
  /** Which families to ask for. Default both (A and AAAA). */
  family?: 4 | 6 | 'both';
  /** Resolver to use (for tests or custom servers); defaults to node:dns. */
  resolver?: DnsResolver;
}

/**
 * Resolves a DNS name (e.g. a Kubernetes headless service) to every A and AAAA record it has.
 * IPv4 addresses come first, each family sorted so that the order is stable between calls.
 * Fails only when neither family yields an address. A name that is not a non-empty string, a
 * port outside 1-65535, a family other than 4, 6 or 'both', or a resolver without resolve4 and
 * resolve6 is a GridConfigError naming it (a null port or family too, as in the client's config).
 * Null options (the whole object) mean the defaults.
 */
export function dnsAddressFinder(name: string, options?: DnsAddressFinderOptions | null): AddressFinder {
  if (typeof name !== 'string' || name.trim() === '') throw new GridConfigError('name', `must be a non-empty DNS name, got ${describe(name)}`);
  const o = options ?? {};
  if (typeof o !== 'object') throw new GridConfigError('options', `must be an object, got ${describe(o)}`);
  // Only an absent option takes its default: null is refused, as in the client's config.
  const port = o.port === undefined ? DEFAULT_PORT : o.port;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new GridConfigError('port', `must be an integer from 1 to 65535, got ${describe(port)}`);
  const family = o.family === undefined ? 'both' : o.family;
  if (family !== 4 && family !== 6 && family !== 'both') throw new GridConfigError('family', `must be 4, 6 or 'both', got ${describe(family)}`);
  if (o.resolver !== undefined && o.resolver !== null) {
    const r = o.resolver as unknown as Record<string, unknown>;
    if (typeof r !== 'object' || typeof r.resolve4 !== 'function' || typeof r.resolve6 !== 'function') {
      throw new GridConfigError('resolver', `must have resolve4 and resolve6 methods, got ${describe(o.resolver)}`);
    }
  }
  const custom = o.resolver ?? null;
  return {
    async resolve(signal?: AbortSignal) {
      // Without a resolver of the caller's, each resolution gets a resolver of its own (with the
      // servers node:dns uses now), cancelled when the caller gives up on the answer (the client's
      // timeout on it, or its close()): a lookup on a DNS server that does not answer otherwise
      // runs on for the resolver's own timeouts (about 26 s by default) and keeps the process
      // alive that long after close(). A caller's resolver may be shared: it is never cancelled.
      let own: InstanceType<typeof dns.Resolver> | null = null;
      if (custom === null) {
        own = new dns.Resolver();
        // Read now, through the module object: an imported getServers is bound to the resolver
        // of import time, which a later dns.setServers() replaces.
        own.setServers(dns.getServers());
      }
      const resolver: DnsResolver = custom ?? (own as DnsResolver);
      const cancel = (): void => own?.cancel();
      if (own !== null && signal !== undefined) {
        if (signal.aborted) cancel();
        else signal.addEventListener('abort', cancel, { once: true });
      }
      let v4: PromiseSettledResult<string[]>;
      let v6: PromiseSettledResult<string[]>;
      try {
        [v4, v6] = await Promise.allSettled([
          family === 6 ? Promise.resolve([] as string[]) : resolver.resolve4(name),
          family === 4 ? Promise.resolve([] as string[]) : resolver.resolve6(name),
        ]);
      } finally {
        signal?.removeEventListener('abort', cancel);
      }
      const out: string[] = [];
      if (v4.status === 'fulfilled') for (const a of [...v4.value].sort()) out.push(`${a}:${port}`);
      if (v6.status === 'fulfilled') for (const a of [...v6.value].sort()) out.push(`[${a}]:${port}`);
      if (out.length === 0) {
        const reason = v4.status === 'rejected' ? v4.reason : v6.status === 'rejected' ? v6.reason : undefined;
        throw new Error(`DNS name ${name} has no A/AAAA records`, { cause: reason });
      }
      return out;
    },
  };
}

/**
 * Asks a finder, for at most `timeoutMs`: a finder that has not answered by then (a hung lookup)
 * fails this resolution, as one that rejects does, and the signal it was given aborts. Without
 * the bound a finder that never answered held connect() past its connectTimeout for good, and
 * every later re-resolution waited behind it. `stop` (the client closing) ends it the same way at
 * once: close() must not wait out a hung lookup.
 */
async function resolveWithin(finder: AddressFinder, timeoutMs: number, stop?: AbortSignal): Promise<string[]> {
  const ac = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onStop: (() => void) | undefined;
  const answer = Promise.resolve().then(() => finder.resolve(ac.signal));
  const expired = new Promise<never>((_resolve, reject) => {
    const end = (err: Error): void => {
      ac.abort(err);
      reject(err);
    };
    timer = setTimeout(() => end(new Error(`the address finder did not answer within ${timeoutMs} ms`)), timeoutMs);
    if (stop !== undefined) {
      onStop = () => end(stop.reason instanceof Error ? stop.reason : new Error('the address resolution was stopped'));
      if (stop.aborted) onStop();
      else stop.addEventListener('abort', onStop, { once: true });
    }
  });
  try {
    return await Promise.race([answer, expired]);
  } finally {
    clearTimeout(timer);
    if (onStop !== undefined) stop?.removeEventListener('abort', onStop);
    answer.catch(() => undefined); // a late failure of the abandoned call is not unhandled
  }
}

/**
 * Resolves through a finder within `timeoutMs` (or until `stop` aborts) and parses the answer;
 * invalid entries are skipped.
 */
export async function resolveEndpoints(finder: AddressFinder, timeoutMs: number, stop?: AbortSignal): Promise<Endpoint[]> {
  const list: unknown = await resolveWithin(finder, timeoutMs, stop);
  // A string would be iterated character by character, each one taken for a host name.
  if (!Array.isArray(list)) throw new Error(`the address finder answered ${describe(list)}, not an array of endpoint strings`);
  const out: Endpoint[] = [];
  for (const s of list) {
    if (typeof s !== 'string') continue;
    try {
      out.push(...parseEndpoints([s]));
    } catch {
      // A bad entry from a finder is ignored rather than failing the whole list.
    }
  }
  return out;
}
