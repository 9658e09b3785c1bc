/** Minimal structured logger the node writes to. Silent unless one is injected. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

const noop = (): void => {};
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

/** A logger writing one JSON line per entry to stderr (used by the CLI). */
export function consoleLogger(level: 'debug' | 'info' | 'warn' | 'error' = 'info'): Logger {
  const order = ['debug', 'info', 'warn', 'error'];
  const min = order.indexOf(level);
  const make =
    (lvl: string) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      if (order.indexOf(lvl) < min) return;
      process.stderr.write(JSON.stringify({ t: new Date().toISOString(), level: lvl, msg, ...fields }) + '\n');
    };
  return { debug: make('debug'), info: make('info'), warn: make('warn'), error: make('error') };
}

/**
 * Names the step a start-up is waiting in, and says so (a warning every `everyMs`) while it
 * takes longer than that: a node that hangs at start-up says where, instead of nothing.
 */
export class StartupSteps {
  private current: string;
  private readonly t0 = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly log: Logger,
    private readonly fields: Record<string, unknown>,
    first: string,
    everyMs = STARTUP_SLOW_LOG_MS,
  ) {
    this.current = first;
    log.debug('start-up step', { ...fields, step: first });
    this.timer = setInterval(() => {
      log.warn('start-up still waiting', { ...fields, step: this.current, waitedMs: Math.round(performance.now() - this.t0) });
    }, everyMs);
    this.timer.unref();
  }

  /** The step it waits in from now on (logged at debug level as it begins). */
  step(name: string): void {
    this.current = name;
    this.log.debug('start-up step', { ...this.fields, step: name });
  }

  /** Started (or failed): no more warnings. */
  done(): void {
    clearInterval(this.timer);
  }
}

/** How often a slow start-up says which step it waits in. */
export const STARTUP_SLOW_LOG_MS = 5000;
