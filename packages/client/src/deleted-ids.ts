/**
 * Node ids whose announcement was deleted, with the revision of the delete, so that an older read
 * (a snapshot answered by a replica that lags) cannot bring one back. An id announced again under
 * a later revision is forgotten (its announcement's revision says more), and every entry is
 * forgotten `keepMs` after its delete — far beyond any replica's lag — so a client watching a
 * cluster whose nodes come and go under new ids for months keeps only the recent ones.
 */
export class DeletedIds {
  /** In the order of their deletes: the oldest first (a delete noted again moves to the end). */
  private readonly entries = new Map<string, { revision: number; at: number }>();

  constructor(
    private readonly keepMs = 10 * 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The id's announcement was deleted at `revision`. */
  note(id: string, revision: number): void {
    this.entries.delete(id);
    this.entries.set(id, { revision, at: this.now() });
    this.prune();
  }

  /** The revision of the id's delete still remembered; 0 when none. */
  revision(id: string): number {
    return this.entries.get(id)?.revision ?? 0;
  }

  /** The id is announced again under a revision past its delete: nothing left to guard. */
  forget(id: string): void {
    this.entries.delete(id);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  private prune(): void {
    const oldest = this.now() - this.keepMs;
    for (const [id, e] of this.entries) {
      if (e.at > oldest) break;
      this.entries.delete(id);
    }
  }
}
