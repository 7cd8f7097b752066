import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Fifo } from '../../../common/engine/fifo.js';

describe('Fifo', () => {
  it('gives items back in the order they were pushed, and undefined when empty', () => {
    const fifo = new Fifo<string>();
    expect(fifo.shift()).toBeUndefined();
    expect(fifo.peek()).toBeUndefined();
    fifo.push('a');
    fifo.push('b');
    expect(fifo.length).toBe(2);
    expect(fifo.peek()).toBe('a');
    expect(fifo.shift()).toBe('a');
    expect(fifo.peek()).toBe('b');
    fifo.push('c');
    expect([fifo.shift(), fifo.shift(), fifo.shift()]).toEqual(['b', 'c', undefined]);
    expect(fifo.length).toBe(0);
  });

  it('keeps the order when it grows while wrapped around its ring', () => {
    const fifo = new Fifo<number>(4);
    for (let i = 0; i < 3; i++) fifo.push(i);
    fifo.shift();
    fifo.shift(); // the head is now in the middle of the ring
    for (let i = 3; i < 12; i++) fifo.push(i); // wraps, then grows twice
    const out: number[] = [];
    for (let item = fifo.shift(); item !== undefined; item = fifo.shift()) out.push(item);
    expect(out).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  it('is empty after clear and usable again', () => {
    const fifo = new Fifo<number>(2);
    [1, 2, 3].forEach((n) => fifo.push(n));
    fifo.clear();
    expect(fifo.length).toBe(0);
    expect(fifo.shift()).toBeUndefined();
    fifo.push(4);
    expect(fifo.shift()).toBe(4);
  });

  it('behaves as an array used as a queue, for any sequence of operations', () => {
    const op = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.constant('shift' as const), fc.constant('clear' as const));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 8 }), fc.array(op, { maxLength: 200 }), (capacity, ops) => {
        const fifo = new Fifo<number>(capacity);
        const model: number[] = [];
        for (const o of ops) {
          if (o === 'shift') {
            expect(fifo.shift()).toBe(model.shift());
          } else if (o === 'clear') {
            fifo.clear();
            model.length = 0;
          } else {
            fifo.push(o);
            model.push(o);
          }
          expect(fifo.length).toBe(model.length);
        }
      }),
    );
  });
});
