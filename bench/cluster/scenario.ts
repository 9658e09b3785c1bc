/**
 * What one failover scenario reports, and how it is printed: a summary row, ops/s and errors per
 * 100 ms as a table (one line per second), and an SVG chart written to docs/.
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lineChart } from '../shared/svg.js';
import type { Workload } from './workload.js';

export const docsDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');

export interface Marker {
  atMs: number;
  label: string;
}

export interface ScenarioResult {
  /** Human name, e.g. "grid: kill -9 of a node". */
  name: string;
  /** File-name part of the chart: docs/cluster-<slug>.svg. */
  slug: string;
  ok: number;
  failed: number;
  firstError: string;
  keys: number;
  affectedKeys: number;
  /** Longest pause of writes to the affected keys from the fault (ms); null when not measured. */
  pauseMs: number | null;
  /** The affected keys were not all written again within the scenario's limit. */
  unrecovered: boolean;
  /** ops/s and errors per 100 ms, from 1 s before the first fault. */
  ok100: number[];
  errors100: number[];
  markers: Marker[];
  notes: string[];
}

/** The timeline part of a result, cut from a workload over [from, to]. */
export function timelineOf(
  w: Workload,
  from: number,
  to: number,
  markers: { at: number; label: string }[],
): Pick<ScenarioResult, 'ok100' | 'errors100' | 'markers' | 'ok' | 'failed' | 'firstError'> {
  const { ok, errors } = w.perTenth(from, to);
  return {
    ok100: ok,
    errors100: errors,
    markers: markers.map((m) => ({ atMs: m.at - from, label: m.label })),
    ok: w.okAt.filter((t) => t >= from && t <= to).length,
    failed: w.failedBetween(from, to),
    firstError: w.firstErrorBetween(from, to),
  };
}

/** ops/s and errors per 100 ms, one line per second (ten buckets each), markers listed below. */
export function perTenthTable(r: ScenarioResult): string {
  const out = ['| t (s) | ops/s in each 100 ms | errors in each 100 ms |', '|---|---|---|'];
  for (let s = 0; s * 10 < r.ok100.length; s++) {
    const ok = r.ok100.slice(s * 10, s * 10 + 10);
    const err = r.errors100.slice(s * 10, s * 10 + 10);
    const errText = err.some((e) => e > 0) ? err.join(' ') : '0';
    out.push(`| ${s} | ${ok.join(' ')} | ${errText} |`);
  }
  out.push('', `Markers: ${r.markers.map((m) => `${(m.atMs / 1000).toFixed(2)} s ${m.label}`).join('; ')}`);
  return out.join('\n');
}

export function writeChart(r: ScenarioResult, subtitle: string): string {
  const svg = lineChart(
    [
      { name: 'ops/s', color: '#2563eb', values: r.ok100 },
      { name: 'errors per 100 ms (right)', color: '#dc2626', values: r.errors100, axis: 'right' },
    ],
    { title: `${r.name} (${subtitle})`, bucketMs: 100, yLabel: 'ops/s', y2Label: 'errors per 100 ms', markers: r.markers, width: 820 },
  );
  const file = `cluster-${r.slug}.svg`;
  writeFileSync(join(docsDir, file), svg);
  return file;
}
