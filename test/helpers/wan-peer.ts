import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './proxies.js';

/** The ends of the WAN tests (its modes: the file's header). */
const WAN_PEER = join(REPO_ROOT, 'test', 'fixtures', 'wan-peer.mjs');

export interface WanPeer {
  child: ChildProcess;
  /** Its first line of output (trimmed), once it has printed one: the JSON result of most modes. */
  output: Promise<string>;
}

/** Runs test/fixtures/wan-peer.mjs with `args` on host `ns` (ip netns exec); killed at cleanup (`defer`). */
export function startWanPeer(defer: (cleanup: () => unknown) => void, ns: string, args: string[]): WanPeer {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, WAN_PEER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  defer(() => child.kill('SIGKILL'));
  let out = '';
  const output = new Promise<string>((resolve) =>
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (out.includes('\n')) resolve(out.trim());
    }),
  );
  return { child, output };
}
