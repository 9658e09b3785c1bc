/**
 * Glue for Node's http.ServerResponse, shared by the Express and Nest (platform-express)
 * adapters: send a decided response, and capture a handler's response for a ticket.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isUint8Array } from 'node:util/types';
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
  // Node writes a string in its default encoding (UTF-8) when given none, '' or 'buffer' (which
  // its streams take for a string): Buffer.from() refuses '' as 'buffer'.
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' && encoding !== '' && encoding !== 'buffer' ? (encoding as BufferEncoding) : 'utf8');
  if (isBytes(chunk)) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  return null;
}

/**
 * A chunk Node writes as bytes: a Uint8Array, also one made in another realm (a vm context),
 * which Node's own check (util.types.isUint8Array) takes and `instanceof` does not. The
 * `instanceof` first: the common case pays nothing more.
 */
function isBytes(chunk: unknown): chunk is Uint8Array {
  return chunk instanceof Uint8Array || isUint8Array(chunk);
}

function addHeader(into: Record<string, string | string[] | number>, name: string, value: unknown): void {
  if (value === undefined || value === null) return;
  const k = name.toLowerCase();
  const values = (Array.isArray(value) ? (value as unknown[]) : [value]).map((x) => `${x as string}`);
  const prev = into[k];
  into[k] = prev === undefined ? (values.length === 1 ? (values[0] as string) : values) : [...(Array.isArray(prev) ? prev : [String(prev)]), ...values];
}

type Method = (...a: unknown[]) => unknown;

/**
 * One response's capture: the bytes seen, the headers given to writeHead, and the methods this
 * capture replaced. Its state lives here, not on the response (ADR 0082: on Express's responses
 * every added property costs a new hidden class); the replacements are module-level functions
 * bound to it.
 */
class ResponseCapture {
  chunks: Buffer[] = [];
  size = 0;
  over = false;
  // Headers given to writeHead() without an earlier setHeader() never reach getHeaders(): Node
  // writes them straight out. Kept (made when first needed), or the replay would lack them.
  headHeaders: Record<string, string | string[] | number> | null = null;
  /** The Content-Encoding of the bytes seen here (undefined: none), read once the head passes. */
  contentEncoding: string | undefined = undefined;
  headSeen = false;
  /** Set once the handler's end() is held back waiting for the store. */
  held = false;
  ended = false;
  /** Its 'close' listener: the connection closing before end() abandons the ticket. */
  readonly onClose = capturedClose.bind(this);
  constructor(
    readonly res: ServerResponse,
    readonly ticket: Ticket<unknown>,
    readonly limit: number,
    /** The response's methods before this capture replaced them. */
    readonly writeHead: Method,
    readonly write: Method,
    readonly end: Method,
  ) {}

  collect(chunk: unknown, encoding: unknown): void {
    if (this.over) return;
    const b = toBuffer(chunk, encoding);
    if (b === null) return;
    this.size += b.byteLength;
    if (this.size > this.limit) {
      this.over = true;
      this.chunks.length = 0;
      return;
    }
    this.chunks.push(Buffer.from(b)); // a copy: the caller may reuse its buffer
  }

  seeHead(): void {
    if (this.headSeen) return;
    this.headSeen = true;
    const v = this.headHeaders?.['content-encoding'] ?? this.res.getHeader('content-encoding');
    if (v !== undefined) this.contentEncoding = Array.isArray(v) ? v.join(', ') : String(v);
  }
}

function capturedWriteHead(this: ResponseCapture, statusCode: number, ...rest: unknown[]): ServerResponse {
  const res = this.res;
  if (this.held) return res;
  const h = typeof rest[0] === 'string' ? rest[1] : rest[0];
  if (Array.isArray(h)) {
    // [name, value, name, value, ...] or [[name, value], ...]
    const flat = h.length > 0 && Array.isArray(h[0]) ? (h as unknown[][]).flat() : h;
    this.headHeaders ??= {};
    for (let i = 0; i + 1 < flat.length; i += 2) addHeader(this.headHeaders, String(flat[i]), flat[i + 1]);
  } else if (typeof h === 'object' && h !== null) {
    this.headHeaders ??= {};
    for (const [k, v] of Object.entries(h as Record<string, unknown>)) addHeader(this.headHeaders, k, v);
  }
  this.seeHead();
  return this.writeHead.call(res, statusCode, ...rest) as ServerResponse;
}

function capturedWrite(this: ResponseCapture, chunk: unknown, ...rest: unknown[]): boolean {
  if (this.held) {
    // After end(): nothing more belongs to this response. The callback hears it, as from Node.
    const cb = rest.find((a) => typeof a === 'function') as ((e: Error) => void) | undefined;
    if (cb !== undefined) process.nextTick(cb, new Error('write after end: the response is complete and waits to be stored'));
    return true;
  }
  this.seeHead();
  this.collect(chunk, rest[0]);
  return this.write.call(this.res, chunk, ...rest) as boolean;
}

/** The connection closed (the capture's 'close' listener) before end(): the ticket is abandoned. */
function capturedClose(this: ResponseCapture): void {
  if (!this.ended) void this.ticket.abandon('connection closed before the response finished');
}

/**
 * The headers to store: those the response has, those given to writeHead, and Content-Encoding
 * as it was when the head passed (not as a later change made it).
 */
function capturedHeaders(c: ResponseCapture, current: Record<string, unknown>): CapturedResponse['headers'] {
  const headers: CapturedResponse['headers'] = {};
  const head = c.headHeaders;
  if (head !== null) for (const k in head) if (k !== 'content-encoding') headers[k] = head[k];
  for (const k in current) if (k !== 'content-encoding') headers[k] = current[k] as CapturedResponse['headers'][string];
  if (c.contentEncoding !== undefined) headers['content-encoding'] = c.contentEncoding;
  return headers;
}

/** A reason phrase Node refuses to write (its `checkInvalidHeaderChar`). */
const INVALID_REASON = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Whether Node's own `end(chunk, encoding)` would throw on this response: a chunk that is neither
 * a string nor bytes (`res.end(42)`, `res.end({})`), a string in an encoding Node does not know
 * (`res.end('x', 'bogus')`, `res.end('x', 1)`; not '' nor 'buffer', which it takes as UTF-8),
 * or — while the head is still to be written — a status code outside 100-999 (Express 4's
 * `res.status()` takes anything: `res.status(err.status)` with no status is `undefined`) or a
 * reason phrase with characters a header cannot hold. Such an end() is no answer: it must throw
 * to its caller at once, as without the capture, not be stored and then thrown where nobody
 * catches it (the held end() ran in a promise callback: an unhandled rejection, the request left
 * hanging).
 */
function refusedByNode(res: ServerResponse, chunk: unknown, encoding: unknown): boolean {
  // Node writes a chunk only when it is truthy (end(0), end('') send nothing), and takes a
  // function as the callback.
  if (chunk && typeof chunk !== 'function') {
    if (typeof chunk === 'string') {
      // Node takes a falsy encoding ('' too) as its default, a function as the callback, and
      // 'buffer' (its streams' own name) as UTF-8; any other must be an encoding it knows: a
      // non-string one (`end('x', 1)`) it refuses as it refuses 'bogus'.
      if (encoding && typeof encoding !== 'function' && encoding !== 'buffer' && !Buffer.isEncoding(encoding as string)) return true;
    } else if (!isBytes(chunk)) return true;
  }
  if (res.headersSent) return false; // the head is built: its status and reason were checked then
  const status = res.statusCode | 0; // as writeHead() reads it
  if (status < 100 || status > 999) return true;
  const reason = res.statusMessage as unknown;
  return typeof reason === 'string' && INVALID_REASON.test(reason);
}

function capturedEnd(this: ResponseCapture, chunk?: unknown, ...rest: unknown[]): ServerResponse {
  const res = this.res;
  if (this.held) {
    // A second end(): its callback runs when the held response has gone out, as Node's would.
    const cb = [chunk, ...rest].find((a) => typeof a === 'function') as (() => void) | undefined;
    if (cb !== undefined) res.once('finish', () => cb());
    return res;
  }
  if (this.ended) return this.end.call(res, chunk, ...rest) as ServerResponse;
  // Node's end() throws here, before anything goes out: let it, to the caller (the handler's
  // error then reaches the app's error handler, whose answer is captured as any other).
  if (refusedByNode(res, chunk, rest[0])) return this.end.call(res, chunk, ...rest) as ServerResponse;
  // Its 'close' listener stays (it does nothing once ended): removing it cost more than it saves.
  this.ended = true;
  this.seeHead();
  this.collect(chunk, rest[0]);
  // getHeaders() builds a new object: nothing below changes it, and it is the snapshot.
  const current = res.getHeaders();
  const captured: CapturedResponse = {
    // The status as Node writes it (`| 0`, as writeHead() does): Express 4's res.status('201')
    // or 201.5 sends 201, and a stored "201" was no stored response to a later read.
    status: res.statusCode | 0,
    headers: capturedHeaders(this, current),
    body: this.over ? null : this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks),
  };
  this.chunks = [];
  const end = this.end;
  if (this.ticket.storeAfterSend) {
    // Sent now; stored (and the key freed) right after. The lock stays held until then, so a
    // duplicate meanwhile gets 409, never a second run (ADR 0036).
    try {
      end.call(res, chunk, ...rest);
    } catch (e) {
      // This end() failed (its throw goes to the caller): nothing is stored, the key is freed,
      // and what the caller sends next passes through (ended stays set).
      void this.ticket.abandon('the response could not be ended');
      throw e;
    }
    void this.ticket.complete(captured);
    return res;
  }
  // Held back: from here on the response is the one captured. Whatever runs meanwhile
  // (Express's final handler after a next(), an error handler) cannot send anything, and what
  // it changes is undone before the held end() goes out.
  this.held = true;
  const status = res.statusCode;
  const statusMessage = res.statusMessage;
  const headerSnapshot = res.headersSent ? null : current;
  void this.ticket.complete(captured).then(() => {
    this.held = false;
    if (headerSnapshot !== null && !res.headersSent) {
      restoreHeaders(res, headerSnapshot);
      res.statusCode = status;
      res.statusMessage = statusMessage;
    }
    try {
      end.call(res, chunk, ...rest);
    } catch {
      // Checked above, so not expected; but a throw here has no caller to reach (an unhandled
      // rejection) and would leave the client waiting: end the exchange instead.
      res.destroy();
    }
  });
  return res;
}

/**
 * Puts the response's headers back to `snapshot` (what getHeaders() gave when end() was held),
 * touching only what changed meanwhile: usually nothing did, and setHeader() checks every name
 * and value it is given.
 */
function restoreHeaders(res: ServerResponse, snapshot: Record<string, unknown>): void {
  const names = res.getHeaderNames();
  let same = names.length === Object.keys(snapshot).length;
  if (same) {
    for (const name of names) {
      // getHeaders() copies the header map, not the values: an unchanged header is the same value.
      if (res.getHeader(name) !== snapshot[name]) {
        same = false;
        break;
      }
    }
  }
  if (same) return;
  for (const name of names) if (!(name in snapshot)) res.removeHeader(name);
  for (const name in snapshot) {
    const value = snapshot[name];
    if (value !== undefined && res.getHeader(name) !== value) res.setHeader(name, value as string | number | readonly string[]);
  }
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
  // The replaced methods are only ever called with the response as `this` (Method.call(res, ...)).
  // eslint-disable-next-line @typescript-eslint/unbound-method
  const { writeHead, write, end } = res;
  const c = new ResponseCapture(res, ticket, limit, writeHead as Method, write as Method, end as Method);
  res.writeHead = capturedWriteHead.bind(c);
  res.write = capturedWrite.bind(c) as ServerResponse['write'];
  res.end = capturedEnd.bind(c) as ServerResponse['end'];
  // The capture's state is kept off the response: a property added to it per request costs a map
  // transition there (about 2 µs in the app's profile, ADR 0082).
  res.on('close', c.onClose);
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

/** A Node request as the core sees it (describeRequest): methods on a prototype, nothing made per read. */
class NodeRequest<Req extends IncomingMessage> implements DedupeRequest<Req> {
  readonly method: string;
  readonly routeLabel: string | undefined;
  constructor(
    readonly raw: Req,
    readonly route: string,
    readonly body: unknown,
    private readonly ip: string | undefined | (() => string | undefined),
    routeLabel: string | undefined,
  ) {
    this.method = raw.method ?? 'GET';
    this.routeLabel = routeLabel;
  }

  header(name: string): string | undefined {
    const v = this.raw.headers[name];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  headerLines(name: string): number {
    return headerLineCount(this.raw.rawHeaders, name);
  }

  /** Read only when an event or a log line names it (Express's `req.ip` walks the forwarding chain). */
  get clientAddress(): string | undefined {
    const ip = this.ip;
    return (typeof ip === 'function' ? ip() : ip) ?? this.raw.socket.remoteAddress;
  }

  get userAgent(): string | undefined {
    return this.raw.headers['user-agent'];
  }
}

/**
 * Describes a Node/Express request for the core. `route` is the matched pattern when known;
 * `routeLabel` names it in the metrics when `route` is a concrete path. `ip` is the client's
 * address (else the socket's), or a function giving it when first needed.
 */
export function describeRequest<Req extends IncomingMessage>(req: Req, route: string, body: unknown, ip: string | undefined | (() => string | undefined), routeLabel?: string): DedupeRequest<Req> {
  return new NodeRequest(req, route, body, ip, routeLabel);
}
