/**
 * Runs every benchmark (or the ones named on the command line) one after another, each in its
 * own process so that one bench's heap and timers cannot disturb the next. Benchmarks load the
 * built packages (run `pnpm build` first; `pnpm bench` does).
 *
 *   pnpm bench                 # all of them
 *   pnpm bench affinity node   # just these
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const order = ['affinity', 'protocol', 'node', 'client'];
const available = readdirSync(here, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(here, d.name, 'index.ts')))
  .map((d) => d.name)
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

function rank(name: string): number {
  const i = order.indexOf(name);
  return i === -1 ? order.length : i;
}

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !available.includes(w));
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(', ')} (available: ${available.join(', ')})`);
  process.exit(2);
}
const selected = wanted.length > 0 ? wanted : available;

let failed = 0;
for (const name of selected) {
  console.log(`\n## bench/${name}\n`);
  // The bench module is imported and the process then exits at once, rather than left to wind
  // down: Node 20 can spin forever in its exit-time handle cleanup (nodejs/node#47748), which we
  // met three times with throwaway benches of real processes, and spawnSync would wait on it.
  const entry = pathToFileURL(join(here, name, 'index.ts')).href;
  const main = `await import(${JSON.stringify(entry)}); process.exit(process.exitCode ?? 0);`;
  const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', main], {
    stdio: 'inherit',
    // Measure the built packages (dist/), not the sources the root tsconfig maps for tests.
    env: { ...process.env, NODE_ENV: 'production', TSX_TSCONFIG_PATH: join(here, 'tsconfig.json') },
  });
  if (result.status !== 0) {
    failed++;
    console.error(`bench/${name} exited with ${result.status ?? result.signal}`);
  }
}
process.exit(failed > 0 ? 1 : 0);
