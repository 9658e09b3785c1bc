import type { GridClient, GridClientEvents } from '@gridlink/client';

/** Polls `pred` until it holds or `timeoutMs` passes (then throws naming `what`). */
export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise<void>((r) => setTimeout(r, 10));
  }
}

/** Resolves with the first `event` of the client satisfying `pred`, or rejects after `timeoutMs`. */
export function nextEvent<E extends keyof GridClientEvents>(
  client: GridClient,
  event: E,
  pred: (x: Parameters<GridClientEvents[E]>[0]) => boolean,
  timeoutMs: number,
): Promise<Parameters<GridClientEvents[E]>[0]> {
  type T = Parameters<GridClientEvents[E]>[0];
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(event, on);
      reject(new Error(`no ${String(event)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (x: T): void => {
      if (!pred(x)) return;
      clearTimeout(timer);
      client.off(event, on);
      resolve(x);
    };
    client.on(event, on);
  });
}

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown } | 'pending';

/** A value in a failure message: String(v), or a placeholder for one that cannot be made a string. */
export function show(v: unknown): string {
  try {
    return String(v);
  } catch {
    return '(a value with no string form)';
  }
}

/** How `p` settled within `ms` (a bound on a hang, not a wait for something to happen). */
export async function settle<T>(p: Promise<T>, ms: number): Promise<Settled<T>> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<'pending'>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  try {
    return await Promise.race([
      p.then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      ),
      bound,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The error `p` rejects with (fails when it resolves, or is still pending after `ms`). */
export async function rejection(p: Promise<unknown>, ms = 5000): Promise<unknown> {
  const r = await settle(p, ms);
  if (r === 'pending') throw new Error(`still pending after ${ms} ms`);
  if (r.ok) throw new Error(`resolved (with ${show(r.value)}) instead of rejecting`);
  return r.error;
}
