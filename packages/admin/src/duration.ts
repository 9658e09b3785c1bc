import { AdminUsageError } from './errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** The longest duration accepted: the longest delay a Node.js timer takes (about 24.8 days). */
export const MAX_DURATION_MS = 2_147_483_647;

/**
 * Parses an operator's duration: one or more `<integer><unit>` parts with units ms, s, m, h
 * (`500ms`, `10s`, `2m`, `1m30s`). A bare `0` is allowed; at most MAX_DURATION_MS (a longer
 * timer would fire at once). Errors name the argument.
 */
export function parseDuration(text: string, argument: string): number {
  if (typeof text !== 'string') throw new AdminUsageError(argument, 'expected a duration such as 10s or 2m');
  const s = text.trim();
  if (s === '0') return 0;
  const re = /(\d+)(ms|s|m|h)/y;
  let total = 0;
  let pos = 0;
  let parts = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new AdminUsageError(argument, `expected a duration such as 10s, 2m or 1m30s, got "${text}"`);
    total += Number(m[1]) * UNITS[m[2]!]!;
    pos = re.lastIndex;
    parts++;
  }
  if (parts === 0) throw new AdminUsageError(argument, `expected a duration such as 10s, 2m or 1m30s, got "${text}"`);
  if (!Number.isSafeInteger(total) || total > MAX_DURATION_MS) {
    throw new AdminUsageError(argument, `duration too large: "${text}" (at most ${formatDuration(MAX_DURATION_MS)})`);
  }
  return total;
}

/** Formats milliseconds in the same notation, largest units first (`90000` → `1m30s`). */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  let rest = Math.max(0, Math.round(ms));
  if (rest === 0) return '0';
  let out = '';
  for (const [unit, size] of [['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
