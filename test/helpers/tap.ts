import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Defer } from './tunnel.js';

/**
 * A relay in the link's path that records every byte each way, as an eavesdropper on the network
 * would see them.
 */
export interface Tap {
  port: number;
  /** Bytes from the client side (cproxy) towards the server, per connection. */
  clientToServer: Buffer[][];
  serverToClient: Buffer[][];
  /** Everything recorded, both ways, as one buffer. */
  all(): Buffer;
}

export async function startTap(defer: Defer, serverPort: number): Promise<Tap> {
  const sockets: Socket[] = [];
  const tap: Tap = {
    port: 0,
    clientToServer: [],
    serverToClient: [],
    all: () => Buffer.concat([...tap.clientToServer.flat(), ...tap.serverToClient.flat()]),
  };
  const server = createServer((inbound) => {
    const up: Buffer[] = [];
    const down: Buffer[] = [];
    tap.clientToServer.push(up);
    tap.serverToClient.push(down);
    const outbound = connect({ host: '127.0.0.1', port: serverPort });
    sockets.push(inbound, outbound);
    inbound.on('data', (chunk: Buffer) => up.push(chunk));
    outbound.on('data', (chunk: Buffer) => down.push(chunk));
    inbound.pipe(outbound).pipe(inbound);
    const drop = (): void => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on('error', drop).on('close', drop);
    outbound.on('error', drop).on('close', drop);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  defer(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  tap.port = (server.address() as AddressInfo).port;
  return tap;
}
