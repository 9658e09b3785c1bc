import { CasConflictError } from '../errors.js';

/**
 * The control plane as the node sees it: a small key-value store with revisions, compare-and-set
 * and prefix watches. It is shaped after NATS JetStream KV as found on nats-server 2.9, so a NATS
 * implementation is a thin adapter:
 *
 * - every write gets a new, strictly increasing revision (JetStream stream sequence);
 * - `create` fails when the key exists, `update` is compare-and-set on the key's last revision
 *   (KV `create` / `update(key, value, revision)`);
 * - `watch` reports puts and deletes, and nothing else: in particular no event is ever emitted
 *   when an entry would expire. There is no per-key TTL either (2.9 only has the bucket's
 *   max_age). Liveness is therefore never inferred from expiry: whoever needs to know whether a
 *   lease is alive watches its revisions and judges elapsed time on its own clock.
 *
 * Values are plain JSON-serialisable objects.
 */
export interface ControlPlane {
  get<T>(key: string): Promise<KvEntry<T> | null>;
  /** All live entries whose key starts with `prefix`. */
  list<T>(prefix: string): Promise<KvEntry<T>[]>;
  /** Unconditional write; returns the new revision. */
  put<T>(key: string, value: T): Promise<number>;
  /** Write only if the key does not exist; throws CasConflictError otherwise. */
  create<T>(key: string, value: T): Promise<number>;
  /** Write only if the key's current revision is `revision`; throws CasConflictError otherwise. */
  update<T>(key: string, value: T, revision: number): Promise<number>;
  /**
   * Removes the key (nothing happens when it is absent). With `revision`: only if the key's
   * current revision is `revision`; throws CasConflictError otherwise, an absent key included (a
   * request that reaches the store late must not delete what was written since).
   */
  delete(key: string, revision?: number): Promise<void>;
  /**
   * True when `delete` honours its `revision` (compare-and-set), as both built-in planes do. A
   * node cut off from its peers gives its lease up by deleting it (ADR 0073) only on a plane that
   * says so: an unconditional delete that reached the store late (held in a client through a
   * disconnect) could delete the lease of the node's next life. Elsewhere the given-up lease runs
   * out instead (the others take over a lease later).
   */
  readonly conditionalDelete?: boolean;
  /** Puts and deletes of keys under `prefix`, in revision order. Returns an unsubscribe function. */
  watch<T>(prefix: string, listener: (event: KvEvent<T>) => void): () => void;
  /**
   * Optional: called once if the store lost its state (a NATS bucket deleted or created anew,
   * ADR 0028); a node subscribed to it stops at once. Returns an unsubscribe function.
   */
  onReset?(listener: (err: Error) => void): () => void;
}

export interface KvEntry<T> {
  key: string;
  value: T;
  revision: number;
}

/**
 * A change under a watched prefix. `value` is the stored JSON as written; a value that is not JSON
 * at all (written by something else into a NATS bucket) comes as `undefined`, so that readers
 * learn that the newest revision is unreadable (ADR 0048).
 */
export type KvEvent<T> =
  | { type: 'put'; key: string; value: T; revision: number }
  | { type: 'delete'; key: string; revision: number };

/**
 * In-memory control plane for an embedded cluster (all nodes in one process). Events are
 * delivered asynchronously (as a network would), in revision order; values are copied on the way
 * in and out so no node can mutate another's view.
 */
export class MemoryControlPlane implements ControlPlane {
  readonly conditionalDelete = true;
  private readonly entries = new Map<string, { value: string; revision: number }>();
  private readonly watchers = new Set<{ prefix: string; listener: (e: KvEvent<unknown>) => void }>();
  private revision = 0;

  async get<T>(key: string): Promise<KvEntry<T> | null> {
    const e = this.entries.get(key);
    return e ? { key, value: JSON.parse(e.value) as T, revision: e.revision } : null;
  }

  /** Synchronous read, for the embedded cluster's own inspection. */
  peek<T>(key: string): KvEntry<T> | null {
    const e = this.entries.get(key);
    return e ? { key, value: JSON.parse(e.value) as T, revision: e.revision } : null;
  }

  async list<T>(prefix: string): Promise<KvEntry<T>[]> {
    const out: KvEntry<T>[] = [];
    for (const [key, e] of this.entries) {
      if (key.startsWith(prefix)) out.push({ key, value: JSON.parse(e.value) as T, revision: e.revision });
    }
    return out;
  }

  async put<T>(key: string, value: T): Promise<number> {
    return this.write(key, value);
  }

  async create<T>(key: string, value: T): Promise<number> {
    if (this.entries.has(key)) throw new CasConflictError(key);
    return this.write(key, value);
  }

  async update<T>(key: string, value: T, revision: number): Promise<number> {
    const e = this.entries.get(key);
    if (!e || e.revision !== revision) throw new CasConflictError(key);
    return this.write(key, value);
  }

  /** Synchronous compare-and-set, for admin operations of the embedded cluster. */
  updateSync<T>(key: string, value: T, revision: number): number {
    const e = this.entries.get(key);
    if (!e || e.revision !== revision) throw new CasConflictError(key);
    return this.write(key, value);
  }

  async delete(key: string, ifRevision?: number): Promise<void> {
    if (ifRevision !== undefined && this.entries.get(key)?.revision !== ifRevision) throw new CasConflictError(key);
    if (!this.entries.delete(key)) return;
    const revision = ++this.revision;
    this.emit({ type: 'delete', key, revision });
  }

  watch<T>(prefix: string, listener: (event: KvEvent<T>) => void): () => void {
    const w = { prefix, listener: listener as (e: KvEvent<unknown>) => void };
    this.watchers.add(w);
    return () => {
      this.watchers.delete(w);
    };
  }

  private write(key: string, value: unknown): number {
    const revision = ++this.revision;
    const text = JSON.stringify(value);
    this.entries.set(key, { value: text, revision });
    this.emit({ type: 'put', key, value: text, revision });
    return revision;
  }

  private emit(event: { type: 'put'; key: string; value: string; revision: number } | { type: 'delete'; key: string; revision: number }): void {
    for (const w of this.watchers) {
      if (!event.key.startsWith(w.prefix)) continue;
      const copy: KvEvent<unknown> =
        event.type === 'put' ? { type: 'put', key: event.key, value: JSON.parse(event.value), revision: event.revision } : event;
      queueMicrotask(() => {
        if (this.watchers.has(w)) w.listener(copy);
      });
    }
  }
}
