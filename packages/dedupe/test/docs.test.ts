/**
 * docs/api.md's options table against the code: every option the core knows is documented and
 * every documented one is known, each numeric default is the one applied, and each documented
 * integer range is the one enforced (its bounds accepted, one beyond refused naming the field).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CircuitBreaker, DedupeConfigError, Deduper, resolveDedupeOptions, type DedupeOptions, type DedupeRequest } from '@gridlink/dedupe';

interface Row {
  name: string;
  def: string;
  allowed: string;
}

function optionsTable(): Row[] {
  const doc = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('\n## Options\n'), doc.indexOf('\n## Guarantees and limits'));
  const rows: Row[] = [];
  for (const line of section.split('\n')) {
    const m = /^\| `([A-Za-z]+)` \| (.+?) \| (.+?) \| .+ \|$/.exec(line);
    if (m !== null) rows.push({ name: m[1] as string, def: m[2] as string, allowed: m[3] as string });
  }
  return rows;
}

const num = (s: string): number => Number(s.replace(/[\s ]/g, ''));

function refusal(options: DedupeOptions): DedupeConfigError | undefined {
  try {
    resolveDedupeOptions(options);
    return undefined;
  } catch (e) {
    if (e instanceof DedupeConfigError) return e;
    throw e;
  }
}

describe('docs/api.md options table', () => {
  const rows = optionsTable();
  const resolved = resolveDedupeOptions({}) as unknown as Record<string, unknown>;

  it('documents exactly the options the core knows', () => {
    expect(rows.length).toBeGreaterThan(20);
    expect(rows.map((r) => r.name).sort()).toEqual(Object.keys(resolved).sort());
    for (const r of rows) expect(refusal({ [r.name]: undefined })).toBeUndefined();
  });

  it('gives the numeric defaults the core applies', () => {
    const numeric = rows.filter((r) => /^\d[\d\s ]*$/.test(r.def));
    expect(numeric.map((r) => r.name)).toContain('leaseMs');
    for (const r of numeric) expect([r.name, resolved[r.name]]).toEqual([r.name, num(r.def)]);
  });

  it('gives the integer ranges the core enforces', () => {
    const ranged: [string, number, number][] = [];
    for (const r of rows) {
      const range = /^(\d[\d\s ]*?) ?–(\d[\d\s ]*?)(?: \(.*\))?$/.exec(r.allowed);
      if (range !== null) ranged.push([r.name, num(range[1] as string), num(range[2] as string)]);
      const atLeast = /^≥ (\d+)$/.exec(r.allowed);
      if (atLeast !== null) ranged.push([r.name, num(atLeast[1] as string), Number.MAX_SAFE_INTEGER]);
    }
    const breaker = rows.find((r) => r.name === 'breaker')?.allowed ?? '';
    for (const m of breaker.matchAll(/`(failureThreshold|openMs)` (\d[\d\s ]*)–(\d[\d\s ]*)/g)) {
      ranged.push([`breaker.${m[1] as string}`, num(m[2] as string), num(m[3] as string)]);
    }
    expect(ranged.map(([n]) => n)).toEqual(expect.arrayContaining(['leaseMs', 'gridTimeoutMs', 'maxStoredBodyBytes', 'breaker.openMs', 'breaker.failureThreshold', 'retentionMs', 'maxKeyLength', 'retryAfterSeconds']));
    const withValue = (field: string, v: number): DedupeOptions =>
      field.startsWith('breaker.') ? { breaker: { [field.slice('breaker.'.length)]: v } } : ({ [field]: v });
    for (const [field, min, max] of ranged) {
      expect([field, refusal(withValue(field, min))]).toEqual([field, undefined]);
      expect([field, refusal(withValue(field, max))]).toEqual([field, undefined]);
      expect([field, refusal(withValue(field, min - 1))?.field]).toEqual([field, field]);
      if (max < Number.MAX_SAFE_INTEGER) expect([field, refusal(withValue(field, max + 1))?.field]).toEqual([field, field]);
      expect([field, refusal(withValue(field, min + 0.5))?.field]).toEqual([field, field]);
    }
  });

  it('a shared CircuitBreaker is held to the same breaker options (it used to take any value: openMs -1, NaN, a misspelt name)', () => {
    const breaker = rows.find((r) => r.name === 'breaker')?.allowed ?? '';
    const built = (o: object): string | undefined => {
      try {
        new CircuitBreaker(o);
        return undefined;
      } catch (e) {
        if (e instanceof DedupeConfigError) return e.field;
        throw e;
      }
    };
    const ranges = [...breaker.matchAll(/`(failureThreshold|openMs)` (\d[\d\s ]*)–(\d[\d\s ]*)/g)];
    expect(ranges.map((m) => m[1])).toEqual(['failureThreshold', 'openMs']);
    for (const m of ranges) {
      const [name, min, max] = [m[1] as string, num(m[2] as string), num(m[3] as string)];
      for (const ok of [min, max]) expect([name, built({ [name]: ok })]).toEqual([name, undefined]);
      for (const bad of [min - 1, max + 1, Number.NaN, null]) expect([name, built({ [name]: bad })]).toEqual([name, `breaker.${name}`]);
    }
    expect(built({ openMS: 10 })).toBe('breaker.openMS');
    const b = new CircuitBreaker();
    expect([b.failureThreshold, b.openMs]).toEqual([3, 2000]);
  });

  it('cache: 1 to 255 UTF-8 bytes', () => {
    expect(rows.find((r) => r.name === 'cache')?.allowed).toBe('1–255 UTF-8 bytes');
    expect(refusal({ cache: 'é'.repeat(127) })).toBeUndefined();
    expect(refusal({ cache: 'é'.repeat(128) })?.field).toBe('cache');
    expect(refusal({ cache: '' })?.field).toBe('cache');
  });
});

describe('docs/api.md direct answers table', () => {
  const doc = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8');
  const rows = new Map<string, { status: number; title: string; headers: string }>();
  for (const m of doc.matchAll(/^\| (\d{3}) \| `([a-z-]+)` \| ([^|]+) \| ([^|]*)\|$/gm)) {
    rows.set(m[2] as string, { status: Number(m[1]), title: (m[3] as string).trim(), headers: (m[4] as string).trim() });
  }

  /** A request as an adapter describes it; no grid client: the decisions below come before the grid. */
  const request = (headers: Record<string, string>): DedupeRequest<null> => ({
    method: 'POST',
    route: '/orders',
    header: (name) => headers[name],
    body: { a: 1 },
    clientAddress: undefined,
    userAgent: undefined,
    raw: null,
  });

  async function answer(options: DedupeOptions<null>, headers: Record<string, string>): Promise<{ status: number; type: string; title: string; headers: string[]; contentType: string | undefined }> {
    const d = await new Deduper<null>({ metrics: false, ...options }).begin(request(headers));
    if (d.action !== 'respond') throw new Error(`no direct answer: ${d.action}`);
    const body = JSON.parse(Buffer.from(d.response.body).toString('utf8')) as { type: string; title: string; status: number };
    expect(body.status).toBe(d.response.status);
    return {
      status: d.response.status,
      type: body.type,
      title: body.title,
      headers: d.response.headers.map(([k]) => k).filter((k) => k !== 'content-type'),
      contentType: d.response.headers.find(([k]) => k === 'content-type')?.[1],
    };
  }

  it('gives the status, type, title and headers of each answer made before the grid is asked', async () => {
    expect([...rows.keys()].sort()).toEqual(['deduplication-unavailable', 'idempotency-key-reused', 'invalid-idempotency-key', 'missing-idempotency-key', 'request-in-progress', 'unidentifiable-request']);
    const cases: [string, DedupeOptions<null>, Record<string, string>][] = [
      ['invalid-idempotency-key', {}, { 'idempotency-key': '"unterminated' }],
      ['missing-idempotency-key', { required: true }, {}],
      ['unidentifiable-request', { tenant: () => 1 as unknown as string }, { 'idempotency-key': 'k' }],
      ['deduplication-unavailable', {}, { 'idempotency-key': 'k' }],
    ];
    for (const [type, options, headers] of cases) {
      const row = rows.get(type);
      const got = await answer(options, headers);
      expect(got).toEqual({
        status: row?.status,
        type: `urn:gridlink:problem:${type}`,
        title: row?.title,
        headers: row?.headers === '' ? [] : [row?.headers.replace(/`/g, '').toLowerCase()],
        contentType: 'application/problem+json',
      });
    }
  });
});

describe('docs/api.md log lines', () => {
  it('names every structured log line the adapters write (their `event` field)', () => {
    const doc = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8');
    const written = new Set<string>();
    for (const pkg of ['dedupe', 'express', 'nest']) {
      const dir = new URL(`../../${pkg}/src/`, import.meta.url);
      for (const f of readdirSync(dir)) {
        for (const m of readFileSync(new URL(f, dir), 'utf8').matchAll(/event: '(dedupe\.[a-z_]+)'/g)) written.add(m[1] as string);
      }
    }
    expect(written.size).toBeGreaterThan(10);
    expect([...written].filter((e) => !doc.includes(`\`${e}\``))).toEqual([]);
  });
});
