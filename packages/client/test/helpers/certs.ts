/** Self-signed certificates for 127.0.0.1 made with the openssl command, for the TLS tests. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether the openssl command is there (the TLS tests skip without it). */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A directory with one self-signed certificate (subjectAltName 127.0.0.1 and localhost) and key per
 * name, as `<name>.pem` and `<name>.key`, with the given common names; `remove()` deletes it.
 */
export function selfSigned<N extends string>(prefix: string, names: Record<N, string>): { dir: string; certs: Record<N, { cert: Buffer; key: Buffer }>; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const certs = {} as Record<N, { cert: Buffer; key: Buffer }>;
  try {
    for (const [n, cn] of Object.entries(names) as [N, string][]) {
      execFileSync('openssl', [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${cn}`,
        '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout', join(dir, `${n}.key`), '-out', join(dir, `${n}.pem`),
      ], { stdio: 'ignore' });
      certs[n] = { cert: readFileSync(join(dir, `${n}.pem`)), key: readFileSync(join(dir, `${n}.key`)) };
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, certs, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
