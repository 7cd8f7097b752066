import type { Clock, TimerHandle } from '../support/clock.js';
import type { LogFields, Logger } from '../support/logger.js';
import { AddressWatch, type AddressChange } from '../transport/address-watch.js';
import type { Link } from '../transport/link.js';
import { ackWaitLimitMs, probeDeadlineMs, type MeasuredPath } from './second-link.js';

/**
 * The client's eye on its path, so that a roam costs a round trip or two and not the dead-link
 * timeout: it watches the host's addresses and how long the link's acks are waited for, probes
 * the link when either looks wrong, and says what it found. What to do about it (fail the link,
 * dial now, make a second link) is the client endpoint's.
 */

/** Counts of what the client did about its path (ClientEndpoint.roamingCounts). */
export interface RoamingCounts {
  /** Links failed at once because their local address left the host. */
  addressesGone: number;
  /** Probes sent (an address change, or acks that stopped coming). */
  probes: number;
  /** Probes whose answer was late. */
  probesUnanswered: number;
  /** Second links dialled beside the current one. */
  secondLinks: number;
  /** Second links the sessions moved to. */
  switches: number;
}

/** What the watch asks of the client endpoint. */
export interface WatchedClient {
  /** The link the sessions run on, while it is up; null otherwise. */
  upLink(): Link | null;
  /** The up link's connections: the link itself and its express lane, if it has one (empty while not up). */
  upLanes(): Link[];
  /** The current link's local address, once known (also while it handshakes). */
  linkLocalAddress(): string | null;
  /** A link exists (up or in its handshake). */
  hasLink(): boolean;
  /** No link: a dial is pending or waiting. */
  isDialing(): boolean;
  /** A second link is being made already. */
  secondLinkPending(): boolean;
  path(): MeasuredPath;
  /** How long bytes have been in flight without an ack moving them (0: none in flight). */
  ackWaitMs(): number;
  /** The link's local address is gone: the link is dead now. */
  onAddressGone(address: string): void;
  /** An address appeared while dialing: a dial may get through now. */
  onAddressAdded(added: string[]): void;
  /** A probe's answer is late: make a second link. */
  onProbeLate(): void;
}

export interface PathWatchOptions {
  clock: Clock;
  logger: Logger;
  serverName: string;
  /** How often the host's addresses are looked at; 0: never. */
  addressPollMs: number;
  /** The link's dead-link timeout: an ack wait is probed within half of it, whatever the path's round trips say. */
  deadAfterMs: number;
  readAddresses?: () => Set<string>;
  client: WatchedClient;
}

/** How often, while a link is up, the watch looks at how long its acks have been waited for. */
const ACK_WAIT_CHECK_MS = 100;

export class PathWatch {
  readonly counts: RoamingCounts = { addressesGone: 0, probes: 0, probesUnanswered: 0, secondLinks: 0, switches: 0 };
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #serverName: string;
  readonly #client: WatchedClient;
  readonly #addresses: AddressWatch | null;
  readonly #ackWaitTimer: TimerHandle;
  readonly #maxAckWaitMs: number;
  /** A probe's deadline, while one is unanswered. */
  #probeTimer: TimerHandle | null = null;
  /** The current wait for an ack was probed already. */
  #ackWaitProbed = false;

  constructor(options: PathWatchOptions) {
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#serverName = options.serverName;
    this.#client = options.client;
    this.#maxAckWaitMs = options.deadAfterMs / 2;
    this.#addresses =
      options.addressPollMs > 0
        ? new AddressWatch({
            clock: options.clock,
            intervalMs: options.addressPollMs,
            ...(options.readAddresses === undefined ? {} : { read: options.readAddresses }),
          })
        : null;
    this.#addresses?.on('change', (change) => this.#onAddressesChanged(change));
    this.#addresses?.start();
    this.#ackWaitTimer = options.clock.setInterval(() => this.#checkAckWait(), ACK_WAIT_CHECK_MS);
  }

  /** The link went down: an unanswered probe is moot. */
  linkDown(): void {
    this.#probeTimer?.cancel();
    this.#probeTimer = null;
  }

  stop(): void {
    this.#addresses?.stop();
    this.#ackWaitTimer.cancel();
    this.linkDown();
  }

  /**
   * The host's addresses changed. If the link's own address is gone, the link is dead now (its
   * peer's packets go to an address nobody holds; waiting for the dead-link timeout would cost
   * seconds). If an address appeared while no link is up, a waiting or hanging dial may get
   * through from it. If ours is still there, the route to the server may now leave from another
   * (Wi-Fi to LTE, the old network silently gone): ask the link whether it still works.
   */
  #onAddressesChanged(change: AddressChange): void {
    const local = this.#client.linkLocalAddress();
    if (this.#client.hasLink() && local !== null && this.#addresses?.has(local) === false) {
      this.counts.addressesGone++;
      this.#client.onAddressGone(local);
      return;
    }
    if (this.#client.isDialing() && change.added.length > 0) {
      this.#client.onAddressAdded(change.added);
      return;
    }
    this.#probe({ added: change.added, removed: change.removed });
  }

  /**
   * Bytes in flight and no ack for longer than the path's ack timeout: probe the link (once per
   * wait; a link that stays silent ends at the dead-link timeout, as always). A slow path keeps
   * acks coming and never gets here; a path that stopped does within a few round trips.
   */
  #checkAckWait(): void {
    if (this.#client.upLink() === null) return;
    const waitedMs = this.#client.ackWaitMs();
    if (waitedMs < ackWaitLimitMs(this.#client.path(), this.#maxAckWaitMs)) {
      this.#ackWaitProbed = false; // acks moved: the next wait may be probed
      return;
    }
    if (this.#ackWaitProbed) return;
    this.#ackWaitProbed = this.#probe({ reason: `no ack for ${Math.round(waitedMs)} ms` });
  }

  /**
   * Probes the up link, on each of its connections; a late answer from either asks for a second
   * link (which brings a lane of its own). Answers in time: nothing more. Returns whether a probe
   * went out (not while another is unanswered or a second link is made).
   */
  #probe(cause: LogFields): boolean {
    const link = this.#client.upLink();
    if (link === null || this.#probeTimer !== null || this.#client.secondLinkPending()) return false;
    const dueMs = probeDeadlineMs(this.#client.path());
    const sentAt = this.#clock.now();
    const why = { server: this.#serverName, ...cause };
    this.counts.probes++;
    const deadline = this.#clock.setTimeout(() => {
      this.#probeTimer = null;
      if (this.#client.upLink() !== link) return;
      this.#logger.info({ ...why, dueMs }, `probe unanswered after ${dueMs} ms: dialing a second link`);
      this.counts.probesUnanswered++;
      this.counts.secondLinks++;
      this.#client.onProbeLate();
    }, dueMs);
    this.#probeTimer = deadline;
    const lanes = this.#client.upLanes();
    let unanswered = lanes.length;
    const onAnswer = (): void => {
      // Only this probe's own deadline: a late answer must not cancel a later probe's.
      if (--unanswered > 0 || this.#probeTimer !== deadline) return;
      deadline.cancel();
      this.#probeTimer = null;
      this.#logger.debug({ ...why, lanes: lanes.length, answeredInMs: Math.round(this.#clock.now() - sentAt) }, 'the link answered its probe');
    };
    for (const lane of lanes) lane.probe(onAnswer);
    return true;
  }
}
