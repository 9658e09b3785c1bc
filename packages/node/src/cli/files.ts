/**
 * The files gridlink-node's flags name (--tls-*, --nats-tls-*, --nats-creds), read and checked
 * before the control plane is opened, so that a bad one is refused naming its flag. The admin CLI
 * checks its --nats-creds with the same function.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { credsAuthenticator } from '@nats-io/transport-node';
import { NodeConfigError } from '../errors.js';

/** The file a flag names, or a NodeConfigError naming the flag when it cannot be read. */
function readFlagFile(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new NodeConfigError(flag, `cannot read ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export interface PemFiles {
  certFile?: string | undefined;
  keyFile?: string | undefined;
  caFile?: string | undefined;
}

/**
 * Reads and checks the TLS files of the flags `<prefix>-cert`, `-key` and `-ca` (the node's own
 * --tls-*, or --nats-tls-*), naming the flag of one that cannot be read, holds no PEM certificate
 * or key, or a key that is not the certificate's: before the control plane is opened, not as a
 * bare ENOENT or OpenSSL error once the node has joined (or, for NATS, once a server answered).
 */
export function readPemFiles(t: PemFiles, prefix: 'tls' | 'nats-tls'): { cert?: Buffer; key?: Buffer; ca?: Buffer } {
  const check = (flag: string, o: SecureContextOptions, problem: string): void => {
    try {
      createSecureContext(o);
    } catch (err) {
      throw new NodeConfigError(flag, `${problem} (${err instanceof Error ? err.message : String(err)})`);
    }
  };
  const [certFlag, keyFlag, caFlag] = [`${prefix}-cert`, `${prefix}-key`, `${prefix}-ca`];
  const out: { cert?: Buffer; key?: Buffer; ca?: Buffer } = {};
  if (t.certFile !== undefined) out.cert = readFlagFile(certFlag, t.certFile);
  if (t.keyFile !== undefined) out.key = readFlagFile(keyFlag, t.keyFile);
  if (out.cert !== undefined) check(certFlag, { cert: out.cert }, `no certificate (PEM) in ${t.certFile}`);
  if (out.key !== undefined) check(keyFlag, { key: out.key }, `no private key (PEM) in ${t.keyFile}`);
  if (out.cert !== undefined && out.key !== undefined) {
    check(keyFlag, { cert: out.cert, key: out.key }, `the key in ${t.keyFile} does not match the certificate in ${t.certFile}`);
  }
  if (t.caFile !== undefined) {
    const ca = readFlagFile(caFlag, t.caFile);
    // OpenSSL skips what is not a certificate in a CA bundle: one with none would verify no peer.
    if (!ca.toString('latin1').includes('-----BEGIN CERTIFICATE-----')) throw new NodeConfigError(caFlag, `no certificate (PEM) in ${t.caFile}`);
    check(caFlag, { ca }, `no usable CA certificate (PEM) in ${t.caFile}`);
    out.ca = ca;
  }
  return out;
}

/**
 * Reads and checks a NATS credentials file (--nats-creds), throwing a NodeConfigError naming the
 * flag when it cannot be read or holds no user JWT and nkey seed: before anything connects. NATS
 * reads it only once a server answers; gridlink-node then retried until --nats-connect-timeout-ms
 * and stopped with a bare ENOENT or "unable to parse credentials", and the admin CLI reported a
 * control plane it could not reach.
 */
export function checkNatsCredsFile(file: string): void {
  const creds = readFlagFile('nats-creds', file);
  try {
    // What NATS does with it on connecting: parse the JWT and the seed, sign a nonce with the seed.
    credsAuthenticator(() => creds)('gridlink');
  } catch (err) {
    throw new NodeConfigError('nats-creds', `no NATS credentials (a user JWT and nkey seed) in ${file} (${err instanceof Error ? err.message : String(err)})`);
  }
}
