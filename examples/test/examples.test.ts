import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));

async function runExample(file: string): Promise<string> {
  try {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', file], {
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

describe('examples', () => {
  it('the README quick start runs and reads the value back after a node is killed', async () => {
    const out = await runExample('examples/quickstart.ts');
    expect(out).toContain("user: 'u42'");
    expect(out).toContain('fencing token');
  });

  it('the demo kills a node under load with no failed request and exits 0', async () => {
    const out = await runExample('examples/demo.ts');
    expect(out).toMatch(/\b0 failed\b/);
    expect(out).toContain('0 missing');
    expect(out).toContain('exactly once: true');
  });
});
