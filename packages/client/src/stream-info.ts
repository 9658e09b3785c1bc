/**
 * When a KV bucket's stream was created, read from JetStream's reply to `$JS.API.STREAM.INFO`:
 * what `natsAddressFinder` asks to tell a bucket created anew from the one it read (ADR 0054).
 * Bytes in, no NATS import, so the internal entry can export it without loading NATS.
 */

/**
 * The creation time of stream `KV_<bucket>` in `data` (the reply), or null when JetStream
 * answers that there is no such stream (API error 10059, a definite answer; a leader election
 * times out instead, which throws). A reply without the creation time throws too: that time is
 * what tells one bucket from another created anew, so such a check says nothing, as a timeout
 * says nothing. The node's control plane reads the same reply the same way (ADR 0028).
 */
export function readStreamCreated(bucket: string, data: Uint8Array): string | null {
  const reply = JSON.parse(new TextDecoder().decode(data)) as { created?: unknown; error?: { err_code?: number; description?: string } };
  if (reply.error) {
    if (reply.error.err_code === 10059) return null;
    throw new Error(reply.error.description ?? `JetStream error ${String(reply.error.err_code)}`);
  }
  if (typeof reply.created !== 'string' || reply.created === '') throw new Error(`JetStream described stream KV_${bucket} without its creation time`);
  return reply.created;
}
