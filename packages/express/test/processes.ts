/** App instances as child processes on free 127.0.0.1 ports, ended by pid (also on failure/exit). */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
});

export interface AppProcess {
  child: ChildProcess;
  base: string;
  exited: Promise<void>;
}

export async function startApp(file: string, env: Record<string, string>, timeoutMs = 30_000): Promise<AppProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', file], {
    cwd: root,
    env: { ...process.env, ...env, TSX_TSCONFIG_PATH: 'tsconfig.json', NODE_ENV: 'test' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    live.delete(child);
    resolve();
  }));
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`app did not start in ${timeoutMs} ms: ${stderr}`)), timeoutMs);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`app exited with ${code}: ${stderr}`));
    });
  });
  return { child, base: `http://127.0.0.1:${port}`, exited };
}

/** Ends the process by pid; SIGKILL by default. */
export async function stopApp(app: AppProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (app.child.exitCode === null && app.child.signalCode === null && app.child.pid !== undefined) {
    process.kill(app.child.pid, signal);
  }
  await app.exited;
}
