/**
 * Glue for Node's http.ServerResponse, shared by the Express and Nest (platform-express)
 * adapters: send a decided response, and capture a handler's response for a ticket.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CapturedResponse, DedupeRequest, DirectResponse, Ticket } from './deduper.js';

/**
 * A direct answer's headers by name, to set each once: a header the pairs repeat (Set-Cookie,
 * Vary...) gets all its values in order, any other its one value.
 */
export function headersByName(pairs: DirectResponse['headers']): Map<string, string | string[]> {
  const grouped = new Map<string, string | string[]>();
  for (const [k, v] of pairs) {
    const prev = grouped.get(k);
    grouped.set(k, prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v]);
  }
  return grouped;
}

/**
 * The headers that describe a direct answer's body: its own only. Set on the response before the
 * answer (a Nest route's `@Header('Content-Encoding', ...)`, a middleware), they would describe
 * bytes they do not fit: a decoded replay or a problem+json announced as gzip.
 */
export const BODY_HEADERS = ['content-type', 'content-encoding', 'content-length'] as const;

/**
 * A Vary value naming the fields of `existing` (what the response already says: CORS middleware
 * adds `Origin`) and of `added`, each once (compared without case); `*` alone if either says `*`.
 */
export function mergeVary(existing: unknown, added: string | string[]): string {
  const names: string[] = [];
  const seen = new Set<string>();
  const all = [...(Array.isArray(existing) ? existing : existing === undefined || existing === null ? [] : [existing]), ...(Array.isArray(added) ? added : [added])];
  for (const value of all) {
    for (const f of String(value).split(',')) {
      const name = f.trim();
      if (name === '') continue;
      if (name === '*') return '*';
      if (seen.has(name.toLowerCase())) continue;
      seen.add(name.toLowerCase());
      names.push(name);
    }
  }
  return names.join(', ');
}

/** Sends a problem+json or replayed response as is (its Vary merged with the response's). */
export function sendDirect(res: ServerResponse, d: DirectResponse): void {
  res.statusCode = d.status;
  const grouped = headersByName(d.headers);
  for (const name of BODY_HEADERS) if (!grouped.has(name)) res.removeHeader(name);
  for (const [k, v] of grouped) res.setHeader(k, k === 'vary' ? mergeVary(res.getHeader('vary'), v) : v);
  // RFC 9110 section 8.6: no Content-Length on 1xx and 204 (a 304 would announce the length of
  // the representation, which a replay does not have).
  if (d.status >= 200 && d.status !== 204 && d.status !== 304) res.setHeader('content-length', String(d.body.byteLength));
  res.end(Buffer.from(d.body.buffer, d.body.byteOffset, d.body.byteLength));
}

function toBuffer(chunk: unknown, encoding: unknown): Buffer | null {
  if (chunk === undefined || chunk === null || typeof chunk === 'function') return null;
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return null;
}

function addHeader(into: Record<string, string | string[] | number>, name: string, value: unknown): void {
  if (value === undefined || value === null) return;
  const k = name.toLowerCase();
  const values = (Array.isArray(value) ? (value as unknown[]) : [value]).map((x) => `${x as string}`);
  const prev = into[k];
  into[k] = prev === undefined ? (values.length === 1 ? (values[0] as string) : values) : [...(Array.isArray(prev) ? prev : [String(prev)]), ...values];
}

/**
 * Captures the response body (up to `limit` bytes; beyond it the body is not kept) and reports
 * the outcome to the ticket. The final `end()` is held back until the ticket has stored the
 * response, so a client that has it and retries always gets the replay — unless the ticket says
 * `storeAfterSend`: then the response goes out at once and is stored right after. The connection closing
 * before `end()` (client aborted) abandons the ticket, freeing the key.
 *
 * While `end()` is held back the response is complete (ADR 0051): a later `end()`, `write()` or
 * `writeHead()` does nothing, and status and header changes are undone before the held `end()`
 * goes out. So what was stored is what is sent, also when the handler calls `next()` after
 * answering and Express's final handler (404, or 500 for an error) would otherwise answer first.
 * `headersSent` stays false meanwhile: made true, it would make that final handler destroy the
 * socket on an error (its answer to "an error after the headers went out").
 *
 * The body is captured as the bytes pass this point, and so is Content-Encoding: its value when
 * the head of the response passes (the first writeHead, write or end seen here, before it goes
 * further down). A compression middleware mounted after `dedupe()` (it wraps the response
 * outside this capture) hands compressed bytes and its Content-Encoding through here: both are
 * stored. One mounted before `dedupe()` compresses below this point: the plain bytes are stored
 * without its Content-Encoding (set further down), and it compresses the replay as it would any
 * answer.
 */
export function captureResponse(res: ServerResponse, ticket: Ticket<unknown>, limit: number): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  const collect = (chunk: unknown, encoding: unknown): void => {
    if (over) return;
    const b = toBuffer(chunk, encoding);
    if (b === null) return;
    size += b.byteLength;
    if (size > limit) {
      over = true;
      chunks.length = 0;
      return;
    }
    chunks.push(Buffer.from(b)); // a copy: the caller may reuse its buffer
  };
  // Headers given to writeHead() without an earlier setHeader() never reach getHeaders(): Node
  // writes them straight out. Keep them, or the replay would lack Content-Type, Location...
  const headHeaders: Record<string, string | string[] | number> = {};
  // The Content-Encoding of the bytes seen here (undefined: none), read once the head passes.
  let contentEncoding: string | undefined;
  let headSeen = false;
  const seeHead = (): void => {
    if (headSeen) return;
    headSeen = true;
    const v = headHeaders['content-encoding'] ?? res.getHeader('content-encoding');
    if (v !== undefined) contentEncoding = Array.isArray(v) ? v.join(', ') : String(v);
  };
  // Set once the handler's end() is held back waiting for the store.
  let held = false;
  const writeHead = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse;
  res.writeHead = ((statusCode: number, ...rest: unknown[]) => {
    if (held) return res;
    const h = typeof rest[0] === 'string' ? rest[1] : rest[0];
    if (Array.isArray(h)) {
      // [name, value, name, value, ...] or [[name, value], ...]
      const flat = h.length > 0 && Array.isArray(h[0]) ? (h as unknown[][]).flat() : h;
      for (let i = 0; i + 1 < flat.length; i += 2) addHeader(headHeaders, String(flat[i]), flat[i + 1]);
    } else if (typeof h === 'object' && h !== null) {
      for (const [k, v] of Object.entries(h as Record<string, unknown>)) addHeader(headHeaders, k, v);
    }
    seeHead();
    return writeHead(statusCode, ...rest);
  });
  const write = res.write.bind(res) as (...a: unknown[]) => boolean;
  const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
  res.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (held) {
      // After end(): nothing more belongs to this response. The callback hears it, as from Node.
      const cb = rest.find((a) => typeof a === 'function') as ((e: Error) => void) | undefined;
      if (cb !== undefined) process.nextTick(cb, new Error('write after end: the response is complete and waits to be stored'));
      return true;
    }
    seeHead();
    collect(chunk, rest[0]);
    return write(chunk, ...rest);
  }) as ServerResponse['write'];
  let ended = false;
  const onClose = (): void => {
    if (!ended) void ticket.abandon('connection closed before the response finished');
  };
  res.end = ((chunk?: unknown, ...rest: unknown[]) => {
    if (held) {
      // A second end(): its callback runs when the held response has gone out, as Node's would.
      const cb = [chunk, ...rest].find((a) => typeof a === 'function') as (() => void) | undefined;
      if (cb !== undefined) res.once('finish', () => cb());
      return res;
    }
    if (ended) return end(chunk, ...rest);
    ended = true;
    seeHead();
    collect(chunk, rest[0]);
    res.off('close', onClose);
    const current = res.getHeaders();
    const headers: CapturedResponse['headers'] = { ...headHeaders, ...current };
    delete headers['content-encoding'];
    if (contentEncoding !== undefined) headers['content-encoding'] = contentEncoding;
    const captured: CapturedResponse = { status: res.statusCode, headers, body: over ? null : Buffer.concat(chunks) };
    if (ticket.storeAfterSend) {
      // Sent now; stored (and the key freed) right after. The lock stays held until then, so a
      // duplicate meanwhile gets 409, never a second run (ADR 0036).
      end(chunk, ...rest);
      void ticket.complete(captured);
      return res;
    }
    // Held back: from here on the response is the one captured. Whatever runs meanwhile
    // (Express's final handler after a next(), an error handler) cannot send anything, and what
    // it changes is undone before the held end() goes out.
    held = true;
    const status = res.statusCode;
    const statusMessage = res.statusMessage;
    // `current` is a copy of its own (getHeaders builds a new object): nothing above changed it.
    const headerSnapshot = res.headersSent ? null : current;
    void ticket.complete(captured).then(() => {
      held = false;
      if (headerSnapshot !== null && !res.headersSent) {
        for (const name of res.getHeaderNames()) if (!(name in headerSnapshot)) res.removeHeader(name);
        for (const [name, value] of Object.entries(headerSnapshot)) if (value !== undefined) res.setHeader(name, value);
        res.statusCode = status;
        res.statusMessage = statusMessage;
      }
      end(chunk, ...rest);
    });
    return res;
  }) as ServerResponse['end'];
  res.once('close', onClose);
}

/**
 * How many header lines named `name` (lower case) a request has, from its raw header list. The
 * same count as `req.headersDistinct[name].length`, without building that object for every
 * header of every request (it showed in the app's profile).
 */
export function headerLineCount(rawHeaders: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const h = rawHeaders[i] as string;
    if (h.length === name.length && (h === name || h.toLowerCase() === name)) n++;
  }
  return n;
}

/**
 * Describes a Node/Express request for the core. `route` is the matched pattern when known;
 * `routeLabel` names it in the metrics when `route` is a concrete path.
 */
export function describeRequest<Req extends IncomingMessage>(req: Req, route: string, body: unknown, ip: string | undefined, routeLabel?: string): DedupeRequest<Req> {
  return {
    method: req.method ?? 'GET',
    route,
    ...(routeLabel === undefined ? {} : { routeLabel }),
    header: (name) => {
      const v = req.headers[name];
      return Array.isArray(v) ? v.join(', ') : v;
    },
    headerLines: (name) => headerLineCount(req.rawHeaders, name),
    body,
    clientAddress: ip ?? req.socket.remoteAddress,
    userAgent: req.headers['user-agent'],
    raw: req,
  };
}
