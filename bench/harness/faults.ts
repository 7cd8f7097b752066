/**
 * Injected faults: iptables rules that silently drop the link, always removed again (by the
 * caller, by the 'exit' handler, and at the start of the next run).
 */
import { execFileSync } from 'node:child_process';
import { run } from './system.js';

/** Marks every rule this benchmark inserts, so that leftovers of a crashed run can be found. */
export const IPTABLES_COMMENT = 'eternal-tcp-bench';

/**
 * Rules that silently drop TCP to and from `port` on loopback (both directions: the INPUT chain
 * sees every packet on lo). Always removed by `restore()`, by the caller's finally block and by
 * the 'exit' handler.
 */
export class SilentDrop {
  readonly #rules: string[][];
  #active = false;

  constructor(port: number) {
    const tail = ['-m', 'comment', '--comment', IPTABLES_COMMENT, '-j', 'DROP'];
    this.#rules = [
      ['INPUT', '-i', 'lo', '-p', 'tcp', '--dport', String(port), ...tail],
      ['INPUT', '-i', 'lo', '-p', 'tcp', '--sport', String(port), ...tail],
    ];
    process.on('exit', () => this.restore());
  }

  drop(): void {
    if (this.#active) return;
    this.#active = true;
    for (const [chain, ...rest] of this.#rules) run('iptables', ['-w', '5', '-I', chain as string, ...rest]);
  }

  restore(): void {
    if (!this.#active) return;
    this.#active = false;
    removeBenchRules();
  }
}

/** Deletes every iptables rule carrying the benchmark's comment (also leftovers of a crashed run). */
export function removeBenchRules(): number {
  let removed = 0;
  let rules: string;
  try {
    rules = execFileSync('iptables', ['-w', '5', '-S'], { encoding: 'utf8', timeout: 10_000 });
  } catch {
    return 0;
  }
  for (const line of rules.split('\n')) {
    if (!line.startsWith('-A ') || !line.includes(IPTABLES_COMMENT)) continue;
    const args = splitRule(line.slice(3));
    try {
      execFileSync('iptables', ['-w', '5', '-D', ...args], { timeout: 10_000, stdio: 'ignore' });
      removed++;
    } catch {
      // raced with another removal
    }
  }
  return removed;
}

/** Splits an `iptables -S` line into arguments (quoted comments included). */
function splitRule(line: string): string[] {
  const args: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let match = pattern.exec(line); match !== null; match = pattern.exec(line)) {
    args.push(match[1] ?? (match[2] as string));
  }
  return args;
}
