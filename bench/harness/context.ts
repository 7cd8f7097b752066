/**
 * What every part of one bench run shares: where things are (the built bench, the repository,
 * the results folder), the registry of child processes, and a private temporary folder holding
 * the link's secret and sshd's keys.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Processes } from './processes.js';

/** dist-bench/bench/, where the built bench runs from (netlab/ is built beside it). */
export const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The repository: bin/cproxy.js and bin/sproxy.js are started from here. */
export const ROOT = resolve(BENCH_DIR, '..', '..');
export const RESULTS_DIR = join(ROOT, 'bench-results');
export const LOG_DIR = join(RESULTS_DIR, 'logs');
export const PROFILE_DIR = join(RESULTS_DIR, 'profiles');
/** The Node that runs the bench runs every Node child too (so `npm run bench` measures one Node). */
export const NODE = process.execPath;

/** A helper program of the bench (bench/peers/NAME.ts, built). */
export const peerScript = (name: 'target' | 'plain-relay' | 'bulk' | 'keys'): string => join(BENCH_DIR, 'peers', `${name}.js`);

export const procs = new Processes(LOG_DIR);
export const tempDir = mkdtempSync(join(tmpdir(), 'etcp-bench-'));
/** The TLS link's shared secret (written by run.ts before any section starts). */
export const secretFile = join(tempDir, 'secret');
