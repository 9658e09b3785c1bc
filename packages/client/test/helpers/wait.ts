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
