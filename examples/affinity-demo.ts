/**
 * Partition ownership in a 3-node cluster with one backup, and exactly what moves when a node
 * leaves and when one joins.
 *
 *   npx tsx examples/affinity-demo.ts
 */
import {
  computeAssignment,
  diffAssignments,
  partitionOf,
  type Assignment,
  type AssignmentChange,
  type GridKey,
  type NodeSpec,
} from '@gridlink/affinity';

const PARTITIONS = 1024;
const BACKUPS = 1;

const assign = (baseline: NodeSpec[], alive: string[] = baseline.map((n) => n.id)): Assignment =>
  computeAssignment({ partitions: PARTITIONS, backups: BACKUPS, baseline, alive });

function ownershipTable(a: Assignment, ids: string[], offline: string[] = []): void {
  const rows = ids.map((id) => {
    let primaries = 0;
    let backups = 0;
    a.owners.forEach((owners, p) => {
      if (a.primaries[p] === id) primaries++;
      else if (owners.includes(id)) backups++;
    });
    const state = offline.includes(id) ? 'offline' : 'up';
    return [id, state, String(primaries), String(backups), `${((100 * primaries) / PARTITIONS).toFixed(1)}%`];
  });
  const lost = a.primaries.filter((p) => p === null).length;
  print([['node', 'state', 'primaries', 'backups', 'share of primaries'], ...rows]);
  if (lost > 0) console.log(`  ${lost} partitions have no alive owner (lost)`);
}

function print(rows: string[][]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows) console.log(`  ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')}`);
}

const fmt = (owners: string[]): string => `[${owners.join(', ')}]`;

function showChanges(title: string, changes: AssignmentChange[], before: Assignment, after: Assignment): void {
  const ownersChanged = changes.filter((c) => c.ownersChanged).length;
  const primariesChanged = changes.filter((c) => c.primaryChanged).length;
  console.log(`\n${title}`);
  console.log(`  ${ownersChanged} of ${PARTITIONS} partitions change owners, ${primariesChanged} change primary`);
  for (const c of changes.slice(0, 5)) {
    const pb = before.primaries[c.partition] ?? 'none';
    const pa = after.primaries[c.partition] ?? 'none';
    console.log(`  partition ${String(c.partition).padStart(4)}: ${fmt(c.before)} -> ${fmt(c.after)}   primary ${pb} -> ${pa}`);
  }
  if (changes.length > 5) console.log(`  ... and ${changes.length - 5} more`);
}

const three: NodeSpec[] = [{ id: 'node-a' }, { id: 'node-b' }, { id: 'node-c' }];
const base = assign(three);

console.log(`${PARTITIONS} partitions, ${BACKUPS} backup, baseline node-a, node-b, node-c (owners listed primary first)\n`);
ownershipTable(base, ['node-a', 'node-b', 'node-c']);

console.log('\nWhere some keys live:');
const keys: GridKey[] = ['user:42', 'order:2026-11-21:0007', ['tenant-7', 'cart', 19]];
for (const key of keys) {
  const p = partitionOf(key, PARTITIONS);
  console.log(`  ${JSON.stringify(key).padEnd(26)} partition ${String(p).padStart(4)}  owners ${fmt(base.owners[p]!)}`);
}

// node-c goes down but stays in the baseline: ownership is unchanged, its backups take over.
const down = assign(three, ['node-a', 'node-b']);
const downChanges = diffAssignments(base, down);
showChanges('node-c goes offline (still in the baseline): no data moves, its backups serve', downChanges, base, down);
ownershipTable(down, ['node-a', 'node-b', 'node-c'], ['node-c']);

// node-c leaves the baseline: only the partitions it owned get a new owner.
const two = three.filter((n) => n.id !== 'node-c');
const left = assign(two);
const leaveChanges = diffAssignments(base, left);
const heldByC = base.owners.filter((o) => o.includes('node-c')).length;
showChanges('node-c leaves the baseline', leaveChanges, base, left);
console.log(`  node-c owned ${heldByC} partitions; every changed partition is one of them: ${leaveChanges.every((c) => c.before.includes('node-c'))}`);
ownershipTable(left, ['node-a', 'node-b']);

// node-d joins the 3-node baseline: only the partitions it enters change.
const four: NodeSpec[] = [...three, { id: 'node-d' }];
const joined = assign(four);
const joinChanges = diffAssignments(base, joined);
showChanges('node-d joins the baseline', joinChanges, base, joined);
console.log(`  every changed partition now includes node-d: ${joinChanges.every((c) => c.after.includes('node-d'))}`);
ownershipTable(joined, ['node-a', 'node-b', 'node-c', 'node-d']);
