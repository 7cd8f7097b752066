/**
 * What a proxy's sessions carried, over all its links and (on sproxy) all its clients together:
 * plain numbers, each moved by one integer add where it happens, and read by whoever wants them
 * (the metrics, when scraped). Nothing else is done per packet for them. The numbers are doubles:
 * exact up to 2^53, 8 PiB of payload.
 */
export interface TrafficCounts {
  /** Sessions created, whichever side opened them (refused ones included: they are closed at once). */
  sessionsOpened: number;
  /** Payload bytes of DATA packets written on the link; what a resume writes again counts again. */
  payloadBytesSent: number;
  /** Payload bytes of DATA packets read from the link; duplicates a resume brings count too. */
  payloadBytesReceived: number;
  /** Sequenced packets written again by a resume (its summary's resentPackets, added up). */
  resentPackets: number;
}

export function createTrafficCounts(): TrafficCounts {
  return { sessionsOpened: 0, payloadBytesSent: 0, payloadBytesReceived: 0, resentPackets: 0 };
}
