/** Renders time series as a small self-contained SVG line chart (no dependencies). */

export interface Series {
  name: string;
  color: string;
  /** y values, one per bucket. */
  values: number[];
  /** Plot against the right-hand axis (its own scale, e.g. errors next to ops/s). Default left. */
  axis?: 'left' | 'right';
}

export interface ChartOptions {
  title: string;
  bucketMs: number;
  yLabel: string;
  /** Label of the right-hand axis; drawn when some series uses `axis: 'right'`. */
  y2Label?: string;
  /** Vertical markers: x in ms from the start, with a label. */
  markers?: { atMs: number; label: string }[];
  width?: number;
  height?: number;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function lineChart(series: Series[], opts: ChartOptions): string {
  const width = opts.width ?? 760;
  const height = opts.height ?? 300;
  const right = series.filter((s) => s.axis === 'right');
  const left = series.filter((s) => s.axis !== 'right');
  const pad = { left: 64, right: right.length > 0 ? 56 : 16, top: 36, bottom: 40 };
  const buckets = Math.max(1, ...series.map((s) => s.values.length));
  const maxY = Math.max(1, ...left.flatMap((s) => s.values));
  // Rounded up to a multiple of 4, so that the right axis' ticks are whole numbers.
  const maxY2 = Math.ceil(Math.max(1, ...right.flatMap((s) => s.values)) / 4) * 4;
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const x = (i: number): number => pad.left + (buckets <= 1 ? 0 : (i / (buckets - 1)) * plotW);
  const y = (v: number): number => pad.top + plotH - (v / maxY) * plotH;
  const y2 = (v: number): number => pad.top + plotH - (v / maxY2) * plotH;
  const totalMs = buckets * opts.bucketMs;

  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  parts.push(`<text x="${width / 2}" y="18" text-anchor="middle" font-size="13">${esc(opts.title)}</text>`);
  for (let t = 0; t <= 4; t++) {
    const v = (maxY * t) / 4;
    parts.push(`<line x1="${pad.left}" x2="${width - pad.right}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`);
    parts.push(`<text x="${pad.left - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v)}</text>`);
    if (right.length > 0) {
      const v2 = (maxY2 * t) / 4;
      parts.push(`<text x="${width - pad.right + 6}" y="${y2(v2) + 4}">${Number.isInteger(v2) ? v2 : v2.toFixed(1)}</text>`);
    }
  }
  const stepMs = totalMs > 40_000 ? 5000 : totalMs > 8000 ? 2000 : 1000;
  for (let ms = 0; ms <= totalMs; ms += stepMs) {
    const xi = x(ms / opts.bucketMs);
    parts.push(`<text x="${xi}" y="${height - pad.bottom + 16}" text-anchor="middle">${ms / 1000}s</text>`);
  }
  parts.push(`<text x="14" y="${pad.top + plotH / 2}" transform="rotate(-90 14 ${pad.top + plotH / 2})" text-anchor="middle">${esc(opts.yLabel)}</text>`);
  if (right.length > 0 && opts.y2Label !== undefined) {
    const xr = width - 10;
    parts.push(`<text x="${xr}" y="${pad.top + plotH / 2}" transform="rotate(90 ${xr} ${pad.top + plotH / 2})" text-anchor="middle">${esc(opts.y2Label)}</text>`);
  }
  (opts.markers ?? []).forEach((m, i) => {
    const xi = x(m.atMs / opts.bucketMs);
    parts.push(`<line x1="${xi}" x2="${xi}" y1="${pad.top}" y2="${pad.top + plotH}" stroke="#999" stroke-dasharray="4 3"/>`);
    // Staggered, so that the labels of close markers do not overlap.
    parts.push(`<text x="${xi + 4}" y="${pad.top + 12 + (i % 3) * 12}">${esc(m.label)}</text>`);
  });
  series.forEach((s, k) => {
    const yOf = s.axis === 'right' ? y2 : y;
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${yOf(v).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.8" points="${pts}"/>`);
    parts.push(`<rect x="${pad.left + 8 + k * 150}" y="${height - 14}" width="10" height="3" fill="${s.color}"/>`);
    parts.push(`<text x="${pad.left + 22 + k * 150}" y="${height - 10}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}
