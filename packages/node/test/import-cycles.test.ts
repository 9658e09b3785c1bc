/**
 * No import cycles inside any package's src: walks every relative import and export-from
 * (type-only ones included) of packages/<name>/src and looks for a cycle, so one cannot come
 * back unnoticed. Also checks the check itself on a made-up graph.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const SPECIFIER = /(?:^|[\s;])(?:import|export)\s[^'";]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|[\s;])import\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/gm;

/** Relative imports of one file, resolved to .ts paths. */
function importsOf(file: string, source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2]!;
    const target = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
    out.push(target.endsWith('.ts') ? target : `${target}.ts`);
  }
  return out;
}

/** One cycle (as a list of nodes, first repeated at the end) or null. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    const s = state.get(n);
    if (s === 'done') return null;
    if (s === 'open') return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, 'open');
    stack.push(n);
    for (const next of graph.get(n) ?? []) {
      if (!graph.has(next)) continue;
      const c = visit(next);
      if (c) return c;
    }
    stack.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of graph.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return null;
}

describe('import cycles', () => {
  it('the cycle finder finds a cycle and accepts a DAG', () => {
    expect(findCycle(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]))).toEqual(['a', 'b', 'c', 'a']);
    expect(findCycle(new Map([['a', ['b', 'c']], ['b', ['c']], ['c', []]]))).toBeNull();
    expect(importsOf('/x/src/a.ts', "import type { A } from './b.js';\nexport * from '../c.js';\nimport x from 'pkg';")).toEqual(['/x/src/b.ts', '/x/c.ts']);
  });

  const packages = readdirSync(join(root, 'packages')).filter((name) => {
    try {
      return statSync(join(root, 'packages', name, 'src')).isDirectory();
    } catch {
      return false;
    }
  });

  it.each(packages)('packages/%s/src has none', (name) => {
    const graph = new Map<string, string[]>();
    for (const file of tsFiles(join(root, 'packages', name, 'src'))) graph.set(file, importsOf(file, readFileSync(file, 'utf8')));
    const cycle = findCycle(graph);
    expect(cycle?.map((f) => relative(root, f)) ?? null).toBeNull();
  });
});
