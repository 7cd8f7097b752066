import type { AddressInfo, Server } from 'node:net';
import type { HostPort } from './address.js';

/** Listens on `address` (port 0: any free one); rejects if that fails (EADDRINUSE, EACCES...). */
export function listenOn(server: Server, address: HostPort): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
