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
