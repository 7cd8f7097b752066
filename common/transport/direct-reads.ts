import { Buffer } from 'node:buffer';
import { nextTick } from 'node:process';
import { connect, Socket, type OnReadOpts, type TcpNetConnectOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';

/**
 * Size of the slabs a socket reads into once a read filled the whole region it was given (it
 * carries bulk). Four times the 64 KiB Node's own reads use: a read then takes up to four frames
 * off the link, or four payloads' worth off a local socket, in one system call and one callback,
 * and a frame (64 KiB and its header) rarely straddles two reads. Against 64 KiB slabs this took
 * 7% off the CPU per GB of an upload through both proxies and 13% off a download (median of 6
 * interleaved iperf3 pairs, Node 20). A large slab is let go at the first small read (see
 * onRead), so only sockets in the middle of a bulk transfer hold one.
 */
export const DIRECT_READ_SLAB_BYTES = 256 * 1024;

/**
 * Size of a socket's first slab, and of every later one until a read fills its whole region. An
 * idle or interactive socket never needs more. In the bench's 10,000 idle sessions (one byte echoed
 * each) this put cproxy at 7.8 KiB of RSS per session and sproxy at 8.1; with 4 KiB it was 10.9
 * and 11.4 (Node 20). Slabs are allocated on their own (allocUnsafeSlow), never carved from
 * Node's shared pool, so that a slab is exactly what one socket's chunks pin.
 */
export const DIRECT_READ_FIRST_SLAB_BYTES = 1024;

/**
 * Size of every slab of a TLS socket's direct reads. Node decrypts a TLS socket's reads one record
 * at a time (16 KiB of plaintext at most) and calls back once per record, so the growth and
 * let-go rules of a TCP socket's slabs, which go by whether a read filled its region, say nothing
 * there: the tail of a write, a small record between full ones, would drop a large slab at every
 * frame. A slab of four records never splits one (a new slab comes when less than a quarter is
 * left), and a link holds one slab, whatever it carries.
 */
export const TLS_DIRECT_READ_SLAB_BYTES = 64 * 1024;

/** The sizes a socket's slabs start at and grow to. */
interface SlabSizes {
  firstBytes: number;
  largestBytes: number;
}

const TCP_SLABS: SlabSizes = { firstBytes: DIRECT_READ_FIRST_SLAB_BYTES, largestBytes: DIRECT_READ_SLAB_BYTES };
const TLS_SLABS: SlabSizes = { firstBytes: TLS_DIRECT_READ_SLAB_BYTES, largestBytes: TLS_DIRECT_READ_SLAB_BYTES };

/** Takes one chunk read from the socket; false pauses the socket until its `resume()`. */
export type ChunkConsumer = (chunk: Buffer) => boolean | void;

const directReadsBySocket = new WeakMap<Socket, DirectReads>();

/**
 * Dials like `net.connect`, but the socket's reads go to one consumer (`directReadsOf`) instead of
 * through its Readable side, by way of Node's `onread` option. A relay gains nothing from the
 * stream layer there: each read costs a push, a 'data' event and a tick of read-ahead bookkeeping.
 * With cproxy's link and sproxy's target read this way, a 1-byte ping-pong took 3.7 us less CPU
 * per round trip across the two proxies (-4%), and its p50 fell 3% (measured on Node 20).
 * 'end', 'error' and 'close' come as they always do; 'data' never does.
 * Node takes `onread` only here, from `net.connect`: a socket a server accepts gets the same reads
 * from adoptDirectReads.
 */
export function connectWithDirectReads(options: TcpNetConnectOpts): Socket {
  const reads = new DirectReads();
  const socket = connect({ ...options, onread: { buffer: reads.nextBuffer, callback: reads.onRead } });
  reads.bind(socket);
  directReadsBySocket.set(socket, reads);
  return socket;
}

/**
 * Dials like `tls.connect`, with the decrypted reads going to one consumer as
 * connectWithDirectReads does for TCP (`onread` is public API for a TLS socket that makes its own
 * connection). The stream path costs a TLS link a Buffer, a push and a 'data' event per 16 KiB
 * record, some 61,000 per GB: reading directly took 22% off the CPU of the reading end of a TLS
 * stream (1005 -> 781 ms/GB, median of five 3 GB streams over loopback, interleaved, Node 20,
 * ChaCha20-Poly1305).
 */
export function tlsConnectWithDirectReads(options: ConnectionOptions): TLSSocket {
  const reads = new DirectReads(TLS_SLABS);
  // Node takes `onread` in tls.connect's options (when it makes the connection itself, as here);
  // @types/node 20 lists it only for net.
  const withReads: ConnectionOptions & { onread: OnReadOpts } = { ...options, onread: { buffer: reads.nextBuffer, callback: reads.onRead } };
  const socket = tlsConnect(withReads);
  reads.bind(socket);
  directReadsBySocket.set(socket, reads);
  return socket;
}

/**
 * The Node majors adoptDirectReads was checked against. It reaches into net.Socket's internals, so
 * on any other major the accepted sockets keep their stream path (slower, never wrong), and the
 * test that asks which path is taken fails in CI, which runs every major listed here.
 * What was compared, in each major's own lib/net.js and lib/internal/stream_base_commons.js (read
 * out of the binaries 20.20.2, 22.23.3, 24.21.0 and 26.10.0): the Socket constructor's handling of
 * `onread` (the three slots), initSocketHandle (useUserBuffer on the first buffer), onStreamRead's
 * user-buffer branch (callback, then the generator for the next buffer, readStop on false), and
 * pause/resume/read starting and stopping the handle. They are the same code in all four (24 and
 * 26 spell one `&&` chain with `?.`). Figures: the bench's loopback runs on 20 and 24
 * (bench/README.md). A TLS socket a server wraps around an accepted one is adopted the same way:
 * its handle is Node's TLSWrap, a stream of its own with the same `useUserBuffer`, which hands
 * each decrypted record to the buffer (checked by behaviour on each major: test/common/transport/
 * direct-reads.test.ts).
 */
export const ADOPTION_VERIFIED_NODE_MAJORS: readonly number[] = [20, 22, 24, 26];

/** Where net.Socket keeps its `onread` option: private symbols, found by their descriptions. */
interface OnreadSlots {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

/** The handle method Node calls to point a dialed socket's reads at its `onread` buffer. */
interface UserBufferHandle {
  useUserBuffer?: (buffer: Uint8Array) => void;
}

/** The slots, once found: the same symbols for every socket of the process (undefined: not looked yet). */
let onreadSlots: OnreadSlots | null | undefined;

function findOnreadSlots(socket: Socket): OnreadSlots | null {
  if (onreadSlots !== undefined) return onreadSlots;
  onreadSlots = lookUpOnreadSlots(socket);
  return onreadSlots;
}

function lookUpOnreadSlots(socket: Socket): OnreadSlots | null {
  const major = Number(process.versions.node.split('.')[0]);
  if (!ADOPTION_VERIFIED_NODE_MAJORS.includes(major)) return null;
  const byDescription = new Map(Object.getOwnPropertySymbols(socket).map((symbol) => [symbol.description, symbol]));
  const buffer = byDescription.get('kBuffer');
  const callback = byDescription.get('kBufferCb');
  const generator = byDescription.get('kBufferGen');
  return buffer !== undefined && callback !== undefined && generator !== undefined ? { buffer, callback, generator } : null;
}

/**
 * How a socket read from a connection a server accepted is delivered on this Node: `direct` when
 * adoptDirectReads can give it direct reads, `stream` when it keeps its 'data' events (an
 * unverified Node major, or the slots are gone). Dialed sockets always read directly (`onread`
 * is public API there). The proxies log it at startup.
 */
export type ReadPath = 'direct' | 'stream';

export function acceptedSocketReadPath(): ReadPath {
  return findOnreadSlots(new Socket()) === null ? 'stream' : 'direct';
}

/**
 * Gives a socket a server accepted the direct reads connectWithDirectReads gives a dialed one
 * (`net.Server` passes no `onread` to the sockets it makes). It sets the three slots net.Socket's
 * constructor fills from `onread`, and points the handle at the first buffer, as Node does when it
 * sets up a dialed socket; from then on Node's own read callback takes the `onread` branch, and
 * pause/resume stop and start the handle as they do for a dialed socket. This saved 10 us of CPU
 * per 1-byte round trip across the two proxies (-12%, p50 -8%), and 3% of the CPU of an upload
 * (measured on Node 20; the same internals on 22, 24 and 26, see ADOPTION_VERIFIED_NODE_MAJORS).
 * Bytes the Readable side already holds (sproxy peeks at a link's first byte) come first.
 * A TLS socket (sproxy wraps the accepted one once it has seen a ClientHello) gets the TLS slabs
 * (TLS_DIRECT_READ_SLAB_BYTES), and the same saving as tlsConnectWithDirectReads.
 * Returns false, changing nothing, where the slots are not there or the Node major was not checked:
 * the socket keeps its 'data' events.
 */
export function adoptDirectReads(socket: Socket): boolean {
  if (directReadsBySocket.has(socket)) return true;
  const slots = findOnreadSlots(socket);
  const handle = (socket as unknown as { _handle?: UserBufferHandle | null })._handle;
  if (slots === null || typeof handle?.useUserBuffer !== 'function') return false;
  const reads = new DirectReads((socket as Partial<TLSSocket>).encrypted === true ? TLS_SLABS : TCP_SLABS);
  while (socket.readableLength > 0) reads.holdEarly(socket.read() as Buffer);
  const slotsOf = socket as unknown as Record<symbol, unknown>;
  const firstBuffer = reads.nextBuffer();
  slotsOf[slots.generator] = reads.nextBuffer;
  slotsOf[slots.callback] = reads.onRead;
  slotsOf[slots.buffer] = firstBuffer;
  handle.useUserBuffer(firstBuffer);
  reads.bind(socket);
  directReadsBySocket.set(socket, reads);
  // What was held waits for the consumer with the socket paused, as an early read would.
  if (reads.holdsEarly) socket.pause();
  return true;
}

/** The direct reads of a socket made by connectWithDirectReads or adopted; undefined for any other. */
export function directReadsOf(socket: unknown): DirectReads | undefined {
  return directReadsBySocket.get(socket as Socket);
}

/**
 * Hands each chunk `socket` reads to `consumer`: directly for a socket made by
 * connectWithDirectReads or tlsConnectWithDirectReads or adopted, through its 'data' events for
 * any other (a socket of a test, or an unverified Node's accepted socket). A
 * false return pauses the socket either way, until its `resume()`. Returns the function that
 * stops the deliveries (later reads are dropped).
 */
export function readChunks(socket: Duplex, consumer: ChunkConsumer): () => void {
  const reads = directReadsOf(socket);
  if (reads !== undefined) {
    reads.attach(consumer);
    return () => reads.detach();
  }
  const onData = (chunk: Buffer): void => {
    if (consumer(chunk) === false) socket.pause();
  };
  socket.on('data', onData);
  return () => socket.off('data', onData);
}

/**
 * The reads of one socket, handed to whoever attached. Reads go one after another into a slab,
 * and each chunk is handed on as a view of the bytes it filled, never copied: the consumer may keep
 * it as long as it likes, since later reads only go into the rest of the slab. A new slab comes
 * when less than a quarter of the current one is left, so at most that quarter of a slab is pinned
 * without holding anyone's bytes. Copying every read that did not fill the buffer, as this did
 * before, cost an upload 12% more CPU and a 1-byte round trip 3% more. A TCP socket's slabs start
 * small (DIRECT_READ_FIRST_SLAB_BYTES), grow towards DIRECT_READ_SLAB_BYTES while reads fill their
 * regions, and go back to small at a read of less than the small size; a TLS socket's are all
 * TLS_DIRECT_READ_SLAB_BYTES.
 */
export class DirectReads {
  readonly #sizes: SlabSizes;
  #socket: Socket | null = null;
  #slab: Buffer;
  /** Where in #slab the next read goes: everything before it was handed on. */
  #offset = 0;
  /** Size of the next slab: the first size until a read fills its whole region. */
  #nextSlabBytes: number;
  #consumer: ChunkConsumer | null = null;
  /** A read that came before anyone attached (the socket is paused meanwhile). */
  #early: Buffer | null = null;

  constructor(sizes: SlabSizes = TCP_SLABS) {
    this.#sizes = sizes;
    this.#slab = Buffer.allocUnsafeSlow(sizes.firstBytes);
    this.#nextSlabBytes = sizes.firstBytes;
  }

  /** The socket whose reads these are (resumed after an early read is taken). */
  bind(socket: Socket): void {
    this.#socket = socket;
  }

  /** True while bytes read before anyone attached wait for the consumer. */
  get holdsEarly(): boolean {
    return this.#early !== null;
  }

  /** Takes `chunk` as if it had been read before anyone attached. */
  holdEarly(chunk: Buffer): void {
    this.#early = this.#early === null ? chunk : Buffer.concat([this.#early, chunk]);
  }

  /**
   * Delivers reads to `consumer` from now on. One that came early follows at the end of the tick,
   * as a stream's buffered 'data' would after resume(): the attacher may not be ready for it yet
   * (a link gets its frame handler after it is built). The socket stays paused until then.
   */
  attach(consumer: ChunkConsumer): void {
    this.#consumer = consumer;
    if (this.#early !== null) nextTick(this.#deliverEarly);
  }

  readonly #deliverEarly = (): void => {
    const early = this.#early;
    const consumer = this.#consumer;
    if (early === null || consumer === null) return;
    this.#early = null;
    if (consumer(early) !== false) this.#socket?.resume();
  };

  /** Drops reads from now on (their consumer is gone; the socket is being torn down). */
  detach(): void {
    this.#consumer = DROP;
  }

  /** onread's `buffer`: where the next read goes, the rest of the slab or a new slab. */
  readonly nextBuffer = (): Buffer => {
    const slabBytes = this.#slab.length;
    if (slabBytes - this.#offset < slabBytes / 4) {
      this.#slab = Buffer.allocUnsafeSlow(this.#nextSlabBytes);
      this.#offset = 0;
    }
    return this.#offset === 0 ? this.#slab : this.#slab.subarray(this.#offset);
  };

  /** onread's `callback`: the read filled `bytes` from #offset on; false pauses the socket. */
  readonly onRead = (bytes: number): boolean => {
    const regionBytes = this.#slab.length - this.#offset;
    const chunk = this.#slab.subarray(this.#offset, this.#offset + bytes);
    this.#offset += bytes;
    if (bytes === regionBytes) {
      // More may be waiting: the next slab holds two reads of this size, up to the largest. Slabs
      // grow step by step so that a socket moving 16 KiB at a time stays on 32 KiB ones: with 1,000
      // sessions echoing 16 KiB rounds, going straight to 256 KiB put each proxy at ~500 MiB of RSS
      // at the peak, four reads per slab at ~210 MiB, two at ~180 MiB (~150 before slabs).
      this.#nextSlabBytes = Math.min(this.#sizes.largestBytes, Math.max(this.#nextSlabBytes, bytes * 2));
    } else if (bytes < DIRECT_READ_FIRST_SLAB_BYTES && this.#slab.length > this.#sizes.firstBytes) {
      // A few bytes and nothing more waiting: the bulk is over. Let go of the large slab now (the
      // rest counts as used), or an idle socket would keep it for as long as it lives.
      this.#nextSlabBytes = this.#sizes.firstBytes;
      this.#offset = this.#slab.length;
    }
    if (this.#consumer === null) {
      this.holdEarly(chunk);
      return false;
    }
    return this.#consumer(chunk) !== false;
  };
}

const DROP: ChunkConsumer = () => true;
