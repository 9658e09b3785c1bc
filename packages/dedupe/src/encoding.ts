/**
 * A replay's content codings against the retry's Accept-Encoding (RFC 9110 sections 8.4 and
 * 12.5.3). A stored body keeps the Content-Encoding it had when it passed the middleware (ADR
 * 0051); the duplicate that gets it replayed may not accept that coding (another client library,
 * a proxy that strips Accept-Encoding, `identity` asked for). Then the replay is decoded with
 * node:zlib as far as the request needs (zstd where this Node's zlib has it), bounded in size;
 * what cannot be decoded is replayed without its body, as a body too large to store is.
 */
import * as zlib from 'node:zlib';
import { brotliDecompress, gunzip, inflate, inflateRaw, type ZlibOptions } from 'node:zlib';

type Decoder = (buf: Buffer, o: ZlibOptions, cb: (e: Error | null, r: Buffer) => void) => void;

/**
 * zstd (RFC 8878) where node:zlib has it (Node 22.15+, 23.8+; not Node 20): feature-detected,
 * not version-checked. Its options take `maxOutputLength` as the other decoders' do.
 */
const zstdDecompress = (zlib as { zstdDecompress?: Decoder }).zstdDecompress;

/** What an Accept-Encoding field says: a weight per coding (lower case), `*` included. */
export type AcceptEncoding = ReadonlyMap<string, number>;

/** Names RFC 9110 section 8.4.1 says to take as the same coding. */
const ALIASES: Record<string, string> = { 'x-gzip': 'gzip', 'x-compress': 'compress' };

const WEIGHT = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/;

/** The coding named by a token: lower case, aliases resolved. */
export function codingName(token: string): string {
  const t = token.trim().toLowerCase();
  return ALIASES[t] ?? t;
}

/**
 * Parses an Accept-Encoding field value. `undefined` (no field) gives an empty map: only
 * `identity` is acceptable then (see `accepts`). A member whose weight does not parse counts as
 * not given: what is not understood is not taken as accepting a coding (identity stays safe).
 * A coding listed twice keeps its lowest weight.
 */
export function parseAcceptEncoding(value: string | undefined): AcceptEncoding {
  const accepted = new Map<string, number>();
  if (value === undefined) return accepted;
  for (const member of value.split(',')) {
    const [token = '', ...params] = member.split(';');
    const coding = codingName(token);
    if (coding === '') continue;
    let q = 1;
    let valid = true;
    for (const p of params) {
      const eq = p.indexOf('=');
      if (eq < 0) continue;
      if (p.slice(0, eq).trim().toLowerCase() !== 'q') continue;
      const w = p.slice(eq + 1).trim();
      if (!WEIGHT.test(w)) valid = false;
      else q = Number(w);
    }
    if (!valid) continue;
    const prev = accepted.get(coding);
    accepted.set(coding, prev === undefined ? q : Math.min(prev, q));
  }
  return accepted;
}

/**
 * Whether a request with this Accept-Encoding takes a body in `coding`: listed with a weight
 * above 0, else covered by `*` with a weight above 0; `identity` is acceptable unless refused
 * (`identity;q=0`, or `*;q=0` without an entry for identity). With no field at all, only
 * identity: RFC 9110 lets a server pick any coding then, but adds that this does not mean the
 * client can decode it, and the compressors apps use (`compression`, `@fastify/compress`) answer
 * such a request uncompressed — the replay does what the app did for the first request.
 */
export function accepts(ae: AcceptEncoding, coding: string): boolean {
  const c = codingName(coding);
  const own = ae.get(c);
  if (own !== undefined) return own > 0;
  const star = ae.get('*');
  if (star !== undefined) return star > 0;
  return c === 'identity';
}

/** The codings of a Content-Encoding value, in the order they were applied (`identity` dropped). */
export function contentCodings(value: string): string[] {
  return value
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '' && codingName(t) !== 'identity');
}

/**
 * How many of `codings` (applied in this order) to keep so that the request accepts the rest:
 * all of them if it accepts each, else the longest prefix it accepts (the outer codings are
 * decoded); null when none is acceptable, identity included (refused by `identity;q=0` or
 * `*;q=0`): decoding would not help then.
 */
export function codingsToKeep(codings: readonly string[], ae: AcceptEncoding): number | null {
  for (let keep = codings.length; keep >= 0; keep--) {
    if (keep === 0 && !accepts(ae, 'identity')) return null;
    if (codings.slice(0, keep).every((c) => accepts(ae, c))) return keep;
  }
  return null;
}

/**
 * Codings node:zlib decodes: gzip, deflate, br, and zstd where this Node has it. Others
 * (`compress`, zstd on Node 20, private ones) are not decoded.
 */
export function canDecode(coding: string): boolean {
  const c = codingName(coding);
  return c === 'gzip' || c === 'deflate' || c === 'br' || (c === 'zstd' && zstdDecompress !== undefined);
}

function run(fn: Decoder, buf: Buffer, o: ZlibOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => fn(buf, o, (e, r) => (e === null ? resolve(r) : reject(e))));
}

/** Thrown by `decode` when a decoded layer would exceed the bound. */
export class DecodedTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`larger than ${limit} bytes once decoded`);
    this.name = 'DecodedTooLarge';
  }
}

/**
 * Decodes one layer of `coding` (one `canDecode` accepts), producing at most `limit` bytes:
 * zlib stops at `maxOutputLength`, so a small body that inflates without end (a decompression
 * bomb) costs `limit` bytes of memory at most, then `DecodedTooLarge`. `deflate` is the zlib
 * format (RFC 9110 section 8.4.1.2); a raw deflate stream, which some servers send under that
 * name, is decoded too. Off the event loop (zlib's thread pool). Rejects on corrupt data.
 */
export async function decode(coding: string, body: Buffer, limit: number): Promise<Buffer> {
  if (body.byteLength === 0) return body;
  // zlib wants a bound of at least 1; a bound of 0 is checked on the result.
  const o: ZlibOptions = { maxOutputLength: Math.max(1, limit) };
  const c = codingName(coding);
  let out: Buffer;
  try {
    if (c === 'gzip') out = await run(gunzip, body, o);
    else if (c === 'br') out = await run(brotliDecompress, body, o);
    else if (c === 'zstd' && zstdDecompress !== undefined) out = await run(zstdDecompress, body, o);
    else if (c === 'deflate') {
      try {
        out = await run(inflate, body, o);
      } catch (e) {
        if (isTooLarge(e)) throw e;
        out = await run(inflateRaw, body, o);
      }
    }
    else throw new Error(`cannot decode "${coding}"`);
  } catch (e) {
    if (isTooLarge(e)) throw new DecodedTooLarge(limit);
    throw e;
  }
  if (out.byteLength > limit) throw new DecodedTooLarge(limit);
  return out;
}

function isTooLarge(e: unknown): boolean {
  return (e as { code?: unknown } | null)?.code === 'ERR_BUFFER_TOO_LARGE';
}
