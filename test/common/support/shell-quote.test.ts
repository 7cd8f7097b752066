import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { shellQuote } from '../../../common/support/shell-quote.js';
import { shellWords } from '../../helpers/shell-words.js';

describe('shellQuote', () => {
  it('quotes any word so that a POSIX shell gives it back unchanged', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, unit: 'grapheme' }).filter((word) => !word.includes('\0') && !word.includes('\n')), (word) => {
        expect(shellWords(shellQuote(word))).toEqual([word]);
      }),
      { numRuns: 60 },
    );
    for (const word of ["it's", '$(reboot)', '`x`', '*', 'a b', '--allow=*:*', '"']) expect(shellWords(shellQuote(word))).toEqual([word]);
  });

  it('leaves a plain word as it is', () => {
    expect(shellQuote('--port-range=2022-2122')).toBe('--port-range=2022-2122');
    expect(shellQuote('/etc/eternal-tcp/secret')).toBe('/etc/eternal-tcp/secret');
  });
});
