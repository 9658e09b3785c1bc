/**
 * docs/affinity.md against the code, as someone reimplementing it in another language reads it:
 * every table (tags, byte examples, the decoder's normal form), every constant and formula (the
 * hash, its seeds and verification value, partition = hash mod P, the rendezvous score, the
 * weighted key, the tie rules, the zone rule) and every example value the page gives is computed
 * here with the code, so a change to either side fails this test.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as affinity from '@gridlink/affinity';
import {
  AffinityArgumentError,
  compareNodeIds,
  computeAssignment,
  decodeKey,
  diffAssignments,
  encodeKey,
  hashKey,
  InvalidKeyError,
  KeyTag,
  MAX_KEY_DEPTH,
  murmur3x86_32,
  nodeHash,
  ownerScore,
  partitionOf,
  partitionOfBytes,
  rankOwners,
  tieHash,
  type GridKey,
  type NodeSpec,
} from '@gridlink/affinity';

const md = readFileSync(new URL('../../../docs/affinity.md', import.meta.url), 'utf8');
const indexSource = readFileSync(new URL('../src/index.ts', import.meta.url), 'utf8');

/** The text of the section whose heading line is `heading`, up to the next heading of its level or above. */
function section(heading: string): string {
  const start = md.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`docs/affinity.md has no section ${heading}`);
  const level = /^#+/.exec(heading)![0].length;
  const rest = md.slice(start + heading.length + 2);
  const next = new RegExp(`\\n#{1,${level}} `).exec(rest);
  return next === null ? rest : rest.slice(0, next.index);
}

/** A markdown table's body rows (header and separator left out) as trimmed cells. */
function tableRows(text: string, header: string): string[][] {
  const lines = text.split('\n');
  const at = lines.indexOf(header);
  if (at < 0) throw new Error(`no table ${header}`);
  const rows: string[][] = [];
  for (const line of lines.slice(at + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.slice(1, -1).split('|').map((c) => c.trim()));
  }
  return rows;
}

/** The `code` spans of a markdown cell or line. */
const codeSpans = (s: string): string[] => [...s.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const fromHex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const le32 = (p: number): Uint8Array => Uint8Array.of(p & 0xff, (p >>> 8) & 0xff, (p >>> 16) & 0xff, p >>> 24);

/**
 * The JavaScript literals the page writes keys and results in: strings in single quotes, numbers
 * (`1.0`, `-0`, `Infinity`), bigints (`19n`), booleans, arrays, `a ** b`, `Uint8Array.of(...)` and
 * `'x'.repeat(n)`. Anything else throws, so a new kind of example makes this test say so.
 */
function literal(text: string): unknown {
  let i = 0;
  const ws = (): void => {
    while (text[i] === ' ') i++;
  };
  const expect_ = (s: string): void => {
    ws();
    if (!text.startsWith(s, i)) throw new Error(`expected ${s} at ${i} in ${text}`);
    i += s.length;
  };
  const primary = (): unknown => {
    ws();
    if (text[i] === "'") {
      const end = text.indexOf("'", i + 1);
      const s = text.slice(i + 1, end);
      i = end + 1;
      if (text.startsWith('.repeat(', i)) {
        i += '.repeat('.length;
        const n = primary() as number;
        expect_(')');
        return s.repeat(n);
      }
      return s;
    }
    if (text[i] === '[') {
      i++;
      const out: unknown[] = [];
      ws();
      while (text[i] !== ']') {
        out.push(expr());
        ws();
        if (text[i] === ',') i++;
        ws();
      }
      i++;
      return out;
    }
    if (text.startsWith('Uint8Array.of(', i)) {
      i += 'Uint8Array.of('.length;
      const out: number[] = [];
      ws();
      while (text[i] !== ')') {
        out.push(expr() as number);
        ws();
        if (text[i] === ',') i++;
        ws();
      }
      i++;
      return Uint8Array.from(out);
    }
    for (const [word, value] of [['true', true], ['false', false], ['null', null], ['Infinity', Infinity]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return value;
      }
    }
    const m = /^-?\d+(\.\d+)?(e\d+)?n?/.exec(text.slice(i));
    if (m === null) throw new Error(`cannot read a literal at ${i} in ${text}`);
    i += m[0].length;
    return m[0].endsWith('n') ? BigInt(m[0].slice(0, -1)) : Number(m[0]);
  };
  const expr = (): unknown => {
    const base = primary();
    ws();
    if (!text.startsWith('**', i)) return base;
    i += 2;
    const exp = primary();
    return typeof base === 'bigint' ? base ** (exp as bigint) : (base as number) ** (exp as number);
  };
  const v = expr();
  ws();
  if (i !== text.length) throw new Error(`unread text after a literal: ${text.slice(i)}`);
  return v;
}

describe('docs/affinity.md: the opening example', () => {
  const block = md.split('```ts\n')[1]!.split('```')[0]!;
  const lines = block.split('\n');
  const line = (start: string): string => {
    const l = lines.find((x) => x.startsWith(start));
    if (l === undefined) throw new Error(`the example has no line starting ${start}`);
    return l;
  };
  const comment = (l: string): string => l.split('// ')[1]!;

  it('imports only what the package exports', () => {
    const imported = /import \{([^}]*)\}/.exec(block)![1]!.split(',').map((s) => s.trim()).filter(Boolean);
    expect(imported.filter((name) => !(name in affinity))).toEqual([]);
  });

  it('gives the partitions partitionOf returns', () => {
    const calls = lines.filter((l) => l.startsWith('partitionOf('));
    expect(calls.length).toBe(2);
    for (const l of calls) {
      const m = /^partitionOf\((.*), (\d+)\);\s*\/\/ (\d+)$/.exec(l)!;
      expect(partitionOf(literal(m[1]!) as GridKey, Number(m[2])), l).toBe(Number(m[3]));
    }
  });

  it('gives what decodeKey(encodeKey(...)) returns', () => {
    const l = line('decodeKey(encodeKey(');
    const m = /^decodeKey\(encodeKey\((.*)\)\);/.exec(l)!;
    expect(decodeKey(encodeKey(literal(m[1]!) as GridKey))).toStrictEqual(literal(comment(l)));
  });

  it("gives the owners and primary computeAssignment returns for user:42's partition", () => {
    const ids = codeSpans(line('const baseline').replace(/'/g, '`'));
    const baseline: NodeSpec[] = ids.map((id) => ({ id }));
    const opts = /partitions: (\d+), backups: (\d+), baseline, alive: (\[.*\]) \}\);/.exec(line('const a = computeAssignment('))!;
    const a = computeAssignment({ partitions: Number(opts[1]), backups: Number(opts[2]), baseline, alive: literal(opts[3]!) as string[] });
    const owners = line('a.owners[');
    const p = Number(/^a\.owners\[(\d+)\]/.exec(owners)![1]);
    expect(p).toBe(partitionOf('user:42', Number(opts[1])));
    expect(a.owners[p]).toEqual(literal(/(\[[^\]]*\])\s*$/.exec(comment(owners))![1]!));
    const primaries = line('a.primaries[');
    expect(Number(/^a\.primaries\[(\d+)\]/.exec(primaries)![1])).toBe(p);
    expect(a.primaries[p]).toBe(literal(/: ('[^']*')/.exec(comment(primaries))![1]!));
  });

  it('names every export of the package, and only those', () => {
    const para = /\nExports: ([\s\S]*?)\n\n/.exec(md)![1]!;
    const listed = codeSpans(para).sort();
    const types = [...indexSource.matchAll(/\btype (\w+)/g)].map((m) => m[1]!);
    const exported = [...Object.keys(affinity), ...types].sort();
    expect(listed).toEqual(exported);
  });
});

describe('docs/affinity.md §1: hash', () => {
  const text = section('## 1. Hash');

  it("is MurmurHash3_x86_32 with SMHasher's verification value, computed as the page says", () => {
    const stated = Number(/verification value\s+`(0x[0-9A-F]{8})`/.exec(text)![1]);
    const all = new Uint8Array(256 * 4);
    const key = new Uint8Array(256);
    for (let i = 0; i < 256; i++) {
      key[i] = i;
      const h = murmur3x86_32(key.subarray(0, i), 256 - i);
      all.set(le32(h), i * 4);
    }
    expect(murmur3x86_32(all, 0)).toBe(stated);
  });

  it('defaults the seed to 0 and returns an unsigned 32-bit integer', () => {
    expect(text).toContain('`murmur3x86_32(bytes, seed = 0)`');
    const b = utf8('gridlink');
    expect(murmur3x86_32(b)).toBe(murmur3x86_32(b, 0));
    for (const seed of [0, 1, 0xffffffff]) {
      const h = murmur3x86_32(new Uint8Array(0), seed);
      expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
    }
    // The published values for the empty input (Appleby's reference implementation).
    expect([0, 1, 0xffffffff].map((s) => murmur3x86_32(new Uint8Array(0), s))).toEqual([0, 0x514e28b7, 0x81f16f39]);
  });
});

describe('docs/affinity.md §2: key encoding', () => {
  const text = section('## 2. Key encoding (byte-exact)');

  it('the tag table is KeyTag', () => {
    const rows = tableRows(text, '| tag  | kind      | payload                                                              |');
    const tags = Object.fromEntries(rows.map((r) => [r[1]!.toUpperCase(), Number(r[0])]));
    expect(tags).toEqual({ ...KeyTag });
  });

  it('every example encodes to the bytes given', () => {
    const rows = tableRows(text, '| key                    | bytes                        |');
    expect(rows.length).toBeGreaterThan(15);
    for (const [keyCell, bytesCell] of rows) {
      // `a` / `b` pairs with `x` / `y`; several keys with one bytes cell share it.
      const keys = codeSpans(keyCell!);
      const bytes = codeSpans(bytesCell!);
      expect(bytes.length === keys.length || bytes.length === 1, keyCell).toBe(true);
      keys.forEach((k, i) => {
        const want = bytes.length === keys.length ? bytes[i]! : bytes[0]!;
        const got = hex(encodeKey(literal(k) as GridKey));
        if (want.endsWith('…')) expect(got.startsWith(want.slice(0, -1).replace(/\s+/g, '')), k).toBe(true);
        else expect(got, k).toBe(want.replace(/\s+/g, ''));
      });
    }
  });

  it('numbers and bigints are keyed by their mathematical value; NaN is refused', () => {
    const same = (a: GridKey, b: GridKey): void => expect(hex(encodeKey(a))).toBe(hex(encodeKey(b)));
    same(2 ** 60, 2n ** 60n);
    same(1e300, BigInt(1e300));
    expect(encodeKey(1e300)[0]).toBe(KeyTag.INTEGER);
    expect(encodeKey(-Infinity)[0]).toBe(KeyTag.FLOAT64);
    expect(() => encodeKey(NaN)).toThrow(InvalidKeyError);
    expect(() => encodeKey([1, [NaN]])).toThrow(InvalidKeyError);
  });

  it('strings: UTF-8, lone surrogates refused, no normalisation', () => {
    expect(() => encodeKey('\ud800')).toThrow(InvalidKeyError);
    expect(hex(encodeKey('\u00e9'))).not.toBe(hex(encodeKey('e\u0301')));
  });

  it('composites are self-delimiting: the keys the page lists are all different', () => {
    const keys: GridKey[] = [['ab', 'c'], ['a', 'bc'], ['abc'], [], '', new Uint8Array(0)];
    expect(new Set(keys.map((k) => hex(encodeKey(k)))).size).toBe(keys.length);
  });

  it(`nests at most MAX_KEY_DEPTH arrays deep, the depth the page gives`, () => {
    expect(Number(/nest at most (\d+) arrays deep \(`MAX_KEY_DEPTH`\)/.exec(text)![1])).toBe(MAX_KEY_DEPTH);
    const nest = (d: number): GridKey => (d === 0 ? 'x' : [nest(d - 1)]);
    expect(() => encodeKey(nest(MAX_KEY_DEPTH))).not.toThrow();
    expect(() => encodeKey(nest(MAX_KEY_DEPTH + 1))).toThrow(InvalidKeyError);
    const cyclic: GridKey[] = [];
    cyclic.push(cyclic);
    expect(() => encodeKey(cyclic)).toThrow(InvalidKeyError);
  });

  it('refuses what the page lists, with the InvalidKeyError it describes', () => {
    const para = /\*\*Rejected\*\* with `InvalidKeyError` \(([^)]*)\)/.exec(text)![1]!;
    expect(codeSpans(para).slice(0, 3)).toEqual(["code: 'GRID_INVALID_KEY'", 'retryable: false', 'TypeError']);
    expect(text).toContain("`instanceof` works across duplicate installs via `Symbol.for('gridlink.InvalidKeyError')`");
    const refused: unknown[] = [NaN, '\udc00', null, undefined, {}, Symbol('k'), () => 1, new Date(0), new Uint16Array(2), new ArrayBuffer(2)];
    for (const k of refused) {
      let err: unknown;
      try {
        encodeKey(k as GridKey);
      } catch (e) {
        err = e;
      }
      expect(err, String(k)).toBeInstanceOf(InvalidKeyError);
      expect(err).toBeInstanceOf(TypeError);
      expect((err as InvalidKeyError).code).toBe('GRID_INVALID_KEY');
      expect((err as InvalidKeyError).retryable).toBe(false);
      expect(Symbol.for('gridlink.InvalidKeyError') in (err as object)).toBe(true);
    }
  });
});

describe('docs/affinity.md §2.1: decoding', () => {
  const text = section('### 2.1 Decoding');

  it('decodes to the normal form the table gives', () => {
    const rows = tableRows(text, '| encoded key                                        | decodes to                                   |');
    expect(rows.length).toBe(5);
    // an integer of magnitude <= 2^53 - 1: a number; beyond: a bigint.
    expect(rows[0]![0]).toContain('≤ 2^53 − 1');
    for (const k of [1n, 1.0, -0, 0n, 2 ** 53 - 1, -(2 ** 53 - 1)]) {
      const d = decodeKey(encodeKey(k));
      expect(typeof d).toBe('number');
      expect(Object.is(d, -0)).toBe(false);
    }
    expect(decodeKey(encodeKey(1n))).toBe(1);
    expect(decodeKey(encodeKey(2 ** 53))).toBe(2n ** 53n);
    expect(decodeKey(encodeKey(-(2 ** 53)))).toBe(-(2n ** 53n));
    expect(decodeKey(encodeKey(2 ** 60))).toBe(2n ** 60n);
    expect(decodeKey(encodeKey(1.5))).toBe(1.5);
    expect(decodeKey(encodeKey(-Infinity))).toBe(-Infinity);
    // bytes: a fresh plain Uint8Array, also for a Buffer key; never a view of the input.
    const input = encodeKey(Buffer.from([1, 2, 3]));
    const d = decodeKey(input) as Uint8Array;
    expect(Object.getPrototypeOf(d)).toBe(Uint8Array.prototype);
    expect(d.buffer).not.toBe(input.buffer);
    expect([...d]).toEqual([1, 2, 3]);
    expect(decodeKey(encodeKey(['a', [true, false]]))).toEqual(['a', [true, false]]);
  });

  it('refuses the non-canonical inputs the page names, naming the byte offset', () => {
    const refused = (h: string): InvalidKeyError => {
      try {
        decodeKey(fromHex(h));
      } catch (e) {
        expect(e).toBeInstanceOf(InvalidKeyError);
        return e as InvalidKeyError;
      }
      throw new Error(`decodeKey accepted ${h}`);
    };
    // The page's own example of a non-minimal LEB128.
    expect(text).toContain('`03 80 00` for 0');
    expect(refused('038000').message).toMatch(/offset|byte \d|at \d/);
    refused(''); // empty
    refused('08'); // unknown tag
    refused('0300' + '00'); // bytes left over
    refused('0580'); // truncated length
    refused('050261'); // truncated string
    refused('0502c0af'); // overlong UTF-8
    refused('0503eda080'); // a UTF-8 encoded surrogate
    refused('0504f4908080'); // above U+10FFFF
    refused('04000000000000f03f'); // the float64 1.0: integers use tag 03
    refused('040000000000000080'); // the float64 -0
    refused('04000000000000f87f'); // NaN
    refused('06ffffffffffffffff01'); // a length of 8+ LEB128 groups
    expect(decodeKey(fromHex('0701'.repeat(MAX_KEY_DEPTH) + '0500'))).toBeDefined();
    refused('0701'.repeat(MAX_KEY_DEPTH + 1) + '0500'); // nested deeper than MAX_KEY_DEPTH
    expect(() => decodeKey([5, 0] as unknown as Uint8Array)).toThrow(InvalidKeyError);
    // A leading byte order mark is part of the string.
    expect(decodeKey(fromHex('0503efbbbf'))).toBe('\ufeff');
  });
});

describe('docs/affinity.md §3: partition of a key', () => {
  const text = section('## 3. Partition of a key');

  it('states the formulas the functions compute', () => {
    const block = text.split('```\n')[1]!;
    expect(block).toContain('partitionOf(key, P)        = murmur3x86_32(encodeKey(key), 0) mod P');
    expect(block).toContain('partitionOfBytes(bytes, P) = murmur3x86_32(bytes, 0) mod P');
    expect(block).toContain('hashKey(key)               = murmur3x86_32(encodeKey(key), 0)');
    // Strings on both sides of the short-ASCII path, non-ASCII, and every other key type.
    const keys: GridKey[] = ['', 'a', 'user:42', 'x'.repeat(126), 'x'.repeat(127), 'x'.repeat(128), 'x'.repeat(300), 'é', 'ab🌈', 0, -1, 2 ** 60, 1.5, 5n, true, Uint8Array.of(9), ['a', 1]];
    for (const k of keys) {
      const bytes = encodeKey(k);
      const h = murmur3x86_32(bytes, 0);
      expect(hashKey(k)).toBe(h);
      for (const p of [1, 271, 1024, 2 ** 32]) {
        expect(partitionOf(k, p)).toBe(h % p);
        expect(partitionOfBytes(bytes, p)).toBe(h % p);
      }
    }
  });

  it('takes P from 1 to 2^32, else AffinityArgumentError on field partitions', () => {
    expect(text).toContain('`P` is an integer from 1 to 2^32 (otherwise `AffinityArgumentError`, field `partitions`)');
    for (const p of [0, -1, 1.5, 2 ** 32 + 1, NaN]) {
      for (const f of [(): number => partitionOf('k', p), (): number => partitionOfBytes(Uint8Array.of(1), p)]) {
        let err: unknown;
        try {
          f();
        } catch (e) {
          err = e;
        }
        expect(err, String(p)).toBeInstanceOf(AffinityArgumentError);
        expect((err as AffinityArgumentError).field).toBe('partitions');
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// §4: the ranking as the page states it, written out independently of ownership.ts.

const TWO_32 = 2 ** 32;

/** The page's `key(p, node)` and `tie(p, id)`, from murmur3x86_32 alone. */
function docRank(p: number, nodes: readonly NodeSpec[]): string[] {
  const weights = nodes.map((n) => n.weight ?? 1);
  const weighted = weights.some((w) => w !== weights[0]);
  const scored = nodes.map((n, i) => {
    const score = murmur3x86_32(le32(p), murmur3x86_32(utf8(n.id), 0));
    const tie = murmur3x86_32(le32(p), murmur3x86_32(utf8(n.id), 1));
    const key = weighted ? -weights[i]! / Math.log((score + 0.5) / TWO_32) : score;
    return { id: n.id, zone: n.zone ?? '', key, tie };
  });
  const bytesOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  scored.sort((a, b) => b.key - a.key || b.tie - a.tie || bytesOrder(a.id, b.id));
  // Zones: each next place to the best remaining node of a zone not yet in the list, while any.
  const out: typeof scored = [];
  const left = [...scored];
  const zones = new Set(scored.map((s) => s.zone));
  while (left.length > 0) {
    const used = new Set(out.map((s) => s.zone));
    let at = 0;
    if (out.length > 0 && used.size < zones.size) {
      const fresh = left.findIndex((s) => !used.has(s.zone));
      if (fresh >= 0) at = fresh;
    }
    out.push(left.splice(at, 1)[0]!);
  }
  return out.map((s) => s.id);
}

/** A deterministic pseudo-random sequence (so failures reproduce). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / TWO_32;
  };
}

/** Two ids whose nodeHash collides: found by search, the first pair among n0, n1, ... */
function collidingIds(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const id = `n${i}`;
    const h = murmur3x86_32(utf8(id), 0);
    const other = seen.get(h);
    if (other !== undefined) return [other, id];
    seen.set(h, id);
  }
}

describe('docs/affinity.md §4: ownership', () => {
  const text = section('## 4. Ownership: rendezvous hashing');

  it('states the formulas nodeHash, tieHash and ownerScore compute', () => {
    const block = text.split('```\n')[1]!;
    expect(block).toContain('nodeHash(id)   = murmur3x86_32(UTF-8(id), 0)');
    expect(block).toContain('tieHash(id)    = murmur3x86_32(UTF-8(id), 1)');
    expect(block).toContain('score(p, id)   = murmur3x86_32(le32(p), seed = nodeHash(id))');
    expect(block).toContain('tie(p, id)     = murmur3x86_32(le32(p), seed = tieHash(id))');
    expect(block).toContain('= -weight / ln((score(p, id) + 0.5) / 2^32)');
    for (const id of ['node-a', 'é-node', '🌈', 'x'.repeat(100)]) {
      expect(nodeHash(id)).toBe(murmur3x86_32(utf8(id), 0));
      expect(tieHash(id)).toBe(murmur3x86_32(utf8(id), 1));
      for (const p of [0, 1, 958, 0x12345678, 2 ** 32 - 1]) expect(ownerScore(p, id)).toBe(murmur3x86_32(le32(p), nodeHash(id)));
    }
  });

  it('ranks as the page says: key, then tie, then id; zones greedily; weights by -w/ln(u)', () => {
    const next = rng(42);
    for (let round = 0; round < 300; round++) {
      const n = 1 + Math.floor(next() * 12);
      const zoned = next() < 0.5;
      const weighted = next() < 0.5;
      const nodes: NodeSpec[] = [];
      for (let i = 0; i < n; i++) {
        const spec: NodeSpec = { id: `node-${round}-${i}` };
        if (zoned && next() < 0.8) spec.zone = `z${Math.floor(next() * 3)}`;
        if (weighted) spec.weight = 0.5 + Math.floor(next() * 4);
        nodes.push(spec);
      }
      const p = Math.floor(next() * TWO_32);
      expect(rankOwners(p, nodes), JSON.stringify({ p, nodes })).toEqual(docRank(p, nodes));
    }
  });

  it('equal weights rank exactly as no weights; a node without zone is in the zone ""', () => {
    const ids = Array.from({ length: 20 }, (_, i) => `w${i}`);
    for (let p = 0; p < 200; p++) {
      expect(rankOwners(p, ids.map((id) => ({ id, weight: 3 })))).toEqual(rankOwners(p, ids.map((id) => ({ id }))));
      expect(rankOwners(p, ids.map((id, i) => ({ id, weight: 1, zone: i % 2 === 0 ? '' : 'b' })))).toEqual(
        rankOwners(p, ids.map((id, i) => (i % 2 === 0 ? { id } : { id, zone: 'b' }))),
      );
    }
  });

  it('nodes whose id hashes collide tie on every partition and the tie hash, not the id, orders them', () => {
    const [a, b] = collidingIds();
    expect(nodeHash(a)).toBe(nodeHash(b));
    let aFirst = 0;
    for (let p = 0; p < 64; p++) {
      expect(ownerScore(p, a)).toBe(ownerScore(p, b));
      const ranked = rankOwners(p, [{ id: a }, { id: b }]);
      expect(ranked).toEqual(docRank(p, [{ id: a }, { id: b }]));
      if (ranked[0] === a) aFirst++;
    }
    expect(aFirst).toBeGreaterThan(0);
    expect(aFirst).toBeLessThan(64);
  });

  it('orders ids by code point (UTF-8 byte order), not UTF-16 code units', () => {
    // U+FF61 is below U+1F308 in code points, above its UTF-16 lead surrogate 0xD83C.
    expect(compareNodeIds('\uff61', '🌈')).toBeLessThan(0);
    expect(compareNodeIds('a', 'ab')).toBeLessThan(0);
  });

  it('computeAssignment: owners are the first min(b + 1, n) of rankOwners over the baseline; the primary the first alive one', () => {
    const baseline: NodeSpec[] = ['a', 'b', 'c', 'd'].map((id, i) => ({ id, zone: `z${i % 2}` }));
    for (const backups of [0, 1, 2, 5]) {
      const a = computeAssignment({ partitions: 64, backups, baseline, alive: ['b', 'c', 'ghost'] });
      expect(a.partitions).toBe(64);
      expect(a.backups).toBe(backups);
      for (let p = 0; p < 64; p++) {
        const owners = rankOwners(p, baseline).slice(0, Math.min(backups + 1, baseline.length));
        expect(a.owners[p]).toEqual(owners);
        expect(a.primaries[p]).toBe(owners.find((id) => id === 'b' || id === 'c') ?? null);
      }
    }
    const lost = computeAssignment({ partitions: 8, backups: 0, baseline, alive: [] });
    expect(lost.primaries.every((x) => x === null)).toBe(true);
  });

  it('diffAssignments lists the partitions whose primary or owner list differs, with the fields the page names', () => {
    const baseline: NodeSpec[] = ['a', 'b', 'c'].map((id) => ({ id }));
    const before = computeAssignment({ partitions: 128, backups: 1, baseline, alive: ['a', 'b', 'c'] });
    const after = computeAssignment({ partitions: 128, backups: 1, baseline: baseline.slice(0, 2), alive: ['a', 'b'] });
    const changes = diffAssignments(before, after);
    expect(changes.length).toBeGreaterThan(0);
    for (const c of changes) {
      expect(Object.keys(c).sort()).toEqual(['after', 'before', 'ownersChanged', 'partition', 'primaryChanged']);
      expect(before.owners[c.partition]).toContain('c');
    }
    expect(() => diffAssignments(before, computeAssignment({ partitions: 64, backups: 1, baseline, alive: [] }))).toThrow(AffinityArgumentError);
  });

  it('argument errors are AffinityArgumentErrors naming the field, as the page describes', () => {
    const para = /\*\*Argument errors\.\*\*([\s\S]*?)\n\n/.exec(text)![1]!;
    expect(para).toContain("`code: 'GRID_INVALID_ARGUMENT'`, `retryable: false`, a `RangeError`");
    const example = /e\.g\. `([^`]+)`/.exec(para)![1]!;
    const baseline: NodeSpec[] = [{ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'd', weight: 0 }];
    let err: unknown;
    try {
      computeAssignment({ partitions: 8, backups: 1, baseline, alive: [] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AffinityArgumentError);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as AffinityArgumentError).field).toBe(example);
    expect((err as AffinityArgumentError).code).toBe('GRID_INVALID_ARGUMENT');
    expect((err as AffinityArgumentError).retryable).toBe(false);
    // Ids non-empty and unique; weight a finite number > 0; partition 0 <= p < 2^32.
    const refused = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(AffinityArgumentError);
        return (e as AffinityArgumentError).field;
      }
      throw new Error('accepted');
    };
    expect(refused(() => rankOwners(0, [{ id: '' }]))).toBe('nodes[0].id');
    expect(refused(() => rankOwners(0, [{ id: 'a' }, { id: 'a' }]))).toBe('nodes[1].id');
    expect(refused(() => rankOwners(0, [{ id: 'a', weight: Infinity }]))).toBe('nodes[0].weight');
    expect(refused(() => rankOwners(0, [{ id: 'a', weight: -1 }]))).toBe('nodes[0].weight');
    expect(refused(() => rankOwners(2 ** 32, [{ id: 'a' }]))).toBe('partition');
    expect(refused(() => rankOwners(-1, [{ id: 'a' }]))).toBe('partition');
    expect(rankOwners(2 ** 32 - 1, [{ id: 'a' }])).toEqual(['a']);
    expect(refused(() => computeAssignment({ partitions: 8, backups: -1, baseline, alive: [] }))).toBe('backups');
    expect(refused(() => computeAssignment({ partitions: 0, backups: 1, baseline, alive: [] }))).toBe('partitions');
    expect(refused(() => computeAssignment({ partitions: 8, backups: 1, baseline: [{ id: 'a' }], alive: 5 as never }))).toBe('alive');
  });
});

describe('docs/affinity.md: the golden vectors it names', () => {
  it('partition.json holds the number of keys and the partition counts the page gives', () => {
    const file = JSON.parse(readFileSync(new URL('./vectors/partition.json', import.meta.url), 'utf8')) as {
      partitionCounts: number[];
      vectors: unknown[];
    };
    const m = /`packages\/affinity\/test\/vectors\/partition\.json` \((\d+) keys:[\s\S]*?for P = (\d+) and P = (\d+)\)/.exec(md)!;
    expect(file.vectors.length).toBe(Number(m[1]));
    expect(file.partitionCounts).toEqual([Number(m[2]), Number(m[3])]);
  });
});
