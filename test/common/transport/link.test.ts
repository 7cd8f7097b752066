import { describe, expect, it } from 'vitest';
import { EternalError, LinkClosedError, LinkDeadError, ProtocolError, UnknownPacketTypeError, FrameTooLargeError } from '../../../common/support/errors.js';
import { Link, SMALL_PAYLOAD_COPY_BYTES, type LinkHandler, type LinkOptions } from '../../../common/transport/link.js';
import { HEADER_SIZE, LINK_SESSION_ID, MAX_PAYLOAD_BYTES, PacketType } from '../../../common/protocol/constants.js';
import { FrameDecoder, type Frame } from '../../../common/protocol/frame-decoder.js';
import { encodeHeader } from '../../../common/protocol/header.js';
import { useCleanup } from '../../helpers/cleanup.js';
import { MemorySocket, connectionResetError, settle } from '../../helpers/duplex-pair.js';
import { ManualClock } from '../../helpers/manual-clock.js';

const HEARTBEAT_INTERVAL_MS = 1000;
const DEAD_AFTER_MS = 3000;

const onCleanup = useCleanup();

/** Records what a link hands its handler. */
class RecordingHandler implements LinkHandler {
  readonly frames: Frame[] = [];
  writableCalls = 0;
  /** Thrown from onFrame when set. */
  failWith: EternalError | null = null;

  onFrame(_link: Link, frame: Frame): void {
    if (this.failWith !== null) throw this.failWith;
    this.frames.push(frame);
  }

  onWritable(): void {
    this.writableCalls++;
  }
}

/** The far end of a link's socket, read by the test: every frame the link sent, decoded. */
class FarEnd {
  readonly frames: Frame[] = [];
  bytes = 0;
  closed = false;
  readonly #decoder = new FrameDecoder();

  constructor(readonly socket: MemorySocket) {
    socket.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length;
      this.frames.push(...this.#decoder.push(chunk));
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
    });
  }

  count(type: PacketType): number {
    return this.frames.filter((frame) => frame.header.type === type).length;
  }

  sendHeartbeat(): void {
    this.socket.write(header(PacketType.Heartbeat, 0));
  }
}

function header(type: number, length: number, sessionId = LINK_SESSION_ID): Buffer {
  return encodeHeader({ type, sessionId, seq: 0, ack: 0, length });
}

/** Two links over one in-memory pair, each the other's peer. */
function backToBack(): { clock: ManualClock; left: Link; right: Link } {
  const clock = new ManualClock();
  const [a, b] = MemorySocket.pair();
  const options = { clock, heartbeatIntervalMs: HEARTBEAT_INTERVAL_MS, deadAfterMs: DEAD_AFTER_MS, writeHighWaterBytes: 65536 };
  const left = new Link({ ...options, socket: a, peer: 'right' });
  onCleanup(() => left.fail(new LinkClosedError('test over')));
  const right = new Link({ ...options, socket: b, peer: 'left' });
  onCleanup(() => right.fail(new LinkClosedError('test over')));
  return { clock, left, right };
}

interface Downs {
  calls: Array<{ link: Link; error: EternalError }>;
}

function makeLink(options: Partial<Omit<LinkOptions, 'socket' | 'clock'>> & { bufferLimitBytes?: number } = {}): {
  clock: ManualClock;
  link: Link;
  near: MemorySocket;
  far: FarEnd;
  handler: RecordingHandler;
  downs: Downs;
} {
  const clock = new ManualClock();
  const [near, farSocket] = MemorySocket.pair(
    options.bufferLimitBytes === undefined ? {} : { bufferLimitBytes: options.bufferLimitBytes },
  );
  const far = new FarEnd(farSocket);
  const link = new Link({
    socket: near,
    clock,
    heartbeatIntervalMs: options.heartbeatIntervalMs ?? HEARTBEAT_INTERVAL_MS,
    deadAfterMs: options.deadAfterMs ?? DEAD_AFTER_MS,
    writeHighWaterBytes: options.writeHighWaterBytes ?? 64 * 1024,
    peer: 'memory',
    ...(options.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: options.maxPayloadBytes }),
  });
  onCleanup(() => {
    link.fail(new LinkClosedError('test over'));
    farSocket.destroy();
  });
  const handler = new RecordingHandler();
  link.setHandler(handler);
  const downs: Downs = { calls: [] };
  link.onDown((downLink, error) => downs.calls.push({ link: downLink, error }));
  return { clock, link, near, far, handler, downs };
}

describe('Link: heartbeats', () => {
  it('sends a HEARTBEAT (type 1, session 0, 20-byte header, no payload) every heartbeatIntervalMs', async () => {
    // The far end stays silent: a long dead-link timeout keeps this test about heartbeats alone.
    const { clock, far, link } = makeLink({ deadAfterMs: 60_000 });

    await clock.advance(HEARTBEAT_INTERVAL_MS - 1);
    await settle();
    expect(far.count(PacketType.Heartbeat)).toBe(0);

    await clock.advance(1);
    expect(far.count(PacketType.Heartbeat)).toBe(1);
    expect(far.bytes).toBe(HEADER_SIZE);
    expect(far.frames[0]?.header).toEqual({ type: 1, sessionId: 0, seq: 0, ack: 0, length: 0 });
    expect(far.frames[0]?.payload.length).toBe(0);

    await clock.advance(9 * HEARTBEAT_INTERVAL_MS);
    expect(far.count(PacketType.Heartbeat)).toBe(10);
    expect(far.frames).toHaveLength(10);
    expect(far.bytes).toBe(10 * HEADER_SIZE);
    expect(link.state).toBe('up');
  });

  it('keeps to the configured interval', async () => {
    const { clock, far } = makeLink({ heartbeatIntervalMs: 250, deadAfterMs: 60_000 });
    await clock.advance(2000);
    expect(far.count(PacketType.Heartbeat)).toBe(8);
  });

  it('does not hand heartbeats to its handler, but counts their bytes as received', async () => {
    const { far, handler, link } = makeLink();
    far.sendHeartbeat();
    far.socket.write(header(PacketType.Ack, 0, 5));
    far.sendHeartbeat();
    await settle();
    expect(handler.frames.map((frame) => frame.header.type)).toEqual([PacketType.Ack]);
    expect(handler.frames[0]?.header.sessionId).toBe(5);
    expect(link.bytesReceived).toBe(3 * HEADER_SIZE);
  });

  it('stops sending heartbeats once down', async () => {
    const { clock, far, link } = makeLink({ deadAfterMs: 60_000 });
    await clock.advance(2 * HEARTBEAT_INTERVAL_MS);
    link.fail(new LinkClosedError('test'));
    await clock.advance(5 * HEARTBEAT_INTERVAL_MS);
    expect(far.count(PacketType.Heartbeat)).toBe(2);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('Link: dead-link detection', () => {
  it('goes down with LinkDeadError after deadAfterMs of silence, and not a millisecond before', async () => {
    const { clock, link, far, downs } = makeLink();

    await clock.advance(DEAD_AFTER_MS - 1);
    expect(link.state).toBe('up');
    expect(downs.calls).toHaveLength(0);

    await clock.advance(1);
    expect(link.state).toBe('down');
    expect(downs.calls).toHaveLength(1);
    const error = downs.calls[0]?.error;
    expect(error).toBeInstanceOf(LinkDeadError);
    expect(error?.code).toBe('ETCP_ERR_LINK_DEAD');
    expect(error?.message).toBe(`no packet from the peer for ${DEAD_AFTER_MS} ms`);
    expect((error as LinkDeadError).silentMs).toBe(DEAD_AFTER_MS);
    // The dead link's socket is closed, so the far end learns too.
    await settle();
    expect(far.closed).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('counts the silence from the last packet received, not from the start', async () => {
    const { clock, link, far, downs } = makeLink();
    await clock.advance(2000);
    far.sendHeartbeat();
    await settle();

    await clock.advance(DEAD_AFTER_MS - 1);
    expect(link.state).toBe('up');
    await clock.advance(1);
    expect(link.state).toBe('down');
    expect(clock.now()).toBe(2000 + DEAD_AFTER_MS);
    expect((downs.calls[0]?.error as LinkDeadError).silentMs).toBe(DEAD_AFTER_MS);
  });

  it('stays up as long as the peer keeps sending heartbeats', async () => {
    const { clock, link, far, downs } = makeLink();
    const farHeartbeat = clock.setInterval(() => far.sendHeartbeat(), HEARTBEAT_INTERVAL_MS);
    onCleanup(() => farHeartbeat.cancel());

    await clock.advance(30_000);
    expect(link.state).toBe('up');
    expect(downs.calls).toHaveLength(0);
    expect(link.bytesReceived).toBe(30 * HEADER_SIZE);

    // The peer falls silent: down deadAfterMs after its last heartbeat (t=30 000).
    farHeartbeat.cancel();
    await clock.advance(DEAD_AFTER_MS - 1);
    expect(link.state).toBe('up');
    await clock.advance(1);
    expect(downs.calls.map((call) => call.error.code)).toEqual(['ETCP_ERR_LINK_DEAD']);
  });

  it('two links back to back keep each other up with their own heartbeats', async () => {
    const { clock, left, right } = backToBack();

    await clock.advance(60_000);
    expect(left.state).toBe('up');
    expect(right.state).toBe('up');
    expect(left.bytesReceived).toBe(60 * HEADER_SIZE);
    expect(right.bytesReceived).toBe(60 * HEADER_SIZE);
  });
});

describe('Link: socket failures end it at once', () => {
  it('a socket error: LinkClosedError with the error as its cause', async () => {
    const { link, near, downs } = makeLink();
    const cause = connectionResetError();
    near.destroy(cause);
    await settle();
    expect(link.state).toBe('down');
    expect(downs.calls).toHaveLength(1);
    const error = downs.calls[0]?.error;
    expect(error).toBeInstanceOf(LinkClosedError);
    expect(error?.code).toBe('ETCP_ERR_LINK_CLOSED');
    expect(error?.message).toBe('socket error: read ECONNRESET');
    expect(error?.cause).toBe(cause);
  });

  it('the peer closing (end): LinkClosedError "peer closed the link"', async () => {
    const { clock, link, far, downs } = makeLink();
    far.socket.end();
    await settle();
    expect(clock.now()).toBe(0);
    expect(link.state).toBe('down');
    expect(downs.calls.map((call) => [call.error.code, call.error.message])).toEqual([
      ['ETCP_ERR_LINK_CLOSED', 'peer closed the link'],
    ]);
  });

  it('the socket closing without an error: LinkClosedError "socket closed"', async () => {
    const { link, near, downs } = makeLink();
    near.destroy();
    await settle();
    expect(link.state).toBe('down');
    expect(downs.calls.map((call) => [call.error.code, call.error.message])).toEqual([
      ['ETCP_ERR_LINK_CLOSED', 'socket closed'],
    ]);
  });

  it('a late error from the destroyed socket does not crash the process', async () => {
    const { link, near, downs } = makeLink();
    link.fail(new LinkClosedError('test'));
    near.emit('error', new Error('late'));
    await settle();
    expect(downs.calls).toHaveLength(1);
  });
});

describe('Link: protocol errors in the stream', () => {
  it('an unknown packet type ends the link with UnknownPacketTypeError', async () => {
    const { link, far, handler, downs } = makeLink();
    far.socket.write(header(PacketType.Ack, 0, 3));
    far.socket.write(header(99, 0));
    far.socket.write(header(PacketType.Ack, 0, 4));
    await settle();
    expect(link.state).toBe('down');
    expect(downs.calls).toHaveLength(1);
    const error = downs.calls[0]?.error;
    expect(error).toBeInstanceOf(UnknownPacketTypeError);
    expect(error?.code).toBe('ETCP_ERR_UNKNOWN_PACKET_TYPE');
    expect(error?.message).toBe('unknown packet type 99');
    // Nothing after the bad header reaches the handler, and the socket is closed.
    expect(handler.frames.map((frame) => frame.header.sessionId)).toEqual([3]);
    expect(far.closed).toBe(true);
  });

  it('an oversize length ends the link with FrameTooLargeError before the payload arrives', async () => {
    const { link, far, downs } = makeLink();
    far.socket.write(header(PacketType.Data, MAX_PAYLOAD_BYTES + 1, 1));
    await settle();
    expect(link.state).toBe('down');
    expect(downs.calls[0]?.error).toBeInstanceOf(FrameTooLargeError);
    expect(downs.calls[0]?.error.code).toBe('ETCP_ERR_FRAME_TOO_LARGE');
  });

  it('honours a smaller maxPayloadBytes', async () => {
    const { far, downs } = makeLink({ maxPayloadBytes: 100 });
    far.socket.write(Buffer.concat([header(PacketType.Data, 100, 1), Buffer.alloc(100)]));
    far.socket.write(header(PacketType.Data, 101, 1));
    await settle();
    expect(downs.calls.map((call) => call.error.code)).toEqual(['ETCP_ERR_FRAME_TOO_LARGE']);
  });

  it('an EternalError thrown by the handler ends the link with that error', async () => {
    const { link, far, handler, downs } = makeLink();
    const thrown = new ProtocolError('bad packet for this state');
    handler.failWith = thrown;
    far.socket.write(header(PacketType.Ack, 0, 1));
    await settle();
    expect(link.state).toBe('down');
    expect(downs.calls.map((call) => call.error)).toEqual([thrown]);
  });

  it('any other exception from the handler becomes a ProtocolError', async () => {
    const { link, far, downs } = makeLink();
    link.setHandler({
      onFrame: () => {
        throw new RangeError('oops');
      },
      onWritable: () => {},
    });
    far.socket.write(header(PacketType.Ack, 0, 1));
    await settle();
    expect(downs.calls[0]?.error).toBeInstanceOf(ProtocolError);
    expect(downs.calls[0]?.error.message).toBe('oops');
  });
});

describe('Link: teardown', () => {
  it('fires every down listener exactly once, whatever ends it and however often', async () => {
    const { clock, link, near, far, downs } = makeLink();
    const second: EternalError[] = [];
    link.onDown((_link, error) => second.push(error));

    const first = new ProtocolError('first');
    link.fail(first);
    link.fail(new ProtocolError('second'));
    near.emit('error', new Error('after'));
    far.socket.end();
    await settle();
    await clock.advance(10 * DEAD_AFTER_MS);

    expect(downs.calls).toHaveLength(1);
    expect(downs.calls[0]?.link).toBe(link);
    expect(downs.calls[0]?.error).toBe(first);
    expect(second).toEqual([first]);
    expect(clock.pendingTimers).toBe(0);
  });

  it('drops writes once down', async () => {
    const { link, far } = makeLink();
    link.writePacket(PacketType.Ack, 1, 0, 7, Buffer.alloc(0));
    link.fail(new LinkClosedError('test'));
    link.writePacket(PacketType.Data, 1, 1, 7, Buffer.from('late'));
    await settle();
    expect(far.frames.map((frame) => frame.header.type)).toEqual([PacketType.Ack]);
  });

  it('writes header and payload as one frame the far end decodes', async () => {
    const { link, far } = makeLink();
    link.cork();
    link.writePacket(PacketType.Data, 3, 10, 20, Buffer.from('hello'));
    link.writePacket(PacketType.Fin, 3, 11, 20, Buffer.alloc(0));
    link.uncork();
    await settle();
    expect(far.frames.map((frame) => [frame.header, frame.payload.toString()])).toEqual([
      [{ type: PacketType.Data, sessionId: 3, seq: 10, ack: 20, length: 5 }, 'hello'],
      [{ type: PacketType.Fin, sessionId: 3, seq: 11, ack: 20, length: 0 }, ''],
    ]);
  });

  it('writes small payloads copied behind their header and large ones as they are: both decode alike', async () => {
    const { link, far } = makeLink();
    const sizes = [1, SMALL_PAYLOAD_COPY_BYTES, SMALL_PAYLOAD_COPY_BYTES + 1, 64 * 1024];
    const payloads = sizes.map((size, i) => Buffer.alloc(size, 0x41 + i));
    link.cork();
    payloads.forEach((payload, i) => link.writePacket(PacketType.Data, 1, i, 0, payload));
    link.uncork();
    await settle();
    expect(far.frames.map((frame) => frame.header.length)).toEqual(sizes);
    expect(far.frames.map((frame) => frame.payload)).toEqual(payloads);
  });
});

describe('Link: write calls', () => {
  /** How the socket was asked to write: 1 per plain write, N per writev of N buffers. */
  function recordWrites(socket: MemorySocket): number[] {
    const calls: number[] = [];
    const write = socket._write.bind(socket);
    const writev = socket._writev.bind(socket);
    socket._write = (chunk, encoding, callback): void => {
      calls.push(1);
      write(chunk, encoding, callback);
    };
    socket._writev = (chunks, callback): void => {
      calls.push(chunks.length);
      writev(chunks, callback);
    };
    return calls;
  }

  it('a batch of one small packet is one plain write; several are one writev', async () => {
    const { link, near, far } = makeLink();
    const calls = recordWrites(near);
    link.cork();
    link.writePacket(PacketType.Data, 1, 0, 0, Buffer.from('k'));
    link.uncork();
    expect(calls).toEqual([1]);
    link.cork();
    link.cork(); // nested: only the outermost uncork writes
    link.writePacket(PacketType.Data, 1, 1, 0, Buffer.from('a'));
    link.writePacket(PacketType.Ack, 1, 0, 5, Buffer.alloc(0));
    link.uncork();
    expect(calls).toEqual([1]);
    link.writePacket(PacketType.Data, 1, 2, 0, Buffer.from('b'));
    link.uncork();
    expect(calls).toEqual([1, 3]);
    await settle();
    expect(far.frames.map((frame) => frame.header.type)).toEqual([PacketType.Data, PacketType.Data, PacketType.Ack, PacketType.Data]);
  });

  it('a large packet in a batch is its header and its payload, uncopied, in the same writev', async () => {
    const { link, near, far } = makeLink();
    const calls = recordWrites(near);
    const large = Buffer.alloc(SMALL_PAYLOAD_COPY_BYTES + 1, 0x61);
    link.cork();
    link.writePacket(PacketType.Data, 1, 1, 0, Buffer.from('k'));
    link.writePacket(PacketType.Data, 1, 2, 0, large);
    link.uncork();
    expect(calls).toEqual([3]);
    await settle();
    expect(far.frames.map((frame) => frame.payload.length)).toEqual([1, large.length]);
  });
});

describe('Link: write backpressure', () => {
  it('is not writable while the socket holds more than the high-water mark, and calls onWritable after drain', async () => {
    // The socket's "kernel" takes 1 KiB; the rest waits in the stream, over the socket's 16 KiB
    // mark (LINK_SOCKET_HIGH_WATER_BYTES, which every link socket is given).
    const { link, near, handler } = makeLink({ writeHighWaterBytes: 4096, bufferLimitBytes: 1024 });
    near.holdWrites(true);
    link.cork();
    for (let i = 0; i < 20; i++) link.writePacket(PacketType.Data, 1, i, 0, Buffer.alloc(1000));
    link.uncork();
    expect(link.writable).toBe(false);
    expect(near.writableNeedDrain).toBe(true);
    await settle();
    expect(handler.writableCalls).toBe(0);

    near.holdWrites(false);
    await settle();
    expect(link.writable).toBe(true);
    expect(handler.writableCalls).toBe(1);
  });

  it('over its own mark but under the socket\'s, it looks again on the next turn', async () => {
    const { link, near, handler } = makeLink({ writeHighWaterBytes: 2048, bufferLimitBytes: 1024 });
    near.holdWrites(true);
    link.cork();
    for (let i = 0; i < 4; i++) link.writePacket(PacketType.Data, 1, i, 0, Buffer.alloc(1000));
    link.uncork();
    expect(link.writable).toBe(false);
    expect(near.writableNeedDrain).toBe(false);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(handler.writableCalls).toBe(1);
  });
});

describe('Link: probes (a HEARTBEAT that asks for an answer at once)', () => {
  it('answers a probe with its id, calls back on the answer to its own, and a plain HEARTBEAT asks nothing', async () => {
    const { link, far, handler } = makeLink();
    // The peer probes us: we answer with a HEARTBEAT whose ack is the probe's id.
    far.socket.write(encodeHeader({ type: PacketType.Heartbeat, sessionId: LINK_SESSION_ID, seq: 77, ack: 0, length: 0 }));
    far.sendHeartbeat();
    await settle();
    const answers = far.frames.filter((frame) => frame.header.type === PacketType.Heartbeat && frame.header.ack !== 0);
    expect(answers.map((frame) => [frame.header.seq, frame.header.ack])).toEqual([[0, 77]]);

    // We probe the peer: the answer calls back once; an answer to nothing calls nothing.
    let answered = 0;
    link.probe(() => answered++);
    await settle();
    const probe = far.frames.filter((frame) => frame.header.type === PacketType.Heartbeat && frame.header.seq !== 0).at(-1);
    expect(probe?.header.ack).toBe(0);
    const id = probe?.header.seq as number;
    expect(id).toBeGreaterThan(0);
    far.socket.write(encodeHeader({ type: PacketType.Heartbeat, sessionId: LINK_SESSION_ID, seq: 0, ack: id, length: 0 }));
    far.socket.write(encodeHeader({ type: PacketType.Heartbeat, sessionId: LINK_SESSION_ID, seq: 0, ack: id, length: 0 }));
    far.socket.write(encodeHeader({ type: PacketType.Heartbeat, sessionId: LINK_SESSION_ID, seq: 0, ack: id + 1, length: 0 }));
    await settle();
    expect(answered).toBe(1);
    expect(handler.frames).toEqual([]); // heartbeats, probes and answers never reach the handler
  });

  it('two links back to back: a probe is answered within a round trip', async () => {
    const { left } = backToBack();
    let answered = false;
    left.probe(() => (answered = true));
    await settle();
    expect(answered).toBe(true);
  });
});
