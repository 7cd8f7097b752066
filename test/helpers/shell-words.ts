import { execFileSync } from 'node:child_process';

/** What a real POSIX shell makes of a command line: its words (printed one per line by printf). */
export function shellWords(commandLine: string): string[] {
  return execFileSync('sh', ['-c', `printf '%s\\n' ${commandLine}`], { encoding: 'utf8' }).split('\n').slice(0, -1);
}
