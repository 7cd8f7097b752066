/**
 * What a run reports: lines on stdout (the tables), progress on stderr, and the results object
 * each section fills in, written out as bench-results/results.json at the end.
 */

export const say = (text: string): void => {
  process.stdout.write(`${text}\n`);
};

export const progress = (text: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
};

/** Each section's figures under its name, plus 'meta', 'targets' and 'errors'. */
export const results: Record<string, unknown> = {};

/** Sections that threw, with why; the run exits 1 when there are any. */
export const errors: { section: string; error: string }[] = [];
