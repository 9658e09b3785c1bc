/**
 * What a graceful stop of an HTTP server needs beyond `server.close()`, shared by the API
 * examples: `close()` stops accepting and closes idle keep-alive connections, but a connection
 * whose request is under way stays open after its answer until the client or the server's
 * keep-alive timeout ends it (5 s in Node), and the process with it. `trackResponses` marks every
 * response still unanswered when the stop begins, and every request arriving after it, as the last
 * on its connection (`Connection: close`, the socket ended once the response is sent); a response
 * whose headers are already out gets its connection closed once it finishes.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';

export function trackResponses(server: Server): { stopping(): void } {
  const open = new Set<ServerResponse>();
  let stopping = false;
  const lastOnConnection = (res: ServerResponse): void => {
    if (!res.headersSent) res.shouldKeepAlive = false;
    else res.once('finish', () => setImmediate(() => server.closeIdleConnections()));
  };
  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    if (stopping) lastOnConnection(res);
    open.add(res);
    res.once('close', () => open.delete(res));
  });
  return {
    stopping() {
      stopping = true;
      for (const res of open) lastOnConnection(res);
      server.closeIdleConnections();
    },
  };
}
