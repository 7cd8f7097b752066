/** The loopback targets the product promises (bench/README.md), and the pass/MISS table of a run. */
import { table } from './format.js';

export const TARGETS = {
  throughputRatio: 0.9,
  /** Issue 16: the TLS link as fast as ssh -L on loopback, each way. */
  tlsToSshRatio: 1.0,
  pingPongRatio: 1.2,
  interactiveP99Ms: 5,
  resumeKillMs: 100,
  resumeOutageMs: 1000,
  idleSessionBytes: 16 * 1024,
};

export interface TargetRow {
  name: string;
  measured: string;
  target: string;
  pass: boolean | null;
  value: number;
}

export const targetRows: TargetRow[] = [];

/** Records one target's figure; a figure that could not be measured (NaN) is a miss. */
export function addTarget(name: string, value: number, measured: string, target: string, pass: boolean): void {
  targetRows.push({ name, value, measured, target, pass: Number.isFinite(value) ? pass : false });
}

export function targetsTable(): string {
  return table(
    targetRows.map((row) => [row.name, row.measured, row.target, row.pass === null ? '' : row.pass ? 'pass' : 'MISS']),
    ['target', 'measured', 'goal', 'result'],
  );
}
