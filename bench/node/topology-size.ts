/**
 * Size of the topology record a NATS control plane stores (ADR 0050): its JSON and gzip of it,
 * as the coordinator writes it after the nodes joined, and with a counter floor for every
 * partition (after a full loss was reset, ADR 0049). NATS carries 1 MiB per message by default;
 * records over 90 % of it are stored gzipped.
 *
 *   TSX_TSCONFIG_PATH=bench/tsconfig.json npx tsx bench/node/topology-size.ts
 */
import { gzipSync } from 'node:zlib';
import type { LeaseRecord } from '@gridlink/node';
import { initialTopology, nextTopology } from '@gridlink/node/internal';
import { table } from '../shared/measure.js';

const shapes: [partitions: number, nodes: number, backups: number][] = [
  [1024, 3, 1],
  [4096, 3, 1],
  [16_384, 3, 1],
  [16_384, 10, 2],
  [32_768, 3, 1],
  [65_536, 3, 1],
  [65_536, 20, 2],
];
const kb = (n: number): string => `${Math.round(n / 1024)} KB`;
const rows: (string | number)[][] = [['partitions', 'nodes', 'backups', 'JSON', 'gzip', 'JSON with floors', 'gzip with floors']];
for (const [partitions, nodes, backups] of shapes) {
  // StatefulSet-like ids and the pod DNS names they advertise.
  const leases: LeaseRecord[] = Array.from({ length: nodes }, (_, i) => ({
    id: `gridlink-${i}`,
    epoch: '4faa2137-3a40-41f0-8a21-efc4045b6944',
    host: `gridlink-${i}.gridlink.default.svc.cluster.local`,
    port: 10800,
    synced: {},
  }));
  const first = initialTopology({ clusterId: 'gridlink', partitions, backups, leases });
  const rec = nextTopology(first, leases, 1) ?? first;
  const json = JSON.stringify(rec);
  const floors: Record<string, number> = {};
  for (let p = 0; p < partitions; p++) floors[String(p)] = Date.now() * 1024;
  const floored = JSON.stringify({ ...rec, floors });
  rows.push([partitions, nodes, backups, kb(json.length), kb(gzipSync(json).length), kb(floored.length), kb(gzipSync(floored).length)]);
}
console.log(table(rows));
