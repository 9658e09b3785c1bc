/**
 * Small measuring kit shared by the benchmarks: closed-loop load at a fixed number of requests
 * in flight, latency percentiles, CPU time per operation, and plain-text tables.
 */
import { readFileSync } from 'node:fs';

export interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  p50us: number;
  p99us: number;
  /** CPU time (user + system) of this process per operation in the measured window, µs. */
  cpuUsPerOp: number;
  /** CPU time of the `serverPid` process per operation, µs (NaN when unknown). */
  serverCpuUsPerOp: number;
}

/**
 * User and system CPU time (all threads) a process has used so far, in µs, from /proc (Linux);
 * NaN where that is not available. Resolution: one clock tick (10 ms).
 */
export function processCpuSplitUs(pid: number): { user: number; system: number } {
  const f = statFields(pid);
  // utime and stime are fields 14 and 15.
  return f === null ? { user: Number.NaN, system: Number.NaN } : { user: (Number(f[11]) * 1e6) / 100, system: (Number(f[12]) * 1e6) / 100 };
}

/** Fields of /proc/<pid>/stat from the third on (after the parenthesised command name), or null. */
function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/**
 * Minor page faults of a process so far (Linux /proc/<pid>/stat field 10; NaN elsewhere). On a
 * virtual machine a fault can cost microseconds: V8's young-generation collector faults in the
 * pages it copies survivors to when it had given them back to the system.
 */
export function processMinorFaults(pid: number): number {
  const f = statFields(pid);
  return f === null ? Number.NaN : Number(f[7]);
}

/** CPU time (user + system) a process has used so far, in µs (see processCpuSplitUs). */
export function processCpuUs(pid: number): number {
  const c = processCpuSplitUs(pid);
  return c.user + c.system;
}

/** Read and write system calls a process has made so far (Linux /proc/<pid>/io; NaN elsewhere). */
export function processSyscalls(pid: number): { r: number; w: number } {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    return { r: Number(/syscr: (\d+)/.exec(io)?.[1]), w: Number(/syscw: (\d+)/.exec(io)?.[1]) };
  } catch {
    return { r: Number.NaN, w: Number.NaN };
  }
}

/** Voluntary + involuntary context switches of a process so far (Linux /proc/<pid>/status; NaN elsewhere). */
export function processContextSwitches(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1]) + Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1]);
  } catch {
    return Number.NaN;
  }
}

/** Median of an unsorted list (the mean of the two middle values for an even count; NaN when empty); sorts a copy. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
}

/** Percentile (0..100) of an unsorted list of numbers; sorts a copy. */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

/**
 * Runs `op` with `inFlight` concurrent loops for `durationMs` (after `warmupMs` of unmeasured
 * load) and returns throughput and latency percentiles in microseconds.
 */
export async function closedLoop(
  op: (i: number) => Promise<unknown>,
  opts: { inFlight: number; durationMs: number; warmupMs?: number; maxSamples?: number; serverPid?: number },
): Promise<LoadResult> {
  const { inFlight, durationMs } = opts;
  const warmupMs = opts.warmupMs ?? Math.min(500, durationMs / 4);
  const maxSamples = opts.maxSamples ?? 200_000;
  const samples = new Float64Array(maxSamples);
  let sampled = 0;
  let ops = 0;
  let errors = 0;
  let counter = 0;
  let measuring = false;
  let stop = false;
  let measureStart = 0n;

  const worker = async (): Promise<void> => {
    while (!stop) {
      const i = counter++;
      const t0 = process.hrtime.bigint();
      try {
        await op(i);
        if (measuring) {
          ops++;
          if (sampled < maxSamples) samples[sampled++] = Number(process.hrtime.bigint() - t0) / 1000;
        }
      } catch {
        if (measuring) errors++;
      }
    }
  };

  const workers = Array.from({ length: inFlight }, () => worker());
  await delay(warmupMs);
  measuring = true;
  measureStart = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const server0 = opts.serverPid === undefined ? Number.NaN : processCpuUs(opts.serverPid);
  await delay(durationMs);
  measuring = false;
  const cpu = process.cpuUsage(cpu0);
  const server1 = opts.serverPid === undefined ? Number.NaN : processCpuUs(opts.serverPid);
  const seconds = Number(process.hrtime.bigint() - measureStart) / 1e9;
  stop = true;
  await Promise.all(workers);
  return {
    ops,
    errors,
    seconds,
    opsPerSec: ops / seconds,
    p50us: percentile(samples.subarray(0, sampled), 50),
    p99us: percentile(samples.subarray(0, sampled), 99),
    cpuUsPerOp: (cpu.user + cpu.system) / Math.max(1, ops),
    serverCpuUsPerOp: (server1 - server0) / Math.max(1, ops),
  };
}

/** Times a synchronous function: returns ns per call over `iterations` after a warm-up. */
export function nsPerOp(fn: () => void, iterations = 200_000): number {
  for (let i = 0; i < Math.min(iterations, 20_000); i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - t0) / iterations;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Formats rows as a Markdown table (first row is the header). */
export function table(rows: readonly (readonly (string | number)[])[]): string {
  const text = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmt(c) : c)));
  const widths = text[0]!.map((_, col) => Math.max(...text.map((r) => (r[col] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const [head, ...body] = text;
  return [line(head!), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...body.map(line)].join('\n');
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(2);
}
