import type { Duplex } from 'node:stream';
import type { Clock, TimerHandle } from '../support/clock.js';
import { EternalError, LinkClosedError, LinkDeadError, ProtocolError } from '../support/errors.js';
import { GoAwayCode, LINK_SESSION_ID, PacketType } from '../protocol/constants.js';
import { encodeReason } from '../protocol/messages.js';
import { FrameDecoder, type Frame } from '../protocol/frame-decoder.js';
import { encodeHeader, encodePacket } from '../protocol/header.js';
import { describeError } from '../support/logger.js';
import { readChunks } from './direct-reads.js';

/** Who receives a link's frames. A link has one handler at a time: the handshake, then the multiplexer. */
export interface LinkHandler {
  /** A whole frame arrived. Throwing an EternalError ends the link with it. */
  onFrame(link: Link, frame: Frame): void;
  /** The socket's buffer drained below the high-water mark after writes were held back. */
  onWritable(link: Link): void;
}

export type LinkDownListener = (link: Link, error: EternalError) => void;

export interface LinkOptions {
  socket: Duplex;
  clock: Clock;
  heartbeatIntervalMs: number;
  deadAfterMs: number;
  writeHighWaterBytes: number;
  /** Printable peer address for logs. */
  peer: string;
  maxPayloadBytes?: number;
}

export type LinkState = 'up' | 'down';

/** What a link takes from the engine's configuration (EngineConfig has these fields). */
export interface LinkTimings {
  heartbeatIntervalMs: number;
  deadAfterMs: number;
  linkWriteHighWaterBytes: number;
}

/** A link over `socket` timed by the engine's configuration. */
export function createLink(socket: Duplex, peer: string, config: LinkTimings, clock: Clock): Link {
  return new Link({
    socket,
    clock,
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    deadAfterMs: config.deadAfterMs,
    writeHighWaterBytes: config.linkWriteHighWaterBytes,
    peer,
  });
}

/**
 * Payloads up to this size are copied behind their header. Two buffers cost a second pass
 * through the socket's stream layer and a gathered write (writev), more than copying a keystroke
 * or a short reply: ping-pong through the tunnel was ~4% faster, and 1 KiB copies in well under
 * a microsecond. Bulk frames are far larger and are never copied.
 */
export const SMALL_PAYLOAD_COPY_BYTES = 1024;

const HEARTBEAT_HEADER = encodeHeader({
  type: PacketType.Heartbeat,
  sessionId: LINK_SESSION_ID,
  seq: 0,
  ack: 0,
  length: 0,
});

/**
 * One connection between the proxies: framing, heartbeats and dead-link detection. It knows
 * nothing of sessions; its handler (the handshake, then the multiplexer) does.
 * Teardown happens in one place, #goDown, whatever ended the link.
 */
export class Link {
  readonly peer: string;
  readonly #socket: Duplex;
  readonly #clock: Clock;
  readonly #decoder: FrameDecoder;
  /** Stops the socket's chunks from reaching the decoder. */
  readonly #stopReading: () => void;
  readonly #deadAfterMs: number;
  readonly #writeHighWaterBytes: number;
  #handler: LinkHandler | null = null;
  readonly #downListeners: LinkDownListener[] = [];
  #state: LinkState = 'up';
  #lastReceivedAt: number;
  #heartbeatTimer: TimerHandle;
  #deadlineTimer: TimerHandle;
  #waitingForDrain = false;
  #socketError: Error | null = null;
  #bytesReceived = 0;
  /** Probes sent and not answered yet, by id (the HEARTBEAT's seq), with what to call on the answer. */
  readonly #probes = new Map<number, () => void>();
  #lastProbeId = 0;

  constructor(options: LinkOptions) {
    this.peer = options.peer;
    this.#socket = options.socket;
    this.#clock = options.clock;
    this.#deadAfterMs = options.deadAfterMs;
    this.#writeHighWaterBytes = options.writeHighWaterBytes;
    this.#decoder = new FrameDecoder(options.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: options.maxPayloadBytes });
    this.#lastReceivedAt = this.#clock.now();
    this.#heartbeatTimer = this.#clock.setInterval(() => this.#sendHeartbeat(), options.heartbeatIntervalMs);
    this.#deadlineTimer = this.#clock.setTimeout(() => this.#checkDeadline(), this.#deadAfterMs);
    this.#stopReading = readChunks(this.#socket, this.#onSocketData);
    this.#socket.on('drain', this.#onSocketDrain);
    this.#socket.on('end', this.#onSocketEnd);
    this.#socket.on('error', this.#onSocketError);
    this.#socket.on('close', this.#onSocketClose);
  }

  get state(): LinkState {
    return this.#state;
  }

  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  /** False while the socket buffers more than the high-water mark: stop taking session packets. */
  get writable(): boolean {
    return this.#state === 'up' && this.#socket.writableLength < this.#writeHighWaterBytes;
  }

  /** Largest payload accepted from the next header on: small until the peer said HELLO. */
  set maxPayloadBytes(bytes: number) {
    this.#decoder.maxPayloadBytes = bytes;
  }

  setHandler(handler: LinkHandler): void {
    this.#handler = handler;
  }

  /** Calls `listener` once when the link ends, with the reason. */
  onDown(listener: LinkDownListener): void {
    this.#downListeners.push(listener);
  }

  /** Groups the writes that follow into one system call (until uncork). */
  cork(): void {
    if (this.#state === 'up') this.#socket.cork();
  }

  uncork(): void {
    if (this.#state !== 'up') return;
    this.#socket.uncork();
    if (this.writable) return;
    if (this.#socket.writableNeedDrain) {
      this.#waitingForDrain = true;
    } else {
      // Over our mark but under the socket's own: no 'drain' will come, so look again shortly.
      setImmediate(() => {
        if (this.#state === 'up') this.#handler?.onWritable(this);
      });
    }
  }

  /**
   * Writes one packet. A payload up to SMALL_PAYLOAD_COPY_BYTES is copied behind its header and
   * written as one buffer; a larger one is written as it is, after the header, never copied.
   */
  writePacket(type: PacketType, sessionId: number, seq: number, ack: number, payload: Buffer): void {
    if (this.#state !== 'up') return;
    const header = { type, sessionId, seq, ack, length: payload.length };
    if (payload.length <= SMALL_PAYLOAD_COPY_BYTES) {
      this.#socket.write(encodePacket(header, payload));
      return;
    }
    this.#socket.write(encodeHeader(header));
    this.#socket.write(payload);
  }

  /** Ends the link with `error` (idempotent). The down listeners report it. */
  fail(error: EternalError): void {
    this.#goDown(error);
  }

  /**
   * Ends the link with `error` after what was written: the socket is ended (FIN once its writes
   * are out) rather than destroyed, which would drop them. Resolves once they are out (the
   * socket's 'finish'), it closed, or `boundMs` passed, whichever comes first.
   */
  finish(error: EternalError, boundMs: number): Promise<void> {
    if (this.#state !== 'up') return Promise.resolve();
    const socket = this.#socket;
    const flushed = new Promise<void>((resolve) => {
      const timer = this.#clock.setTimeout(() => resolve(), boundMs);
      const done = (): void => {
        timer.cancel();
        resolve();
      };
      socket.once('finish', done);
      socket.once('close', done);
    });
    socket.end();
    this.#goDown(error, false);
    return flushed;
  }

  /**
   * Ends the link after telling the peer why, in a GOAWAY that must not be lost: the socket is
   * ended (FIN) rather than reset, since a reset may discard what the peer has not read yet.
   */
  refuse(code: GoAwayCode, reason: string, error: EternalError): void {
    if (this.#state !== 'up') return;
    this.writePacket(PacketType.GoAway, LINK_SESSION_ID, 0, code, encodeReason(reason));
    this.#socket.end();
    this.#goDown(error, false);
  }

  /**
   * Asks the peer to answer at once: a HEARTBEAT whose seq is nonzero (the probe's id), which the
   * peer answers with a HEARTBEAT whose ack is that id. `onAnswer` is called when the answer
   * arrives, if it does. A peer older than probes drops it like any HEARTBEAT and never answers,
   * which the caller takes as a late answer: harmless, it only costs a second link.
   */
  probe(onAnswer: () => void): void {
    if (this.#state !== 'up') return;
    this.#lastProbeId = this.#lastProbeId >= 0xffffffff ? 1 : this.#lastProbeId + 1;
    this.#probes.set(this.#lastProbeId, onAnswer);
    this.#socket.write(encodeHeader({ type: PacketType.Heartbeat, sessionId: LINK_SESSION_ID, seq: this.#lastProbeId, ack: 0, length: 0 }));
  }

  /** A HEARTBEAT arrived: a probe to answer (seq), an answer to our probe (ack), or neither. */
  #onHeartbeat(seq: number, ack: number): void {
    if (seq !== 0) this.#socket.write(encodeHeader({ type: PacketType.Heartbeat, sessionId: LINK_SESSION_ID, seq: 0, ack: seq, length: 0 }));
    if (ack === 0) return;
    const onAnswer = this.#probes.get(ack);
    this.#probes.delete(ack);
    onAnswer?.();
  }

  #sendHeartbeat(): void {
    if (this.#state === 'up') this.#socket.write(HEARTBEAT_HEADER);
  }

  #checkDeadline(): void {
    if (this.#state !== 'up') return;
    const silentMs = this.#clock.now() - this.#lastReceivedAt;
    if (silentMs >= this.#deadAfterMs) {
      this.#goDown(new LinkDeadError(Math.round(silentMs)));
      return;
    }
    // Re-armed lazily rather than on every packet: one timer operation per deadline, not per frame.
    this.#deadlineTimer = this.#clock.setTimeout(() => this.#checkDeadline(), this.#deadAfterMs - silentMs);
  }

  readonly #onSocketData = (chunk: Buffer): void => {
    if (this.#state !== 'up') return;
    this.#lastReceivedAt = this.#clock.now();
    this.#bytesReceived += chunk.length;
    try {
      this.#decoder.append(chunk);
      // One frame at a time: handling a frame may change how the next is decoded (the payload limit).
      for (let frame = this.#decoder.next(); frame !== null; frame = this.#decoder.next()) {
        if (frame.header.type !== PacketType.Heartbeat) this.#handler?.onFrame(this, frame);
        else if (frame.header.seq !== 0 || frame.header.ack !== 0) this.#onHeartbeat(frame.header.seq, frame.header.ack);
        if (this.#state !== 'up') return;
      }
    } catch (error) {
      this.#goDown(error instanceof EternalError ? error : new ProtocolError(describeError(error)));
    }
  };

  readonly #onSocketDrain = (): void => {
    if (!this.#waitingForDrain || this.#state !== 'up') return;
    this.#waitingForDrain = false;
    this.#handler?.onWritable(this);
  };

  readonly #onSocketEnd = (): void => {
    this.#goDown(new LinkClosedError('peer closed the link'));
  };

  readonly #onSocketError = (error: Error): void => {
    this.#socketError = error;
    this.#goDown(new LinkClosedError(`socket error: ${describeError(error)}`, { cause: error }));
  };

  readonly #onSocketClose = (): void => {
    this.#goDown(
      this.#socketError === null
        ? new LinkClosedError('socket closed')
        : new LinkClosedError(`socket error: ${describeError(this.#socketError)}`, { cause: this.#socketError }),
    );
  };

  #goDown(error: EternalError, destroySocket = true): void {
    if (this.#state === 'down') return;
    this.#state = 'down';
    this.#heartbeatTimer.cancel();
    this.#deadlineTimer.cancel();
    this.#stopReading();
    this.#socket.off('drain', this.#onSocketDrain);
    // Keep an error listener: a late error from a destroyed socket must not crash the process.
    if (destroySocket) {
      this.#socket.destroy();
    } else {
      // Ended gracefully: give the peer a moment to read, then let go of the socket regardless.
      this.#clock.setTimeout(() => this.#socket.destroy(), this.#deadAfterMs);
      this.#socket.resume();
    }
    this.#handler = null;
    this.#probes.clear(); // never to be answered
    for (const listener of this.#downListeners.splice(0)) listener(this, error);
  }
}
