/**
 * Errors of the admin tooling. Each has a stable `code`, a `retryable` flag and the process exit
 * code the `gridlink` command ends with when it is the reason it stopped (see docs/operations.md §9 and
 * ADR 0025). Each class is branded with its own Symbol.for, so `instanceof` survives duplicate
 * installs and tells the classes apart (`instanceof AdminRefusedError` is false for a usage error).
 */
export const ExitCode = {
  /** The command did what was asked; for status/safe: nothing lost or moving. */
  OK: 0,
  /** The command line is wrong: unknown verb or option, bad value, missing argument. */
  USAGE: 1,
  /** The command ran, and partitions are lost or moving (status, safe, decommission --wait). */
  PARTITIONS_UNSAFE: 2,
  /** The control plane could not be reached or did not answer in time. */
  UNREACHABLE: 3,
  /** Understood but refused: a data-moving change without --yes, an unknown node, a conflict. */
  REFUSED: 4,
  /** An internal error: the command failed in a way it does not classify (a bug, not a refusal). */
  INTERNAL: 5,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The brand every instance of a class carries; every class below declares its own. */
const brandOf = (cls: unknown): symbol => (cls as { brand: symbol }).brand;

export class AdminError extends Error {
  static readonly brand: symbol = Symbol.for('gridlink.AdminError');
  readonly code: string;
  readonly retryable: boolean;
  readonly exitCode: ExitCode;
  constructor(code: string, message: string, exitCode: ExitCode, retryable = false) {
    super(message);
    this.name = 'AdminError';
    this.code = code;
    this.exitCode = exitCode;
    this.retryable = retryable;
    // The brands of the class constructed and of each class it extends.
    for (let cls: unknown = new.target; cls !== Error && typeof cls === 'function'; cls = Object.getPrototypeOf(cls)) {
      if (!Object.prototype.hasOwnProperty.call(this, brandOf(cls))) Object.defineProperty(this, brandOf(cls), { value: true });
    }
  }
  /** `this` is the class on the right of `instanceof` (a subclass inherits this method). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && brandOf(this) in value;
  }
}

/** A bad command line or argument; the message names the argument. Exit code 1. */
export class AdminUsageError extends AdminError {
  static override readonly brand: symbol = Symbol.for('gridlink.AdminUsageError');
  readonly argument: string;
  constructor(argument: string, message: string) {
    super('ADMIN_USAGE', `${argument}: ${message}`, ExitCode.USAGE);
    this.name = 'AdminUsageError';
    this.argument = argument;
  }
}

/** The control plane could not be reached, or did not answer within the timeout. Exit code 3. */
export class ControlPlaneUnreachableError extends AdminError {
  static override readonly brand: symbol = Symbol.for('gridlink.ControlPlaneUnreachableError');
  constructor(message: string) {
    super('ADMIN_CONTROL_PLANE_UNREACHABLE', message, ExitCode.UNREACHABLE, true);
    this.name = 'ControlPlaneUnreachableError';
  }
}

/**
 * The change was understood but not made: it moves data and --yes was not given, a node is
 * unknown to the cluster, the control plane bucket does not exist, the cluster has no topology
 * yet, or concurrent writers kept winning.
 * Exit code 4.
 */
export class AdminRefusedError extends AdminError {
  static override readonly brand: symbol = Symbol.for('gridlink.AdminRefusedError');
  constructor(code: string, message: string, retryable = false) {
    super(code, message, ExitCode.REFUSED, retryable);
    this.name = 'AdminRefusedError';
  }
}

/**
 * An error the command does not classify: a crash (a TypeError, an error from a library it did not
 * expect), not a refusal. Exit code 5. `cause` is the original error.
 */
export class AdminInternalError extends AdminError {
  static override readonly brand: symbol = Symbol.for('gridlink.AdminInternalError');
  constructor(cause: unknown) {
    super('ADMIN_INTERNAL', `internal error: ${cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)}`, ExitCode.INTERNAL);
    this.name = 'AdminInternalError';
    this.cause = cause;
  }
}

/** The AdminError an error ends the command with: itself when it is one, else an AdminInternalError. */
export function classifyError(err: unknown): AdminError {
  return err instanceof AdminError ? err : new AdminInternalError(err);
}
