import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.base.js';

// shims: the CommonJS build gets an import.meta.url (ProcessCluster finds @gridlink/node's CLI from it).
export default defineConfig({ ...packageBuild, shims: true });
