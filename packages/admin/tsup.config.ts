import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

export default defineConfig([
  packageBuild,
  // The gridlink command (bin/gridlink.mjs loads it).
  { ...packageBuild, entry: { cli: 'src/cli.ts' }, format: ['esm'], dts: false, clean: false },
]);
