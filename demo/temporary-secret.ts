import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh random shared secret in a file readable only by its owner, for a demo's cproxy and
 * sproxy, removed by `remove()` (and on exit).
 */
export function createTemporarySecret(): { file: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'eternal-tcp-'));
  const file = join(dir, 'link.secret');
  writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  process.once('exit', remove);
  return { file, remove };
}
