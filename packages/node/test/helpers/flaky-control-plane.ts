/** A real in-memory control plane that can be made to fail, stall or lag, as NATS does during a leader change. */
import { ControlPlaneUnavailableError, MemoryControlPlane, type ControlPlane, type KvEntry, type KvEvent } from '@gridlink/node';

/** A real in-memory control plane whose operations can be made to fail (as NATS does during a leader change). */
export class FlakyControlPlane implements ControlPlane {
  readonly conditionalDelete = true;
  failReads = false;
  failWrites = false;
  failedReads = 0;
  failedWrites = 0;
  /** While set, watch events are held back (a lagging watch) and delivered in order afterwards. */
  private held: { key: string; deliver: () => void }[] | null = null;
  /** Successful writes per key prefix (renewals show up under the lease prefix). */
  writes = 0;
  /** Writes done, in order, as `op key` (successful writes only). */
  readonly written: string[] = [];
  /** While set, no operation is answered (a server that hangs); `answer()` ends the wait with an error. */
  hang = false;
  private hanging: ((err: Error) => void)[] = [];
  /** Deletes take effect at once but are acknowledged only this many ms later (a slow link). */
  deleteAckDelayMs = 0;
  constructor(private readonly inner = new MemoryControlPlane()) {}
  /** Ends every operation held by `hang` with an error (timeouts, as a NATS client's). */
  answer(): void {
    this.hang = false;
    for (const reject of this.hanging.splice(0)) reject(new ControlPlaneUnavailableError('request', new Error('timeout')));
  }
  private unanswered<R>(): Promise<R> {
    return new Promise<R>((_, reject) => this.hanging.push(reject));
  }
  private read<R>(op: string, f: () => Promise<R>): Promise<R> {
    if (this.hang) return this.unanswered();
    if (!this.failReads) return f();
    this.failedReads++;
    return Promise.reject(new ControlPlaneUnavailableError(op, new Error('jetstream is not enabled')));
  }
  private write<R>(op: string, f: () => Promise<R>, key?: string): Promise<R> {
    if (this.hang) return this.unanswered();
    if (!this.failWrites) {
      this.writes++;
      if (key !== undefined) this.written.push(`${op} ${key}`);
      return f();
    }
    this.failedWrites++;
    return Promise.reject(new ControlPlaneUnavailableError(op, new Error('timeout')));
  }
  get<T>(key: string): Promise<KvEntry<T> | null> {
    return this.read('get', () => this.inner.get<T>(key));
  }
  list<T>(prefix: string): Promise<KvEntry<T>[]> {
    return this.read('list', () => this.inner.list<T>(prefix));
  }
  put<T>(key: string, value: T): Promise<number> {
    return this.write('put', () => this.inner.put(key, value), key);
  }
  create<T>(key: string, value: T): Promise<number> {
    return this.write('create', () => this.inner.create(key, value), key);
  }
  update<T>(key: string, value: T, revision: number): Promise<number> {
    return this.write('update', () => this.inner.update(key, value, revision), key);
  }
  delete(key: string, revision?: number): Promise<void> {
    const done = this.write('delete', () => this.inner.delete(key, revision), key);
    const delay = this.deleteAckDelayMs;
    if (delay === 0) return done;
    return done.then(() => new Promise<void>((resolve) => setTimeout(resolve, delay)));
  }
  /** The stored entry, bypassing failures (what the control plane holds). */
  peek<T>(key: string): Promise<KvEntry<T> | null> {
    return this.inner.get<T>(key);
  }
  watch<T>(prefix: string, listener: (event: KvEvent<T>) => void): () => void {
    let open = true;
    const stop = this.inner.watch<T>(prefix, (e) => {
      if (this.held === null && this.stallFrom?.(e) === true) this.held = [];
      if (this.held && (this.heldKey === null || e.key === this.heldKey)) this.held.push({ key: e.key, deliver: () => listener(e) });
      else if (this.maxLagMs > 0) this.later(() => open && listener(e));
      else listener(e);
    });
    return () => {
      open = false;
      stop();
    };
  }

  /** Up to this many ms of lag on every watch event (0: none); see lagWatches. */
  private maxLagMs = 0;
  /** Lagged events due, in order: each up to maxLagMs after it came, never before the one ahead. */
  private readonly due: { at: number; deliver: () => void }[] = [];
  private dueTimer: NodeJS.Timeout | null = null;

  /** From now on every watch event (of every watch) comes 0–`maxMs` ms late (random), in order, as a lagging NATS watch. */
  lagWatches(maxMs: number): void {
    this.maxLagMs = maxMs;
  }

  private later(deliver: () => void): void {
    const last = this.due.at(-1)?.at ?? 0;
    this.due.push({ at: Math.max(last, Date.now() + Math.random() * this.maxLagMs), deliver });
    this.armDue();
  }

  private armDue(): void {
    if (this.dueTimer !== null || this.due.length === 0) return;
    this.dueTimer = setTimeout(
      () => {
        this.dueTimer = null;
        while (this.due.length > 0 && this.due[0]!.at <= Date.now()) this.due.shift()!.deliver();
        this.armDue();
      },
      Math.max(0, this.due[0]!.at - Date.now()),
    );
  }

  /** Stalls from the first event `first` accepts (see stallWatches), holding only `key`'s events when given. */
  private stallFrom: ((e: KvEvent<unknown>) => boolean) | null = null;
  private heldKey: string | null = null;
  stallWatchesFrom(first: (e: KvEvent<unknown>) => boolean, key: string | null = null): void {
    this.stallFrom = first;
    this.heldKey = key;
  }

  stallWatches(): void {
    this.held ??= [];
  }

  /**
   * Ends the lag: delivers the held events in order; those whose key `keep` rejects are lost (a
   * watch that resumed past revisions it never delivered).
   */
  releaseWatches(keep: (key: string) => boolean = () => true): void {
    const held = this.held ?? [];
    this.held = null;
    this.stallFrom = null;
    this.heldKey = null;
    for (const h of held) if (keep(h.key)) h.deliver();
  }
}

