/**
 * Small helpers both sides use around the frames: handshake negotiation and error payloads.
 */
import type { ErrorCode } from './errors.js';
import {
  ALL_FEATURES,
  FrameKind,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  ResponseFlag,
  type ErrorPayload,
  type HandshakeErrorFrame,
  type HandshakeRequest,
  type ResponseFrame,
} from './messages.js';
import { MAX_ERROR_MESSAGE_BYTES, utf8Length } from './validate.js';

/**
 * Default time a node gives a new connection to deliver MAGIC and a complete HANDSHAKE frame
 * before closing it (after a best-effort HANDSHAKE_ERROR with code HANDSHAKE_TIMEOUT).
 */
export const HANDSHAKE_TIMEOUT_MS = 5000;

export interface VersionRange {
  min: number;
  max: number;
}

/**
 * The protocol version both sides speak: the highest version in the intersection of the client's
 * [minVersion, maxVersion] and `supported` (default: this build's range), or null when disjoint.
 */
export function negotiateVersion(
  req: Pick<HandshakeRequest, 'minVersion' | 'maxVersion'>,
  supported: VersionRange = { min: MIN_PROTOCOL_VERSION, max: PROTOCOL_VERSION },
): number | null {
  const hi = Math.min(req.maxVersion, supported.max);
  const lo = Math.max(req.minVersion, supported.min);
  return hi >= lo ? hi : null;
}

/** Feature bits in force on a connection: those both sides set (default: this build's). */
export function negotiateFeatures(requested: number, supported: number = ALL_FEATURES): number {
  return (requested & supported) >>> 0;
}

/**
 * A LOCK_TRY_ACQUIRE_GET payload for a node that did not grant LOCK_GET_IF_ABSENT (an older node,
 * which refuses fields it does not know): a copy without `ifAbsent`, so that node takes the lock
 * as before and the caller sees `acquired`. Any other payload is returned as is.
 */
export function withoutIfAbsent(payload: unknown): unknown {
  if (typeof payload !== 'object' || payload === null || !('ifAbsent' in payload)) return payload;
  const { ifAbsent: _dropped, ...rest } = payload as Record<string, unknown>;
  return rest;
}

/** Cuts a message to at most MAX_ERROR_MESSAGE_BYTES UTF-8 bytes, on a character boundary. */
function boundMessage(message: string): string {
  if (message.length * 3 <= MAX_ERROR_MESSAGE_BYTES || utf8Length(message) <= MAX_ERROR_MESSAGE_BYTES) return message;
  let s = message.slice(0, MAX_ERROR_MESSAGE_BYTES - 3);
  while (utf8Length(s) > MAX_ERROR_MESSAGE_BYTES - 3) s = s.slice(0, Math.floor(s.length * 0.9));
  const last = s.charCodeAt(s.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) s = s.slice(0, -1);
  return `${s}...`;
}

/**
 * The payload of an error response. The message is truncated to MAX_ERROR_MESSAGE_BYTES;
 * `partition` is included only when given.
 */
export function errorPayload(code: ErrorCode, message: string, partition?: number): ErrorPayload {
  const p: ErrorPayload = { code, message: boundMessage(String(message)) };
  if (partition !== undefined) p.partition = partition;
  return p;
}

/** A RESPONSE frame carrying an error (ERROR flag set, plus any `extraFlags`). */
export function errorResponse(
  id: number,
  topologyVersion: number,
  code: ErrorCode,
  message: string,
  partition?: number,
  extraFlags = 0,
): ResponseFrame {
  return {
    kind: FrameKind.RESPONSE,
    id,
    flags: (extraFlags | ResponseFlag.ERROR) & 0xff,
    topologyVersion,
    payload: errorPayload(code, message, partition),
  };
}

/** A HANDSHAKE_ERROR frame (the node closes the connection after sending it). */
export function handshakeError(code: ErrorCode, message: string): HandshakeErrorFrame {
  return { kind: FrameKind.HANDSHAKE_ERROR, body: { code, message: boundMessage(String(message)) } };
}

