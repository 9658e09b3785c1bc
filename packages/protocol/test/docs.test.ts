/**
 * docs/protocol.md against the code, as someone writing a client in another language reads it.
 * Every table is parsed and compared with the constants and validators of @gridlink/protocol:
 * MAGIC, versions, the default port, frame kinds, header sizes and byte offsets, flags, features,
 * frame size limits, the golden frames (encoded and decoded byte for byte), every op with its
 * request and result fields (names, types, ranges, optionality: checked by feeding the
 * validators what the table says, and by watching which fields they read), the partition map,
 * pushes, error codes with their retryability, and the error numbers the prose cites. A change
 * to either side fails here.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encode } from '@msgpack/msgpack';
import { partitionOfBytes, murmur3x86_32 } from '@gridlink/affinity';
import * as protocol from '@gridlink/protocol';
import {
  ALL_FEATURES,
  checkErrorPayload,
  checkHandshakeError,
  checkHandshakeOk,
  checkHandshakeRequest,
  checkPushPayload,
  decodeFrame,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_PORT,
  encodeFrame,
  ERROR_CODES,
  ErrorCode,
  errorCodeInfo,
  Feature,
  FrameDecoder,
  FrameKind,
  HANDSHAKE_TIMEOUT_MS,
  HEADER_SIZE,
  isRetryableCode,
  MAGIC,
  MAX_CACHE_NAME_BYTES,
  MAX_ERROR_MESSAGE_BYTES,
  MAX_LOCK_DURATION_MS,
  MAX_LOCK_OWNER,
  MAX_MAX_FRAME_SIZE,
  MAX_SCAN_COUNT,
  MAX_TTL_MS,
  MIN_MAX_FRAME_SIZE,
  MIN_PROTOCOL_VERSION,
  MUTATING_OPS,
  negotiateFeatures,
  negotiateVersion,
  Op,
  PARTITION_LOSS_POLICIES,
  PROTOCOL_VERSION,
  ProtocolConfigError,
  ProtocolError,
  PushKind,
  RequestFlag,
  ResponseFlag,
  validateRequest,
  validateResponse,
  type Frame,
} from '@gridlink/protocol';

const md = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');

/** The text of the section whose heading line is `heading`, up to the next heading of its level or above. */
function section(heading: string): string {
  const start = md.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`docs/protocol.md has no section ${heading}`);
  const level = /^#+/.exec(heading)![0].length;
  const rest = md.slice(start + heading.length + 2);
  const next = new RegExp(`\\n#{1,${level}} \\d`).exec(rest);
  return next === null ? rest : rest.slice(0, next.index);
}

/** A markdown table's body rows as trimmed cells; the header is matched on its first cells. */
function table(text: string, headerCells: string[]): string[][] {
  const lines = text.split('\n');
  const split = (line: string): string[] => line.slice(1, -1).split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
  const at = lines.findIndex((l) => l.startsWith('|') && headerCells.every((h, i) => split(l)[i] === h));
  if (at < 0) throw new Error(`no table starting | ${headerCells.join(' | ')} |`);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(split(line));
  }
  return rows;
}

/** The `code` spans of a markdown cell or paragraph. */
const codeSpans = (s: string): string[] => [...s.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
const unquote = (s: string): string => s.replace(/`/g, '');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const bin = Uint8Array.of(0xaa);

/** `2³¹−1`, `2⁵²`, `2^32 − 1`, `4 194 304`, `0x01020304`, `2^32+5` as numbers. */
function num(text: string): number {
  const digit = (c: string): string => String('⁰¹²³⁴⁵⁶⁷⁸⁹'.indexOf(c));
  const t = text
    .replace(/[\s ]/g, '')
    .replace(/−/g, '-')
    .replace(/[⁰¹²³⁴⁵⁶⁷⁸⁹]+/g, (sup) => '^' + [...sup].map(digit).join(''));
  const m = /^(\d+)\^(\d+)([+-]\d+)?$/.exec(t);
  if (m !== null) return Number(m[1]) ** Number(m[2]) + Number(m[3] ?? 0);
  const n = Number(t);
  if (!Number.isFinite(n)) throw new Error(`not a number: ${text}`);
  return n;
}

/** Whether `f` throws a ProtocolError with wire code `code`. */
function refuses(f: () => unknown, code: number = ErrorCode.BAD_REQUEST): boolean {
  try {
    f();
    return false;
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return err.wireCode === code;
  }
}

/**
 * Runs `check` on `value` with every map in it (nested maps and maps in arrays included) wrapped
 * in a Proxy, and returns the field names the check read: the fields it knows, since a validator
 * looks up each of its fields (and, when strict, each field present).
 */
function fieldsRead(value: Record<string, unknown>, check: (v: unknown) => void): Map<string, Set<string>> {
  const read = new Map<string, Set<string>>();
  const wrap = (v: unknown, path: string): unknown => {
    if (Array.isArray(v)) return v.map((x) => wrap(x, `${path}[]`));
    if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return v;
    const names = read.get(path) ?? new Set<string>();
    read.set(path, names);
    const target = Object.fromEntries(Object.entries(v).map(([k, x]) => [k, wrap(x, path === '' ? k : `${path}.${k}`)]));
    return new Proxy(target, {
      get(t, k, r) {
        if (typeof k === 'string') names.add(k);
        return Reflect.get(t, k, r) as unknown;
      },
    });
  };
  check(wrap(value, ''));
  return read;
}

// ---------------------------------------------------------------------------------------------
// The field notation of the tables: `name: type`, `name: type?`, ranges, bounded strings.

interface FieldDoc {
  name: string;
  optional: boolean;
  /** Values the field accepts and values that make the payload BAD_REQUEST. */
  valid: unknown[];
  invalid: unknown[];
}

/** A string of exactly `bytes` UTF-8 bytes, mostly 2-byte characters. */
const utf8Of = (bytes: number): string => 'é'.repeat(Math.floor(bytes / 2)) + 'a'.repeat(bytes % 2);

const CACHE_NAME = (() => {
  const m = /\*\*Cache names\*\* are strings of 1\.\.(\d+) UTF-8 bytes/.exec(md);
  if (m === null) throw new Error('docs/protocol.md no longer states the cache name rule');
  return Number(m[1]);
})();
const OWNER_CHARS = (() => {
  const m = /`owner`, an\s+ASCII string of 1\.\.(\d+) characters/.exec(md);
  if (m === null) throw new Error('docs/protocol.md no longer states the lock owner rule');
  return Number(m[1]);
})();

function stringBounds(min: number, max: number): Pick<FieldDoc, 'valid' | 'invalid'> {
  const valid = [utf8Of(Math.max(min, 1)), utf8Of(max)];
  const invalid: unknown[] = [utf8Of(max + 1), 7, bin];
  if (min === 0) valid.push('');
  else invalid.push('');
  return { valid, invalid };
}

/** What a type of the tables accepts and refuses. `meaning` supplies string bounds. */
function typeValues(name: string, type: string, meaning = ''): Pick<FieldDoc, 'valid' | 'invalid'> {
  const t = type.replace(/\s+/g, ' ').trim();
  let m: RegExpExecArray | null;
  if ((m = /^(\d+)\.\.(.+)$/.exec(t)) !== null) {
    const lo = Number(m[1]);
    const hi = num(m[2]!);
    return { valid: [lo, hi], invalid: [lo - 1, hi + 1, 1.5] };
  }
  if ((m = /^u(8|16|32)(?: ≥ (\d+))?$/.exec(t)) !== null) {
    const max = 2 ** Number(m[1]) - 1;
    const lo = Number(m[2] ?? 0);
    return { valid: [lo, max], invalid: [lo - 1, max + 1, 1.5, '1'] };
  }
  switch (t) {
    case 'bin':
      return { valid: [bin, new Uint8Array(0)], invalid: ['aa', null, [0xaa]] };
    case 'bin | nil':
      return { valid: [bin, null], invalid: ['aa', [0xaa]] };
    case 'uint':
      return { valid: [0, 2 ** 53 - 1], invalid: [-1, 1.5, 2 ** 53, '1', null] };
    case 'uint ≥ 1':
      return { valid: [1, 2 ** 53 - 1], invalid: [0, -1, 1.5, 2 ** 53] };
    case 'int':
      return { valid: [-(2 ** 53 - 1), 0, 2 ** 53 - 1], invalid: [1.5, 2 ** 53, -(2 ** 53), '1'] };
    case 'bool':
      return { valid: [true, false], invalid: [1, null, 'true'] };
    case '[bin]':
      return { valid: [[], [bin, bin]], invalid: [[null], bin, ['aa']] };
    case '[bin | nil]':
      return { valid: [[], [bin, null]], invalid: [['aa'], bin] };
    case '[[bin key, bin value]]':
      return { valid: [[], [[bin, bin]]], invalid: [[[bin]], [[bin, null]], [bin]] };
    case 'string': {
      if (name === 'owner') {
        return { valid: ['o', 'x'.repeat(OWNER_CHARS)], invalid: ['', 'x'.repeat(OWNER_CHARS + 1), 'é', 7] };
      }
      if ((m = /(\d+)\.\.(\d+) UTF-8 bytes/.exec(meaning)) !== null) return stringBounds(Number(m[1]), Number(m[2]));
      if ((m = /≤ (\d+) UTF-8 bytes/.exec(meaning)) !== null) return stringBounds(0, Number(m[1]));
      return { valid: ['', 'text'], invalid: [7, bin] };
    }
    default:
      throw new Error(`docs/protocol.md uses a type this test does not know: ${type} (field ${name})`);
  }
}

/** `name: type?` / `name: type` / a bare name, whose type the page gives once for all ops. */
function fieldSpan(span: string, rest: string, meaning = ''): FieldDoc {
  const m = /^(\w+)(?::\s*(.+))?$/.exec(span);
  if (m === null) throw new Error(`not a field: ${span}`);
  const name = m[1]!;
  let type = m[2];
  // "`cache` is always `string` (a cache name) and `key`/`seq` are always `bin`/`uint`."
  if (name === 'cache' && (type === undefined || type === 'string')) return { name, optional: false, ...stringBounds(1, CACHE_NAME) };
  if (type === undefined) {
    if (name === 'key') type = 'bin';
    else if (name === 'seq') type = 'uint';
    else throw new Error(`field ${name} has no type`);
  }
  const optional = type.endsWith('?');
  if (optional) type = type.slice(0, -1);
  const range = /^\s*\((\d+)\.\.(\d+)\)/.exec(rest);
  if (range !== null) type = `${range[1]}..${range[2]}`;
  return { name, optional, ...typeValues(name, type, meaning) };
}

/** The items of a cell, split at the commas outside code spans and parentheses. */
function items(cell: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let code = false;
  let cur = '';
  for (const c of cell) {
    if (c === '`') code = !code;
    else if (!code && c === '(') depth++;
    else if (!code && c === ')') depth--;
    if (c === ',' && !code && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (cur.trim() !== '') out.push(cur.trim());
  return out;
}

/** The fields of a request or result cell of the op table (`*(empty map)*`: none). */
function cellFields(cell: string, lockResult: string): FieldDoc[] {
  const text = cell.replace(/^LockResult( \+ )?/, (_, plus: string | undefined) => lockResult + (plus === undefined ? '' : ', '));
  if (text === '*(empty map)*') return [];
  return items(text).map((item) => {
    const m = /^`([^`]+)`(.*)$/.exec(item);
    if (m === null) throw new Error(`not a field item: ${item}`);
    if (m[1]!.startsWith('config:')) return configField(m[1]!, m[2]!);
    return fieldSpan(m[1]!, m[2]!);
  });
}

/** CACHE_CREATE's `config: { ttlMs: uint?, ... }` (`READ_WRITE_SAFE`, ... or `IGNORE`). */
function configField(span: string, rest: string): FieldDoc {
  const inner = /^config: \{(.*)\}$/.exec(span)![1]!;
  const fields = items(inner.split(', ').map((s) => `\`${s.trim()}\``).join(', ')).map((i) => fieldSpan(unquote(i), ''));
  const policies = codeSpans(rest);
  expect(policies).toEqual([...PARTITION_LOSS_POLICIES]);
  const full = Object.fromEntries(fields.map((f) => [f.name, f.name === 'partitionLossPolicy' ? policies[0] : f.valid[0]]));
  return {
    name: 'config',
    optional: false,
    valid: [{}, full, ...policies.map((p) => ({ partitionLossPolicy: p }))],
    invalid: [{ unknownField: 1 }, { partitionLossPolicy: 'NOT_A_POLICY' }, ...fields.flatMap((f) => f.invalid.filter((v) => typeof v !== 'string').map((v) => ({ [f.name]: v }))), null],
  };
}

/** A payload holding every documented field at its first valid value. */
const fullPayload = (fields: FieldDoc[]): Record<string, unknown> =>
  Object.fromEntries(
    fields.map((f) => [f.name, f.name === 'config' ? (f.valid[1]) : f.valid.find((v) => v !== null && !(Array.isArray(v) && v.length === 0)) ?? f.valid[0]]),
  );

/**
 * Checks a documented payload against a validator: every field is read by it (and no other),
 * each documented value is accepted, each wrong one refused, a required field missing refused, an
 * optional one missing accepted, and (for strict payloads) an unknown field refused.
 */
function checkPayload(what: string, fields: FieldDoc[], check: (p: unknown) => void, strict: boolean, base: Record<string, unknown> = {}): void {
  const full = { ...fullPayload(fields), ...base };
  expect(() => check(full), what).not.toThrow();
  const known = new Set(fields.map((f) => f.name));
  expect([...(fieldsRead(full, check).get('') ?? [])].filter((k) => !known.has(k)).sort(), `${what}: fields the code knows and the docs do not`).toEqual([]);
  for (const f of fields) {
    for (const v of f.valid) expect(() => check({ ...full, [f.name]: v }), `${what}.${f.name} = ${String(v)}`).not.toThrow();
    for (const v of f.invalid) expect(refuses(() => check({ ...full, [f.name]: v })), `${what}.${f.name} = ${String(v)} refused`).toBe(true);
    const { [f.name]: _, ...without } = full;
    if (f.optional) expect(() => check(without), `${what} without ${f.name}`).not.toThrow();
    else expect(refuses(() => check(without)), `${what} without ${f.name} refused`).toBe(true);
  }
  expect(refuses(() => check({ ...full, notAField: 1 })), `${what} with an unknown field`).toBe(strict);
}

// ---------------------------------------------------------------------------------------------

describe('docs/protocol.md: versions, MAGIC, port, timeouts', () => {
  it('is the document of PROTOCOL_VERSION, the only version (MIN_PROTOCOL_VERSION the same)', () => {
    expect(Number(/^# The gridlink wire protocol \(version (\d+)\)/.exec(md)![1])).toBe(PROTOCOL_VERSION);
    expect(Number(/This document is version \*\*(\d+)\*\*, the only version so far/.exec(md)![1])).toBe(PROTOCOL_VERSION);
    expect(MIN_PROTOCOL_VERSION).toBe(PROTOCOL_VERSION);
  });

  it('gives the MAGIC bytes and the default port', () => {
    const m = /the 4 \*\*MAGIC\*\* bytes `([0-9A-F ]+)` \(ASCII `(\w+)`\)/.exec(md)!;
    expect(hex(MAGIC)).toBe(m[1]!.replace(/ /g, '').toLowerCase());
    expect(Buffer.from(MAGIC).toString('ascii')).toBe(m[2]);
    expect(Number(/default port \*\*(\d+)\*\*/.exec(md)![1])).toBe(DEFAULT_PORT);
  });

  it("gives HANDSHAKE_TIMEOUT_MS as the handshake timeout's default", () => {
    const rows = table(section('## 1. Connection lifecycle'), ['timeout', 'default', 'what happens']);
    const row = rows.find((r) => r[0] === 'handshake timeout')!;
    expect(row[2]).toContain('`HANDSHAKE_TIMEOUT_MS` in the package');
    expect(num(row[1]!.replace(' ms', ''))).toBe(HANDSHAKE_TIMEOUT_MS);
    expect(row[2]).toContain(`code ${ErrorCode.HANDSHAKE_TIMEOUT} \`HANDSHAKE_TIMEOUT\``);
  });
});

describe('docs/protocol.md §1.1: handshake', () => {
  const text = section('### 1.1 Handshake');

  it('HANDSHAKE: the fields, types, bounds and required-ness checkHandshakeRequest applies', () => {
    const rows = table(text, ['field', 'type', 'required', 'meaning']);
    const fields = rows.map(([field, type, required, meaning]) => ({
      name: unquote(field!),
      optional: required === 'no',
      ...typeValues(unquote(field!), type!, meaning),
    }));
    expect(rows.every((r) => r[2] === 'yes' || r[2] === 'no')).toBe(true);
    // "Handshake maps may carry fields this version does not know; receivers ignore them."
    checkPayload('HANDSHAKE', fields, checkHandshakeRequest, false, { minVersion: 0, maxVersion: 0xffff });
    expect(text).toContain('(`minVersion <= maxVersion`)');
    const full = fullPayload(fields);
    expect(refuses(() => checkHandshakeRequest({ ...full, minVersion: 2, maxVersion: 1 }))).toBe(true);
  });

  it('HANDSHAKE_OK: the fields, types and bounds checkHandshakeOk applies', () => {
    const rows = table(text, ['field', 'type', 'meaning']).filter((r) => r[0] !== '`code`');
    const fields = rows.map(([field, type, meaning]) => {
      const optional = type!.endsWith(', optional');
      return { name: unquote(field!), optional, ...typeValues(unquote(field!), type!.replace(', optional', ''), meaning) };
    });
    expect(fields.map((f) => f.name)).toContain('idleTimeoutMs');
    checkPayload('HANDSHAKE_OK', fields, checkHandshakeOk, false);
  });

  it('HANDSHAKE_ERROR: { code: u16, message: string }', () => {
    const m = /`HANDSHAKE_ERROR` \(node → client, then the node closes\): `\{ (.*) \}`, the\s+message (at most \d+ UTF-8 bytes)/.exec(text)!;
    const fields = m[1]!.split(', ').map((s) => fieldSpan(s, '', s.startsWith('message') ? m[2]!.replace('at most', '≤') : ''));
    expect(fields.map((f) => f.name)).toEqual(['code', 'message']);
    expect(fields[1]!.valid).toContain(utf8Of(MAX_ERROR_MESSAGE_BYTES));
    checkPayload('HANDSHAKE_ERROR', fields, checkHandshakeError, false);
    // The codes the page calls typical are what their names say.
    const typical = /`code` from the error table \(section 5\), typically (.*?)\. /.exec(text.replace(/\s+/g, ' '))![1]!;
    const cited = [...typical.matchAll(/(\d+) `([A-Z_]+)`/g)];
    expect(cited.length).toBeGreaterThanOrEqual(5);
    for (const m of cited) expect(ErrorCode[m[2] as keyof typeof ErrorCode], m[2]).toBe(Number(m[1]));
  });

  it('version negotiation picks the highest common version, none when disjoint', () => {
    expect(negotiateVersion({ minVersion: 1, maxVersion: 9 }, { min: 1, max: 3 })).toBe(3);
    expect(negotiateVersion({ minVersion: 2, maxVersion: 2 }, { min: 1, max: 3 })).toBe(2);
    expect(negotiateVersion({ minVersion: 4, maxVersion: 9 }, { min: 1, max: 3 })).toBeNull();
    expect(negotiateVersion({ minVersion: MIN_PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION })).toBe(PROTOCOL_VERSION);
  });

  it('the feature table is Feature, every bit of it; the bits in force are the intersection', () => {
    const rows = table(text, ['bit', 'name', 'meaning']);
    const documented = Object.fromEntries(rows.map((r) => [unquote(r[1]!), 1 << Number(/^`1 << (\d+)`$/.exec(r[0]!)![1])]));
    expect(documented).toEqual({ ...Feature });
    expect(ALL_FEATURES).toBe(Object.values(Feature).reduce((a, b) => a | b, 0));
    expect(negotiateFeatures(Feature.LOCKS | Feature.TOPOLOGY_PUSH, Feature.LOCKS | Feature.LOCK_GET_IF_ABSENT)).toBe(Feature.LOCKS);
    expect(negotiateFeatures(0xffffffff)).toBe(ALL_FEATURES);
  });
});

describe('docs/protocol.md §2: framing', () => {
  const text = section('## 2. Framing');

  it('the frame kind table is FrameKind and HEADER_SIZE, its header fields adding up', () => {
    const rows = table(text, ['kind', 'name']);
    expect(Object.fromEntries(rows.map((r) => [unquote(r[1]!), Number(r[0])]))).toEqual({ ...FrameKind });
    const size = { u8: 1, u16: 2, u32: 4, u64: 8 } as Record<string, number>;
    for (const [kind, , header, bytes] of rows) {
      const fields = codeSpans(header!).map((s) => size[s.split(': ')[1]!]!);
      expect(1 + fields.reduce((a, b) => a + b, 0), `kind ${kind}`).toBe(Number(bytes));
      expect(HEADER_SIZE[Number(kind) as FrameKind]).toBe(Number(bytes));
    }
  });

  it('the byte offsets are where encodeFrame writes each field', () => {
    const block = text.split('Byte offsets within a frame')[1]!.split('```\n')[1]!;
    const payload = {};
    const frames: Record<string, Frame> = {
      REQUEST: { kind: FrameKind.REQUEST, op: 0x0102 as Op, id: 0x03040506, flags: 0x07, payload: payload },
      RESPONSE: { kind: FrameKind.RESPONSE, id: 0x03040506, flags: 0x07, topologyVersion: 0x000b0c0d_0e0f1011, payload },
      PUSH: { kind: FrameKind.PUSH, push: 0x0102 as PushKind, topologyVersion: 0x000b0c0d_0e0f1011, payload: payload as never },
      'HANDSHAKE*': { kind: FrameKind.HANDSHAKE_ERROR, body: { code: 1, message: '' } },
    };
    const lines = block.trim().split('\n');
    expect(lines.map((l) => l.split(' ')[0])).toEqual(Object.keys(frames));
    for (const line of lines) {
      const [name, ...rest] = line.split(/\s+/);
      const frame = frames[name!]!;
      const bytes = encodeFrame(frame);
      const segments = rest.join(' ').split(' | ');
      for (const seg of segments) {
        const m = /^(\d+)(?:\.\.(\d+)?)? (\w+)(?:=(\d+))?$/.exec(seg)!;
        expect(m, seg).not.toBeNull();
        const from = Number(m[1]);
        const to = m[2] === undefined ? (seg.includes('..') ? bytes.length - 1 : from) : Number(m[2]);
        const field = m[3]!;
        const slice = bytes.subarray(from, to + 1);
        const be = slice.reduce((a, b) => a * 256 + b, 0);
        if (field === 'length') expect(be, `${name} ${seg}`).toBe(bytes.length - 4);
        else if (field === 'kind') {
          expect(to).toBe(from);
          if (m[4] !== undefined) expect(be).toBe(Number(m[4]));
          expect(be).toBe(frame.kind);
        } else if (field === 'payload') {
          expect(to, `${name} ${seg}`).toBe(bytes.length - 1);
          expect(from).toBe(4 + HEADER_SIZE[frame.kind]);
          expect(hex(slice)).toBe(hex(encode('body' in frame ? frame.body : frame.payload)));
        } else expect(be, `${name} ${seg}`).toBe((frame as unknown as Record<string, number>)[field]);
      }
    }
  });

  it('frame size limits: the default, the range, and what the receiver does with an oversized frame', () => {
    const m = /\*\*4 MiB\*\* = ([\d ]+), `DEFAULT_MAX_FRAME_SIZE`/.exec(text)!;
    expect(num(m[1]!)).toBe(DEFAULT_MAX_FRAME_SIZE);
    expect(DEFAULT_MAX_FRAME_SIZE).toBe(4 * 1024 * 1024);
    const range = /between (\d+)\s+and ([^)]+)\)\. Both sides/.exec(text)!;
    expect(num(range[1]!)).toBe(MIN_MAX_FRAME_SIZE);
    expect(num(range[2]!)).toBe(MAX_MAX_FRAME_SIZE);
    expect(() => new FrameDecoder({ maxFrameSize: MIN_MAX_FRAME_SIZE - 1 })).toThrow(ProtocolConfigError);
    expect(() => new FrameDecoder({ maxFrameSize: MAX_MAX_FRAME_SIZE + 1 })).toThrow(ProtocolConfigError);
    expect(new FrameDecoder({ maxFrameSize: MAX_MAX_FRAME_SIZE }).maxFrameSize).toBe(MAX_MAX_FRAME_SIZE);
    expect(new FrameDecoder().maxFrameSize).toBe(DEFAULT_MAX_FRAME_SIZE);

    // Checked as soon as the 4 length bytes arrive (error 14 FRAME_TOO_LARGE).
    expect(text).toContain('(error 14 `FRAME_TOO_LARGE`)');
    const over = Uint8Array.of(0, 0, 1, 1); // length 257
    expect(refuses(() => new FrameDecoder({ maxFrameSize: 256 }).push(over), ErrorCode.FRAME_TOO_LARGE)).toBe(true);
    // A REQUEST over the limit: its 8 header bytes read, the rest skipped, the stream in step.
    const d = new FrameDecoder({ maxFrameSize: 256 });
    const header = Uint8Array.of(0, 0, 1, 1, FrameKind.REQUEST, 0, 10, 0, 0, 0, 9, 0);
    const next = encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 10, flags: 0, payload: {} });
    const got = [...d.pushRequests(header), ...d.pushRequests(new Uint8Array(257 - 8)), ...d.pushRequests(next)];
    expect(got).toEqual([
      { kind: 'oversized-request', op: 10, id: 9, flags: 0, length: 257 },
      { kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 10, flags: 0, payload: {} },
    ]);
    // Any other oversized frame is malformed.
    const push = Uint8Array.of(0, 0, 1, 1, FrameKind.PUSH);
    expect(refuses(() => new FrameDecoder({ maxFrameSize: 256 }).pushRequests(push), ErrorCode.FRAME_TOO_LARGE)).toBe(true);
    // And senders refuse to produce one.
    expect(refuses(() => encodeFrame({ kind: FrameKind.RESPONSE, id: 1, flags: 0, topologyVersion: 0, payload: { value: new Uint8Array(300) } }, { maxFrameSize: 256 }), ErrorCode.FRAME_TOO_LARGE)).toBe(true);
  });

  it('the malformed frames the rules name are refused', () => {
    const decode = (h: string): (() => unknown) => () => decodeFrame(fromHex(h));
    const response = (payload: string): string => {
      const body = '04' + '00000001' + '00' + '0000000000000000' + payload;
      return (body.length / 2).toString(16).padStart(8, '0') + body;
    };
    expect(() => decode(response('80'))()).not.toThrow();
    expect(refuses(decode('00000000'))).toBe(true); // length 0
    expect(refuses(decode(response('')))).toBe(true); // no payload
    expect(refuses(decode(response('8080')))).toBe(true); // bytes after the value
    expect(refuses(decode(response('81')))).toBe(true); // truncated value
    expect(refuses(decode(response('c1')))).toBe(true); // the never-used byte
    expect(refuses(decode('0000000209' + '80'))).toBe(true); // unknown kind
    // topologyVersion: the high 32-bit word below 0x00200000.
    const limit = /the high 32-bit word is below `0x([0-9A-F]+)`/.exec(text)![1]!;
    const withVersion = (hi: number): string => '0000000f' + '04' + '00000001' + '00' + hi.toString(16).padStart(8, '0') + '00000000' + '80';
    expect(refuses(decode(withVersion(parseInt(limit, 16))))).toBe(true);
    expect((decodeFrame(fromHex(withVersion(parseInt(limit, 16) - 1))) as { topologyVersion: number }).topologyVersion).toBe(2 ** 53 - 2 ** 32);
    // Unknown push kinds are not errors.
    expect(decodeFrame(fromHex('0000000c' + '05' + '00ff' + '0000000000000001' + '80'))).toEqual({
      kind: FrameKind.PUSH,
      push: 0xff,
      topologyVersion: 1,
      payload: {},
    });
  });
});

describe('docs/protocol.md §2.1: flags', () => {
  const text = section('### 2.1 Flags');
  const flags = (after: string): Record<string, number> => {
    const rows = table(text.split(after)[1]!, ['bit', 'name', 'meaning']);
    return Object.fromEntries(rows.map((r) => [unquote(r[1]!), 1 << Number(/^`1 << (\d+)`$/.exec(r[0]!)![1])]));
  };

  it('the request flag table is RequestFlag', () => expect(flags('Request flags (`RequestFlag`)')).toEqual({ ...RequestFlag }));
  it('the response flag table is ResponseFlag', () => expect(flags('Response flags (`ResponseFlag`)')).toEqual({ ...ResponseFlag }));
});

// ---------------------------------------------------------------------------------------------
// §2.2: the golden frames, read from their descriptions.

/** `REQUEST op=CACHE_GET(10) id=0x01020304 flags=0 {cache:"c", key:bin[AA]}` as a Frame. */
function describedFrame(label: string): Frame {
  const m = /^(\w+)((?: [\w]+(?:=\S+)?)*?) \{(.*)\}$/.exec(label);
  if (m === null) throw new Error(`cannot read the frame ${label}`);
  const kindName = m[1]! as keyof typeof FrameKind;
  const header: Record<string, number> = {};
  for (const part of m[2]!.trim().split(' ').filter(Boolean)) {
    const [k, v] = part.split('=') as [string, string | undefined];
    if (v === undefined) {
      // A bare name: the push kind.
      header.push = PushKind[k as keyof typeof PushKind];
      continue;
    }
    const named = /^(\w+)\((\d+)\)$/.exec(v);
    if (named !== null) {
      expect(Op[named[1] as keyof typeof Op], v).toBe(Number(named[2]));
      header[k] = Number(named[2]);
    } else if (/^[A-Z_]+$/.test(v)) header[k] = ResponseFlag[v as keyof typeof ResponseFlag];
    else header[k] = num(v);
  }
  const payload: Record<string, unknown> = {};
  for (const item of m[3]!.split(', ')) {
    const [k, v] = item.split(':') as [string, string];
    const b = /^bin\[([0-9A-F]*)\]$/.exec(v);
    payload[k] = v === 'nil' ? null : b !== null ? fromHex(b[1]!) : v.startsWith('"') ? (JSON.parse(v) as string) : num(v);
  }
  const kind = FrameKind[kindName];
  if (kind <= FrameKind.HANDSHAKE_ERROR) return { kind, body: payload } as unknown as Frame;
  return { kind, ...header, payload } as unknown as Frame;
}

describe('docs/protocol.md §2.2: golden frames', () => {
  const text = section('### 2.2 Golden frames');

  it('each frame encodes to the bytes given and decodes back', () => {
    const rows = table(text, ['frame', 'bytes (hex)']);
    expect(rows.length).toBe(4);
    for (const [label, bytes] of rows) {
      const frame = describedFrame(unquote(label!));
      const want = unquote(bytes!).replace(/\s+/g, '');
      expect(hex(encodeFrame(frame)), label).toBe(want);
      expect(decodeFrame(fromHex(want)), label).toEqual(frame);
    }
  });

  it('the fuller set is the number of frames the page says, and holds the vectors §6 names', () => {
    const vectors = JSON.parse(readFileSync(new URL('./vectors/frames.json', import.meta.url), 'utf8')) as { name: string }[];
    expect(vectors.length).toBe(Number(/, (\d+) frames — is in `packages\/protocol\/test\/vectors\/frames\.json`/.exec(text.replace(/\s+/g, ' '))![1]));
    const named = /\(golden vectors ([^)]*)\)/.exec(md.replace(/\s+/g, ' '))![1]!;
    const names = [...named.matchAll(/"([^"]+)"/g)].map((x) => x[1]!.replace(/^… /, 'CACHE_PUT request '));
    expect(names.length).toBe(3);
    for (const n of names) expect(vectors.map((v) => v.name), n).toContain(n);
  });
});

// ---------------------------------------------------------------------------------------------

describe('docs/protocol.md §3: payloads and operations', () => {
  const text = section('## 3. Payloads');
  const opRows = table(text, ['op', 'name', 'mut.', 'request fields', 'result fields']);
  const lockResult = (() => {
    const m = /LockResult is `\{ (.*) \}`/.exec(text)!;
    return m[1]!.split(', ').map((s) => `\`${s}\``).join(', ');
  })();
  const clientOps = Object.entries(Op).filter(([, v]) => v < 100);

  it('the op table lists every client op with its number, and the mutating ones as MUTATING_OPS', () => {
    expect(opRows.map((r) => [unquote(r[1]!), Number(r[0])])).toEqual(clientOps);
    for (const [op, name, mut] of opRows) expect([name, mut === '✓'], name).toEqual([name, MUTATING_OPS.has(Number(op) as Op)]);
  });

  it('names every node-to-node op (code 100 and above) with its number', () => {
    const para = /Codes \*\*100 and above\*\* \(([^)]*)\)/.exec(text.replace(/\s+/g, ' '))![1]!;
    const listed = [...para.matchAll(/`(\w+)` (\d+)/g)].map((m) => [m[1]!, Number(m[2])]);
    expect(listed).toEqual(Object.entries(Op).filter(([, v]) => v >= 100));
  });

  for (const row of opRows) {
    const [op, name, mut, request, result] = row as [string, string, string, string, string];
    const code = Number(op);
    it(`${unquote(name)} (${code}): request fields as validateRequest checks them`, () => {
      const fields = cellFields(request, lockResult);
      // `ack: uint?` on every mutation (left out of the table, section 6).
      if (mut === '✓') fields.push({ name: 'ack', optional: true, ...typeValues('ack', 'uint') });
      const check = (p: unknown): void => validateRequest({ kind: FrameKind.REQUEST, op: code as Op, id: 1, flags: 0, payload: p });
      checkPayload(unquote(name), fields, check, true);
      if (code === Op.CACHE_CREATE) {
        // The config map's own fields: those the table gives, no others.
        const config = fields.find((f) => f.name === 'config')!;
        const read = fieldsRead({ cache: 'c', config: config.valid[1] }, check).get('config');
        expect([...read!].sort()).toEqual(Object.keys(config.valid[1] as object).sort());
      }
    });
    if (code === Op.TOPOLOGY) continue;
    it(`${unquote(name)} (${code}): result fields as validateResponse checks them`, () => {
      checkPayload(`${unquote(name)} result`, cellFields(result, lockResult), (p) => validateResponse(code, p), true);
    });
  }

  it('an op code below 100 the code does not define is UNKNOWN_OP (3); peer ops pass unchecked', () => {
    expect(text).toContain('An op code below 100 that the node does not know gets\ncode 3 `UNKNOWN_OP`');
    for (const op of [0, 4, 26, 99]) {
      expect(refuses(() => validateRequest({ kind: FrameKind.REQUEST, op: op as Op, id: 1, flags: 0, payload: {} }), ErrorCode.UNKNOWN_OP)).toBe(true);
    }
    expect(() => validateRequest({ kind: FrameKind.REQUEST, op: Op.PEER_FORWARD, id: 1, flags: 0, payload: [1, 2] as never })).not.toThrow();
  });

  it('the numeric limits in the table are the constants the validators use', () => {
    expect(CACHE_NAME).toBe(MAX_CACHE_NAME_BYTES);
    expect(OWNER_CHARS).toBe(MAX_LOCK_OWNER);
    const row = (n: string): string => opRows.find((r) => r[1] === `\`${n}\``)![3]!;
    expect(row('LOCK_ACQUIRE')).toContain('`leaseMs: 1..2³¹−1`, `waitMs: 0..2³¹−1`');
    expect(num('2³¹−1')).toBe(MAX_LOCK_DURATION_MS);
    // A write's ttlMs: the same bound on every op that takes one, and the prose says so.
    const ttls = opRows.flatMap((r) => [...r[3]!.matchAll(/`ttlMs: ([^`]*)`/g)].map((m) => [unquote(r[1]!), m[1]!]));
    expect(ttls.filter(([op]) => op !== 'CACHE_CREATE').map(([, t]) => t)).toEqual(Array(8).fill('0..2⁵²?'));
    expect(num('2⁵²')).toBe(MAX_TTL_MS);
    expect(text.replace(/\s+/g, ' ')).toContain('At most 2⁵² ms (`MAX_TTL_MS`,');
    expect(Number(/`count: uint` \(1\.\.(\d+)\)/.exec(row('CACHE_SCAN'))![1])).toBe(MAX_SCAN_COUNT);
  });

  it('§3.1: the partition of a key is murmur3_x86_32(key bytes, seed 0) mod P', () => {
    expect(section('### 3.1 Partitions and routing')).toContain('`murmur3_x86_32(key bytes, seed 0) mod P`');
    for (const key of [new Uint8Array(0), Uint8Array.of(5, 1, 0x61), fromHex('0502c3a9')]) {
      for (const p of [1, 271, 1024]) expect(partitionOfBytes(key, p)).toBe(murmur3x86_32(key, 0) % p);
    }
  });

  it('§3.3: PartitionMap and NodeInfo as validateResponse(TOPOLOGY) checks them', () => {
    const s = section('### 3.3 PartitionMap (result of `TOPOLOGY`)');
    const rows = table(s, ['field', 'type', 'meaning']);
    const nodeInfo = /NodeInfo: `\{ (.*) \}`([\s\S]*)$/.exec(s)!;
    // The string bounds follow the map: "`id` ... (1..256 UTF-8 bytes ...), `host` and `zone` ... at most 256 UTF-8 bytes".
    const idBounds = /`id` [^(]*\((\d+\.\.\d+ UTF-8 bytes)/.exec(nodeInfo[2]!)![1]!;
    const otherBounds = /`host` and `zone` are at most (\d+) UTF-8 bytes/.exec(nodeInfo[2]!.replace(/\s+/g, ' '))![1]!;
    const nodeFields = nodeInfo[1]!.split(', ').map((span) => {
      const name = span.split(':')[0]!;
      return fieldSpan(span, '', name === 'id' ? idBounds : name === 'host' || name === 'zone' ? `≤ ${otherBounds} UTF-8 bytes` : '');
    });
    const node = fullPayload(nodeFields);
    const check = (p: unknown): void => validateResponse(Op.TOPOLOGY, p);
    const map = (partitions: number, primaries: number[]): Record<string, unknown> => ({ version: 3, partitions, backups: 1, nodes: [node], primaries });
    expect(rows.map((r) => unquote(r[0]!))).toEqual(['version', 'partitions', 'backups', 'nodes', 'primaries']);
    expect(rows.map((r) => r[1])).toEqual(['uint', 'uint ≥ 1', 'uint', '[NodeInfo]', '[int]']);
    const fields = rows.slice(0, 3).map(([f, t]) => ({ name: unquote(f!), optional: false, ...typeValues(unquote(f!), t!) }));
    // partitions and primaries go together: check the scalar fields with P fixed by primaries.
    for (const f of fields) {
      f.invalid = f.invalid.filter((v) => f.name !== 'partitions' || typeof v !== 'number' || v < 1 || !Number.isSafeInteger(v));
      f.valid = f.name === 'partitions' ? [1] : f.valid;
    }
    const base = map(1, [0]);
    checkPayload('PartitionMap', [...fields, { name: 'nodes', optional: false, valid: [[node]], invalid: [node, null] }, { name: 'primaries', optional: false, valid: [[0], [-1]], invalid: [[], [0, 0], [1], [-2], [0.5]] }], check, true);
    expect(() => check(base)).not.toThrow();
    // NodeInfo: its fields and no others.
    const nodeCheck = (n: unknown): void => check({ ...base, nodes: [n] });
    checkPayload('NodeInfo', nodeFields, nodeCheck, true);
    const read = fieldsRead(map(2, [0, -1]), check).get('nodes[]')!;
    expect([...read].sort()).toEqual(nodeFields.map((f) => f.name).sort());
  });
});

describe('docs/protocol.md §4: pushes', () => {
  const text = section('## 4. Pushes');
  const rows = table(text, ['push', 'name', 'payload', 'meaning']);

  it('the push table is PushKind, with the payloads checkPushPayload checks', () => {
    expect(Object.fromEntries(rows.map((r) => [unquote(r[1]!), Number(r[0])]))).toEqual({ ...PushKind });
    for (const [kind, name, payload] of rows) {
      const inner = /^`\{ ?(.*?) ?\}`$/.exec(payload!)![1]!;
      const fields = inner === '' ? [] : inner.split(', ').map((s) => fieldSpan(s, ''));
      // "Receivers ignore ... unknown fields in push payloads."
      checkPayload(unquote(name!), fields, (p) => checkPushPayload(Number(kind), p), false);
    }
  });

  it('NODE_STOPPING names the error a request then gets, and it is retryable', () => {
    const row = rows.find((r) => r[1] === '`NODE_STOPPING`')!;
    const m = /error (\d+) `NODE_STOPPING`, retryable/.exec(row[3]!)!;
    expect(Number(m[1])).toBe(ErrorCode.NODE_STOPPING);
    expect(isRetryableCode(ErrorCode.NODE_STOPPING)).toBe(true);
  });
});

describe('docs/protocol.md §5: errors', () => {
  const text = section('## 5. Errors');

  it('the ErrorPayload table is what checkErrorPayload checks', () => {
    const rows = table(text, ['field', 'type', 'meaning']);
    const fields = rows.map(([f, t, meaning]) => {
      const name = unquote(f!);
      const optional = t!.endsWith('?');
      return { name, optional, ...typeValues(name, t!.replace(/\?$/, ''), meaning) };
    });
    expect(fields.find((f) => f.name === 'message')!.valid).toContain(utf8Of(MAX_ERROR_MESSAGE_BYTES));
    checkPayload('ErrorPayload', fields, checkErrorPayload, false);
  });

  it('the error code table is ERROR_CODES: every code, its name, retryability and meaning', () => {
    const rows = table(text, ['code', 'name', 'retryable', 'meaning']);
    const documented = Object.fromEntries(
      rows.map(([code, name, retryable, meaning]) => [Number(code), { name: unquote(name!), retryable: retryable === 'yes', description: meaning }]),
    );
    expect(rows.every((r) => r[2] === 'yes' || r[2] === 'no')).toBe(true);
    expect(documented).toEqual(ERROR_CODES);
    // The short names the prose uses are ErrorCode's keys: GRID_ + key is the name.
    for (const [key, code] of Object.entries(ErrorCode)) expect(ERROR_CODES[code].name).toBe(`GRID_${key}`);
    expect(text).toContain('Unknown codes are not retryable.');
    expect(isRetryableCode(99)).toBe(false);
    expect(errorCodeInfo(99).retryable).toBe(false);
  });

  it('every error the page cites by number and name (e.g. "error 14 `FRAME_TOO_LARGE`") has that number', () => {
    const cited = [...md.matchAll(/(\d+)\s+`([A-Z_]+)`/g)].filter((m) => m[2]! in ErrorCode);
    expect(cited.length).toBeGreaterThan(10);
    for (const m of cited) expect(ErrorCode[m[2] as keyof typeof ErrorCode], m[0]).toBe(Number(m[1]));
  });
});

describe('docs/protocol.md: the stream rules', () => {
  const handshake = encodeFrame({ kind: FrameKind.HANDSHAKE, body: { minVersion: 1, maxVersion: 1, features: 0, sessionId: 's' } });

  it('§1: MAGIC and the HANDSHAKE may come in one packet; bad MAGIC is refused', () => {
    expect(md).toContain('It may write both in one packet.');
    const both = new Uint8Array([...MAGIC, ...handshake]);
    expect(new FrameDecoder({ expectMagic: true }).push(both).map((f) => f.kind)).toEqual([FrameKind.HANDSHAKE]);
    expect(refuses(() => new FrameDecoder({ expectMagic: true }).push(Uint8Array.of(0x47, 0x4c, 0x4e, 0x4c)))).toBe(true);
  });

  it('§2: a frame split across reads, and several frames in one read, are reassembled by length', () => {
    expect(md).toContain('A stream can split a frame across TCP reads and put several frames in one read');
    const get = encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 1, flags: 0, payload: { cache: 'c', key: bin } });
    const stream = new Uint8Array([...MAGIC, ...handshake, ...get, ...get]);
    const d = new FrameDecoder({ expectMagic: true });
    const frames: Frame[] = [];
    for (const byte of stream) frames.push(...d.push(Uint8Array.of(byte)));
    expect(frames.map((f) => f.kind)).toEqual([FrameKind.HANDSHAKE, FrameKind.REQUEST, FrameKind.REQUEST]);
    expect(new FrameDecoder().push(new Uint8Array([...get, ...get]))).toEqual([frames[1], frames[2]]);
    expect(d.buffered).toBe(0);
  });

  it('§9: frames within one chunk are decoded in place, frames that straddle chunks are copied', () => {
    const get = encodeFrame({ kind: FrameKind.REQUEST, op: Op.CACHE_GET, id: 1, flags: 0, payload: { cache: 'c', key: bin } });
    const chunk = new Uint8Array([...get]);
    const [inPlace] = new FrameDecoder().push(chunk) as unknown as [{ payload: { key: Uint8Array } }];
    expect(inPlace.payload.key.buffer).toBe(chunk.buffer);
    const d = new FrameDecoder();
    const first = chunk.slice(0, 5);
    d.push(first);
    const second = chunk.slice(5);
    const [copied] = d.push(second) as unknown as [{ payload: { key: Uint8Array } }];
    expect([...copied.payload.key]).toEqual([...bin]);
    expect(copied.payload.key.buffer).not.toBe(first.buffer);
    expect(copied.payload.key.buffer).not.toBe(second.buffer);
  });

  it('§9: encodeFrame throws ProtocolError for out-of-range header fields and values MessagePack cannot carry', () => {
    expect(refuses(() => encodeFrame({ kind: FrameKind.REQUEST, op: 0x10000 as Op, id: 1, flags: 0, payload: {} }))).toBe(true);
    expect(refuses(() => encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 2 ** 32, flags: 0, payload: {} }))).toBe(true);
    expect(refuses(() => encodeFrame({ kind: FrameKind.REQUEST, op: Op.HEARTBEAT, id: 1, flags: 256, payload: {} }))).toBe(true);
    expect(refuses(() => encodeFrame({ kind: FrameKind.RESPONSE, id: 1, flags: 0, topologyVersion: 2 ** 53, payload: {} }))).toBe(true);
    expect(refuses(() => encodeFrame({ kind: FrameKind.RESPONSE, id: 1, flags: 0, topologyVersion: 0, payload: { f: () => 1 } }))).toBe(true);
  });
});

describe('docs/protocol.md §9: the TypeScript names it gives', () => {
  it('exports every helper and class the page names', () => {
    const text = section('## 9. Implementation notes (TypeScript)');
    const helpers = codeSpans(/- Helpers: ([\s\S]*?)\.\n/.exec(text)![1]!);
    expect(helpers.length).toBeGreaterThan(5);
    for (const name of [...helpers, 'encodeFrame', 'decodeFrame', 'FrameDecoder', 'ProtocolError', 'WireClient', 'DEFAULT_MAX_FRAME_SIZE']) {
      expect(name in protocol, name).toBe(true);
    }
    for (const member of ['push', 'pushRequests', 'buffered', 'skipping', 'midFrame']) {
      expect(member in FrameDecoder.prototype, member).toBe(true);
    }
  });
});
