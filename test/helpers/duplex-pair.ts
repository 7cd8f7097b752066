import { Duplex } from 'node:stream';
import { LINK_SOCKET_HIGH_WATER_BYTES } from '../../common/transport/tls-psk.js';

/**
 * In-memory sockets for engine tests (Node 20 has no `stream.duplexPair`). Each end behaves like a
 * `net.Socket` as far as the link uses one: write/cork/uncork/writableLength/writableNeedDrain,
 * destroy, and the events 'connect', 'data', 'drain', 'end', 'error', 'close'.
 *
 * Bytes written on one end reach the other on a later turn of the event loop (setImmediate), as
 * socket I/O does, never inside the write call. A write completes at once while the end holds
 * less than `bufferLimitBytes` undelivered (the kernel's send buffer); beyond that its callback
 * waits, so writableLength grows and 'drain' follows as on a real socket.
 */
export interface MemorySocketOptions {
  /** Undelivered bytes an end accepts before write callbacks wait. */
  bufferLimitBytes?: number;
  /**
   * The stream's buffer level both ways (write() false, writableNeedDrain): by default the one
   * every real link socket is given, not Node's default, which 22 raised from 16 to 64 KiB.
   */
  highWaterMarkBytes?: number;
}

const DEFAULT_BUFFER_LIMIT_BYTES = 256 * 1024;

/** setImmediate deliveries scheduled and not yet run, over every in-memory socket. */
let scheduledDeliveries = 0;

/** The error a cut path gives each end, like a connection reset by the network. */
export function connectionResetError(): NodeJS.ErrnoException {
  return Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104, syscall: 'read' });
}

export class MemorySocket extends Duplex {
  #peer: MemorySocket | null = null;
  readonly #bufferLimitBytes: number;
  /** Written, not yet handed to the peer. */
  readonly #outbox: Buffer[] = [];
  #outboxBytes = 0;
  /** Callback of a write made while the outbox was over its limit. */
  #heldCallback: ((error?: Error | null) => void) | null = null;
  #finQueued = false;
  #finSent = false;
  /** The peer's readable buffer is over its mark: wait for its _read. */
  #peerFull = false;
  #writesHeld = false;
  #severed = false;
  #deliveryScheduled = false;

  constructor(options: MemorySocketOptions = {}) {
    // allowHalfOpen false, as net.Socket: the peer's FIN ends this side too, then 'close'.
    super({ allowHalfOpen: false, highWaterMark: options.highWaterMarkBytes ?? LINK_SOCKET_HIGH_WATER_BYTES });
    this.#bufferLimitBytes = options.bufferLimitBytes ?? DEFAULT_BUFFER_LIMIT_BYTES;
  }

  /** Two connected ends; each emits 'connect' on the next tick, so either may be what a Dialer returns. */
  static pair(options: MemorySocketOptions = {}): [MemorySocket, MemorySocket] {
    const a = new MemorySocket(options);
    const b = new MemorySocket(options);
    a.#peer = b;
    b.#peer = a;
    for (const end of [a, b]) {
      process.nextTick(() => {
        if (!end.destroyed) end.emit('connect');
      });
    }
    return [a, b];
  }

  /** An end whose connection attempt fails: 'error' (then 'close') on the next tick, never 'connect'. */
  static refused(error: Error = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })): MemorySocket {
    const socket = new MemorySocket();
    process.nextTick(() => socket.destroy(error));
    return socket;
  }

  /** Undelivered bytes this end holds (written, not yet received by the peer). */
  get undeliveredBytes(): number {
    return this.#outboxBytes;
  }

  /** While held, written bytes (and a FIN) stay here, silently: an outage with no error. */
  holdWrites(held: boolean): void {
    this.#writesHeld = held;
    if (!held) this.#scheduleDelivery();
  }

  /** The path is gone: undelivered bytes are lost and this end fails with `error`. */
  sever(error: Error = connectionResetError()): void {
    if (this.#severed) return;
    this.#severed = true;
    this.#outbox.length = 0;
    this.#outboxBytes = 0;
    if (!this.destroyed) this.destroy(error);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#enqueue([chunk], callback);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#enqueue(
      chunks.map((entry) => entry.chunk),
      callback,
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#finQueued = true;
    this.#scheduleDelivery();
    callback();
  }

  override _read(): void {
    const writer = this.#peer;
    if (writer === null || !writer.#peerFull) return;
    writer.#peerFull = false;
    writer.#scheduleDelivery();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const held = this.#heldCallback;
    this.#heldCallback = null;
    if (this.#severed) {
      held?.(error ?? connectionResetError());
    } else {
      // A closed socket still sends what its kernel buffer holds, then a FIN.
      this.#finQueued = true;
      this.#scheduleDelivery();
      held?.();
    }
    callback(error);
  }

  #enqueue(chunks: Buffer[], callback: (error?: Error | null) => void): void {
    if (this.#severed) {
      callback(connectionResetError());
      return;
    }
    for (const chunk of chunks) {
      this.#outbox.push(chunk);
      this.#outboxBytes += chunk.length;
    }
    this.#scheduleDelivery();
    if (this.#outboxBytes <= this.#bufferLimitBytes) callback();
    else this.#heldCallback = callback;
  }

  #scheduleDelivery(): void {
    if (this.#deliveryScheduled) return;
    this.#deliveryScheduled = true;
    scheduledDeliveries++;
    setImmediate(() => {
      scheduledDeliveries--;
      this.#deliveryScheduled = false;
      this.#deliver();
    });
  }

  #deliver(): void {
    const peer = this.#peer;
    if (this.#severed || this.#writesHeld || peer === null) return;
    if (peer.destroyed) {
      // Nobody reads any more; a real peer would answer with a reset, but its link is gone anyway.
      this.#outbox.length = 0;
      this.#outboxBytes = 0;
    }
    while (this.#outbox.length > 0 && !this.#peerFull) {
      const chunk = this.#outbox.shift() as Buffer;
      this.#outboxBytes -= chunk.length;
      if (!peer.push(chunk)) this.#peerFull = true;
    }
    if (this.#outbox.length === 0 && this.#finQueued && !this.#finSent) {
      this.#finSent = true;
      if (!peer.destroyed) peer.push(null);
    }
    const held = this.#heldCallback;
    if (held !== null && this.#outboxBytes <= this.#bufferLimitBytes) {
      this.#heldCallback = null;
      held();
    }
  }
}

/** Two connected in-memory ends, [a, b]. */
export function duplexPair(options: MemorySocketOptions = {}): [MemorySocket, MemorySocket] {
  return MemorySocket.pair(options);
}

/**
 * A pair with faults to inject: a cut (both ends fail, as a dead path with resets would make
 * them), a silent outage (bytes held, no error), each direction on its own, and recovery.
 */
export class FaultyPair {
  readonly a: MemorySocket;
  readonly b: MemorySocket;

  constructor(options: MemorySocketOptions = {}) {
    [this.a, this.b] = MemorySocket.pair(options);
  }

  /** Both ends fail with ECONNRESET; bytes in flight are lost. */
  cut(): void {
    this.a.sever();
    this.b.sever();
  }

  /** Silent outage both ways: nothing is delivered and nothing fails. */
  pause(): void {
    this.a.holdWrites(true);
    this.b.holdWrites(true);
  }

  /** Silent outage in one direction: what `from` writes is held. */
  blockWrites(from: MemorySocket): void {
    from.holdWrites(true);
  }

  /** Ends the outage: held bytes are delivered, in order. */
  resume(): void {
    this.a.holdWrites(false);
    this.b.holdWrites(false);
  }
}

/**
 * Lets in-memory I/O run until no delivery is pending (every write has reached its peer and every
 * consequence of it, to any depth, has run). Deterministic: it waits on the event loop, not on time.
 * It does not wait for real sockets, and a transfer that never stalls keeps it busy until it ends.
 */
export async function settle(maxTurns = 100_000): Promise<void> {
  let idleTurns = 0;
  for (let turn = 0; turn < maxTurns; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    if (scheduledDeliveries > 0) idleTurns = 0;
    else if (++idleTurns >= 3) return;
  }
  throw new Error(`in-memory sockets still busy after ${maxTurns} event-loop turns`);
}
