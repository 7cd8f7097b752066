import { describe, expect, it, vi } from 'vitest';
import { logSecretFileWarning, secretFileModeWarning } from '../../../common/ops/secret-file-mode.js';
import { silentLogger } from '../../../common/support/logger.js';

/** st_mode's file type bits for a regular file, as statSync gives them along with the permissions. */
const S_IFREG = 0o100000;

describe('secretFileModeWarning', () => {
  // Octal text, so that the test names show the modes as chmod writes them; 100600 is a regular file's st_mode.
  it.each(['0600', '0400', '0700', '0200', '0000', '100600'])('is null for mode %s: only the owner may read or write', (octal) => {
    expect(secretFileModeWarning('/etc/eternal-tcp/secret', Number.parseInt(octal, 8))).toBeNull();
  });

  it.each(['0644', '0640', '0604', '0620', '0602', '0666', '0777'])('warns for mode %s, naming it and the fix', (octal) => {
    expect(secretFileModeWarning('/etc/eternal-tcp/secret', Number.parseInt(octal, 8))).toEqual({
      file: '/etc/eternal-tcp/secret',
      mode: octal,
      fix: 'chmod 600 /etc/eternal-tcp/secret',
    });
  });

  it('leaves the file type out of the mode it names', () => {
    expect(secretFileModeWarning('s', S_IFREG | 0o644)?.mode).toBe('0644');
  });

  it('does not count execute bits: they let nobody read or write the secret', () => {
    expect(secretFileModeWarning('s', 0o611)).toBeNull();
  });

  it('quotes the path in the fix when a shell would split or expand it', () => {
    expect(secretFileModeWarning('/home/me/my secret', 0o644)?.fix).toBe(`chmod 600 '/home/me/my secret'`);
    expect(secretFileModeWarning(`it's`, 0o644)?.fix).toBe(`chmod 600 'it'\\''s'`);
    expect(secretFileModeWarning('~/.eternal-tcp.secret', 0o644)?.fix).toBe(`chmod 600 '~/.eternal-tcp.secret'`);
  });
});

describe('logSecretFileWarning', () => {
  it('logs one warning with the file, the mode and the fix; nothing without a warning', () => {
    const logger = { ...silentLogger, warn: vi.fn() };
    logSecretFileWarning(logger, null);
    expect(logger.warn).not.toHaveBeenCalled();
    logSecretFileWarning(logger, secretFileModeWarning('/s', 0o644));
    expect(logger.warn).toHaveBeenCalledExactlyOnceWith(
      { file: '/s', mode: '0644', fix: 'chmod 600 /s' },
      'secret file is readable or writable by group or others',
    );
  });
});
