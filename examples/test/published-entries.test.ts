/**
 * Every package is published as ESM and CommonJS with types: each entry point of each package's
 * exports map, as built (dist/), loads in a fresh Node process through `import` and through
 * `require`, and both forms export the same names. (The suite imports the sources; this is what
 * an app that installs the packages loads.)
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const packagesDir = fileURLToPath(new URL('../../packages/', import.meta.url));

interface Conditions {
  import?: { types?: string; default?: string };
  require?: { types?: string; default?: string };
}

const entries: { pkg: string; subpath: string; dir: string; esm: string; cjs: string; types: [string, string] }[] = [];
for (const name of readdirSync(packagesDir)) {
  const dir = join(packagesDir, name);
  const file = join(dir, 'package.json');
  if (!existsSync(file)) continue;
  const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name: string; exports?: Record<string, Conditions | string> };
  for (const [subpath, c] of Object.entries(pkg.exports ?? {})) {
    if (typeof c === 'string' || c.import?.default === undefined || c.require?.default === undefined) continue;
    entries.push({
      pkg: pkg.name,
      subpath,
      dir,
      esm: join(dir, c.import.default),
      cjs: join(dir, c.require.default),
      types: [join(dir, c.import.types ?? ''), join(dir, c.require.types ?? '')],
    });
  }
}

/** The sorted export names of a module loaded one way, in a fresh process (stdout: JSON). */
async function exportNames(how: 'import' | 'require', path: string, cwd: string): Promise<string[]> {
  const script =
    how === 'import'
      ? `import(${JSON.stringify(pathToFileURL(path).href)}).then((m) => { console.log(JSON.stringify(Object.keys(m).filter((k) => k !== 'default' && k !== 'module.exports').sort())); process.exit(0); })`
      : `console.log(JSON.stringify(Object.keys(require(${JSON.stringify(path)})).sort())); process.exit(0);`;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd, timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as string[];
}

describe('published entry points (ESM + CJS + types)', () => {
  it('every package has entry points to check', () => {
    expect(new Set(entries.map((e) => e.pkg)).size).toBeGreaterThanOrEqual(10);
  });

  for (const e of entries) {
    it(`${e.pkg}${e.subpath === '.' ? '' : e.subpath.slice(1)}: import and require load the same exports`, async () => {
      for (const f of [e.esm, e.cjs, ...e.types]) expect(existsSync(f), `${f} is built`).toBe(true);
      const [esm, cjs] = await Promise.all([exportNames('import', e.esm, e.dir), exportNames('require', e.cjs, e.dir)]);
      expect(esm.length).toBeGreaterThan(0);
      expect(cjs).toEqual(esm);
    });
  }
});
