import { ErrorCode, ProtocolError } from '@gridlink/protocol';
import { GridNodeError } from '../errors.js';
import { PeerUnavailableError } from '../peers/peer-client.js';
import { StoreError } from '../store/index.js';

/** Any error met while serving a request, as the typed error the client gets. */
export function toGridError(err: unknown): GridNodeError {
  if (err instanceof GridNodeError) return err;
  if (err instanceof StoreError) return new GridNodeError(err.wireCode, err.message);
  if (err instanceof ProtocolError) return new GridNodeError(err.wireCode, err.message);
  if (err instanceof PeerUnavailableError) return new GridNodeError(ErrorCode.NOT_PRIMARY, err.message);
  return new GridNodeError(ErrorCode.INTERNAL, String((err as Error)?.message ?? err));
}
