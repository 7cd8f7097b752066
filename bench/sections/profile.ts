/**
 * CPU profile (optional): --cpu-prof on cproxy and sproxy during a tunnel iperf3 upload and
 * download; self time by function, top ten. The profiles stay in bench-results/profiles/ (open
 * them in Chrome DevTools).
 */
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PROFILE_DIR, ROOT, procs } from '../harness/context.js';
import { gbit, table } from '../harness/format.js';
import { progress, results, say } from '../harness/report.js';
import type { BenchSection } from '../harness/section.js';
import { HOST, freePort, isListening, sleep, waitFor } from '../harness/system.js';
import { startTunnel, stopPath } from '../paths.js';
import { iperf, type IperfResult } from '../probes/iperf.js';

export const profile: BenchSection = { name: 'profile', run: () => measureProfile() };

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time by function, as shares of all samples. */
function summarizeProfile(file: string, top = 10): { totalMs: number; top: { fn: string; selfPct: number; selfMs: number }[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id);
    if (node === undefined) return;
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url === '' ? '' : ` ${url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '')}:${lineNumber + 1}`;
    const key = `${functionName === '' ? '(anonymous)' : functionName}${where}`;
    self.set(key, (self.get(key) ?? 0) + delta);
    total += delta;
  });
  const sorted = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return { totalMs: total / 1000, top: sorted.map(([fn, us]) => ({ fn, selfMs: us / 1000, selfPct: (100 * us) / total })) };
}

async function measureProfile(): Promise<void> {
  rmSync(PROFILE_DIR, { recursive: true, force: true });
  const iperfPort = await freePort();
  const server = procs.spawn('prof-iperf3-server', 'iperf3', ['-s', '-p', String(iperfPort), '-B', HOST]);
  await waitFor(() => isListening(iperfPort), 10_000, 'iperf3 server listening');
  const out: Record<string, unknown> = {};
  for (const direction of ['upload', 'download'] as const) {
    const dir = join(PROFILE_DIR, direction);
    mkdirSync(dir, { recursive: true });
    progress(`profile: tunnel, ${direction}`);
    const path = await startTunnel(`prof-${direction}`, iperfPort, { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir] });
    const pids = { cproxy: path.cproxy?.pid, sproxy: path.sproxy?.pid };
    let result: IperfResult;
    try {
      await sleep(300);
      result = await iperf(path.port, direction === 'download', `prof-${direction}`);
    } finally {
      await stopPath(path); // SIGTERM: a clean exit writes the profiles
    }
    const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
    const summary: Record<string, unknown> = { gbitPerSecondWhileProfiling: result.bitsPerSecond / 1e9 };
    for (const [who, pid] of Object.entries(pids)) {
      const file = files.find((f) => f.includes(`.${pid}.`));
      if (file === undefined) continue;
      summary[who] = { file: join(dir, file), ...summarizeProfile(join(dir, file)) };
    }
    out[direction] = summary;
    say(`\n== CPU profile, tunnel ${direction} (${gbit(result.bitsPerSecond)} Gbit/s under the profiler): self time, top functions ==`);
    for (const who of ['cproxy', 'sproxy']) {
      const s = summary[who] as ReturnType<typeof summarizeProfile> | undefined;
      if (s === undefined) {
        say(`${who}: no profile written`);
        continue;
      }
      say(`-- ${who} (${s.totalMs.toFixed(0)} ms sampled)`);
      say(table(s.top.map((t) => [t.fn.slice(0, 110), `${t.selfPct.toFixed(1)}%`, `${t.selfMs.toFixed(0)} ms`])));
    }
  }
  await procs.stop(server);
  results['profile'] = out;
}

