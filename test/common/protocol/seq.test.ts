import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UINT32_MAX } from '../../../common/protocol/constants.js';
import { seqAdd, seqBefore, seqBeforeOrEqual, seqDistance } from '../../../common/protocol/seq.js';

const uint32 = fc.integer({ min: 0, max: UINT32_MAX });
/** Distances that serial-number arithmetic can order: 1 .. 2^31 - 1. */
const forward = fc.integer({ min: 1, max: 2 ** 31 - 1 });

describe('seqAdd', () => {
  it('wraps past 2^32', () => {
    expect(seqAdd(UINT32_MAX, 1)).toBe(0);
    expect(seqAdd(UINT32_MAX, 2)).toBe(1);
    expect(seqAdd(0xfffffff0, 0x20)).toBe(0x10);
    expect(seqAdd(0, -1)).toBe(UINT32_MAX);
    expect(seqAdd(5, -10)).toBe(UINT32_MAX - 4);
    expect(seqAdd(0x7fffffff, 1)).toBe(0x80000000);
  });

  it('always yields an unsigned 32-bit integer', () => {
    fc.assert(
      fc.property(uint32, fc.integer({ min: -(2 ** 32), max: 2 ** 32 }), (seq, n) => {
        const sum = seqAdd(seq, n);
        expect(Number.isInteger(sum)).toBe(true);
        expect(sum).toBeGreaterThanOrEqual(0);
        expect(sum).toBeLessThanOrEqual(UINT32_MAX);
        expect(sum).toBe(Number((BigInt(seq) + BigInt(n)) & 0xffffffffn));
      }),
      { numRuns: 300 },
    );
  });
});

describe('seqBefore / seqBeforeOrEqual / seqDistance', () => {
  it('orders across the wrap', () => {
    expect(seqBefore(UINT32_MAX, 0)).toBe(true);
    expect(seqBefore(0, UINT32_MAX)).toBe(false);
    expect(seqBefore(0xfffffff0, 0x10)).toBe(true);
    expect(seqBefore(0x10, 0xfffffff0)).toBe(false);
    expect(seqBeforeOrEqual(UINT32_MAX, 0)).toBe(true);
    expect(seqBeforeOrEqual(0, UINT32_MAX)).toBe(false);
    expect(seqDistance(UINT32_MAX, 1)).toBe(2);
    expect(seqDistance(1, UINT32_MAX)).toBe(-2);
  });

  it('orders plainly away from the wrap', () => {
    expect(seqBefore(1, 2)).toBe(true);
    expect(seqBefore(2, 1)).toBe(false);
    expect(seqDistance(100, 250)).toBe(150);
    expect(seqDistance(250, 100)).toBe(-150);
  });

  it('treats equal numbers as not before, but before-or-equal', () => {
    for (const seq of [0, 1, 0x7fffffff, 0x80000000, UINT32_MAX]) {
      expect(seqBefore(seq, seq)).toBe(false);
      expect(seqBeforeOrEqual(seq, seq)).toBe(true);
      expect(seqDistance(seq, seq)).toBe(0);
    }
  });

  it('orders a 2^31 - 1 step ahead, and a 2^31 step neither way (RFC 1982: undefined)', () => {
    expect(seqBefore(0, 0x7fffffff)).toBe(true);
    expect(seqBefore(0x7fffffff, 0)).toBe(false);
    expect(seqBefore(0, 0x80000000)).toBe(false);
    expect(seqBefore(0x80000000, 0)).toBe(false);
  });

  it('a comes before a + d for every d in 1 .. 2^31 - 1, whatever a is', () => {
    fc.assert(
      fc.property(uint32, forward, (a, d) => {
        const b = seqAdd(a, d);
        expect(seqDistance(a, b)).toBe(d);
        expect(seqDistance(b, a)).toBe(-d);
        expect(seqBefore(a, b)).toBe(true);
        expect(seqBefore(b, a)).toBe(false);
        expect(seqBeforeOrEqual(a, b)).toBe(true);
        expect(seqBeforeOrEqual(b, a)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });
});
