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

/**
 * Invalid options, found at construction; `field` names the offending option, `reason` says what
 * is wrong with it (the message without the field: to report it again under another field name).
 */
export class DedupeConfigError extends DedupeError {
  readonly field: string;
  readonly reason: string;

  constructor(field: string, reason: string) {
    super(`invalid dedupe option "${field}": ${reason}`, 'DEDUPE_CONFIG', false);
    this.name = 'DedupeConfigError';
    this.field = field;
    this.reason = reason;
    Object.defineProperty(this, CONFIG_BRAND, { value: true, enumerable: false });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return has(value, CONFIG_BRAND);
  }
}
