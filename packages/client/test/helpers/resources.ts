import { createHook } from 'node:async_hooks';

/**
 * Resource types that must come back to their count: sockets, listening servers, connects in
 * progress and (referenced) timers. What else the process holds (vitest's IPC pipes, a
 * transient file request) is not ours.
 */
export const TRACKED = ['TCPSocketWrap', 'TCPServerWrap', 'TCPConnectWrap', 'Timeout'] as const;

/** Counts of the tracked types among the handles and timers that keep the process alive. */
export function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of TRACKED) out[t] = 0;
  for (const t of process.getActiveResourcesInfo()) if (t in out) out[t]! += 1;
  return out;
}

/** The fewest of each tracked resource over a few samples: what a quiet process holds. */
export async function resourceBaseline(): Promise<Record<string, number>> {
  const base = resources();
  for (let i = 0; i < 10; i++) {
    await new Promise((r) => setTimeout(r, 10));
    const now = resources();
    for (const t of TRACKED) base[t] = Math.min(base[t]!, now[t]!);
  }
  return base;
}

/** No tracked type above its count in `base`. */
export function withinBaseline(base: Record<string, number>): boolean {
  const now = resources();
  return TRACKED.every((t) => now[t]! <= base[t]!);
}

/** Where a timer was made: the first frame in a package's src, as `package/file function`. */
function creationSite(): string | undefined {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 30;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  for (const line of stack.split('\n')) {
    const m = /at (?:(\S+) \()?.*\/packages\/([\w-]+)\/src\/([\w./-]+?)\.ts:\d+:\d+/.exec(line);
    if (m) return `${m[2]}/${m[3]}${m[1] !== undefined ? ` ${m[1]}` : ''}`;
  }
  return undefined;
}

/**
 * Tracks the timers (setTimeout / setInterval, referenced or not) that the packages' sources
 * create from now on, until `stop()`: `live()` counts those neither fired nor cleared, by where
 * they were made. Unreferenced timers do not show in process.getActiveResourcesInfo(); this sees
 * them (through async_hooks, which costs some speed while enabled).
 */
export function trackTimers(): { live(filter?: (site: string) => boolean): Record<string, number>; stop(): void } {
  const pending = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type !== 'Timeout') return;
      const site = creationSite();
      if (site !== undefined) pending.set(id, site);
    },
    destroy(id) {
      pending.delete(id);
    },
  });
  hook.enable();
  return {
    live(filter) {
      const out: Record<string, number> = {};
      for (const site of pending.values()) if (filter === undefined || filter(site)) out[site] = (out[site] ?? 0) + 1;
      return out;
    },
    stop() {
      hook.disable();
    },
  };
}
