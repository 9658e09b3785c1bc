/**
 * Keys: the Idempotency-Key header value (checked, sf-string quotes removed) or a fingerprint
 * of chosen request fields, scoped by method, route and tenant, hashed with SHA-256. Only the
 * hash reaches the grid.
 */
import * as crypto from 'node:crypto';

/**
 * A value's canonical text, hashed for keys and payload fingerprints. A JSON value is its JSON
 * with object keys sorted — the text, hence the digest, of every earlier release, so stored
 * records still match after an upgrade. What JSON cannot hold gets a form no JSON value has:
 * `NaN`, `Infinity`, `-Infinity` and a bigint as `5n`, bare (they were the strings "NaN" or
 * "5n", and compared equal to them). Unchanged, as raw bodies and Dates reach it from parsers and
 * handlers alike: bytes (Buffer, typed arrays, DataView) are the string "b:" and their hex, a Date
 * its ISO text (as JSON.stringify writes it), `undefined` an absent field or, in an array, null.
 */
export function canonicalJson(value: unknown): string {
  const seen = new Set<object>();
  const walk = (v: unknown): string => {
    if (v === null || v === undefined) return 'null';
    switch (typeof v) {
      case 'string':
        return JSON.stringify(v);
      case 'number':
        // -0 is written 0, as JSON writes it. NaN and the infinities are bare words (not JSON):
        // no string, number or null has that text.
        return Number.isFinite(v) ? JSON.stringify(v) : String(v);
      case 'boolean':
        return v ? 'true' : 'false';
      case 'bigint':
        // Digits and an n: no JSON number ends with a letter, and a string is quoted.
        return `${v.toString()}n`;
      case 'object':
        break;
      default:
        // A function or a symbol carries nothing that identifies a request.
        throw new TypeError(`cannot fingerprint a ${typeof v}`);
    }
    const o = v;
    if (ArrayBuffer.isView(o)) return JSON.stringify(`b:${Buffer.from(o.buffer, o.byteOffset, o.byteLength).toString('hex')}`);
    if (o instanceof Date) return JSON.stringify(o.toISOString());
    // These have no enumerable own fields: each would hash as "{}", whatever it holds, and every
    // request would get the same key.
    if (o instanceof Map || o instanceof Set || o instanceof WeakMap || o instanceof WeakSet || o instanceof Promise || typeof (o as { then?: unknown }).then === 'function') {
      throw new TypeError(`cannot fingerprint a ${o.constructor?.name ?? 'value'} (its contents are not enumerable fields)`);
    }
    // Refused likewise: a boxed primitive (new Number(5) hashes as "{}", a String as its indexes)
    // and a class instance without fields (a URL, a RegExp, an Error, an ArrayBuffer, one with
    // getters only), each "{}" whatever it holds. A class instance with fields is its fields.
    if (o instanceof Number || o instanceof String || o instanceof Boolean || o instanceof BigInt || o instanceof Symbol) {
      throw new TypeError(`cannot fingerprint a boxed ${typeof o.valueOf()} (pass the primitive)`);
    }
    if (!Array.isArray(o)) {
      // Plain: no prototype, or one without its own (Object.prototype of this realm or another).
      const proto = Object.getPrototypeOf(o) as object | null;
      if (proto !== null && Object.getPrototypeOf(proto) !== null && Object.keys(o).length === 0) {
        throw new TypeError(`cannot fingerprint a ${o.constructor?.name ?? 'value'} (it has no enumerable fields)`);
      }
    }
    if (seen.has(o)) throw new TypeError('cannot fingerprint a cyclic value');
    seen.add(o);
    let out: string;
    if (Array.isArray(o)) {
      out = `[${o.map(walk).join(',')}]`;
    } else {
      const rec = o as Record<string, unknown>;
      const keys = Object.keys(rec)
        .filter((k) => rec[k] !== undefined)
        .sort();
      out = `{${keys.map((k) => `${JSON.stringify(k)}:${walk(rec[k])}`).join(',')}}`;
    }
    seen.delete(o);
    return out;
  };
  return walk(value);
}

/** One-shot hashing (Node ≥ 20.12) costs about half of a Hash object per call; same digest. */
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'base64url') => string }).hash;

export function sha256(text: string): string {
  return oneShot !== undefined ? oneShot('sha256', text, 'base64url') : crypto.createHash('sha256').update(text).digest('base64url');
}

/** The sf-string serialisation of a key (RFC 8941 section 4.1.6): what a conforming client sends. */
export function serializeSfString(key: string): string {
  return `"${key.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * The Idempotency-Key header value as a key, or why it is not one (answered 400).
 *
 * draft-ietf-httpapi-idempotency-key-header-07 defines the field as `sf-string` (RFC 8941 section
 * 3.3.3), parsed strictly here (section 4.2.5): a quoted key holds printable ASCII (0x20-0x7E),
 * `\"` and `\\` are its only escapes, and nothing may follow the closing quote — no parameters
 * (the draft's ABNF is a bare sf-string, not an Item with parameters) and no trailing bytes. A value
 * that does not start with a quote is accepted as the key itself when it is printable ASCII
 * (most clients send a bare UUID); `"abc"` and `abc` are the same key.
 */
export function checkHeaderKey(raw: string, maxLength: number): { key: string } | { error: string } {
  // Only optional whitespace (SP, HTAB) around a field value is not part of it. Trimmed by a scan
  // from each end: the regular expression /^[ \t]+|[ \t]+$/ took time quadratic in a run of
  // spaces inside the value (tried from each of its positions): 110 ms of blocked event loop for
  // one 16 KB header, seconds with a larger maxHeaderSize.
  let from = 0;
  let to = raw.length;
  while (from < to && isOws(raw.charCodeAt(from))) from++;
  while (to > from && isOws(raw.charCodeAt(to - 1))) to--;
  const v = from === 0 && to === raw.length ? raw : raw.slice(from, to);
  let key: string;
  if (v.startsWith('"')) {
    let out = '';
    let i = 1;
    for (;;) {
      if (i >= v.length) return { error: 'quoted key has no closing quote' };
      const c = v.charCodeAt(i);
      if (c === 0x5c) {
        const next = v[i + 1];
        if (next !== '"' && next !== '\\') {
          return { error: next === undefined ? 'quoted key ends with a lone backslash' : 'invalid escape in quoted key: only \\" and \\\\ are allowed' };
        }
        out += next;
        i += 2;
        continue;
      }
      if (c === 0x22) {
        i++;
        break;
      }
      if (c < 0x20 || c > 0x7e) return { error: 'quoted key must be printable ASCII' };
      out += v[i];
      i++;
    }
    if (i < v.length) {
      return {
        error: v[i] === ';' ? 'parameters are not allowed on an Idempotency-Key (it is a bare sf-string)' : 'unexpected characters after the closing quote of the key',
      };
    }
    key = out;
  } else {
    key = v;
    if (key.length > 0 && !/^[\x20-\x7e]+$/.test(key)) return { error: 'key must be printable ASCII' };
  }
  if (key.length === 0) return { error: 'key is empty' };
  if (key.length > maxLength) return { error: `key is longer than ${maxLength} characters` };
  return { key };
}

/** SP or HTAB: the optional whitespace around a field value (RFC 9110 section 5.6.3). */
function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

export interface Scope {
  method: string;
  route: string;
  tenant: string | undefined;
}

/** The grid-side key hash for a scoped key. `kind` separates header keys from fingerprints. */
export function scopedKeyHash(scope: Scope, kind: 'h' | 'f', material: string): string {
  // An array of strings and null: JSON.stringify writes exactly what canonicalJson would (a
  // property test holds them equal), without its per-call walk.
  return sha256(JSON.stringify([kind, scope.method.toUpperCase(), scope.route, scope.tenant ?? null, material]));
}

/** Hash of a request payload, compared on replay (same key, different payload → 422). */
export function payloadHash(payload: unknown): string {
  return sha256(canonicalJson(payload));
}
