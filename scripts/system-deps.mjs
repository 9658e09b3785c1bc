#!/usr/bin/env node
// Makes sure the system servers the test suite starts are present: nats-server, redis-server and
// chromium (Debian packages of the same names). Missing ones are installed with apt-get when this
// runs as root (or with sudo that needs no password); otherwise it says exactly what to install
// and exits non-zero, so the test command fails early with a clear message instead of halfway.
import { execFileSync, spawnSync } from 'node:child_process';

const NEEDED = [
  { bin: 'nats-server', pkg: 'nats-server', why: 'the NATS control plane and messaging tests' },
  { bin: 'redis-server', pkg: 'redis-server', why: 'the side-by-side benchmarks and comparison tests' },
  { bin: 'chromium', pkg: 'chromium', why: 'the dashboard test in a real browser' },
];

const has = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' }).status === 0;

const missing = NEEDED.filter((n) => !has(n.bin));
if (missing.length === 0) process.exit(0);

const pkgs = missing.map((m) => m.pkg);
console.log(`system-deps: missing ${missing.map((m) => `${m.bin} (${m.why})`).join(', ')}`);

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const sudoOk = !isRoot && has('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
if (!has('apt-get') || (!isRoot && !sudoOk)) {
  console.error(
    `system-deps: cannot install them here (needs apt-get and root or passwordless sudo).\n` +
      `Install the Debian packages by hand, then run the tests again:\n  apt-get install -y ${pkgs.join(' ')}`,
  );
  process.exit(1);
}

const run = (args) => {
  const cmd = isRoot ? 'apt-get' : 'sudo';
  const argv = isRoot ? args : ['-n', 'apt-get', ...args];
  execFileSync(cmd, argv, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
};
try {
  console.log(`system-deps: apt-get install ${pkgs.join(' ')}`);
  run(['update', '-qq']);
  run(['install', '-y', '-qq', ...pkgs]);
} catch (err) {
  console.error(`system-deps: apt-get failed (${err.message}); install by hand: apt-get install -y ${pkgs.join(' ')}`);
  process.exit(1);
}
const still = missing.filter((m) => !has(m.bin));
if (still.length > 0) {
  console.error(`system-deps: still missing after apt-get: ${still.map((m) => m.bin).join(', ')}`);
  process.exit(1);
}
console.log('system-deps: installed');
