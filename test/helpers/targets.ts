import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/** A TCP service standing in for the target (telnetd, sshd...) behind sproxy. */
export interface TargetServer {
  port: number;
  /** Every connection accepted so far. */
  sockets: Socket[];
  /** Errors seen on any accepted connection. */
  errors: Error[];
  close(): Promise<void>;
}

/** Starts a target on 127.0.0.1 that hands each connection to `onConnection`. */
export async function startTarget(onConnection: (socket: Socket) => void): Promise<TargetServer> {
  const sockets: Socket[] = [];
  const errors: Error[] = [];
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.push(socket);
    socket.on('error', (error) => errors.push(error));
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    errors,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Echoes every byte back and passes the FIN on (half-close aware). */
export function startEchoTarget(): Promise<TargetServer> {
  return startTarget((socket) => socket.pipe(socket));
}

/** A user application's connection to cproxy. Records errors and closes for the assertions. */
export interface UserConnection {
  socket: Socket;
  errors: Error[];
  closed: boolean;
}

export async function connectUser(port: number): Promise<UserConnection> {
  const socket = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const user: UserConnection = { socket, errors: [], closed: false };
  socket.on('error', (error) => user.errors.push(error));
  socket.on('close', () => {
    user.closed = true;
  });
  await once(socket, 'connect');
  return user;
}

/** Resolves when the user's connection closes, however it closed (a reset included). */
export function waitClosed(user: UserConnection): Promise<void> {
  if (user.closed) return Promise.resolve();
  return new Promise((resolve) => user.socket.once('close', () => resolve()));
}

export interface Transfer {
  sentHash: string;
  receivedHash: string;
  receivedBytes: number;
}

/**
 * Writes `totalBytes` of random data on `socket` (honouring backpressure) while reading back the
 * same number of bytes, and returns the SHA-256 of both sides.
 */
export async function echoTransfer(
  socket: Socket,
  totalBytes: number,
  chunkBytes = 64 * 1024,
  onProgress?: (receivedBytes: number) => void,
): Promise<Transfer> {
  const sent = createHash('sha256');
  const received = createHash('sha256');
  let receivedBytes = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      received.update(chunk);
      receivedBytes += chunk.length;
      onProgress?.(receivedBytes);
      if (receivedBytes >= totalBytes) {
        socket.off('data', onData);
        socket.off('close', onClose);
        resolve();
      }
    };
    const onClose = (): void => reject(new Error(`connection closed after ${receivedBytes} of ${totalBytes} bytes`));
    socket.on('data', onData);
    socket.once('close', onClose);
  });
  let written = 0;
  while (written < totalBytes) {
    const chunk = randomBytes(Math.min(chunkBytes, totalBytes - written));
    sent.update(chunk);
    written += chunk.length;
    if (!socket.write(chunk) && !(await drained(socket))) break;
  }
  await done;
  return { sentHash: sent.digest('hex'), receivedHash: received.digest('hex'), receivedBytes };
}

/**
 * Echoes `rounds` blocks of `roundBytes` random bytes, one block at a time: each is written, then
 * `duringRound` runs while that block is in flight, then the whole block's echo is awaited. Tests
 * that inject a fault per round use it so that every fault lands while data flows, however fast
 * the machine is (placing faults by bytes received instead lets buffered data outrun them).
 */
export async function echoInRounds(
  socket: Socket,
  rounds: number,
  roundBytes: number,
  duringRound: (round: number) => void,
): Promise<Transfer> {
  const sent = createHash('sha256');
  const received = createHash('sha256');
  let receivedBytes = 0;
  let wanted = 0;
  let round: { resolve: () => void; reject: (error: Error) => void } | undefined;
  const onData = (chunk: Buffer): void => {
    received.update(chunk);
    receivedBytes += chunk.length;
    if (receivedBytes >= wanted) round?.resolve();
  };
  const onClose = (): void => round?.reject(new Error(`connection closed after ${receivedBytes} bytes`));
  socket.on('data', onData);
  socket.once('close', onClose);
  try {
    for (let index = 0; index < rounds; index++) {
      const block = randomBytes(roundBytes);
      sent.update(block);
      wanted += roundBytes;
      const echoed = new Promise<void>((resolve, reject) => {
        round = { resolve, reject };
      });
      socket.write(block);
      // Let the block leave this process before the fault, so that it is caught in flight.
      await new Promise((resolve) => setImmediate(resolve));
      duringRound(index);
      await echoed;
    }
  } finally {
    socket.off('data', onData);
    socket.off('close', onClose);
  }
  return { sentHash: sent.digest('hex'), receivedHash: received.digest('hex'), receivedBytes };
}

/** Waits for 'drain'; false if the socket closed first. Leaves no listener behind. */
export function drained(socket: Socket): Promise<boolean> {
  return new Promise((resolve) => {
    const finish = (result: boolean) => (): void => {
      socket.off('drain', onDrain);
      socket.off('close', onClose);
      resolve(result);
    };
    const onDrain = finish(true);
    const onClose = finish(false);
    socket.once('drain', onDrain);
    socket.once('close', onClose);
  });
}

/**
 * Reads until EOF and returns everything. Events rather than `for await`: the async iterator
 * destroys the socket at EOF, which would make a half-closed socket unable to answer.
 */
export function readToEnd(socket: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('end', () => resolve(Buffer.concat(chunks)));
    socket.once('close', () => reject(new Error('closed before EOF')));
  });
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
