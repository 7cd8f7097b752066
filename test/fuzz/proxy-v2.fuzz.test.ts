/**
 * Fuzzing of the PROXY protocol v2 codec (common/protocol/proxy-v2.ts): random bytes, bytes that
 * start like a header, and mutated valid headers. decodeProxyHeader must never throw, must give
 * one of its three results, must give the same answer however the bytes arrive (a growing buffer,
 * as sproxy's reader builds it), and every header it returns must be exactly the bytes it took:
 * encoding it again gives them back, so nothing was read from past the buffer or made up.
 * And decode(encode(x)) = x. Run counts and seed: see fuzz-support.ts.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatIpv4, formatIpv6 } from '../../common/protocol/ip-address.js';
import {
  decodeProxyHeader,
  encodeProxyHeader,
  PROXY_V2_FIXED_BYTES,
  PROXY_V2_MAX_HEADER_BYTES,
  PROXY_V2_SIGNATURE,
  ProxyCommand,
  ProxyFamily,
  type ProxyEndpoint,
  type ProxyHeaderDecoding,
  type ProxyHeaderFields,
} from '../../common/protocol/proxy-v2.js';
import { chunk, chunkingArb, fuzzParameters, mutate, mutationArb, runsFor, timeoutFor } from './fuzz-support.js';

const port = fc.integer({ min: 0, max: 0xffff });
const ipv4Arb = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((bytes) => formatIpv4(bytes));
/** Mostly zero groups, so that every compressed form comes up. */
const ipv6Arb = fc
  .array(fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
  .map((groups) => {
    const bytes = Buffer.alloc(16);
    groups.forEach((group, i) => bytes.writeUInt16BE(group, 2 * i));
    return formatIpv6(bytes);
  });
/** A path that fits a sun_path: no NUL, at most 108 bytes of UTF-8. */
const unixPathArb = fc
  .string({ unit: 'grapheme', maxLength: 40 })
  .filter((path) => !path.includes('\0') && Buffer.byteLength(path) <= 108);

const endpointArb = (addresses: fc.Arbitrary<string>): fc.Arbitrary<ProxyEndpoint> =>
  fc.record({ kind: fc.constant('ip' as const), address: addresses, port });
const unixEndpointArb: fc.Arbitrary<ProxyEndpoint> = fc.record({ kind: fc.constant('unix' as const), path: unixPathArb });

const tlvsArb = fc.array(
  fc.record({ type: fc.integer({ min: 0, max: 0xff }), value: fc.uint8Array({ maxLength: 80 }).map((bytes) => Buffer.from(bytes)) }),
  { maxLength: 4 },
);

function proxied(family: ProxyFamily, endpoints: fc.Arbitrary<ProxyEndpoint | null>): fc.Arbitrary<ProxyHeaderFields> {
  return fc.record({ command: fc.constant(ProxyCommand.Proxy), family: fc.constant(family), source: endpoints, destination: endpoints, tlvs: tlvsArb });
}

/** Every header a sender may send, as decodeProxyHeader gives it back (a LOCAL one has no block). */
const fieldsArb: fc.Arbitrary<ProxyHeaderFields> = fc.oneof(
  { weight: 3, arbitrary: proxied(ProxyFamily.Tcp4, endpointArb(ipv4Arb)) },
  { weight: 3, arbitrary: proxied(ProxyFamily.Tcp6, endpointArb(ipv6Arb)) },
  { weight: 1, arbitrary: proxied(ProxyFamily.Udp4, endpointArb(ipv4Arb)) },
  { weight: 1, arbitrary: proxied(ProxyFamily.Udp6, endpointArb(ipv6Arb)) },
  { weight: 1, arbitrary: proxied(ProxyFamily.UnixStream, unixEndpointArb) },
  { weight: 1, arbitrary: proxied(ProxyFamily.UnixDgram, unixEndpointArb) },
  { weight: 1, arbitrary: proxied(ProxyFamily.Unspec, fc.constant(null)) },
  {
    weight: 1,
    arbitrary: fc.constant({ command: ProxyCommand.Local, family: ProxyFamily.Unspec, source: null, destination: null, tlvs: [] }),
  },
);

/** What a load balancer's connection carries after the header: nothing, a ClientHello's start, anything. */
const streamArb = fc.oneof(
  fc.constant(Buffer.alloc(0)),
  fc.constant(Buffer.from('160301', 'hex')),
  fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
);

/** Random bytes; most start with the signature and a likely second part, since random ones never match it. */
const randomBytesArb = fc
  .record({
    prefix: fc.constantFrom('none', 'signature', 'fixed'),
    versionCommand: fc.oneof(fc.constantFrom(0x20, 0x21), fc.integer({ min: 0, max: 0xff })),
    family: fc.oneof(fc.constantFrom(...Object.values(ProxyFamily).filter((value): value is ProxyFamily => typeof value === 'number')), fc.integer({ min: 0, max: 0xff })),
    length: fc.oneof(fc.constantFrom(0, 1, 11, 12, 13, 35, 36, 37, 216, PROXY_V2_MAX_HEADER_BYTES - 16, PROXY_V2_MAX_HEADER_BYTES - 15, 0xffff), fc.nat({ max: 300 })),
    tail: fc.uint8Array({ maxLength: 400 }),
  })
  .map(({ prefix, versionCommand, family, length, tail }) => {
    if (prefix === 'none') return Buffer.from(tail);
    if (prefix === 'signature') return Buffer.concat([PROXY_V2_SIGNATURE, tail]);
    const fixed = Buffer.alloc(4);
    fixed[0] = versionCommand;
    fixed[1] = family;
    fixed.writeUInt16BE(length, 2);
    return Buffer.concat([PROXY_V2_SIGNATURE, fixed, tail]);
  });

/** Fails the property with `what` and the bytes. Plain checks, not expect(): this runs per prefix. */
function check(condition: boolean, what: string, bytes: Buffer, detail?: unknown): void {
  if (!condition) expect.fail(`${what}: ${bytes.toString('hex')} ${detail === undefined ? '' : JSON.stringify(detail)}`);
}

/** Decodes `bytes` whole and as the reader does, by growing prefixes, and checks every answer. */
function checkDecoding(bytes: Buffer, pieces: readonly Buffer[]): ProxyHeaderDecoding {
  const whole = decodeProxyHeader(bytes);
  checkResult(bytes, whole);
  let received = 0;
  let settled: ProxyHeaderDecoding | null = null;
  for (const piece of pieces) {
    received += piece.length;
    const prefix = bytes.subarray(0, received);
    const partial = decodeProxyHeader(prefix);
    checkResult(prefix, partial);
    if (settled === null) {
      if (partial.status === 'needs-more') continue;
      settled = partial;
      // The first answer that is not "needs more" is the answer for the whole, whatever follows.
      check(partial.status === whole.status && (whole.status !== 'header' || isDeepStrictEqual(partial, whole)), 'a prefix answers otherwise', prefix, [partial, whole]);
    } else {
      // Once answered, more bytes change nothing (an invalid reason may show more of them).
      check(partial.status === settled.status && (settled.status !== 'header' || isDeepStrictEqual(partial, settled)), 'more bytes changed the answer', prefix, [partial, settled]);
    }
  }
  return whole;
}

const LOCAL_FIELDS: ProxyHeaderFields = { command: ProxyCommand.Local, family: ProxyFamily.Unspec, source: null, destination: null, tlvs: [] };

function checkResult(bytes: Buffer, result: ProxyHeaderDecoding): void {
  switch (result.status) {
    case 'needs-more':
      check(bytes.length < PROXY_V2_MAX_HEADER_BYTES, 'needs more past the limit', bytes);
      return;
    case 'invalid':
      check(/^[^\n]+$/.test(result.reason), 'not a one-line reason', bytes, result.reason);
      return;
    case 'header': {
      const { headerBytes, ...fields } = result.header;
      check(headerBytes >= PROXY_V2_FIXED_BYTES && headerBytes <= Math.min(bytes.length, PROXY_V2_MAX_HEADER_BYTES), 'headerBytes out of bounds', bytes, headerBytes);
      for (const endpoint of [fields.source, fields.destination]) {
        if (endpoint?.kind !== 'ip') continue;
        const validPort = Number.isInteger(endpoint.port) && endpoint.port >= 0 && endpoint.port <= 0xffff;
        check(validPort && (isIPv4(endpoint.address) || isIPv6(endpoint.address)), 'a bad endpoint', bytes, endpoint);
      }
      if (fields.command === ProxyCommand.Local) {
        check(isDeepStrictEqual(fields, LOCAL_FIELDS), 'a LOCAL header kept its block', bytes, fields);
        return;
      }
      // A unix path's bytes after its NUL are not kept; every other header is exactly its bytes.
      if (fields.family !== ProxyFamily.UnixStream && fields.family !== ProxyFamily.UnixDgram) {
        check(encodeProxyHeader(fields).equals(bytes.subarray(0, headerBytes)), 'the header is not the bytes it took', bytes, fields);
      }
    }
  }
}

describe('PROXY protocol v2 codec fuzz', () => {
  const roundTripRuns = runsFor('proxyHeaderRoundTrip');
  it(`decode(encode(x)) = x, with any stream after it, in any chunking (${roundTripRuns} inputs)`, () => {
    fc.assert(
      fc.property(fieldsArb, streamArb, chunkingArb, (fields, stream, chunking) => {
        const header = encodeProxyHeader(fields);
        const bytes = Buffer.concat([header, stream]);
        expect(checkDecoding(bytes, chunk(bytes, chunking))).toEqual({ status: 'header', header: { ...fields, headerBytes: header.length } });
        for (let cut = 0; cut < header.length; cut++) check(decodeProxyHeader(header.subarray(0, cut)).status === 'needs-more', 'a cut header is not incomplete', header, cut);
      }),
      fuzzParameters('proxyHeaderRoundTrip'),
    );
  }, timeoutFor(roundTripRuns, 1));

  const randomRuns = runsFor('proxyHeaderRandomBytes');
  it(`random bytes, most behind the signature: one of the three answers, never a throw (${randomRuns} inputs)`, () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(randomBytesArb, chunkingArb, (bytes, chunking) => {
        seen.add(checkDecoding(bytes, chunk(bytes, chunking)).status);
      }),
      fuzzParameters('proxyHeaderRandomBytes'),
    );
    // The generator reaches every answer, valid headers included.
    expect([...seen].sort()).toEqual(['header', 'invalid', 'needs-more']);
  }, timeoutFor(randomRuns, 0.5));

  const mutatedRuns = runsFor('proxyHeaderMutated');
  it(`mutated valid headers (bit flips, truncation, duplication, inserts): the same checks (${mutatedRuns} inputs)`, () => {
    const seen = new Set<string>();
    fc.assert(
      fc.property(fieldsArb, streamArb, fc.array(mutationArb, { minLength: 1, maxLength: 3 }), chunkingArb, (fields, stream, mutations, chunking) => {
        const bytes = mutate({ bytes: Buffer.concat([encodeProxyHeader(fields), stream]), frameOffsets: [] }, mutations);
        seen.add(checkDecoding(bytes, chunk(bytes, chunking)).status);
      }),
      fuzzParameters('proxyHeaderMutated'),
    );
    expect([...seen].sort()).toEqual(['header', 'invalid', 'needs-more']);
  }, timeoutFor(mutatedRuns, 0.5));
});
