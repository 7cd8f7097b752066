import { Buffer } from 'node:buffer';

/**
 * The TLS server name (SNI) a link's ClientHello carries: the client id as a DNS-safe label, under
 * the reserved `.invalid` domain (RFC 6761: it names nothing that could be looked up). The
 * ClientHello is sent in the clear, before anything is decrypted, so an L4 balancer (HAProxy's
 * `req.ssl_sni`) can send every link of one client, its resumes from any address included, to the
 * same sproxy instance. It says which client this is to whoever watches the path, which the
 * source address and the timing said already; it proves nothing (the PSK handshake does that).
 * PROTOCOL.md §0.
 */
export const ROUTING_NAME_SUFFIX = '.eternal-tcp.invalid';

export function routingServerName(clientId: Buffer): string {
  return `${clientId.toString('hex')}${ROUTING_NAME_SUFFIX}`;
}

/** The client id in a routing server name, or null for any other name. */
export function clientIdFromServerName(name: string): Buffer | null {
  if (!name.endsWith(ROUTING_NAME_SUFFIX)) return null;
  const label = name.slice(0, -ROUTING_NAME_SUFFIX.length);
  return /^([0-9a-f]{2}){1,31}$/.test(label) ? Buffer.from(label, 'hex') : null;
}
