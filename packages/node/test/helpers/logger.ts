import { silentLogger, type Logger } from '@gridlink/node';

/** A node logger that keeps the warnings' messages, in order, and drops everything else. */
export function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { ...silentLogger, warnings, warn: (msg: string) => void warnings.push(msg) };
}
