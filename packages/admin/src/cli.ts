#!/usr/bin/env node
import { ExitCode } from './errors.js';
import { runCli } from './run.js';

runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
}).then(
  (code) => {
    process.exitCode = code;
  },
  // runCli returns an exit code for every error it meets; this is a crash outside it.
  (err: unknown) => {
    process.stderr.write(`gridlink: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = ExitCode.INTERNAL;
  },
);
