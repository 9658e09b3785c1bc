/** Echo server for the round-trip floor: returns each length-prefixed frame unchanged. */
import { createServer } from 'node:net';

const port = Number(process.argv[2] ?? 0);
createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('data', (chunk) => socket.write(chunk));
  socket.on('error', () => socket.destroy());
}).listen(port, '127.0.0.1');
