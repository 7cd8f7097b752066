/**
 * A floor under V8's old-generation limit, set by restarting the program in place with
 * `--initial-old-space-size` (a heap flag V8 reads only when the heap is made, so neither
 * v8.setFlagsFromString nor NODE_OPTIONS can give it).
 *
 * Why: a proxy allocates a read slab per few reads, gigabytes of short-lived ArrayBuffers per
 * second, while its JavaScript allocates little (the tunnel makes few objects per 64 KiB frame).
 * With a ~10 MB heap the limit that counts those buffers is reached long before the young
 * generation fills, and V8 frees them with a full mark-compact of the whole heap each time, where
 * a scavenge would do. Measured on a 2 GB upload through both proxies (iperf3, loopback): 26-32
 * mark-compacts per proxy on Node 24 and 76-81 on Node 20, none with the floor (16-19 scavenges);
 * the proxies' user CPU per GB fell from 640-700 ms to 255-275 on Node 24 (a plain two-hop Node
 * relay: 270-290) and from ~1,070 to ~270 on Node 20. A floor of 64 MB halved the mark-compacts,
 * 96 removed them; 128 leaves room for a larger live heap (many sessions).
 *
 * The floor is a limit, not an allocation: the heap holds what it holds, and V8's memory reducer
 * still collects an idle process. What it allows is up to that much old garbage (and the buffers
 * only it holds) before a full collection.
 */

/** The floor, in MB. */
export const HEAP_FLOOR_MB = 128;

/** The V8 flag that sets it. */
export const HEAP_FLOOR_FLAG = `--initial-old-space-size=${HEAP_FLOOR_MB}`;

/** Set (to anything but the empty string) in the environment to run without the floor (and without the restart): for A/B runs. */
export const NO_HEAP_FLOOR_ENV = 'ETERNAL_TCP_NO_HEAP_FLOOR';

/** Flags that size the old generation's start: given by the user, theirs win. */
const HEAP_SIZING_FLAGS = ['--initial-old-space-size', '--initial-heap-size'];

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/** Whether this process runs with an initial old-generation size, ours or the user's. */
export function heapFloorInEffect(execArgv: readonly string[] = process.execArgv): boolean {
  return execArgv.some((flag) => HEAP_SIZING_FLAGS.some((sizing) => flag.replace(/_/g, '-').startsWith(sizing)));
}

/** The restart's means: process.execve, on Node 22.15 and later, not on Windows. */
function execveOf(): Execve | null {
  const execve = (process as unknown as { execve?: Execve }).execve;
  return typeof execve === 'function' && process.platform !== 'win32' ? execve : null;
}

/** Whether this Node can restart a program in place (and so give it the floor by itself). */
export function canRestartInPlace(): boolean {
  return execveOf() !== null;
}

/**
 * Restarts this program in place with the floor, if it runs without one and the Node can
 * (process.execve: Node 22.15 and later, not on Windows): same pid, same arguments, same
 * environment, stdin, stdout and stderr; every other descriptor is closed by the restart, so call
 * this first thing, before anything is opened. A program that passes descriptors to a child of its
 * own must start it with process.execArgv, which then holds the flag. Returns only when there is
 * no restart (or it failed: the program runs on without the floor).
 */
export function restartWithHeapFloor(): void {
  if (heapFloorInEffect() || (process.env[NO_HEAP_FLOOR_ENV] ?? '') !== '') return;
  const execve = execveOf();
  if (execve === null) return;
  try {
    execve.call(process, process.execPath, [process.execPath, HEAP_FLOOR_FLAG, ...process.execArgv, ...process.argv.slice(1)], process.env);
  } catch {
    // execve(2) failed (the Node binary gone, a limit on arguments): run on as we are.
  }
}
