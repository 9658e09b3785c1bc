import { CasConflictError, TOPOLOGY_KEY, topologyProblem, type ControlPlane, type KvEntry, type TopologyRecord } from '@gridlink/node';
import { AdminError, AdminRefusedError, ControlPlaneUnreachableError } from './errors.js';

/** Default bound on one control plane round trip before the command gives up (exit code 3). */
export const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Runs one control plane call with a deadline. Any failure other than a compare-and-set conflict
 * means the control plane could not serve us: it becomes ControlPlaneUnreachableError. `signal`
 * (the dashboard's close()) stops the wait at once, with the same error; the call given up on
 * is left to finish on its own, its outcome ignored.
 */
export async function withTimeout<T>(what: string, timeoutMs: number, run: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ControlPlaneUnreachableError(`the control plane did not answer ${what} within ${timeoutMs} ms`)), timeoutMs);
    if (signal !== undefined) {
      onAbort = () => reject(new ControlPlaneUnreachableError(`${what} given up: closed`));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
  });
  try {
    return await Promise.race([run(), deadline]);
  } catch (err) {
    // Our own errors (a refusal from inside `run`, our deadline) pass as they are.
    if (err instanceof CasConflictError || err instanceof AdminError) throw err;
    throw new ControlPlaneUnreachableError(`control plane error during ${what}: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) signal?.removeEventListener('abort', onAbort);
  }
}

/** The topology record, or a refusal when the cluster has not formed yet. */
export async function readTopology(cp: ControlPlane, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<KvEntry<TopologyRecord>> {
  const e = await withTimeout('a topology read', timeoutMs, () => cp.get<TopologyRecord>(TOPOLOGY_KEY));
  if (!e) throw new AdminRefusedError('ADMIN_NO_TOPOLOGY', 'the cluster has no topology record yet (no node has formed it)');
  const problem = topologyProblem(e.value);
  if (problem !== null) {
    throw new AdminRefusedError(
      'ADMIN_MALFORMED_TOPOLOGY',
      `the topology record (revision ${e.revision}) cannot be read: ${problem}. The nodes ignore it and their coordinator writes the last good record over it; if it stays, no running node has one (see the nodes' logs)`,
      true,
    );
  }
  return e;
}

/**
 * Writes the topology the way the coordinator and the embedded cluster do: compute the next record
 * from the current one, version + 1, compare-and-set on the revision just read. A conflict (the
 * coordinator moved the record on meanwhile) re-reads and recomputes; the coordinator in turn
 * loses its next compare-and-set against ours, re-reads and builds on the operator's record.
 *
 * `mutate` returns null to write nothing. Returns the record written (or the current one).
 */
export async function updateTopology(
  cp: ControlPlane,
  mutate: (current: TopologyRecord) => TopologyRecord | null,
  timeoutMs = DEFAULT_TIMEOUT_MS,
  attempts = 25,
): Promise<{ record: TopologyRecord; written: boolean }> {
  for (let i = 0; i < attempts; i++) {
    const e = await readTopology(cp, timeoutMs);
    const next = mutate(structuredClone(e.value));
    if (next === null) return { record: e.value, written: false };
    next.version = e.value.version + 1;
    try {
      await withTimeout('a topology write', timeoutMs, () => cp.update(TOPOLOGY_KEY, next, e.revision));
      return { record: next, written: true };
    } catch (err) {
      if (!(err instanceof CasConflictError)) throw err;
    }
  }
  throw new AdminRefusedError('ADMIN_CONFLICT', `the topology kept changing under ${attempts} attempts to write it; try again`, true);
}
