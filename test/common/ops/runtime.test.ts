import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { GC_TUNED_NODE_MAJORS } from '../../../common/ops/runtime.js';
import { REPO_ROOT } from '../../helpers/proxies.js';

const run = promisify(execFile);
const CHURN = join(REPO_ROOT, 'test', 'fixtures', 'read-buffer-churn.mjs');
const major = Number(process.versions.node.split('.')[0]);

interface GcCounts {
  tuned: boolean;
  major: number;
  minor: number;
}

async function churn(mode: 'tuned' | 'untuned'): Promise<GcCounts> {
  const { stdout, stderr } = await run(process.execPath, [CHURN, mode]);
  // V8 prints an error for a flag it does not know: tuning must never set one.
  expect(stderr).toBe('');
  return JSON.parse(stdout) as GcCounts;
}

/** Full collections as a share of all, in each run. */
const fullShare = (counts: GcCounts): number => counts.major / Math.max(1, counts.major + counts.minor);

/**
 * RUNS runs each way, interleaved; the best (lowest share) of each way counts. V8's heuristics
 * now and then take a run down a path of many full collections whatever the flags (seen on Node
 * 26 in one run in three or four, tuned or not, and on Node 20 up to 7 of 138); what the tuning
 * decides is whether a run CAN keep them rare, which the best run shows.
 */
const RUNS = 6;
const BEST_SHARE_TUNED = 0.15;
/** The one major where untuned runs are decisively worse in this test: every collection full. */
const DECISIVE_MAJOR = 24;
const results = async (): Promise<{ tuned: GcCounts[]; untuned: GcCounts[] }> => {
  const tuned: GcCounts[] = [];
  const untuned: GcCounts[] = [];
  for (let i = 0; i < RUNS; i++) {
    tuned.push(await churn('tuned'));
    untuned.push(await churn('untuned'));
  }
  return { tuned, untuned };
};
const best = (runs: GcCounts[]): number => Math.min(...runs.map(fullShare));

describe(`the garbage collector under a proxy's read-buffer churn, on Node ${process.version}`, () => {
  it('keeps full collections rare as the programs run, and untuned they are common only on the majors it tunes', async () => {
    const { tuned, untuned } = await results();
    for (const counts of tuned) {
      expect(counts.tuned).toBe(GC_TUNED_NODE_MAJORS.includes(major));
      expect(counts.minor).toBeGreaterThan(0);
    }
    // Seen in the steady state (4 GiB): Node 20 and 22 ~1 of 137 full; 24 tuned 0 of 30; 26 tuned
    // 1 of 60 in a good run. Untuned: Node 24 20 of 20, every one full; 26 13-30 of ~55 on an idle
    // machine, but with good runs too (1 of 64) under load, so 26's untuned runs are not asserted:
    // there the flag lowers the average (40 against 169 full collections over 8 runs), not the best.
    expect(best(tuned)).toBeLessThanOrEqual(BEST_SHARE_TUNED);
    for (const counts of untuned) expect(counts.tuned).toBe(false);
    // Tuned where it is needed, and only there (V8 13.6, Node 24, raised the young generation).
    if (major === DECISIVE_MAJOR) expect(best(untuned)).toBeGreaterThan(0.5);
    if (!GC_TUNED_NODE_MAJORS.includes(major)) expect(best(untuned)).toBeLessThanOrEqual(BEST_SHARE_TUNED);
  });
});
