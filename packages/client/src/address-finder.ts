/**
 * Address finders: where the client learns the addresses it may connect to. The connection
 * manager calls `resolve()` at startup, periodically, on connection loss and on topology change.
 * A finder may return the same list every time (static), ask DNS (a Kubernetes headless service),
 * or anything else (e.g. node announcements on a message bus) by implementing the interface.
 */
import { promises as dns } from 'node:dns';
import { DEFAULT_PORT } from '@gridlink/protocol';
import { parseEndpoints, type Endpoint } from './endpoints.js';

export interface AddressFinder {
  /** Current addresses, in order of preference. May reject; the previous list is then kept. */
  resolve(signal?: AbortSignal): Promise<string[]>;
}

/** Always answers the same list. */
export function staticAddressFinder(endpoints: readonly string[]): AddressFinder {
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
 * Fails only when neither family yields an address.
 */
export function dnsAddressFinder(name: string, options: DnsAddressFinderOptions = {}): AddressFinder {
  const port = options.port ?? DEFAULT_PORT;
  const family = options.family ?? 'both';
  const resolver: DnsResolver = options.resolver ?? { resolve4: (h) => dns.resolve4(h), resolve6: (h) => dns.resolve6(h) };
  return {
    async resolve() {
      const [v4, v6] = await Promise.allSettled([
        family === 6 ? Promise.resolve([] as string[]) : resolver.resolve4(name),
        family === 4 ? Promise.resolve([] as string[]) : resolver.resolve6(name),
      ]);
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

/** Resolves through a finder and parses the answer; invalid entries are skipped. */
export async function resolveEndpoints(finder: AddressFinder, signal?: AbortSignal): Promise<Endpoint[]> {
  const list = await finder.resolve(signal);
  const out: Endpoint[] = [];
  for (const s of list) {
    try {
      out.push(...parseEndpoints([s]));
    } catch {
      // A bad entry from a finder is ignored rather than failing the whole list.
    }
  }
  return out;
}
