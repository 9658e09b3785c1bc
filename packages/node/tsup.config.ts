import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

export default defineConfig([
  // The public entry and the `./internal` subpath; shared code in common chunks (ESM and CJS),
  // so a class is one class whichever entry it was imported through.
  { ...packageBuild, entry: { index: 'src/index.ts', internal: 'src/internal.ts' }, splitting: true },
  // The gridlink-node command (bin/gridlink-node.mjs loads it).
  { ...packageBuild, entry: { cli: 'src/cli.ts' }, format: ['esm'], dts: false, clean: false },
]);
