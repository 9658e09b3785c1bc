/**
 * The dashboard's Host check, against DNS rebinding: a page on another origin whose name the
 * attacker points at 127.0.0.1 can make the browser send it requests, and read the answers as its
 * own, but the browser names the attacker's host in the Host header. A dashboard listening on a
 * loopback address answers only to loopback names (and the allowed hosts); one listening
 * elsewhere answers to any Host unless allowed hosts are given.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

/** A Host header value (RFC 9110 §7.2: uri-host [":" port]): the name lowercased, an IPv6 address in brackets, normalised. */
export interface HostValue {
  name: string;
  /** null when the value has no port (http: 80). */
  port: number | null;
}

const LABEL = '[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?';
const REG_NAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);

/**
 * Parses `name`, `name:port`, an IPv4 address or a bracketed IPv6 address (`[::1]:8090`); null
 * for anything else (an empty value, spaces, a user part, a path, a port out of [1, 65535]).
 */
export function parseHost(value: string): HostValue | null {
  let name: string;
  let rest: string;
  if (value.startsWith('[')) {
    const end = value.indexOf(']');
    if (end < 0) return null;
    const inner = value.slice(1, end);
    if (!isIPv6(inner)) return null;
    // The URL parser's form: lowercase, zeros compressed ([0:0:0:0:0:0:0:1] is [::1]).
    name = new URL(`http://[${inner}]/`).hostname;
    rest = value.slice(end + 1);
  } else {
    const colon = value.indexOf(':');
    name = (colon < 0 ? value : value.slice(0, colon)).toLowerCase();
    rest = colon < 0 ? '' : value.slice(colon);
    if (!REG_NAME.test(name)) return null;
  }
  if (rest === '') return { name, port: null };
  const m = /^:(\d{1,5})$/.exec(rest);
  const port = m === null ? 0 : Number(m[1]);
  return port >= 1 && port <= 65535 ? { name, port } : null;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Whether an address a server listens on (or a client connects to) is a loopback one. */
export function isLoopbackAddress(address: string): boolean {
  if (isIPv4(address)) return LOOPBACK.check(address, 'ipv4');
  if (isIPv6(address)) return LOOPBACK.check(address, 'ipv6');
  return false;
}

/** localhost, an address in 127.0.0.0/8, or [::1]: names no other origin can be given. */
function isLoopbackName(name: string): boolean {
  if (name === 'localhost') return true;
  if (name.startsWith('[')) return isLoopbackAddress(name.slice(1, -1));
  return isLoopbackAddress(name);
}

/**
 * The check of a dashboard listening on `address`:`port`, or null when it answers to any Host
 * (listening on a non-loopback address, no allowed hosts given). With a check, a request is
 * answered when its Host is a loopback name with the dashboard's port, or one of `allowed`
 * (an entry without a port allows any port).
 */
export function hostCheck(address: string, port: number, allowed: readonly HostValue[] | undefined): ((host: string | undefined) => boolean) | null {
  if (allowed === undefined && !isLoopbackAddress(address)) return null;
  return (host) => {
    if (host === undefined) return false;
    const h = parseHost(host);
    if (h === null) return false;
    const hPort = h.port ?? 80;
    if (hPort === port && isLoopbackName(h.name)) return true;
    return allowed !== undefined && allowed.some((a) => a.name === h.name && (a.port === null || a.port === hPort));
  };
}
