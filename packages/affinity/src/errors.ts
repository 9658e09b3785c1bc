const INVALID_KEY_BRAND = Symbol.for('gridlink.InvalidKeyError');
const INVALID_ARGUMENT_BRAND = Symbol.for('gridlink.AffinityArgumentError');

/**
 * A value that cannot be used as a grid key: NaN, an unsupported type (object, symbol,
 * undefined, null, function, a typed array other than Uint8Array), a string that is not valid
 * Unicode (lone surrogate), or a composite nested too deeply; or, from `decodeKey`, bytes that are
 * not exactly one canonical key encoding. Never retryable: the same key fails the same way every
 * time.
 */
export class InvalidKeyError extends TypeError {
  readonly code = 'GRID_INVALID_KEY';
  readonly retryable = false;

  constructor(message: string) {
    super(message);
    this.name = 'InvalidKeyError';
    Object.defineProperty(this, INVALID_KEY_BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && INVALID_KEY_BRAND in value;
  }
}

/**
 * An argument to an ownership or partition function is out of range: a partition count that is
 * not a positive integer, a duplicate node id, a non-positive weight, ... `field` names it.
 */
export class AffinityArgumentError extends RangeError {
  readonly code = 'GRID_INVALID_ARGUMENT';
  readonly retryable = false;
  readonly field: string;

  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'AffinityArgumentError';
    this.field = field;
    Object.defineProperty(this, INVALID_ARGUMENT_BRAND, { value: true });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && INVALID_ARGUMENT_BRAND in value;
  }
}
