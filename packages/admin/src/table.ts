/** Plain-text tables for the CLI's default output. */
export function table(headers: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...cells.map(line)].join('\n');
}

/** Compact list of partition numbers: `0-3,7,9-10`, cut after `max` ranges. */
export function ranges(ps: readonly number[], max = 12): string {
  if (ps.length === 0) return 'none';
  const sorted = [...ps].sort((a, b) => a - b);
  const out: string[] = [];
  let start = sorted[0]!;
  let prev = start;
  for (const p of [...sorted.slice(1), Number.NaN]) {
    if (p === prev + 1) {
      prev = p;
      continue;
    }
    out.push(start === prev ? String(start) : `${start}-${prev}`);
    start = p;
    prev = p;
  }
  return out.length > max ? `${out.slice(0, max).join(',')},… (${ps.length} partitions)` : out.join(',');
}

/**
 * The `releases:` line of `gridlink status` while nodes announce different releases or node-to-node
 * wire ranges (a rolling upgrade under way, ADR 0060): each release with its nodes; none when they
 * all agree. Offline nodes are left out (their lease, if any, is a dead node's).
 */
export function releasesLine(members: readonly { id: string; state: string; release: string | null; wire: string | null }[]): string[] {
  const by = new Map<string, string[]>();
  for (const m of members) {
    if (m.state === 'offline') continue;
    const key = `${m.release ?? 'unknown'}${m.wire === null ? '' : ` (wire ${m.wire})`}`;
    const ids = by.get(key) ?? [];
    ids.push(m.id);
    by.set(key, ids);
  }
  if (by.size <= 1) return [];
  return [`releases: ${[...by].map(([k, ids]) => `${k}: ${ids.join(', ')}`).join('; ')}`];
}

/**
 * The `unreachable:` line of `gridlink status` while any node reports members it cannot reach
 * over the grid while they renew (ADR 0065): `node-2 cannot reach node-3; node-3 cannot reach
 * node-2`. None when no node reports any. Offline nodes are left out (a dead node's lease).
 */
export function unreachableLine(members: readonly { id: string; state: string; unreachable: readonly string[] }[]): string[] {
  const parts = members.filter((m) => m.state !== 'offline' && m.unreachable.length > 0).map((m) => `${m.id} cannot reach ${m.unreachable.join(', ')}`);
  return parts.length === 0 ? [] : [`unreachable: ${parts.join('; ')}`];
}

/** What a fenced life has become, as the `fenced:` line says it. */
function fenceText(f: { state: string; nextEpoch: string | null }): string {
  switch (f.state) {
    case 'stopping':
      return 'still a member until its lease runs out';
    case 'held-back':
      return `gone; its next life (epoch ${(f.nextEpoch ?? '').slice(0, 8)}) held back until it reaches every member`;
    default:
      return 'gone';
  }
}

/**
 * The `fenced:` line of `gridlink status` while the topology has entries (ADR 0065): each node the
 * coordinator asked to stop renewing, the epoch asked (its first 8 characters, as the EPOCH
 * column), and whether that life is still a member or gone (and its next life held back).
 */
export function fencedLine(fenced: readonly { id: string; epoch: string; state: string; nextEpoch: string | null }[]): string[] {
  if (fenced.length === 0) return [];
  return [`fenced: ${fenced.map((f) => `${f.id} (epoch ${f.epoch.slice(0, 8)}) asked to stop renewing: ${fenceText(f)}`).join('; ')}`];
}
