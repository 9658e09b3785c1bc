#!/usr/bin/env node
import { runCli } from './run.js';

runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
}).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`gridlink: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 4;
  },
);
