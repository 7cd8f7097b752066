import { setFlagsFromString } from 'node:v8';
import type { Logger } from '../support/logger.js';
import { acceptedSocketReadPath } from '../transport/direct-reads.js';
import { packageVersion } from './cli-options.js';
import { HEAP_FLOOR_FLAG, heapFloorInEffect, NO_HEAP_FLOOR_ENV } from './heap-floor.js';

/**
 * V8's flag that accounts ArrayBuffer memory in the heap's global limits instead of against a
 * fixed 64 MB soft limit. Since V8 13.6 (Node 24.0) raised the young generation's largest size,
 * short-lived Buffers no longer trigger a cheap scavenge before they reach that soft limit, so
 * every ~64 MB of reads starts a full mark-compact (nodejs/node#61967, #63863). A proxy reads at
 * GB/s: on Node 24 cproxy did a mark-compact every ~70 ms during an upload (37 of 42 GCs, against
 * 1 of 95 on Node 20), and the tunnel took 1.25x the CPU per GB of a plain Node relay where it
 * took 0.97x on Node 20 (`npm run bench`, same commit). With this flag 8 of 32 GCs were
 * mark-compacts, and the CPU of both proxies per GB of a tunnel upload was 1,265-1,775 ms where
 * it was 1,774-2,275 without (three alternated 4 s iperf3 runs, Node 24.21). The Node issue
 * reports that V8 upstream has since made this accounting the default.
 */
const GC_FLAG = '--external-memory-accounted-in-global-limit';

/**
 * The Node majors on which GC_FLAG exists, is off by default and was measured to help. On others
 * nothing is set: V8 prints an error for a flag it does not know (Node 20 has none of it), and
 * Node 20 and 22 do not have the problem. On Node 24 the effect is decisive (every collection a
 * full one without it, none with it, in test/fixtures/read-buffer-churn.mjs); on Node 26 (V8
 * 14.6) it is smaller and statistical: V8 takes one run in three or four down a path of many full
 * collections either way, and the flag lowers the total (40 against 169 over 8 runs of 4 GiB).
 */
export const GC_TUNED_NODE_MAJORS: readonly number[] = [24, 26];

/**
 * Sets GC_FLAG for this process where it helps; call it first thing, before the proxies move
 * data. Only the programs call it: the library leaves a host process's V8 alone (README says how
 * to set the flag there). Returns whether the flag is now set by us.
 */
export function tuneGarbageCollector(): boolean {
  const major = Number(process.versions.node.split('.')[0]);
  if (!GC_TUNED_NODE_MAJORS.includes(major)) return false;
  // Given by the user (node flags or NODE_OPTIONS), or its opposite: theirs wins.
  const given = [...process.execArgv, ...(process.env['NODE_OPTIONS'] ?? '').split(/\s+/)];
  if (given.some((flag) => flag.replace(/_/g, '-').includes('external-memory-accounted-in-global-limit'))) return false;
  setFlagsFromString(GC_FLAG);
  return true;
}

/**
 * One line at startup with what a bug report needs about the runtime: the versions, whether
 * accepted sockets got the fast read path (direct-reads.ts), whether the GC was tuned and whether
 * the heap floor is in effect (heap-floor.ts). Falling back to the stream path, or running without
 * the floor, is slower, never wrong: info, not a warning.
 */
export function logRuntime(logger: Logger, gcTuned: boolean): void {
  const acceptedReads = acceptedSocketReadPath();
  const heapFloor = heapFloorInEffect();
  const fields = { version: packageVersion(), node: process.version, openssl: process.versions.openssl, acceptedReads, gcTuned, heapFloor };
  if (acceptedReads !== 'direct') logger.info(fields, 'runtime: accepted sockets read through the stream layer on this Node major (not verified for direct reads): slower');
  else if (!heapFloor) logger.info(fields, `runtime: no heap floor (the program restarts itself with one on Node 22.15 and later, unless ${NO_HEAP_FLOOR_ENV} is set): a bulk transfer costs up to 3x the CPU; start node with ${HEAP_FLOOR_FLAG}`);
  else logger.debug(fields, 'runtime');
}
