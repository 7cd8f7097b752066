import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { ConfigError } from '../common/support/errors.js';
import { encodeBootstrapLine } from '../common/ops/bootstrap-line.js';
import { trimAsciiWhitespace } from '../common/ops/cli-options.js';
import { validateSecret } from '../common/transport/tls-psk.js';
import type { BootstrapOptions } from './cli.js';

/** Random bytes in a secret the bootstrap makes: 256 bits, as the README asks of a hand-made one. */
const BOOTSTRAP_SECRET_BYTES = 32;

/**
 * A fresh secret: 32 random bytes written as 64 hex digits, and those digits are the secret, as
 * `openssl rand -hex 32 > FILE` makes one for --secret-file. Text rather than the raw bytes, so
 * that it means the same wherever it goes: a secret file drops white space at its ends, which a
 * raw secret may begin or end with.
 */
function makeSecret(): Buffer {
  return Buffer.from(randomBytes(BOOTSTRAP_SECRET_BYTES).toString('hex'), 'ascii');
}

/** The flag that makes the child the serving half (cli.ts keeps it out of --help). */
const SERVE_FLAG = '--bootstrap-child';

/**
 * The half of `sproxy --bootstrap` that ssh runs. It makes the secret (or reads it from stdin),
 * starts the serving half as a detached process of its own session (setsid: ssh's session can end
 * without it), hands it the secret on its stdin, waits for it to say on a pipe which port it took,
 * and prints the announcement line (bootstrap-line.ts) on stdout for cproxy. Then it exits, so
 * that ssh's channel closes and ssh with it: none of ssh's descriptors stays with the child, whose
 * stdout is /dev/null and whose stderr is its log file.
 *
 * Resolves with the exit status; a failure of the child's start comes on stderr as one line.
 */
export async function announceBootstrap(args: readonly string[], bootstrap: BootstrapOptions): Promise<number> {
  const secret = bootstrap.secretFromStdin ? validateSecret(await readSecretLine(process.stdin), 'stdin') : makeSecret();
  const logFd = openLogFile(bootstrap.logFile);
  const script = process.argv[1];
  if (script === undefined) throw new Error('cannot tell which script runs sproxy');
  const child = spawn(process.execPath, [...process.execArgv, script, ...args, SERVE_FLAG], {
    detached: true,
    stdio: ['pipe', 'ignore', logFd, 'pipe'],
  });
  closeSync(logFd);
  child.stdin?.end(Buffer.concat([secret, Buffer.from('\n')]));
  const status = await firstStatusLine(child.stdio[3] as Readable, new Promise<number | null>((resolve) => child.once('exit', resolve)));
  if (status.kind === 'listening') {
    await new Promise<void>((resolve) => process.stdout.write(encodeBootstrapLine({ port: status.port, secret, logFile: bootstrap.logFile }), () => resolve()));
    child.unref();
    (child.stdio[3] as Readable).destroy();
    return 0;
  }
  process.stderr.write(`sproxy: ${status.reason}\n`);
  return 1;
}

type ChildStatus = { kind: 'listening'; port: number } | { kind: 'failed'; reason: string };

/**
 * The serving half's first line on its status pipe, `listening PORT` or `error REASON`; a child
 * that exits without one has failed, and its log says why.
 */
function firstStatusLine(pipe: Readable, exited: Promise<number | null>): Promise<ChildStatus> {
  return new Promise((resolve) => {
    let text = '';
    pipe.setEncoding('utf8');
    pipe.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end < 0) return;
      const line = text.slice(0, end);
      const listening = /^listening (\d{1,5})$/.exec(line);
      if (listening !== null) resolve({ kind: 'listening', port: Number(listening[1]) });
      else resolve({ kind: 'failed', reason: line.replace(/^error /, '') });
    });
    pipe.on('error', () => {});
    void exited.then((code) => resolve({ kind: 'failed', reason: `the background sproxy exited (status ${code}) before it listened; see its log` }));
  });
}

/** Opens (creating it and its folder, private to the user) the log file for appending. */
function openLogFile(file: string): number {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    return openSync(file, 'a', 0o600);
  } catch (error) {
    throw new ConfigError(`cannot open the log file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}

/**
 * The secret as the first line of `input` (--secret-stdin, and the serving half's stdin), spaces,
 * tabs and line ends at its ends dropped as readSecret drops them from a secret file's.
 */
export async function readSecretLine(input: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of input) {
    const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    chunks.push(bytes);
    length += bytes.length;
    if (bytes.includes(0x0a) || length > 4096) break;
  }
  const text = Buffer.concat(chunks);
  const end = text.indexOf(0x0a);
  // A secret file's rule, so that the same line in a file gives the same key.
  const line = trimAsciiWhitespace(end < 0 ? text : text.subarray(0, end));
  if (line.length === 0) throw new ConfigError('no secret on stdin: give it as one line');
  return line;
}
