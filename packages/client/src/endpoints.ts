/**
 * Endpoint parsing (pure). Accepted forms:
 *   host            -> host:10800
 *   host:port
 *   [v6addr]        -> [v6addr]:10800
 *   [v6addr]:port
 *   host:port..port -> one endpoint per port of the inclusive range, in ascending order
 * A bare IPv6 address without brackets (more than one colon) is accepted with the default port.
 */
import { DEFAULT_PORT } from '@gridlink/protocol';
import { describe } from './describe.js';
import { GridConfigError } from './errors.js';

export interface Endpoint {
  host: string;
  port: number;
}

/** Largest port range one endpoint string may expand to (guards against typos like 1..65535). */
export const MAX_PORT_RANGE = 1024;

export class EndpointParseError extends Error {
  constructor(
    readonly input: string,
    reason: string,
  ) {
    super(`bad endpoint "${input}": ${reason}`);
    this.name = 'EndpointParseError';
  }
}

function parsePort(input: string, text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new EndpointParseError(input, `port "${text}" is not a number`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new EndpointParseError(input, `port ${port} is out of range 1-65535`);
  return port;
}

function checkHost(input: string, host: string): void {
  if (host.length === 0) throw new EndpointParseError(input, 'empty host');
  if (/\s/.test(host)) throw new EndpointParseError(input, 'host contains whitespace');
}

/** Parses one endpoint string into one or more endpoints (ranges expand), keeping order. */
export function parseEndpoint(input: string, defaultPort: number = DEFAULT_PORT): Endpoint[] {
  const text = input.trim();
  if (text.length === 0) throw new EndpointParseError(input, 'empty endpoint');
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new EndpointParseError(input, 'missing "]"');
    host = text.slice(1, close);
    if (!host.includes(':')) throw new EndpointParseError(input, 'brackets are for IPv6 addresses');
    const rest = text.slice(close + 1);
    if (rest.length > 0) {
      if (!rest.startsWith(':')) throw new EndpointParseError(input, 'expected ":port" after "]"');
      portText = rest.slice(1);
    }
  } else {
    const colons = text.split(':').length - 1;
    if (colons === 0) {
      host = text;
    } else if (colons === 1) {
      const i = text.indexOf(':');
      host = text.slice(0, i);
      portText = text.slice(i + 1);
    } else {
      // Bare IPv6 address: no port possible without brackets.
      if (text.includes('..')) throw new EndpointParseError(input, 'IPv6 address with a port needs brackets');
      host = text;
    }
  }
  checkHost(input, host);
  if (portText === undefined) return [{ host, port: defaultPort }];
  const range = portText.split('..');
  if (range.length === 1) return [{ host, port: parsePort(input, portText) }];
  if (range.length !== 2) throw new EndpointParseError(input, 'bad port range');
  const from = parsePort(input, range[0] ?? '');
  const to = parsePort(input, range[1] ?? '');
  if (to < from) throw new EndpointParseError(input, `port range ${from}..${to} is reversed`);
  if (to - from + 1 > MAX_PORT_RANGE) {
    throw new EndpointParseError(input, `port range spans more than ${MAX_PORT_RANGE} ports`);
  }
  const out: Endpoint[] = [];
  for (let p = from; p <= to; p++) out.push({ host, port: p });
  return out;
}

/** Parses a list of endpoint strings, expanding ranges and dropping duplicates (first wins). */
export function parseEndpoints(inputs: readonly string[], defaultPort: number = DEFAULT_PORT): Endpoint[] {
  const seen = new Set<string>();
  const out: Endpoint[] = [];
  for (const input of inputs) {
    for (const ep of parseEndpoint(input, defaultPort)) {
      const k = formatEndpoint(ep);
      if (seen.has(k)) continue;
      seen.add(k);
      out.push(ep);
    }
  }
  return out;
}

/** Canonical "host:port" text of an endpoint, with brackets for IPv6. */
export function formatEndpoint(ep: Endpoint): string {
  return ep.host.includes(':') ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`;
}

/**
 * An `endpoints` option (the client's, or a static address finder's) parsed: an array of endpoint
 * strings, else a GridConfigError naming it or the entry (`endpoints[2]`).
 */
export function checkedEndpoints(value: unknown): Endpoint[] {
  if (!Array.isArray(value)) throw new GridConfigError('endpoints', `must be an array of strings, got ${describe(value)}`);
  value.forEach((e, i) => {
    if (typeof e !== 'string') throw new GridConfigError(`endpoints[${i}]`, `must be a string, got ${describe(e)}`);
  });
  const list = value as string[];
  try {
    return parseEndpoints(list);
  } catch (err) {
    if (err instanceof EndpointParseError) throw new GridConfigError(`endpoints[${list.indexOf(err.input)}]`, err.message);
    throw err;
  }
}
