import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

// shims: the CommonJS build gets `import.meta.url` (startup.ts resolves the optional
// @nestjs/testing from this package's location, ADR 0052).
export default defineConfig({ ...packageBuild, shims: true });
