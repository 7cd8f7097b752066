import { shellQuote } from '../support/shell-quote.js';
import type { Logger } from '../support/logger.js';

/**
 * The permission bits that let a file's group or others read or write it. Whoever reads the
 * secret can authenticate as either proxy, and whoever writes it can lock them out; so, as ssh
 * says of a private key, a secret file should let nobody but its owner at it.
 */
const GROUP_OR_OTHERS_READ_WRITE = 0o066;

const PERMISSION_BITS = 0o7777;

/** The fields of the warning log line: the file, its mode in octal, and the command that fixes it. */
export interface SecretFileWarning {
  file: string;
  mode: string;
  fix: string;
}

/**
 * The warning for a secret file of this mode (st_mode, or only its permission bits), or null when
 * neither group nor others may read or write it.
 */
export function secretFileModeWarning(file: string, mode: number): SecretFileWarning | null {
  if ((mode & GROUP_OR_OTHERS_READ_WRITE) === 0) return null;
  const octal = (mode & PERMISSION_BITS).toString(8).padStart(4, '0');
  return { file, mode: octal, fix: `chmod 600 ${shellQuote(file)}` };
}

/** Logs the warning, if there is one, once the logger exists (the secret is read before). */
export function logSecretFileWarning(logger: Logger, warning: SecretFileWarning | null): void {
  if (warning !== null) logger.warn({ ...warning }, 'secret file is readable or writable by group or others');
}
