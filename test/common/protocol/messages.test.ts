import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HandshakeError, ProtocolError } from '../../../common/support/errors.js';
import { CLIENT_ID_BYTES, MAX_REASON_BYTES, PROTOCOL_VERSION, RESUME_TOKEN_BYTES } from '../../../common/protocol/constants.js';
import {
  decodeHello,
  decodeOpenTarget,
  decodeReason,
  decodeWelcome,
  encodeHello,
  encodeOpenTarget,
  encodeReason,
  encodeWelcome,
  encodeRemoteOpen,
  decodeRemoteOpen,
  HELLO_PAYLOAD_BYTES,
  WELCOME_PAYLOAD_BYTES,
} from '../../../common/protocol/messages.js';
import { expectEternalError } from '../../helpers/expect-error.js';

function expectHandshakeError(fn: () => unknown, message: string): void {
  expectEternalError(fn, HandshakeError, 'ETCP_ERR_HANDSHAKE', message);
}

const CLIENT_ID = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const TOKEN = Buffer.from('f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff', 'hex');

describe('HELLO', () => {
  it('matches its golden bytes', () => {
    expect(HELLO_PAYLOAD_BYTES).toBe(52);
    expect(encodeHello(CLIENT_ID, TOKEN).toString('hex')).toBe(
      [
        '00000002', // protocol version 2
        '00112233445566778899aabbccddeeff', // 16-byte client id
        'f0e1d2c3b4a5968778695a4b3c2d1e0f00112233445566778899aabbccddeeff', // 32-byte resume token
      ].join(''),
    );
  });

  it('round-trips any client id and resume token', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: CLIENT_ID_BYTES, maxLength: CLIENT_ID_BYTES }),
        fc.uint8Array({ minLength: RESUME_TOKEN_BYTES, maxLength: RESUME_TOKEN_BYTES }),
        (idBytes, tokenBytes) => {
          const clientId = Buffer.from(idBytes);
          const resumeToken = Buffer.from(tokenBytes);
          const decoded = decodeHello(encodeHello(clientId, resumeToken));
          expect(decoded.version).toBe(PROTOCOL_VERSION);
          expect(decoded.clientId.equals(clientId)).toBe(true);
          expect(decoded.resumeToken.equals(resumeToken)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('copies the client id out of the payload (the payload may be a view into a socket chunk)', () => {
    const payload = encodeHello(CLIENT_ID, TOKEN);
    const { clientId, resumeToken } = decodeHello(payload);
    payload.fill(0);
    expect(clientId.equals(CLIENT_ID)).toBe(true);
    expect(resumeToken.equals(TOKEN)).toBe(true);
  });

  it('refuses to encode a client id of the wrong size', () => {
    expect(() => encodeHello(Buffer.alloc(15), TOKEN)).toThrow(RangeError);
    expect(() => encodeHello(Buffer.alloc(17), TOKEN)).toThrow(`client id must be ${CLIENT_ID_BYTES} bytes`);
    expect(() => encodeHello(CLIENT_ID, Buffer.alloc(31))).toThrow(`resume token must be ${RESUME_TOKEN_BYTES} bytes`);
  });

  it.each([0, 1, 20, 51, 53, 64])('rejects a %d-byte payload with HandshakeError', (length) => {
    expectHandshakeError(() => decodeHello(Buffer.alloc(length)), `HELLO payload must be 52 bytes, got ${length}`);
  });

  it.each([0, 1, 3, 0xffffffff])('rejects protocol version %d with HandshakeError', (version) => {
    const payload = encodeHello(CLIENT_ID, TOKEN);
    payload.writeUInt32BE(version, 0);
    expectHandshakeError(() => decodeHello(payload), `unsupported protocol version ${version}`);
  });
});

describe('server-opened OPEN (remote forwards, §4.12)', () => {
  it('carries the forward number and the origin, and refuses a payload that is too short or too long', () => {
    const payload = encodeRemoteOpen({ forward: 3, origin: '10.0.0.9:51234' });
    expect(payload.subarray(0, 4).toString('hex')).toBe('00000003');
    expect(decodeRemoteOpen(payload)).toEqual({ forward: 3, origin: '10.0.0.9:51234' });
    expect(() => decodeRemoteOpen(Buffer.alloc(3))).toThrow(ProtocolError);
    expect(() => decodeRemoteOpen(Buffer.alloc(4 + 65))).toThrow(ProtocolError);
  });
});

describe('WELCOME', () => {
  it('matches its golden bytes', () => {
    expect(WELCOME_PAYLOAD_BYTES).toBe(8);
    expect(encodeWelcome(true).toString('hex')).toBe(
      [
        '00000002', // protocol version 2
        '00000003', // flags: bit 0 = known client (a resume), bit 1 = takes LISTEN (remote forwards)
      ].join(''),
    );
    expect(encodeWelcome(false, false).toString('hex')).toBe(
      [
        '00000002', // protocol version 2
        '00000000', // flags: none (a fresh start, from a server without remote forwards)
      ].join(''),
    );
  });

  it.each([true, false])('round-trips knownClient = %s', (knownClient) => {
    expect(decodeWelcome(encodeWelcome(knownClient))).toEqual({ version: PROTOCOL_VERSION, knownClient, remoteForwards: true });
    expect(decodeWelcome(encodeWelcome(knownClient, false))).toEqual({ version: PROTOCOL_VERSION, knownClient, remoteForwards: false });
  });

  it('ignores flag bits it does not define', () => {
    const payload = Buffer.from('00000002fffffffe', 'hex');
    expect(decodeWelcome(payload).knownClient).toBe(false);
    payload.writeUInt32BE(0xffffffff, 4);
    expect(decodeWelcome(payload).knownClient).toBe(true);
  });

  it.each([0, 4, 7, 9, 20])('rejects a %d-byte payload with HandshakeError', (length) => {
    expectHandshakeError(() => decodeWelcome(Buffer.alloc(length)), `WELCOME payload must be 8 bytes, got ${length}`);
  });

  it('rejects another protocol version with HandshakeError', () => {
    const payload = encodeWelcome(true);
    payload.writeUInt32BE(1, 0);
    expectHandshakeError(() => decodeWelcome(payload), 'unsupported protocol version 1');
  });
});

/** Text of 1- to 4-byte characters, long enough to cross the limit at every kind of boundary. */
const reasonText = fc.oneof(
  fc
    .array(fc.constantFrom('a', 'é', '€', '😀', '\u{10ffff}', '\ud800'), { minLength: 100, maxLength: 200 })
    .map((chars) => chars.join('')),
  fc.string({ unit: 'binary', maxLength: 200 }),
);

describe('encodeReason / decodeReason', () => {
  it('keeps a short reason whole', () => {
    const encoded = encodeReason('target refused: ECONNREFUSED');
    expect(encoded.toString('utf8')).toBe('target refused: ECONNREFUSED');
    expect(decodeReason(encoded)).toBe('target refused: ECONNREFUSED');
    expect(encodeReason('').length).toBe(0);
  });

  it('keeps exactly MAX_REASON_BYTES and truncates ASCII one byte over', () => {
    expect(MAX_REASON_BYTES).toBe(512);
    expect(encodeReason('a'.repeat(512)).length).toBe(512);
    expect(encodeReason('a'.repeat(513)).toString('utf8')).toBe('a'.repeat(512));
  });

  it('cuts before a 3-byte character that would straddle the limit', () => {
    // 1 + 3 * 170 = 511 bytes of whole characters; the 171st euro sign occupies bytes 511..513.
    const reason = `a${'€'.repeat(200)}`;
    const encoded = encodeReason(reason);
    expect(encoded.length).toBe(511);
    expect(encoded.toString('utf8')).toBe(`a${'€'.repeat(170)}`);
    expect(encoded.toString('utf8')).not.toContain('\ufffd');
  });

  it('cuts at the limit when a 4-byte character ends exactly there', () => {
    const encoded = encodeReason('😀'.repeat(200)); // 128 * 4 = 512
    expect(encoded.length).toBe(512);
    expect(encoded.toString('utf8')).toBe('😀'.repeat(128));
  });

  it.each([1, 2, 3])('cuts before a 4-byte character when %d of its bytes would fit', (fit) => {
    const reason = `${'a'.repeat(MAX_REASON_BYTES - fit)}😀tail`;
    const encoded = encodeReason(reason);
    expect(encoded.length).toBe(MAX_REASON_BYTES - fit);
    expect(encoded.toString('utf8')).toBe('a'.repeat(MAX_REASON_BYTES - fit));
  });

  it('yields a whole-character prefix of at most MAX_REASON_BYTES for any text', () => {
    fc.assert(
      fc.property(reasonText, (reason) => {
        const full = Buffer.from(reason, 'utf8');
        const encoded = encodeReason(reason);
        expect(encoded.length).toBeLessThanOrEqual(MAX_REASON_BYTES);
        expect(full.subarray(0, encoded.length).equals(encoded)).toBe(true);
        if (full.length > MAX_REASON_BYTES) expect(encoded.length).toBeGreaterThan(MAX_REASON_BYTES - 4);
        else expect(encoded.length).toBe(full.length);
        // Whole characters only: decoding gives a prefix of the text, without replacement characters.
        const decoded = encoded.toString('utf8');
        expect(full.toString('utf8').startsWith(decoded)).toBe(true);
        expect(Buffer.from(decoded, 'utf8').equals(encoded)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('decodeReason reads at most MAX_REASON_BYTES', () => {
    expect(decodeReason(Buffer.from('b'.repeat(600))).length).toBe(MAX_REASON_BYTES);
  });
});

describe('OPEN target', () => {
  it('is empty for the default target and UTF-8 "host:port" otherwise', () => {
    expect(decodeOpenTarget(Buffer.alloc(0))).toBeNull();
    expect(decodeOpenTarget(encodeOpenTarget('127.0.0.1:22'))).toBe('127.0.0.1:22');
  });

  it('is bounded in length', () => {
    expect(() => encodeOpenTarget('x'.repeat(262))).toThrow(RangeError);
    expect(() => decodeOpenTarget(Buffer.alloc(262, 0x61))).toThrow('OPEN target of 262 bytes');
  });
});
