import { EventEmitter } from 'node:events';
import { networkInterfaces } from 'node:os';
import type { Clock, TimerHandle } from '../support/clock.js';

/**
 * The host's own addresses, watched: a laptop that joins another network loses its address and
 * gains another, and a TCP connection bound to the old one is dead from that moment, though no
 * packet says so (its peer's answers go to an address nobody holds). Polling the interfaces a
 * few times a second is portable and cheap (one getifaddrs); netlink would say it sooner, but
 * a poll already costs far less than the dead-link timeout it replaces.
 */

/** What changed between two looks at the host's addresses. */
export interface AddressChange {
  added: string[];
  removed: string[];
}

/**
 * An address as sockets report it and as the interfaces list it: an IPv4 address in IPv6 form
 * (::ffff:10.0.0.2, a dual-stack socket's view) as IPv4, and no zone (fe80::1%eth0).
 */
export function normalizeAddress(address: string): string {
  const withoutZone = address.split('%')[0] as string;
  const lower = withoutZone.toLowerCase();
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice('::ffff:'.length) : lower;
}

/** Every address of every interface of the host, loopback included, normalized. */
export function hostAddresses(): Set<string> {
  const addresses = new Set<string>();
  for (const entries of Object.values(networkInterfaces())) {
    for (const entry of entries ?? []) addresses.add(normalizeAddress(entry.address));
  }
  return addresses;
}

/** The addresses in `after` and not in `before`, and the other way round. */
export function diffAddresses(before: ReadonlySet<string>, after: ReadonlySet<string>): AddressChange {
  return {
    added: [...after].filter((address) => !before.has(address)),
    removed: [...before].filter((address) => !after.has(address)),
  };
}

export interface AddressWatchOptions {
  clock: Clock;
  intervalMs: number;
  /** Reads the host's addresses; the real interfaces by default. */
  read?: () => Set<string>;
}

export interface AddressWatchEvents {
  change: [change: AddressChange];
}

/** Looks at the host's addresses every `intervalMs` and says when they changed. */
export class AddressWatch extends EventEmitter<AddressWatchEvents> {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #read: () => Set<string>;
  #addresses: Set<string>;
  #timer: TimerHandle | null = null;

  constructor(options: AddressWatchOptions) {
    super();
    this.#clock = options.clock;
    this.#intervalMs = options.intervalMs;
    this.#read = options.read ?? hostAddresses;
    try {
      this.#addresses = this.#read();
    } catch {
      this.#addresses = new Set(); // nothing known yet: the first look that works says what is there
    }
  }

  /** Whether the host holds `address` (as of the last look). */
  has(address: string): boolean {
    return this.#addresses.has(normalizeAddress(address));
  }

  start(): void {
    this.#timer ??= this.#clock.setInterval(() => this.check(), this.#intervalMs);
  }

  stop(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }

  /** Looks now; emits 'change' if anything was added or removed since the last look. */
  check(): void {
    let now: Set<string>;
    try {
      now = this.#read();
    } catch {
      return; // the interfaces could not be listed this time (uv_interface_addresses): no news
    }
    const change = diffAddresses(this.#addresses, now);
    this.#addresses = now;
    if (change.added.length > 0 || change.removed.length > 0) this.emit('change', change);
  }
}
