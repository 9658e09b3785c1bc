/**
 * Errors of the de-duplication core. Each has a stable `code` and a `retryable` flag, and is
 * branded with a `Symbol.for` key so `instanceof` survives duplicate installs of the package.
 */
const BRAND = Symbol.for('gridlink.dedupe.DedupeError');
const CONFIG_BRAND = Symbol.for('gridlink.dedupe.DedupeConfigError');

function has(value: unknown, key: symbol): boolean {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[key] === true;
}

export class DedupeError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(message: string, code = 'DEDUPE_ERROR', retryable = false, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DedupeError';
    this.code = code;
    this.retryable = retryable;
    Object.defineProperty(this, BRAND, { value: true, enumerable: false });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return has(value, BRAND);
  }
}

/** Invalid options, found at construction; `field` names the offending option. */
export class DedupeConfigError extends DedupeError {
  readonly field: string;

  constructor(field: string, message: string) {
    super(`invalid dedupe option "${field}": ${message}`, 'DEDUPE_CONFIG', false);
    this.name = 'DedupeConfigError';
    this.field = field;
    Object.defineProperty(this, CONFIG_BRAND, { value: true, enumerable: false });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return has(value, CONFIG_BRAND);
  }
}
