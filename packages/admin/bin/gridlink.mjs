#!/usr/bin/env node
// Launcher for the gridlink command. It is committed (unlike dist/) so that package managers can
// link the bin before the package is built; it runs the built CLI.
import('../dist/cli.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli.js')) {
    process.stderr.write('gridlink: the package is not built yet (run its build first)\n');
    process.exit(1);
  }
  throw err;
});
