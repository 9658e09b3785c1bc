/**
 * gridlink-node as an operator meets it: the real command (bin/gridlink-node.mjs, which runs
 * dist/cli.js: build the node package first) given values it must refuse. Each must exit 1 with one
 * line naming the flag, before it serves, connects to a control plane or prints a stack; a process
 * that does not exit by the deadline is ended by its pid and the test fails.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nkeys } from '@nats-io/transport-node';
import { FaultProxy, NatsCluster } from '@gridlink/testkit';
import { NatsControlPlane } from '../src/control/nats.js';
import { LEASE_PREFIX } from '../src/control/keys.js';

const BIN = new URL('../bin/gridlink-node.mjs', import.meta.url).pathname;
const live = new Set<number>();
const dir = mkdtempSync(join(tmpdir(), 'gridlink-cli-'));

afterAll(() => {
  for (const pid of live) process.kill(pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  expect([...live]).toEqual([]);
});

/** A node of a one-node cluster has nobody to hand its partitions to: do not wait for that on SIGTERM. */
const QUICK_STOP = ['--handoff-timeout-ms', '100'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the command until it exits, or until `until` holds on its output (then `signal`, SIGTERM
 * by default, and the exit awaited); past `deadlineMs` it is killed and `code` is null.
 */
function run(args: string[], opts: { env?: Record<string, string>; until?: (out: string) => boolean; signal?: NodeJS.Signals; deadlineMs?: number } = {}): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GRIDLINK_') && v !== undefined) env[k] = v;
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid!;
  live.add(pid);
  const out = { stdout: '', stderr: '' };
  let killed = false;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, opts.deadlineMs ?? 8000);
    let asked = false;
    const check = (): void => {
      if (!asked && opts.until?.(out.stdout + out.stderr) === true) {
        asked = true;
        child.kill(opts.signal ?? 'SIGTERM');
      }
    };
    child.stdout.on('data', (b: Buffer) => {
      out.stdout += b.toString();
      check();
    });
    child.stderr.on('data', (b: Buffer) => {
      out.stderr += b.toString();
      check();
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      live.delete(pid);
      resolve({ code: killed ? null : code, ...out });
    });
  });
}

/** Exits 1 at once with the one line `gridlink-node: <flag>: ...` matching `message`, having served nothing. */
async function refused(args: string[], flag: string, message: RegExp, env?: Record<string, string>): Promise<void> {
  const r = await run(['--port', '0', ...args], env === undefined ? {} : { env });
  expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: '' });
  expect(r.stderr).toMatch(new RegExp(`^gridlink-node: ${flag}: `));
  expect(r.stderr).toMatch(message);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
}

describe('gridlink-node and its launcher', () => {
  it('a SIGTERM sent as soon as the listening line appears stops the node gracefully (the line came before the signal handlers, and such a SIGTERM killed it)', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await run(['--port', '0', ...QUICK_STOP], { until: (o) => /listening on/.test(o) });
      expect(r.stdout).toMatch(/listening on/);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/"msg":"stopping","signal":"SIGTERM"/);
    }
  });
});

describe('gridlink-node --version', () => {
  it('prints the package version and exits 0, serving nothing (it was refused: "unknown option --version")', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect(await run(['--version'])).toEqual({ code: 0, stdout: `gridlink-node ${pkg.version}\n`, stderr: '' });
    // As --help: the values are not looked at, the variables not read.
    expect(await run(['--version', '--port', 'x'], { env: { GRIDLINK_HTTP_PORT: 'y' } })).toEqual({ code: 0, stdout: `gridlink-node ${pkg.version}\n`, stderr: '' });
    await refused(['--version=1'], 'version', /--version takes no value/);
  });
});

describe('gridlink-node and a signal during start-up', () => {
  /** The debug line GridNode.start and the command log as a start-up step begins. */
  const step = (name: string): RegExp => new RegExp(`"msg":"start-up step","id":"[^"]+","step":"${name}"`);

  it('a SIGTERM or SIGINT while it waits for NATS exits 0 at once, nothing of the node written (it killed the process: no handler was in place yet)', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      // Nothing listens on port 1: connecting would be retried for a minute.
      const args = ['--port', '0', '--log-level', 'debug', '--control-plane', 'nats://127.0.0.1:1', '--nats-connect-timeout-ms', '60000'];
      const r = await run(args, { until: (o) => step('connecting to the control plane').test(o), signal });
      expect([signal, r.code, r.stdout]).toEqual([signal, 0, '']);
      expect(r.stderr).toMatch(new RegExp(`"msg":"stopping","signal":"${signal}","during":"start-up, before the node started`));
    }
  });

  it("a SIGTERM once the node's own start has begun lets it end, then stops the node as a running one: exit 0, its lease deleted, never announced (it killed the process, its lease left to run out)", async () => {
    const nats = await NatsCluster.start({ servers: 1 });
    // Every control-plane round trip takes 100 ms: the start is still under way when the signal,
    // sent as its first step is logged, arrives.
    const proxy = await FaultProxy.start({ target: nats.urls[0]!.replace('nats://', ''), frames: false });
    proxy.delay(50);
    try {
      const id = 'signalled-at-start';
      const args = ['--port', '0', '--id', id, '--log-level', 'debug', '--control-plane', `nats://${proxy.endpoint}`, '--handoff-timeout-ms', '100', '--handoff-outage-ms', '100'];
      const r = await run(args, { until: (o) => step('listening').test(o), deadlineMs: 30_000 });
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: '' });
      expect(r.stderr).toMatch(/"msg":"stopping once the node has started","signal":"SIGTERM"/);
      // Started, then stopped as a running node stops: its lease written, then deleted.
      const started = r.stderr.indexOf('"msg":"node started"');
      expect(started).toBeGreaterThan(r.stderr.indexOf('"msg":"stopping once the node has started"'));
      expect(r.stderr.indexOf('"msg":"stopping","signal":"SIGTERM"', started)).toBeGreaterThan(started);
      const cp = await NatsControlPlane.connect({ servers: nats.urls, bucket: 'gridlink', create: false, connectTimeoutMs: 10_000 });
      try {
        expect(await cp.get(LEASE_PREFIX + id)).toBeNull();
      } finally {
        await cp.close();
      }
    } finally {
      await proxy.close();
      await nats.close();
    }
  });
});

describe('gridlink-node warns of GRIDLINK_* variables it does not read', () => {
  it('one line per unknown variable, naming the variable it probably meant, and runs on with the defaults (it used to ignore GRIDLINK_PARTITION=512 without a word)', async () => {
    const env = { GRIDLINK_PARTITION: '512', GRIDLINK_LEASE_MARIGN_MS: '100', GRIDLINK_SOMETHING_NEW: 'x', GRIDLINK_ZONE: 'a' };
    const r = await run(['--port', '0', ...QUICK_STOP], { env, until: (o) => /listening on/.test(o) });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/listening on .* partitions 1024 /);
    const warnings = r.stderr.split('\n').filter((l) => l.startsWith('gridlink-node: warning: '));
    expect(warnings.sort()).toEqual([
      'gridlink-node: warning: GRIDLINK_LEASE_MARIGN_MS is not a gridlink-node variable and is ignored (did you mean GRIDLINK_LEASE_MARGIN_MS?)',
      'gridlink-node: warning: GRIDLINK_PARTITION is not a gridlink-node variable and is ignored (did you mean GRIDLINK_PARTITIONS?)',
      'gridlink-node: warning: GRIDLINK_SOMETHING_NEW is not a gridlink-node variable and is ignored',
    ]);
    // Before anything else: also when the options are then refused (a misspelt GRIDLINK_CONTROL_PLANE
    // leaves GRIDLINK_BUCKET on the memory control plane).
    const refusedRun = await run(['--port', '0'], { env: { GRIDLINK_CONTROL_PLAN: 'nats://127.0.0.1:4222', GRIDLINK_BUCKET: 'grid' } });
    expect(refusedRun.code).toBe(1);
    expect(refusedRun.stderr.trim().split('\n')).toEqual([
      'gridlink-node: warning: GRIDLINK_CONTROL_PLAN is not a gridlink-node variable and is ignored (did you mean GRIDLINK_CONTROL_PLANE?)',
      'gridlink-node: bucket: --bucket needs --control-plane nats://... (--bucket given as GRIDLINK_BUCKET)',
    ]);
  });
});

describe('gridlink-node refuses what it cannot run with, naming the flag', () => {
  it('a flag given an empty value (--advertise-host= used to advertise ":<port>", --auth-token= to demand an empty token)', async () => {
    await refused(['--advertise-host='], 'advertise-host', /--advertise-host needs a value/);
    await refused(['--auth-token='], 'auth-token', /--auth-token needs a value/);
    await refused(['--host='], 'host', /--host needs a value/);
    // An empty variable is no variable: the default applies.
    const r = await run(['--port', '0', ...QUICK_STOP], { env: { GRIDLINK_ADVERTISE_HOST: '', GRIDLINK_AUTH_TOKEN: '' }, until: (o) => /listening on/.test(o) });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^gridlink-node \S+ listening on 127\.0\.0\.1:\d+ cluster/);
  });

  it('a value of only whitespace, or an address with whitespace in it (was: --advertise-host " " advertised " :<port>", --host "127.0.0.1 " failed with a bare getaddrinfo error)', async () => {
    await refused(['--advertise-host', ' '], 'advertise-host', /needs a value, got only whitespace " "$/m);
    await refused(['--host', '127.0.0.1 '], 'host', /without whitespace, got "127\.0\.0\.1 "$/m);
    await refused([], 'advertise-host', /\(--advertise-host given as GRIDLINK_ADVERTISE_HOST\)$/m, { GRIDLINK_ADVERTISE_HOST: ' ' });
    await refused([], 'auth-token', /\(--auth-token given as GRIDLINK_AUTH_TOKEN\)$/m, { GRIDLINK_AUTH_TOKEN: '\t' });
  });

  it('an --auth-token with whitespace at its start or end, as a secret written with echo has (was: taken as is, so every client presenting the token was refused, with no hint why)', async () => {
    await refused([], 'auth-token', /--auth-token has whitespace around it \(trailing "\\n"\): .* \(--auth-token given as GRIDLINK_AUTH_TOKEN\)$/m, { GRIDLINK_AUTH_TOKEN: 's3cret\n' });
    await refused(['--auth-token', ' s3cret'], 'auth-token', /--auth-token has whitespace around it \(leading " "\)/);
    // The refusal names the whitespace, never the token.
    const r = await run(['--port', '0'], { env: { GRIDLINK_AUTH_TOKEN: 's3cret\r\n' } });
    expect(r.code).toBe(1);
    expect(r.stderr).not.toContain('s3cret');
  });

  it('a flag followed by another flag instead of its value (was: "unexpected argument" about the next value)', async () => {
    await refused(['--zone', '--port', '0'], 'zone', /--zone needs a value \(got the flag --port;/);
    await refused(['--id', '--help'], 'id', /--id needs a value \(got the flag --help;/);
  });

  it('--bootstrap-nodes above 1 on the memory control plane, a cluster of one (it used to wait for ever)', async () => {
    await refused(['--bootstrap-nodes', '2'], 'bootstrap-nodes', /needs --control-plane nats:\/\//);
    await refused([], 'bootstrap-nodes', /needs --control-plane nats:\/\//, { GRIDLINK_BOOTSTRAP_NODES: '3' });
  });

  it('--host [::] listens everywhere as :: does (it was taken for a wildcard, then failed to resolve "[::]"), and [::] is no address to advertise', async () => {
    await refused(['--host', '0.0.0.0', '--advertise-host', '[::]'], 'advertise-host', /not a wildcard/);
    const r = await run(['--port', '0', ...QUICK_STOP, '--host', '[::]', '--advertise-host', '127.0.0.1'], { until: (o) => /listening on/.test(o) });
    expect(r.stderr).not.toMatch(/ENOTFOUND/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/listening on :::\d+ \(advertised 127\.0\.0\.1:\d+\)/);
  });

  it('a TLS file it cannot read or that holds no certificate or key (was: a bare ENOENT or OpenSSL error, after the node had started)', async () => {
    const junk = join(dir, 'junk.pem');
    writeFileSync(junk, 'not a pem file\n');
    await refused(['--tls-cert', join(dir, 'missing.pem'), '--tls-key', junk], 'tls-cert', /cannot read .*missing\.pem/);
    await refused(['--tls-cert', junk, '--tls-key', junk], 'tls-cert', /no certificate/);
    const pair = (name: string): [string, string] => {
      const [cert, key] = [join(dir, `${name}.crt`), join(dir, `${name}.key`)];
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' });
      return [cert, key];
    };
    const [certA, keyA] = pair('a');
    const [, keyB] = pair('b');
    await refused(['--tls-cert', certA, '--tls-key', junk], 'tls-key', /no private key/);
    await refused(['--tls-cert', certA, '--tls-key', keyB], 'tls-key', /does not match the certificate/);
    await refused(['--tls-cert', certA, '--tls-key', keyA, '--tls-ca', junk], 'tls-ca', /no certificate/);
    const r = await run(['--port', '0', ...QUICK_STOP, '--tls-cert', certA, '--tls-key', keyA, '--tls-ca', certA], { until: (o) => /listening on/.test(o) });
    expect(r.code).toBe(0);
  });

  it('a bad value from a GRIDLINK_* variable names the variable, which the command line does not show', async () => {
    await refused([], 'http-port', /must be an integer, got "x" \(given as GRIDLINK_HTTP_PORT\)$/m, { GRIDLINK_HTTP_PORT: 'x' });
    await refused(['--control-plane', 'nats://127.0.0.1:1', '--nats-creds', '/c'], 'nats-token', /give one of .* \(--nats-token given as GRIDLINK_NATS_TOKEN\)$/m, { GRIDLINK_NATS_TOKEN: 't' });
    // Given on the command line, the flag is named as it was given.
    await refused(['--http-port', 'x'], 'http-port', /must be an integer, got "x"$/m, { GRIDLINK_HTTP_PORT: '8080' });
  });

  it('a cluster setting from a GRIDLINK_* variable that the cluster does not have names the variable (was: "partitions: ..." only, the one refusal that did not)', async () => {
    const nats = await NatsCluster.start({ servers: 1 });
    try {
      const env = { GRIDLINK_CONTROL_PLANE: nats.urls[0]!, GRIDLINK_PARTITIONS: '64' };
      const first = await run(['--port', '0', ...QUICK_STOP], { env, until: (o) => /listening on/.test(o) });
      expect(first.stdout).toMatch(/listening on .* partitions 64 /);
      expect(first.code).toBe(0);
      const joining = /this node is configured with partitions 32 but the cluster "gridlink" has 64; a joining node must match \(or leave it unset\)/;
      await refused([], 'partitions', new RegExp(`${joining.source} \\(given as GRIDLINK_PARTITIONS\\)$`, 'm'), { ...env, GRIDLINK_PARTITIONS: '32' });
      await refused([], 'backups', /configured with backups 2 but the cluster "gridlink" has 1; .* \(given as GRIDLINK_BACKUPS\)$/m, { ...env, GRIDLINK_BACKUPS: '2' });
      // Given on the command line, the flag is named as it was given.
      await refused(['--partitions', '32'], 'partitions', new RegExp(`${joining.source}$`, 'm'), env);
    } finally {
      await nats.close();
    }
  });

  it('a --nats-creds file it cannot read or that holds no credentials, before it connects (was: a bare ENOENT or "unable to parse credentials" once NATS answered, after retrying for --nats-connect-timeout-ms)', async () => {
    const nats = await NatsCluster.start({ servers: 1 });
    try {
      const cp = ['--control-plane', nats.urls[0]!, '--nats-connect-timeout-ms', '8000'];
      const junk = join(dir, 'junk.creds');
      writeFileSync(junk, 'not a creds file\n');
      await refused([...cp, '--nats-creds', join(dir, 'missing.creds')], 'nats-creds', /cannot read .*missing\.creds/);
      await refused([...cp, '--nats-creds', dir], 'nats-creds', /cannot read /);
      await refused([...cp, '--nats-creds', junk], 'nats-creds', /no NATS credentials .*junk\.creds/);
      // From the variable: the message names it, as the command line does not show it.
      await refused(cp, 'nats-creds', /cannot read .*missing\.creds.* \(given as GRIDLINK_NATS_CREDS\)$/m, { GRIDLINK_NATS_CREDS: join(dir, 'missing.creds') });
      // A well-formed file passes the check (a server without authorization accepts any user).
      const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
      const creds = join(dir, 'user.creds');
      writeFileSync(creds, `-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.x\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`);
      const r = await run(['--port', '0', ...QUICK_STOP, ...cp, '--nats-creds', creds], { until: (o) => /listening on/.test(o) });
      expect(r.stderr).not.toMatch(/nats-creds/);
      expect(r.code).toBe(0);
    } finally {
      await nats.close();
    }
  });

  it('a --nats-tls-* file it cannot read or that holds no certificate or key, before it connects (was: "server does not support \'tls\'" or a bare ENOENT once NATS answered)', async () => {
    const nats = await NatsCluster.start({ servers: 1 });
    try {
      const url = nats.urls[0]!.replace(/^nats:/, 'tls:');
      const cp = ['--control-plane', url, '--nats-connect-timeout-ms', '8000'];
      const junk = join(dir, 'junk.pem');
      writeFileSync(junk, 'not a pem file\n');
      const [cert, key] = [join(dir, 'nats-client.crt'), join(dir, 'nats-client.key')];
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=client', '-keyout', key, '-out', cert], { stdio: 'ignore' });
      await refused([...cp, '--nats-tls-ca', join(dir, 'missing.pem')], 'nats-tls-ca', /cannot read .*missing\.pem/);
      await refused([...cp, '--nats-tls-ca', junk], 'nats-tls-ca', /no certificate/);
      await refused([...cp, '--nats-tls-cert', join(dir, 'missing.pem'), '--nats-tls-key', key], 'nats-tls-cert', /cannot read .*missing\.pem/);
      await refused([...cp, '--nats-tls-cert', cert, '--nats-tls-key', junk], 'nats-tls-key', /no private key/);
      await refused(cp, 'nats-tls-ca', /cannot read .*missing\.pem.* \(given as GRIDLINK_NATS_TLS_CA\)$/m, { GRIDLINK_NATS_TLS_CA: join(dir, 'missing.pem') });
      // Good files pass the check: what stops it then is this server, which speaks no TLS.
      const r = await run(['--port', '0', '--control-plane', url, '--nats-connect-timeout-ms', '1000', '--nats-tls-ca', cert, '--nats-tls-cert', cert, '--nats-tls-key', key]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^gridlink-node: control plane /);
    } finally {
      await nats.close();
    }
  });

  it('--http-port the same as --port (was: listen EADDRINUSE after joining the cluster, naming neither)', async () => {
    const r = await run(['--port', '18557', '--http-port', '18557']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gridlink-node: http-port: must differ from --port \(18557\)/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
