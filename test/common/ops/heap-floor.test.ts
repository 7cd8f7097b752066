import { describe, expect, it } from 'vitest';
import { HEAP_FLOOR_FLAG, HEAP_FLOOR_MB, heapFloorInEffect } from '../../../common/ops/heap-floor.js';

describe('heapFloorInEffect', () => {
  it('sees our flag and the user\'s own sizing of the old generation, in either spelling', () => {
    expect(HEAP_FLOOR_FLAG).toBe(`--initial-old-space-size=${HEAP_FLOOR_MB}`);
    expect(heapFloorInEffect([HEAP_FLOOR_FLAG])).toBe(true);
    expect(heapFloorInEffect(['--inspect', '--initial_old_space_size=64'])).toBe(true);
    expect(heapFloorInEffect(['--initial-heap-size=256'])).toBe(true);
  });

  it('does not take other heap flags for a floor', () => {
    expect(heapFloorInEffect([])).toBe(false);
    expect(heapFloorInEffect(['--max-old-space-size=4096', '--max-semi-space-size=16'])).toBe(false);
  });
});
