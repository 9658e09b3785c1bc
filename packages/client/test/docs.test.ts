import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, resolveConfig } from '@gridlink/client';

/** docs/client.md's "Configuration" table: option name → its Default cell. */
function documentedOptions(): Map<string, string> {
  const md = readFileSync(fileURLToPath(new URL('../../../docs/client.md', import.meta.url)), 'utf8');
  const section = md.split('\n## Configuration\n')[1]?.split('\n## ')[0];
  if (section === undefined) throw new Error('docs/client.md has no Configuration section');
  const rows = new Map<string, string>();
  for (const line of section.split('\n')) {
    const m = /^\| `([A-Za-z]+)` \| ([^|]+) \|/.exec(line);
    if (m !== null) rows.set(m[1] as string, (m[2] as string).trim());
  }
  return rows;
}

/** An object literal of the docs (`{ retries: 7, jitter: true }`) as a plain object. */
function literal(cell: string): Record<string, unknown> {
  const body = /^`\{(.*)\}`$/.exec(cell)?.[1];
  if (body === undefined) throw new Error(`not an object literal: ${cell}`);
  const out: Record<string, unknown> = {};
  for (const part of body.split(',')) {
    const [k, v] = part.split(':').map((s) => s.trim()) as [string, string];
    out[k] = v === 'true' ? true : v === 'false' ? false : Number(v);
  }
  return out;
}

describe('docs/client.md', () => {
  it('documents every client option, and only those', () => {
    const options = Object.keys(resolveConfig({ endpoints: ['a'] })).sort();
    expect([...documentedOptions().keys()].sort()).toEqual(options);
  });

  it('gives the defaults DEFAULTS holds', () => {
    const docs = documentedOptions();
    for (const [name, value] of Object.entries(DEFAULTS)) {
      const cell = docs.get(name);
      expect(cell, name).toBeDefined();
      if (typeof value === 'number') expect(Number(/^\d+/.exec(cell as string)?.[0]), name).toBe(value);
      else if (typeof value === 'boolean') expect(cell, name).toBe(String(value));
      else if (typeof value === 'string') expect(cell, name).toBe(`\`${value}\``);
      else expect(literal(cell as string), name).toEqual(value);
    }
  });
});
