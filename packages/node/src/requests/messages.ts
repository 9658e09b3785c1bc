/** Payloads and results shared by the request modules. */
import type { ErrorPayload, Op } from '@gridlink/protocol';

export interface ForwardMsg {
  op: Op;
  payload: unknown;
  session: string;
  /** Apply on the receiving node only (cluster-wide cache creation). */
  local?: boolean;
}

export type ForwardReply = { ok: true; result: unknown } | { ok: false; error: ErrorPayload };

export interface ExecResult {
  result: unknown;
  forwarded: boolean;
}
