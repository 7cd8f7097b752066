import { getDiffieHellman, hkdfSync } from 'node:crypto';
import { ConfigError } from '../support/errors.js';
import { describeError } from '../support/logger.js';

/**
 * How the link is carried: plain TCP, or TLS 1.2 with a pre-shared key derived from a shared
 * secret (docs/SECURITY.md). With a secret, each side proves it knows the secret without sending
 * it, an ephemeral Diffie-Hellman key gives forward secrecy, and an AEAD (AES-128-GCM or
 * ChaCha20-Poly1305) authenticates and encrypts every record.
 */

/**
 * PSK for mutual authentication, ephemeral finite-field DH (LINK_DH_GROUP) for forward secrecy,
 * AES-128-GCM. OpenSSL has no ECDHE-PSK suite with AES-GCM for TLS 1.2, only this one. Where
 * OpenSSL has its AVX-512 AES-GCM (3.5, in Node 22-26) it is the cheaper AEAD: in a transfer
 * through the tunnel it took 5-6% of a proxy's CPU where ChaCha20-Poly1305 took 12-13% (perf, the
 * bench's x86-64 with VAES).
 */
export const DHE_AES_GCM_CIPHER = 'DHE-PSK-AES128-GCM-SHA256';

/**
 * PSK, ephemeral X25519, ChaCha20-Poly1305: the one suite of earlier builds, and the cheaper one
 * with OpenSSL 3.0 (see preferredLinkCipher). Both suites are authenticated by the PSK and
 * forward secret; which one is used is covered by the Finished messages, so nobody without the
 * secret can push a link onto the other.
 */
export const ECDHE_CHACHA_CIPHER = 'ECDHE-PSK-CHACHA20-POLY1305';

/**
 * Security level 3 makes OpenSSL itself refuse, on either side, a DH group under 3072 bits, an
 * elliptic curve under 256, and any suite without forward secrecy.
 */
const SECURITY_LEVEL = '@SECLEVEL=3';

/** What cproxy offers: both suites. sproxy chooses by its own order (serverLinkCiphers). */
export const LINK_CIPHERS = `${DHE_AES_GCM_CIPHER}:${ECDHE_CHACHA_CIPHER}:${SECURITY_LEVEL}`;

/**
 * The suite sproxy picks when the client offers both, for the OpenSSL it runs on. With OpenSSL
 * 3.0 (Node 20), ChaCha20: there AES-GCM has no AVX-512 code and cost the same in the tunnel (17-18%
 * of a proxy's samples either way; alternated A/B runs equal within noise), while a handshake in
 * the 3072-bit group costs ~25 ms of CPU against ~2 with X25519, which every reconnect waits for
 * (the bench's first echo after an outage: 185 -> 231 ms). Any later OpenSSL: AES-GCM (3.5 was
 * measured; 3.1-3.4 are taken to be like it).
 */
export function preferredLinkCipher(opensslVersion: string = process.versions.openssl): string {
  const match = /^(\d+)\.(\d+)/.exec(opensslVersion);
  const isOpenSsl30 = match !== null && Number(match[1]) === 3 && Number(match[2]) === 0;
  return isOpenSsl30 ? ECDHE_CHACHA_CIPHER : DHE_AES_GCM_CIPHER;
}

/** sproxy's suites, preferredLinkCipher first (with honorCipherOrder, its order decides). */
export function serverLinkCiphers(opensslVersion: string = process.versions.openssl): string {
  const preferred = preferredLinkCipher(opensslVersion);
  const other = preferred === DHE_AES_GCM_CIPHER ? ECDHE_CHACHA_CIPHER : DHE_AES_GCM_CIPHER;
  return `${preferred}:${other}:${SECURITY_LEVEL}`;
}

/**
 * sproxy's DH group: RFC 3526 group 15, 3072 bits, a safe prime fixed and published long ago
 * (Node names it `modp15`). 3072 bits match the 128-bit level of AES-128 and of X25519; 2048 would
 * be ~112. Node's `dhparam: 'auto'` picks 1024 bits on Node 20. A handshake costs both sides
 * together about 4 ms of CPU on Node 22-26 (OpenSSL 3.5) and 23-26 ms on Node 20 (OpenSSL 3.0),
 * against 1-2 ms with X25519: paid once per link (and the reason for preferredLinkCipher).
 */
export const LINK_DH_GROUP = 'modp15';
/** Size of LINK_DH_GROUP's prime; the least security level 3 lets either side use. */
export const LINK_DH_BITS = 3072;
/** PSK identity sent in the clear during the handshake: names the protocol and key derivation, nothing secret. */
export const PSK_IDENTITY = 'eternal-tcp/1';
/**
 * Shortest secret accepted, in bytes. Whoever poses once as sproxy to a cproxy can then test
 * guesses of the secret offline, so a short or guessable one is weak (docs/SECURITY.md).
 */
export const MIN_SECRET_BYTES = 16;

/**
 * TLS 1.2: with (EC)DHE-PSK a passive eavesdropper learns nothing to test guesses against, and
 * Node's PSK callbacks are built around it (docs/SECURITY.md, "The choice").
 */
export const TLS_VERSION = 'TLSv1.2';

/**
 * The TLS PSK: HKDF-SHA256 binds the secret to this use. It adds no work factor: the secret's own
 * randomness is what protects it.
 */
export function derivePsk(secret: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'eternal-tcp link psk', 'tls12-psk-v1', 32));
}

let linkDhParamsPem: string | null = null;

/** LINK_DH_GROUP as sproxy's TLS context takes it (`dhparam`), made once. */
export function linkDhParams(): string {
  linkDhParamsPem ??= dhParamsPem(LINK_DH_GROUP);
  return linkDhParamsPem;
}

/**
 * One of Node's named DH groups (`crypto.getDiffieHellman`) as PEM `DH PARAMETERS`: PKCS#3
 * DHParameter, in DER SEQUENCE { prime INTEGER, generator INTEGER }. Made from Node's own copy of
 * the group, so that no constant is copied into the source.
 */
export function dhParamsPem(groupName: string): string {
  const group = getDiffieHellman(groupName);
  const der = derSequence([derUnsignedInteger(group.getPrime()), derUnsignedInteger(group.getGenerator())]);
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN DH PARAMETERS-----\n${lines.join('\n')}\n-----END DH PARAMETERS-----\n`;
}

/** A DER length: short form below 128, else 0x80 + the count of big-endian bytes that follow. */
function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Buffer.from([0x80 + bytes.length, ...bytes]);
}

/** A DER INTEGER of an unsigned big-endian value: a zero byte first when its top bit is set. */
function derUnsignedInteger(value: Buffer): Buffer {
  const body = (value[0] ?? 0) >= 0x80 ? Buffer.concat([Buffer.from([0]), value]) : value;
  return Buffer.concat([Buffer.from([0x02]), derLength(body.length), body]);
}

function derSequence(items: Buffer[]): Buffer {
  const body = Buffer.concat(items);
  return Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
}

/** Checks a secret read from a file or the environment; throws ConfigError with a one-line reason. */
export function validateSecret(secret: Buffer, source: string): Buffer {
  if (secret.length < MIN_SECRET_BYTES) {
    throw new ConfigError(`the secret from ${source} is ${secret.length} bytes; at least ${MIN_SECRET_BYTES} are needed`);
  }
  return secret;
}

/**
 * Both stream buffer levels of every link socket, set rather than inherited: Node 22 raised the
 * default from 16 KiB to 64 KiB. The link holds session packets back by its own mark
 * (EngineConfig.linkWriteHighWaterBytes, 128 KiB); this one only decides when the socket asks
 * for 'drain', which the link waits for while it is over its own mark. 16 KiB is what every
 * figure before Node 22 was measured with, and a TLS record's largest plaintext.
 */
export const LINK_SOCKET_HIGH_WATER_BYTES = 16 * 1024;

/**
 * Node passes `highWaterMark` on to the stream of the socket that net.connect, tls.connect and
 * new TLSSocket make (and net.createServer to the sockets it accepts); @types/node 20 lists it
 * only for the server.
 */
export type WithHighWaterMark<T> = T & { highWaterMark: number };

/**
 * True for an error OpenSSL raised (an alert from the peer, a record that failed to decrypt), as
 * opposed to one of the socket (a reset, a timeout). Node gives every OpenSSL error its `library`
 * and `reason` and an ERR_SSL_ code; the reason's words change between OpenSSL versions (Node 20
 * says "sslv3 alert bad record mac" where 24 says "ssl/tls alert bad record mac"), so they are
 * only shown, never matched.
 */
export function isTlsProtocolError(error: Error): boolean {
  const { library, code } = error as Error & { library?: unknown; code?: unknown };
  return typeof library === 'string' || (typeof code === 'string' && code.startsWith('ERR_SSL_'));
}

/** OpenSSL's own short words for a TLS error ("cipher operation failed", "sslv3 alert bad record mac"), or its message. */
export function tlsReason(error: Error): string {
  const { reason } = error as Error & { reason?: unknown };
  return typeof reason === 'string' && reason !== '' ? reason : describeError(error);
}

