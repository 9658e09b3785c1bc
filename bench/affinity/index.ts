/**
 * @gridlink/affinity: hashing speed, ownership speed, balance and movement.
 *
 *   npx --yes pnpm@10.34.9 --filter @gridlink/affinity build && npx tsx bench/affinity/index.ts
 *
 * Speed rows are ns (or ms) per call: a warm-up, then timed rounds of many calls with
 * process.hrtime.bigint(); the fastest round is reported (the round least disturbed by other
 * processes, as timeit does). Competing implementations are measured in the same run, interleaved
 * round by round.
 */
import { createRequire } from 'node:module';
import {
  computeAssignment,
  encodeKey,
  murmur3x86_32,
  partitionOf,
  rankOwners,
  type Assignment,
  type NodeSpec,
} from '@gridlink/affinity';

interface MurmurHash3js {
  inputValidation: boolean;
  x86: { hash32(bytes: Uint8Array, seed?: number): number };
}
const mmh3 = createRequire(import.meta.url)('murmurhash3js-revisited') as MurmurHash3js;

const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 3 : 9;

let sink = 0;

/** Fastest ns per call of fn(i) over ROUNDS rounds of `iterations` calls (after a warm-up). */
function measure(cases: { name: string; fn: (i: number) => number; iterations: number }[]): Map<string, number> {
  for (const c of cases) for (let i = 0; i < Math.min(c.iterations, 50_000); i++) sink ^= c.fn(i);
  const samples = new Map<string, number[]>(cases.map((c) => [c.name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cases) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < c.iterations; i++) sink ^= c.fn(i);
      samples.get(c.name)!.push(Number(process.hrtime.bigint() - t0) / c.iterations);
    }
  }
  return new Map([...samples].map(([k, v]) => [k, Math.min(...v)]));
}

function table(header: string[], rows: (string | number)[][]): void {
  const text = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...text.map((r) => r[c]!.length)));
  const line = (r: string[]): string => `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ')} |`;
  console.log(line(text[0]!));
  console.log(`|${widths.map((w, c) => (c === 0 ? `${'-'.repeat(w + 1)}-` : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const r of text.slice(1)) console.log(line(r));
  console.log();
}

const f1 = (n: number): string => n.toFixed(1);
const f2 = (n: number): string => n.toFixed(2);
const f3 = (n: number): string => n.toFixed(3);
const nodesOf = (n: number, zones = 0): NodeSpec[] =>
  Array.from({ length: n }, (_, i) => ({ id: `node-${i}`, ...(zones > 0 ? { zone: `zone-${i % zones}` } : {}) }));
const ids = (nodes: NodeSpec[]): string[] => nodes.map((n) => n.id);

console.log(`node ${process.version}, ${ROUNDS} rounds per row, fastest round reported\n`);

// --- 1. partitionOf on a 16-byte ASCII key --------------------------------------------------
{
  const keys = Array.from({ length: 1024 }, (_, i) => `user:${String(10_000_000_000 + i * 7919)}`);
  if (keys.some((k) => k.length !== 16)) throw new Error('keys must be 16 bytes');
  const encoded = keys.map((k) => encodeKey(k));
  const utf8 = new TextEncoder();
  const rawUtf8 = keys.map((k) => utf8.encode(k));
  const it = quick ? 200_000 : 500_000;
  const res = measure([
    { name: 'partitionOf(key, 1024), encoding included', fn: (i) => partitionOf(keys[i & 1023]!, 1024), iterations: it },
    { name: 'encodeKey(key)', fn: (i) => encodeKey(keys[i & 1023]!).length, iterations: it },
    {
      name: 'TextEncoder.encode(key) + murmur3x86_32 (no fast path)',
      fn: (i) => murmur3x86_32(utf8.encode(keys[i & 1023]), 0) % 1024,
      iterations: it,
    },
    { name: 'murmur3x86_32(encoded 18 bytes)', fn: (i) => murmur3x86_32(encoded[i & 1023]!, 0), iterations: it },
    { name: 'murmur3x86_32(raw UTF-8, 16 bytes)', fn: (i) => murmur3x86_32(rawUtf8[i & 1023]!, 0), iterations: it },
    {
      name: 'murmurhash3js-revisited x86.hash32(encoded 18 bytes) % 1024',
      fn: (i) => mmh3.x86.hash32(encoded[i & 1023]!, 0) % 1024,
      iterations: it,
    },
    {
      name: 'murmurhash3js-revisited, inputValidation off',
      fn: (i) => {
        mmh3.inputValidation = false;
        const h = mmh3.x86.hash32(encoded[i & 1023]!, 0) % 1024;
        mmh3.inputValidation = true;
        return h;
      },
      iterations: it,
    },
  ]);
  for (let i = 0; i < 1024; i++) {
    if (mmh3.x86.hash32(encoded[i]!, 0) % 1024 !== partitionOf(keys[i]!, 1024)) throw new Error('implementations disagree');
  }
  const ours = res.get('partitionOf(key, 1024), encoding included')!;
  console.log('### partitionOf, 16-byte ASCII string key (e.g. "user:10000000000")\n');
  table(
    ['operation', 'ns/op', 'vs partitionOf'],
    [...res].map(([name, ns]) => [name, f1(ns), name.startsWith('partitionOf') ? '1.00x' : `${f2(ns / ours)}x`]),
  );
}

// --- 2. rankOwners -----------------------------------------------------------------------------
{
  const rows: (string | number)[][] = [];
  for (const n of [3, 10, 100]) {
    const plain = nodesOf(n);
    const zoned = nodesOf(n, 3);
    const it = quick ? Math.max(500, 50_000 / n) : Math.max(2_000, 300_000 / n);
    const res = measure([
      { name: 'plain', fn: (i) => rankOwners(i & 1023, plain).length, iterations: it },
      { name: 'zoned', fn: (i) => rankOwners(i & 1023, zoned).length, iterations: it },
    ]);
    rows.push([`n = ${n}`, f1(res.get('plain')! / 1000), f1(res.get('zoned')! / 1000)]);
  }
  console.log('### rankOwners(partition, nodes): full ranking of all n nodes, node list validated per call\n');
  table(['nodes', 'µs/op', 'µs/op, 3 zones'], rows);
}

// --- 3. computeAssignment ----------------------------------------------------------------------
{
  const rows: (string | number)[][] = [];
  for (const n of [3, 10, 100]) {
    const plain = nodesOf(n);
    const zoned = nodesOf(n, 3);
    const weighted = plain.map((node, i) => ({ ...node, weight: 1 + (i % 4) }));
    const it = n === 100 ? (quick ? 5 : 15) : quick ? 20 : 50;
    const run = (baseline: NodeSpec[], backups: number) => () =>
      computeAssignment({ partitions: 1024, backups, baseline, alive: ids(baseline) }).partitions;
    const res = measure([
      { name: 'b1', fn: run(plain, 1), iterations: it },
      { name: 'b2z', fn: run(zoned, 2), iterations: it },
      { name: 'b1w', fn: run(weighted, 1), iterations: it },
    ]);
    rows.push([`n = ${n}`, f3(res.get('b1')! / 1e6), f3(res.get('b2z')! / 1e6), f3(res.get('b1w')! / 1e6)]);
  }
  console.log('### computeAssignment, P = 1024 (target <= 20 ms at n = 100)\n');
  table(['nodes', 'ms, backups=1', 'ms, backups=2, 3 zones', 'ms, backups=1, weights 1-4'], rows);
}

// --- 4. Balance --------------------------------------------------------------------------------
{
  const rows: (string | number)[][] = [];
  for (const P of [271, 1024, 4096]) {
    for (const n of [3, 10, 100]) {
      const nodes = nodesOf(n);
      const a = computeAssignment({ partitions: P, backups: 1, baseline: nodes, alive: ids(nodes) });
      const primaries = new Map<string, number>(ids(nodes).map((id) => [id, 0]));
      const owned = new Map<string, number>(ids(nodes).map((id) => [id, 0]));
      for (let p = 0; p < P; p++) {
        primaries.set(a.primaries[p]!, primaries.get(a.primaries[p]!)! + 1);
        for (const id of a.owners[p]!) owned.set(id, owned.get(id)! + 1);
      }
      const mean = P / n;
      const ownedMean = (P * Math.min(2, n)) / n;
      const pv = [...primaries.values()];
      const ov = [...owned.values()];
      rows.push([
        `P = ${P}, n = ${n}`,
        f1(mean),
        Math.max(...pv),
        f2(Math.max(...pv) / mean),
        f2(Math.min(...pv) / mean),
        f2(Math.max(...ov) / ownedMean),
      ]);
    }
  }
  console.log('### Balance (backups = 1): primaries per node\n');
  table(['cluster', 'mean', 'max', 'max/mean', 'min/mean', 'max/mean owned (primary+backup)'], rows);
}

// --- 5. Movement on leave / join ---------------------------------------------------------------
{
  const sameSet = (x: string[], y: string[]): boolean => x.length === y.length && x.every((id) => y.includes(id));
  const moved = (a: Assignment, b: Assignment) => {
    let owners = 0;
    let primaries = 0;
    for (let p = 0; p < a.partitions; p++) {
      if (!sameSet(a.owners[p]!, b.owners[p]!)) owners++;
      if (a.primaries[p] !== b.primaries[p]) primaries++;
    }
    return { owners, primaries };
  };
  const rows: (string | number)[][] = [];
  for (const P of [271, 1024, 4096]) {
    for (const n of [3, 10, 100]) {
      const nodes = nodesOf(n);
      const backups = 1;
      const base = computeAssignment({ partitions: P, backups, baseline: nodes, alive: ids(nodes) });
      // leave: node-0 removed from the baseline
      const rest = nodes.slice(1);
      const left = computeAssignment({ partitions: P, backups, baseline: rest, alive: ids(rest) });
      const heldByLeaver = base.owners.filter((o) => o.includes('node-0')).length;
      const primaryOfLeaver = base.primaries.filter((id) => id === 'node-0').length;
      const leave = moved(base, left);
      // join: a new node added to the baseline
      const grown = [...nodes, { id: `node-${n}` }];
      const joined = computeAssignment({ partitions: P, backups, baseline: grown, alive: ids(grown) });
      const join = moved(base, joined);
      const fairJoin = Math.round((P * Math.min(backups + 1, n + 1)) / (n + 1));
      const fairJoinPrimaries = Math.round(P / (n + 1));
      rows.push([
        `P = ${P}, n = ${n}`,
        `${leave.owners} / ${heldByLeaver}`,
        `${leave.primaries} / ${primaryOfLeaver}`,
        `${join.owners} / ${fairJoin}`,
        `${join.primaries} / ${fairJoinPrimaries}`,
      ]);
    }
  }
  console.log('### Partitions moved when one node leaves or joins the baseline (backups = 1)\n');
  console.log(
    'Leave: measured / minimum possible, which is what the leaving node held (each of those must change).\n' +
      "Join: measured / the new node's fair share, P·(backups+1)/(n+1) owner sets and P/(n+1) primaries: the\n" +
      'fewest moves that leave it balanced. Only partitions the new node enters change (tested property).\n',
  );
  table(
    ['cluster', 'leave: owner sets', 'leave: primaries', 'join: owner sets / fair', 'join: primaries / fair'],
    rows,
  );
}

if (sink === 0.5) console.log(sink);
