/**
 * "Fast as a plain relay": the tunnel (cproxy + sproxy) measured side by side with a plain two-hop
 * Node relay, socat, ssh -L and a direct connection, in one run, on 127.0.0.1; and on an emulated
 * WAN between two network namespaces (sections/wan.ts, netlab/), against direct TCP and ssh -L.
 *
 *   npm run bench                       everything (a few minutes)
 *   npm run bench -- --only latency,resume
 *   npm run bench -- --no-profile       skip the CPU profile of cproxy and sproxy under iperf3
 *
 * Prints a table per section and a table of targets, and writes bench-results/results.json (logs
 * of every child process in bench-results/logs/, CPU profiles in bench-results/profiles/). This
 * file is the run: flags, the shared target, the sections in order, the end; what each section
 * measures is in sections/, how paths are started in paths.ts, the probes in probes/.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { LOG_DIR, NODE, RESULTS_DIR, ROOT, peerScript, procs, secretFile, tempDir } from './harness/context.js';
import { removeBenchRules } from './harness/faults.js';
import { errors, progress, results, say } from './harness/report.js';
import type { BenchSection } from './harness/section.js';
import { HOST, freePort, isListening, run, waitFor } from './harness/system.js';
import { targetRows, targetsTable } from './harness/targets.js';
import { SECTIONS } from './sections/index.js';
import { IDLE_SESSIONS } from './sections/scale.js';

const WATCHDOG_MS = 30 * 60 * 1000;

/** The sections to run, in the registry's order: all, or those --only names; --no-profile drops the profile. */
function parseSections(argv: string[]): BenchSection[] {
  const known = SECTIONS.map((section) => section.name);
  let wanted = new Set(known);
  const only = argv.indexOf('--only');
  if (only >= 0) {
    // A group's name picks each of its sections: `wan` is wan-keys, wan-stream and wan-loss.
    const inGroup = (group: string): string[] => known.filter((name) => name === group || name.startsWith(`${group}-`));
    const names = (argv[only + 1] ?? '').split(',');
    for (const name of names) if (inGroup(name).length === 0) throw new Error(`unknown section "${name}" (known: ${known.join(', ')})`);
    wanted = new Set(names.flatMap(inGroup));
  }
  if (argv.includes('--no-profile')) wanted.delete('profile');
  return SECTIONS.filter((section) => wanted.has(section.name));
}

/** Raises this process's open-file limit (inherited by every child) as far as allowed; returns it. */
function raiseFdLimit(): number {
  const read = (which: 'SOFT' | 'HARD'): number =>
    Number(run('prlimit', ['--pid', String(process.pid), '--nofile', '--noheadings', '--output', which]).trim());
  // The proxies, the target and this process each hold 10,000+ sockets in the scale section.
  const wanted = 65_536;
  try {
    run('prlimit', ['--pid', String(process.pid), `--nofile=${wanted}:${wanted}`]);
  } catch {
    // Without CAP_SYS_RESOURCE the hard limit is the ceiling: take all of it.
    try {
      const hard = read('HARD');
      run('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`]);
    } catch (error) {
      progress(`could not raise the open-file limit: ${String(error)}`);
    }
  }
  const limit = read('SOFT');
  if (limit < IDLE_SESSIONS + 1000) progress(`warning: open-file limit ${limit} is too low for ${IDLE_SESSIONS} sessions`);
  return limit;
}

function gitCommit(): string {
  try {
    return run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']).trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const sections = parseSections(process.argv.slice(2));
  const startedAt = new Date();
  rmSync(LOG_DIR, { recursive: true, force: true });
  mkdirSync(LOG_DIR, { recursive: true });
  const leftovers = removeBenchRules();
  if (leftovers > 0) progress(`removed ${leftovers} iptables rules left by an earlier run`);
  const fdLimit = raiseFdLimit();
  writeFileSync(secretFile, randomBytes(32).toString('hex'));
  chmodSync(secretFile, 0o600);

  const cpu = cpus();
  results['meta'] = {
    startedAt: startedAt.toISOString(),
    commit: gitCommit(),
    node: process.version,
    kernel: release(),
    cpus: cpu.length,
    cpuModel: cpu[0]?.model ?? 'unknown',
    fdLimit,
    sections: sections.map((section) => section.name),
    loadAverageAtStart: loadavg(),
  };
  say(`eternal-tcp benchmark — commit ${gitCommit()}, node ${process.version}, ${cpu.length} CPU (${cpu[0]?.model ?? '?'}), on ${HOST} (the WAN section: on two namespaces)`);
  const load = loadavg()[0] ?? 0;
  if (load > 0.5) say(`note: load average ${load.toFixed(2)} before the run: other work on this machine will skew the figures`);

  const targetPort = await freePort();
  const target = procs.spawn('target', NODE, [peerScript('target'), String(targetPort)]);
  await waitFor(() => isListening(targetPort), 10_000, 'target listening');

  // A section that fails is reported and the run goes on with the next one.
  for (const section of sections) {
    try {
      await section.run({ targetPort });
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      errors.push({ section: section.name, error: message });
      say(`\n!! section ${section.name} failed: ${message}`);
    }
  }
  await procs.stop(target);

  results['targets'] = targetRows;
  results['errors'] = errors;
  results['durationSeconds'] = (Date.now() - startedAt.getTime()) / 1000;
  (results['meta'] as Record<string, unknown>)['loadAverageAtEnd'] = loadavg();
  say(`\n== Targets (node ${process.version}) ==`);
  say(targetsTable());
  const passed = targetRows.filter((row) => row.pass === true).length;
  say(`\n${passed}/${targetRows.length} targets met; ${errors.length} section errors; ${(results['durationSeconds'] as number).toFixed(0)} s`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, 'results.json');
  writeFileSync(file, `${JSON.stringify(results, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`);
  say(`results: ${file}`);
}

async function cleanup(): Promise<void> {
  removeBenchRules();
  await procs.stopAll();
  rmSync(tempDir, { recursive: true, force: true });
}

const watchdog = setTimeout(() => {
  progress(`watchdog: the run took longer than ${WATCHDOG_MS / 1000} s; stopping`);
  void cleanup().finally(() => process.exit(3));
}, WATCHDOG_MS);
watchdog.unref();

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    progress(`${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

main()
  .then(async () => {
    await cleanup();
    process.exit(errors.length > 0 ? 1 : 0);
  })
  .catch(async (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    await cleanup();
    process.exit(1);
  });
