/** Polls `pred` until it holds or `timeoutMs` passes (then throws naming `what`). */
export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise<void>((r) => setTimeout(r, 10));
  }
}

/** Resolves with the first emission of `event` satisfying `pred`, or rejects after `timeoutMs`. */
export function nextEvent<T>(
  emitter: { on(e: string, f: (x: T) => void): unknown; off(e: string, f: (x: T) => void): unknown },
  event: string,
  pred: (x: T) => boolean,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, on);
      reject(new Error(`no ${event} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (x: T): void => {
      if (!pred(x)) return;
      clearTimeout(timer);
      emitter.off(event, on);
      resolve(x);
    };
    emitter.on(event, on);
  });
}
