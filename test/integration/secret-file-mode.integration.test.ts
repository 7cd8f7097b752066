import { chmodSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { isLinkUp, startCproxy, startSproxy, type LogPredicate, type StartedProxy } from '../helpers/proxies.js';
import { secretFile } from '../helpers/secrets.js';
import { startEchoTarget } from '../helpers/targets.js';

const defer = useCleanup();

const isSecretFileWarning: LogPredicate = (line) => line.msg === 'secret file is readable or writable by group or others';

/** sproxy and cproxy started with the same secret file, the link up. */
async function startBoth(file: string): Promise<{ sproxy: StartedProxy; cproxy: StartedProxy }> {
  const target = await startEchoTarget();
  defer(() => target.close());
  const sproxy = await startSproxy(target.port, ['--secret-file', file]);
  defer(() => sproxy.proc.stop());
  const cproxy = await startCproxy(sproxy.port, ['--secret-file', file]);
  defer(() => cproxy.proc.stop());
  await cproxy.proc.waitForLog(isLinkUp);
  return { sproxy, cproxy };
}

describe('a secret file group or others may read', () => {
  it('makes sproxy and cproxy warn once, naming the file, its mode and the fix', async () => {
    const { file } = secretFile(defer);
    chmodSync(file, 0o644);
    const { sproxy, cproxy } = await startBoth(file);
    for (const proc of [sproxy.proc, cproxy.proc]) {
      // Logged at startup, before the listening line: by now it is there or it never comes.
      expect(proc.logs.filter(isSecretFileWarning)).toEqual([
        expect.objectContaining({ level: 40, file, mode: '0644', fix: `chmod 600 ${file}` }),
      ]);
    }
  });

  it('is not mentioned for a 0600 file, as the tests and the demo make them', async () => {
    const { file } = secretFile(defer);
    const { sproxy, cproxy } = await startBoth(file);
    expect(sproxy.proc.countLogs(isSecretFileWarning)).toBe(0);
    expect(cproxy.proc.countLogs(isSecretFileWarning)).toBe(0);
  });
});
