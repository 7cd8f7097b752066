import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Defer } from './tunnel.js';

/** Writes a random secret to a temporary file (removed after the test); returns its path and text. */
export function secretFile(defer: Defer): { file: string; secret: string } {
  const dir = mkdtempSync(join(tmpdir(), 'etcp-test-secret-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const secret = randomBytes(24).toString('base64');
  const file = join(dir, 'secret');
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  return { file, secret };
}
