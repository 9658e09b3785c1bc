#!/usr/bin/env node
import { ExitCode } from './errors.js';
import { runCli } from './run.js';

/**
 * Ends the process with `code` once what was written to stdout and stderr has been handed over.
 * runCli has closed everything it opened by then, but a NATS connection attempt it gave up on at
 * --timeout (a server that accepts and never answers, an address that drops packets) can keep a
 * socket that nats.js does not close, and the process would stay for as long as that socket does:
 * --timeout bounds the whole command, so the command ends here.
 */
function exit(code: number): void {
  process.exitCode = code;
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
}).then(exit, (err: unknown) => {
  // runCli returns an exit code for every error it meets; this is a crash outside it.
  process.stderr.write(`gridlink: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  exit(ExitCode.INTERNAL);
});
