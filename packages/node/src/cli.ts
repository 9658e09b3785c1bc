#!/usr/bin/env node
/**
 * gridlink-node: starts one grid node.
 *
 * Multi-process clusters need a shared control plane (NATS JetStream KV); until that adapter
 * exists the CLI runs with the in-memory control plane, i.e. a cluster of this one node.
 */
import { parseArgs } from 'node:util';
import { MemoryControlPlane } from './control/kv.js';
import { NodeConfigError } from './errors.js';
import { consoleLogger } from './logger.js';
import { startNode } from './node.js';
import type { NodeOptions } from './config.js';

const USAGE = `usage: gridlink-node [options]
  --id <id>               node id (default: node-1)
  --host <addr>           listen address (default: 127.0.0.1)
  --port <n>              listen port (default: 10800; 0 = ephemeral)
  --advertise-host <h>    address given to clients and peers (default: --host)
  --http-port <n>         /health and /metrics port (default: off)
  --zone <zone>           availability zone (backups prefer other zones)
  --partitions <n>        partition count of a new cluster (default: 1024)
  --backups <n>           backups per partition (default: 1)
  --cluster-id <id>       cluster id (default: gridlink)
  --control-plane <url>   "memory" (default; a one-node cluster)
  --max-entries <n>       per-node entry bound, LRU eviction (default: unbounded)
  --auth-token <t>        token clients must present (default: none)
  --log-level <l>         debug | info | warn | error (default: info)
  --help`;

function num(v: string | undefined, field: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n)) throw new NodeConfigError(field, `must be an integer, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      id: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'advertise-host': { type: 'string' },
      'http-port': { type: 'string' },
      zone: { type: 'string' },
      partitions: { type: 'string' },
      backups: { type: 'string' },
      'cluster-id': { type: 'string' },
      'control-plane': { type: 'string' },
      'max-entries': { type: 'string' },
      'auth-token': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const cp = values['control-plane'] ?? 'memory';
  if (cp !== 'memory') throw new NodeConfigError('control-plane', `unsupported control plane ${cp} (only "memory" for now)`);
  const level = (values['log-level'] ?? 'info') as 'debug' | 'info' | 'warn' | 'error';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new NodeConfigError('log-level', `unknown level ${level}`);
  const opts: NodeOptions = {
    id: values.id ?? 'node-1',
    controlPlane: new MemoryControlPlane(),
    logger: consoleLogger(level),
  };
  if (values.host !== undefined) opts.host = values.host;
  if (values['advertise-host'] !== undefined) opts.advertiseHost = values['advertise-host'];
  if (values.zone !== undefined) opts.zone = values.zone;
  if (values['cluster-id'] !== undefined) opts.clusterId = values['cluster-id'];
  if (values['auth-token'] !== undefined) opts.authToken = values['auth-token'];
  const port = num(values.port, 'port');
  if (port !== undefined) opts.port = port;
  const httpPort = num(values['http-port'], 'http-port');
  if (httpPort !== undefined) opts.httpPort = httpPort;
  const partitions = num(values.partitions, 'partitions');
  if (partitions !== undefined) opts.partitions = partitions;
  const backups = num(values.backups, 'backups');
  if (backups !== undefined) opts.backups = backups;
  const maxEntries = num(values['max-entries'], 'max-entries');
  if (maxEntries !== undefined) opts.maxEntries = maxEntries;

  const node = await startNode(opts);
  process.stdout.write(`gridlink-node ${node.id} listening on ${opts.advertiseHost ?? opts.host ?? '127.0.0.1'}:${node.port}` + (node.httpPort !== undefined ? ` (http ${node.httpPort})` : '') + '\n');
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    node.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`gridlink-node: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
