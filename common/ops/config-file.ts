import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Node } from 'yaml';
import { ConfigError, EternalError } from '../support/errors.js';
import { describeError } from '../support/logger.js';
import { REPEATABLE_FLAGS, UsageError } from './cli-options.js';

/**
 * `--config FILE`: the proxies' settings in a YAML file, one `flag: value` per line, named as the
 * long flags are (`listen: 0.0.0.0:6200`, `local-forward: [5200:localhost:23, 2222:localhost:22]`,
 * `express-lane: false`). The file becomes command-line words put before the real ones, so every
 * flag is available in it and checked by the same code, and a flag given on the command line
 * overrides the file's (a repeatable one adds to it). An error names the file's line.
 */

/** A scalar a setting may take; lists of them for repeatable flags. */
type SettingValue = string | number | boolean;

export interface ConfigFileWords {
  path: string;
  /** Command-line words, in the file's order. */
  words: string[];
  /** The same, per setting: its flag and its words. */
  settings: Array<{ flag: string; words: string[] }>;
  /** The 1-based line of each setting, by flag name. */
  lines: Map<string, number>;
}

/** Turns the YAML `text` of `path` into command-line words. Throws ConfigError naming the line. */
export function configFileWords(path: string, text: string): ConfigFileWords {
  const { isMap, isScalar, isSeq, LineCounter, parseDocument } = loadYaml();
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineOf = (node: Node | null | undefined): number => (node?.range == null ? 1 : lineCounter.linePos(node.range[0]).line);
  const firstError = doc.errors[0];
  if (firstError !== undefined) {
    const line = firstError.linePos?.[0]?.line ?? lineCounter.linePos(firstError.pos[0]).line;
    throw new ConfigError(`${path}:${line}: ${firstError.message.split('\n')[0] ?? 'not valid YAML'}`);
  }
  const settings: Array<{ flag: string; words: string[] }> = [];
  const lines = new Map<string, number>();
  if (doc.contents === null) return { path, words: [], settings, lines }; // empty: nothing set
  if (!isMap(doc.contents)) throw new ConfigError(`${path}:${lineOf(doc.contents)}: expected one "flag: value" per line`);
  for (const pair of doc.contents.items) {
    const keyNode = pair.key as Node | null;
    const line = lineOf(keyNode);
    const key = isScalar(keyNode) ? keyNode.value : null;
    if (typeof key !== 'string' || !/^[a-z][a-z0-9-]*$/.test(key)) {
      throw new ConfigError(`${path}:${line}: a setting is a flag's long name without the dashes, such as "listen"`);
    }
    if (key === 'config') throw new ConfigError(`${path}:${line}: a config file cannot name another`);
    lines.set(key, line);
    const valueNode = pair.value as Node | null;
    const values: unknown[] = isSeq(valueNode) ? valueNode.items.map((item) => (isScalar(item) ? item.value : item)) : [isScalar(valueNode) ? valueNode.value : valueNode];
    settings.push({ flag: key, words: values.flatMap((value) => wordsFor(key, value, `${path}:${line}`)) });
  }
  return { path, words: settings.flatMap((setting) => setting.words), settings, lines };
}

function wordsFor(key: string, value: unknown, where: string): string[] {
  if (value === true) return [`--${key}`];
  if (value === false) return [`--no-${key}`];
  if (typeof value === 'string' || typeof value === 'number') return [`--${key}`, String(value as SettingValue)];
  throw new ConfigError(`${where}: ${key} wants a value (a string, a number, true or false, or a list of them)`);
}

/** Where `--config FILE` (or `--config=FILE`) is in `args`, and the args without it; null when absent. */
export function takeConfigFlag(args: readonly string[]): { path: string; rest: string[] } | null {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === '--') break;
    if (arg.startsWith('--config=')) return { path: arg.slice('--config='.length), rest: [...args.slice(0, i), ...args.slice(i + 1)] };
    if (arg === '--config') {
      const path = args[i + 1];
      if (path === undefined || path.startsWith('-')) throw new ConfigError('--config needs a FILE');
      return { path, rest: [...args.slice(0, i), ...args.slice(i + 2)] };
    }
  }
  return null;
}

/**
 * Parses `args` with `parse`, after the words of the `--config` file, if one is given. An error
 * about a setting the file gave (and the command line did not) is told with the file's line.
 */
export function parseWithConfigFile<T>(args: readonly string[], parse: (args: string[]) => T): T {
  const config = takeConfigFlag(args);
  if (config === null) return parse([...args]);
  let text: string;
  try {
    text = readFileSync(config.path, 'utf8');
  } catch (error) {
    throw new ConfigError(`--config: cannot read ${config.path}: ${describeError(error)}`);
  }
  const file = configFileWords(config.path, text);
  try {
    return parse([...wordsNotOverridden(file, config.rest), ...config.rest]);
  } catch (error) {
    if (error instanceof EternalError || error instanceof UsageError) throw withLine(error, file, config.rest);
    throw error;
  }
}

/**
 * The file's words but those of the flags the command line gives too, which override them; a
 * repeatable flag's values from both count (as ssh's LocalForward lines and its -L options do).
 */
function wordsNotOverridden(file: ConfigFileWords, commandLine: readonly string[]): string[] {
  return file.settings.filter(({ flag }) => REPEATABLE_FLAGS.has(flag) || !givenOn(commandLine, flag)).flatMap((setting) => setting.words);
}

function givenOn(commandLine: readonly string[], flag: string): boolean {
  return commandLine.some((word) => word === `--${flag}` || word.startsWith(`--${flag}=`) || word === `--no-${flag}`);
}

/** The same error, its message prefixed with the file and the line of the file's setting it names. */
function withLine(error: Error, file: ConfigFileWords, commandLine: readonly string[]): Error {
  // The longest name first: "listen-port" is not "listen".
  for (const [key, line] of [...file.lines].sort(([a], [b]) => b.length - a.length)) {
    if (givenOn(commandLine, key)) continue;
    if (new RegExp(`(^|[^A-Za-z0-9-])(--)?${key}($|[^A-Za-z0-9-])`).test(error.message)) {
      error.message = `${file.path}:${line}: ${error.message}`;
      return error;
    }
  }
  return error;
}

/**
 * The YAML parser, loaded only when a file is read. A proxy without --config never loads it:
 * with the parser in its heap, a tunnel's bulk transfer on loopback measured 20-30% slower
 * (bench/README, 2026-12-03), though none of its code runs there.
 */
function loadYaml(): typeof import('yaml') {
  return createRequire(import.meta.url)('yaml') as typeof import('yaml');
}

