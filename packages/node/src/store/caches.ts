/**
 * The caches a node knows, with their configs (ADR 0014). A cache configured by `configure` is
 * explicit and kept for good. Any other cache is implicit: made by its first shard (with the
 * defaults, or the config a snapshot brought) and forgotten with its last one. The store tells
 * this book when it makes and drops shards; the book never sees entries.
 *
 * The coordinator's rules read it too: the explicit configs, and the implicit caches counted by
 * the fields its rules use (backups, loss policy), each with a version that moves when they do.
 */
import type { CacheConfig } from '@gridlink/protocol';

interface CacheEntry {
  config: CacheConfig;
  /** Configured explicitly: kept for good. Otherwise implicit: forgotten with its last shard. */
  explicit: boolean;
  /** Shards of it the node holds (at most one per partition). */
  shards: number;
}

/** The fields of a config that the coordinator's rules read (backups, loss policy). */
function ruleKey(c: CacheConfig): string {
  return `${c.backups ?? ''}|${c.partitionLossPolicy ?? ''}`;
}

function sameConfig(a: CacheConfig, b: CacheConfig): boolean {
  return a.ttlMs === b.ttlMs && a.backups === b.backups && a.partitionLossPolicy === b.partitionLossPolicy;
}

export class CacheBook {
  private readonly caches = new Map<string, CacheEntry>();
  /** Implicit caches by ruleKey: one config of that kind and how many there are. */
  private readonly kinds = new Map<string, { config: CacheConfig; count: number }>();
  /** Moves on whenever a cache is configured with a config it did not have. */
  explicitVersion = 0;
  /** Moves on whenever an implicit cache is made or forgotten (or configured explicitly). */
  implicitVersion = 0;

  constructor(
    /** Config of implicit caches made by first use. */
    private readonly defaults: CacheConfig,
  ) {}

  /** Caches known. */
  get size(): number {
    return this.caches.size;
  }

  /** Configures a cache (validated by the caller): explicit from now on. */
  configure(name: string, config: CacheConfig): void {
    const e = this.caches.get(name);
    if (e === undefined) {
      this.caches.set(name, { config, explicit: true, shards: 0 });
    } else {
      if (e.explicit && sameConfig(e.config, config)) return;
      if (!e.explicit) {
        this.count(e.config, -1);
        e.explicit = true;
        this.implicitVersion++;
      }
      e.config = config;
    }
    this.explicitVersion++;
  }

  /** The cache's config, or the defaults for a cache not known (not a copy: do not change it). */
  config(name: string): CacheConfig {
    return this.caches.get(name)?.config ?? this.defaults;
  }

  /** Whether the cache was configured explicitly (false for a cache not known). */
  isExplicit(name: string): boolean {
    return this.caches.get(name)?.explicit === true;
  }

  /** A shard of `name` was made. A cache not known becomes implicit, with `adopt` or the defaults. */
  shardMade(name: string, adopt?: CacheConfig): void {
    let e = this.caches.get(name);
    if (e === undefined) {
      const config = adopt ?? { ...this.defaults };
      e = { config, explicit: false, shards: 0 };
      this.caches.set(name, e);
      this.count(config, 1);
      this.implicitVersion++;
    }
    e.shards++;
  }

  /** A shard of `name` was dropped: an implicit cache with none left is forgotten. */
  shardDropped(name: string): void {
    const e = this.caches.get(name)!;
    if (--e.shards > 0 || e.explicit) return;
    this.caches.delete(name);
    this.count(e.config, -1);
    this.implicitVersion++;
  }

  /** Every cache known (configured, or implicit and held), with a copy of its config. */
  configs(): [string, CacheConfig][] {
    return [...this.caches].map(([n, e]) => [n, { ...e.config }]);
  }

  /** The caches configured explicitly, with copies of their configs. */
  explicitConfigs(): [string, CacheConfig][] {
    const out: [string, CacheConfig][] = [];
    for (const [n, e] of this.caches) if (e.explicit) out.push([n, { ...e.config }]);
    return out;
  }

  /** One config of each kind of implicit cache known (as far as backups and loss policy go). */
  implicitKinds(): CacheConfig[] {
    return [...this.kinds.values()].map((k) => ({ ...k.config }));
  }

  private count(config: CacheConfig, by: 1 | -1): void {
    const key = ruleKey(config);
    const k = this.kinds.get(key);
    if (k === undefined) this.kinds.set(key, { config, count: 1 });
    else if ((k.count += by) === 0) this.kinds.delete(key);
  }
}
