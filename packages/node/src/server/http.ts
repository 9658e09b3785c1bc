/** The HTTP endpoints of a node: liveness, readiness, safety to take down, and Prometheus metrics. */
import type http from 'node:http';
import type { Registry } from 'prom-client';

export interface HttpStatusSource {
  readonly id: string;
  isReady(): boolean;
  topologyVersion(): number;
  /** For /health/safe: null when safe, else a reason and the partitions concerned. */
  unsafeReason(): { reason: string; [k: string]: unknown } | null;
  readonly registry: Registry;
}

const PATHS = new Set(['/health/live', '/health/ready', '/health/safe', '/metrics']);

/**
 * The path of a request target: origin-form (`/metrics?x`) or absolute-form
 * (`http://host:8080/metrics`, what a request through a proxy carries; RFC 9112 §3.2.2).
 */
function pathOf(target: string): string {
  let path = target.split('?')[0]!;
  const scheme = /^https?:\/\/[^/]*/i.exec(path);
  if (scheme !== null) path = path.slice(scheme[0].length) || '/';
  return path;
}

export async function handleHttp(source: HttpStatusSource, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = pathOf(req.url ?? '/');
  if (PATHS.has(url) && req.method !== 'GET' && req.method !== 'HEAD') {
    // Read-only endpoints: a POST or DELETE is no scrape or probe (it was answered as a GET).
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
  } else if (url === '/health/live') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ live: true, id: source.id }));
  } else if (url === '/health/ready') {
    const ready = source.isReady();
    res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, id: source.id, topologyVersion: source.topologyVersion() }));
  } else if (url === '/health/safe') {
    const why = source.unsafeReason();
    const body = why === null ? { safe: true, id: source.id, topologyVersion: source.topologyVersion() } : { safe: false, id: source.id, topologyVersion: source.topologyVersion(), ...why };
    res.writeHead(why === null ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  } else if (url === '/metrics') {
    try {
      const body = await source.registry.metrics();
      res.writeHead(200, { 'content-type': source.registry.contentType }).end(body);
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  } else {
    res.writeHead(404).end();
  }
}
