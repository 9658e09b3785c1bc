/**
 * Writes partition.json, the golden key -> bytes -> hash -> partition vectors.
 *
 *   npx tsx packages/affinity/test/vectors/generate.ts
 *
 * Regenerate only on purpose: a change to these vectors is a change to where every key lives.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encodeKey, murmur3x86_32, partitionOf, type GridKey } from '../../src/index.js';
import { keyToJson } from './notation.js';

export const PARTITION_COUNTS = [1024, 271] as const;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const ascii = (n: number): string => range(n).map((i) => String.fromCharCode(33 + ((i * 31) % 94))).join('');

export const GOLDEN_KEYS: GridKey[] = [
  // strings: empty, short, each tail length, ASCII fast-path boundaries, non-ASCII of every UTF-8 width
  '',
  'a',
  'ab',
  'abc',
  'abcd',
  'abcde',
  'hello',
  'Hello, world!',
  'user:1234567890',
  'user:12345678901',
  'session:7f3a9c2e-41b5-4d0a-9e7c-2b8f6a1d3c4e',
  'The quick brown fox jumps over the lazy dog',
  ascii(127),
  ascii(128),
  ascii(300),
  ' ',
  '\u0000',
  'a\u0000b',
  '\u007f',
  '\u0080',
  'é',
  'ü',
  'naïve café',
  'ключ',
  'Ωmega',
  '\u07ff',
  '\u0800',
  '日本語',
  '키',
  '\uffff',
  '\ue000',
  '🌈',
  '\u{10000}',
  '\u{10ffff}',
  'emoji 👩‍💻 key',
  'ππππππππ',
  'mixed ascii and 日本語 and 🌈',
  '1',
  'true',
  // numbers: integers (one form with bigints), boundaries of the integer form, floats, infinities
  0,
  -0,
  1,
  -1,
  2,
  42,
  63,
  64,
  -64,
  -65,
  127,
  128,
  255,
  256,
  1000,
  -1000,
  8191,
  8192,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31),
  2 ** 32,
  1234567890123,
  -9876543210,
  2 ** 53 - 1,
  -(2 ** 53 - 1),
  2 ** 53,
  -(2 ** 53),
  2 ** 60,
  -(2 ** 63),
  1e21,
  1e300,
  Number.MAX_VALUE,
  0.5,
  -0.5,
  1.5,
  0.1,
  3.141592653589793,
  -2.718281828459045,
  1e-300,
  Number.MIN_VALUE,
  -Number.MIN_VALUE,
  2 ** 53 - 0.5,
  Infinity,
  -Infinity,
  // bigints
  7n,
  -7n,
  2n ** 53n + 1n,
  -(2n ** 53n) - 1n,
  2n ** 63n - 1n,
  -(2n ** 63n),
  2n ** 64n - 1n,
  2n ** 64n,
  -(2n ** 64n),
  2n ** 128n + 12345n,
  -(10n ** 40n),
  10n ** 100n,
  // booleans
  true,
  false,
  // byte arrays
  new Uint8Array(0),
  Uint8Array.of(0),
  Uint8Array.of(0xff),
  Uint8Array.of(1, 2, 3),
  Uint8Array.from(range(16)),
  Uint8Array.from(range(200), (i) => (i * 37) & 0xff),
  Uint8Array.of(0x05, 0x02, 0x61, 0x62),
  // composites
  [],
  [''],
  [[]],
  ['ab', 'c'],
  ['a', 'bc'],
  ['abc'],
  [1, 'a'],
  ['a', 1],
  [1n],
  [[1]],
  [1, 2],
  [[1, 2]],
  [true, false],
  ['tenant-42', 'user', 1234567890n],
  ['order', 98765, 1.5],
  [Uint8Array.of(1), 'x'],
  ['é', ['日本', 7]],
  [['a', ['b', ['c', ['d']]]]],
  ['lock', 'job:nightly-report'],
  [-0],
  [Infinity, -1n, false, ''],
];

export interface GoldenVector {
  key: ReturnType<typeof keyToJson>;
  bytes: string;
  hash: number;
  partition: Record<string, number>;
}

export function goldenVectors(): GoldenVector[] {
  return GOLDEN_KEYS.map((key) => {
    const bytes = encodeKey(key);
    const partition: Record<string, number> = {};
    for (const p of PARTITION_COUNTS) partition[String(p)] = partitionOf(key, p);
    return { key: keyToJson(key), bytes: Buffer.from(bytes).toString('hex'), hash: murmur3x86_32(bytes, 0), partition };
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const doc = {
    description:
      'Golden vectors for gridlink keys: canonical bytes (docs/affinity.md), hash = murmur3_x86_32(bytes, seed 0) unsigned, partition = hash % P.',
    keyNotation:
      'JSON string/boolean/array = string/boolean/composite key; JSON number = number key; {"$number": "-0"|"Infinity"|"-Infinity"}, {"$bigint": "<decimal>"}, {"$bytes": "<hex>"} for the rest.',
    partitionCounts: PARTITION_COUNTS,
    vectors: goldenVectors(),
  };
  const out = fileURLToPath(new URL('./partition.json', import.meta.url));
  // One vector per line, so a change shows up as a readable diff.
  const head = JSON.stringify({ ...doc, vectors: [] }, null, 2).replace(/"vectors": \[\]\n}$/, '"vectors": [\n');
  const body = doc.vectors.map((v) => `    ${JSON.stringify(v)}`).join(',\n');
  writeFileSync(out, `${head}${body}\n  ]\n}\n`);
  console.log(`wrote ${doc.vectors.length} vectors to ${out}`);
}
