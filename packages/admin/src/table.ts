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
