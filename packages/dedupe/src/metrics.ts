/** prom-client counters, when the app has prom-client (or passes it in). */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { MetricsOption, PromClientLike } from './config.js';

export interface DedupeCounters {
  inc(route: string, outcome: string): void;
}

const NOOP: DedupeCounters = { inc: () => undefined };

function loadAppPromClient(): PromClientLike | undefined {
  try {
    // Resolved from the app's directory, so only an app that depends on prom-client gets counters.
    const req = createRequire(join(process.cwd(), 'package.json'));
    return req('prom-client') as PromClientLike;
  } catch {
    return undefined;
  }
}

export function createCounters(option: MetricsOption): DedupeCounters {
  if (option === false) return NOOP;
  const spec = option === 'auto' ? { client: loadAppPromClient() } : option;
  const prom = spec.client;
  if (prom === undefined) return NOOP;
  const registry = ('registry' in spec ? spec.registry : undefined) ?? prom.register;
  const name = `${('prefix' in spec ? spec.prefix : undefined) ?? 'gridlink_'}dedupe_requests_total`;
  type C = { inc(labels: Record<string, string>, value?: number): void };
  let counter = registry.getSingleMetric(name) as C | undefined;
  if (counter === undefined) {
    counter = new prom.Counter({
      name,
      help: 'Requests seen by the gridlink de-duplication middleware, by route and outcome',
      labelNames: ['route', 'outcome'],
      registers: [registry],
    });
  }
  const c = counter;
  return { inc: (route, outcome) => c.inc({ route, outcome }) };
}
