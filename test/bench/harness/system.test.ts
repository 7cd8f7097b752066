import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { descendantPids } from '../../../bench/harness/system.js';
import { useCleanup } from '../../helpers/cleanup.js';

const cleanup = useCleanup();

describe('descendantPids', () => {
  it("finds a child's child (as sshd's session processes are found), and nothing of another tree", async () => {
    // A shell that starts a sleep and prints its pid: the sleep is the shell's child, not ours.
    const shell = spawn('sh', ['-c', 'sleep 30 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
    cleanup(() => {
      shell.kill('SIGKILL');
    });
    const grandchild = await new Promise<number>((resolve) => shell.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))));
    cleanup(() => {
      try {
        process.kill(grandchild, 'SIGKILL');
      } catch {
        // already gone
      }
    });
    expect(descendantPids(shell.pid as number)).toEqual([grandchild]);
    expect(descendantPids(grandchild)).toEqual([]);
  });
});
