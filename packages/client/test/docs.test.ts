import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as client from '@gridlink/client';
import * as internal from '@gridlink/client/internal';
import * as nats from '@gridlink/client/nats';
import { DEFAULTS, resolveConfig, type GridClientEvents } from '@gridlink/client';

function clientMd(): string {
  return readFileSync(fileURLToPath(new URL('../../../docs/client.md', import.meta.url)), 'utf8');
}

/** docs/client.md's "Configuration" table: option name → its Default cell. */
function documentedOptions(): Map<string, string> {
  const section = clientMd().split('\n## Configuration\n')[1]?.split('\n## ')[0];
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

  it("lists every error class with the code and retryability an instance has", () => {
    const section = clientMd().split('\n## Errors\n')[1]?.split('\n## ')[0] ?? '';
    const rows = new Map<string, string[]>();
    for (const line of section.split('\n')) {
      const cells = line.split('|').map((c) => c.trim());
      const name = /^`([A-Za-z]+)`/.exec(cells[1] ?? '')?.[1];
      if (name !== undefined) rows.set(name, cells.slice(2, 4));
    }
    const made: Record<string, { code: string; retryable: boolean }> = {
      GridError: new client.GridError('x'),
      GridConnectionError: new client.GridConnectionError('x'),
      GridTlsError: new client.GridTlsError('x'),
      GridTimeoutError: new client.GridTimeoutError('x'),
      LockTimeoutError: new client.LockTimeoutError('x'),
      GridConfigError: new client.GridConfigError('f', 'x'),
      PartitionLostError: new client.PartitionLostError('x'),
      LockNotHeldError: new client.LockNotHeldError('x'),
      GridClosedError: new client.GridClosedError(),
      GridAbortError: new client.GridAbortError(),
      ClusterMismatchError: new client.ClusterMismatchError('x'),
      GridSerializationError: new client.GridSerializationError('x'),
      InvalidKeyError: new client.InvalidKeyError('x'),
    };
    // Every exported error class with a code is here (GridServerError's code is the protocol's).
    const exported = Object.keys(client).filter((k) => /^[A-Z].*Error$/.test(k) && k !== 'EndpointParseError' && k !== 'GridServerError');
    expect(Object.keys(made).sort()).toEqual(exported.sort());
    expect(rows.has('GridServerError')).toBe(true);
    for (const [name, err] of Object.entries(made)) {
      const [code, retryable] = rows.get(name) ?? [];
      expect(code, name).toContain(`\`${err.code}\``);
      if (name !== 'GridError') expect(retryable?.split(/[ (]/)[0], name).toBe(err.retryable ? 'yes' : 'no');
    }
  });

  it('lists every event GridClientEvents types, and only those', () => {
    // Exhaustive by type: a key missing from or added to GridClientEvents fails to compile here.
    const typed: Record<keyof GridClientEvents, true> = {
      connected: true,
      disconnected: true,
      nodeUp: true,
      nodeDown: true,
      topologyChanged: true,
      retry: true,
      error: true,
    };
    const section = clientMd().split('\n## Events\n')[1]?.split('\n## ')[0] ?? '';
    const documented: string[] = [];
    for (const line of section.split('\n')) {
      const first = line.split('|')[1] ?? '';
      if (!line.startsWith('| `')) continue;
      for (const m of first.matchAll(/`([A-Za-z]+)`/g)) documented.push(m[1] as string);
    }
    expect(documented.sort()).toEqual(Object.keys(typed).sort());
  });

  it('names every value the three entry points export', () => {
    const md = clientMd();
    const exported = [...Object.keys(client), ...Object.keys(internal), ...Object.keys(nats)];
    expect(exported.length).toBeGreaterThan(40);
    expect(exported.filter((name) => !md.includes(`\`${name}`))).toEqual([]);
  });
});
