/** The API examples run with one command each, and their demo shows one partner call per order. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));

async function demo(file: string): Promise<string> {
  try {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', file, '--demo'], {
      cwd: root,
      timeout: 60_000,
      env: { ...process.env, TSX_TSCONFIG_PATH: 'tsconfig.json' },
    });
    return stdout;
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${file} failed: ${e.message}\n--- stdout\n${e.stdout ?? ''}\n--- stderr\n${e.stderr ?? ''}`);
  }
}

describe.each([['examples/api-express/server.ts'], ['examples/api-nest/main.ts']])('%s --demo', (file) => {
  it('runs a burst of duplicates once, replays, and answers 422 and 400', async () => {
    const out = await demo(file);
    const burst = JSON.parse(/20 concurrent POSTs with one key: (.*)/.exec(out)![1]!) as Record<string, number>;
    expect(burst['201']).toBe(1);
    expect(Object.keys(burst).every((k) => ['201', '201 replayed', '409'].includes(k))).toBe(true);
    expect(out).toContain('retry after completion: 201 replayed: true');
    expect(out).toContain('same key, other payload: 422');
    expect(out).toContain('no key: 400');
    expect(out).toContain('partner calls: 1\n');
  });
});
