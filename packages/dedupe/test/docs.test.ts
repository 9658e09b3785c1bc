/**
 * docs/api.md's options table against the code: every option the core knows is documented and
 * every documented one is known, each numeric default is the one applied, and each documented
 * integer range is the one enforced (its bounds accepted, one beyond refused naming the field).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DedupeConfigError, resolveDedupeOptions, type DedupeOptions } from '@gridlink/dedupe';

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
      const range = /^(\d[\d\s ]*)–(\d[\d\s ]*)$/.exec(r.allowed);
      if (range !== null) ranged.push([r.name, num(range[1] as string), num(range[2] as string)]);
      const atLeast = /^≥ (\d+)$/.exec(r.allowed);
      if (atLeast !== null) ranged.push([r.name, num(atLeast[1] as string), Number.MAX_SAFE_INTEGER]);
    }
    const breaker = rows.find((r) => r.name === 'breaker')?.allowed ?? '';
    for (const m of breaker.matchAll(/`(failureThreshold|openMs)` (\d[\d\s ]*)–(\d[\d\s ]*)/g)) {
      ranged.push([`breaker.${m[1] as string}`, num(m[2] as string), num(m[3] as string)]);
    }
    expect(ranged.map(([n]) => n)).toEqual(expect.arrayContaining(['leaseMs', 'gridTimeoutMs', 'maxStoredBodyBytes', 'breaker.openMs', 'breaker.failureThreshold', 'retentionMs']));
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

  it('cache: 1 to 255 UTF-8 bytes', () => {
    expect(rows.find((r) => r.name === 'cache')?.allowed).toBe('1–255 UTF-8 bytes');
    expect(refusal({ cache: 'é'.repeat(127) })).toBeUndefined();
    expect(refusal({ cache: 'é'.repeat(128) })?.field).toBe('cache');
    expect(refusal({ cache: '' })?.field).toBe('cache');
  });
});
