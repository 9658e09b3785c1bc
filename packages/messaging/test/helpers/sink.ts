/**
 * The chaos test's resource: an HTTP service on 127.0.0.1 that applies each job's effect at most
 * once (keyed by job id, as a payment API keyed by an idempotency key would) and refuses any
 * request whose fencing token is older than one it has already seen for that job.
 */
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';

export class FencedSink {
  /** Effects applied per job (must end at exactly 1 each). */
  readonly applied = new Map<string, number>();
  /** Highest token seen per job. */
  readonly maxToken = new Map<string, number>();
  /** Token whose request applied the effect. */
  readonly appliedBy = new Map<string, number>();
  refusedStale = 0;
  /** Requests that found the effect already applied (a job re-run after a takeover). */
  repeats = 0;
  total = 0;
  private constructor(private readonly server: Server) {}

  static async start(): Promise<FencedSink> {
    const ref: { sink: FencedSink | null } = { sink: null };
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        let m: { jobId?: unknown; token?: unknown };
        try {
          m = JSON.parse(body) as typeof m;
        } catch {
          res.writeHead(400).end();
          return;
        }
        if (typeof m.jobId !== 'string' || typeof m.token !== 'number') {
          res.writeHead(400).end();
          return;
        }
        const code = ref.sink!.apply(m.jobId, m.token);
        res.writeHead(code).end();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    ref.sink = new FencedSink(server);
    return ref.sink;
  }

  apply(jobId: string, token: number): number {
    this.total++;
    const max = this.maxToken.get(jobId) ?? 0;
    if (token < max) {
      this.refusedStale++;
      return 409;
    }
    this.maxToken.set(jobId, token);
    if (this.applied.has(jobId)) {
      this.repeats++;
      return 200;
    }
    this.applied.set(jobId, 1);
    this.appliedBy.set(jobId, token);
    return 200;
  }

  get url(): string {
    const a = this.server.address();
    return `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, 'close');
  }
}
