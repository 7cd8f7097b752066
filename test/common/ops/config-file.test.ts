import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configFileWords, parseWithConfigFile, takeConfigFlag } from '../../../common/ops/config-file.js';
import { ConfigError } from '../../../common/support/errors.js';
import { catchError } from '../../helpers/expect-error.js';

const dir = mkdtempSync(join(tmpdir(), 'etcp-config-'));
function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe('config file: YAML settings as command-line words', () => {
  it('turns each setting into the flag it names: values, lists for repeatable flags, true and false for switches', () => {
    const text = ['# cproxy on the laptop', 'server: vps.example.net:6200', 'local-forward:', '  - 5200:localhost:23', '  - "[::1]:2222:localhost:22"', 'window: 4096', 'express-lane: false', 'insecure: true', ''].join('\n');
    const words = configFileWords('c.yaml', text);
    expect(words.words).toEqual([
      '--server', 'vps.example.net:6200',
      '--local-forward', '5200:localhost:23', '--local-forward', '[::1]:2222:localhost:22',
      '--window', '4096', '--no-express-lane', '--insecure',
    ]);
    expect([...words.lines]).toEqual([['server', 2], ['local-forward', 3], ['window', 6], ['express-lane', 7], ['insecure', 8]]);
    expect(configFileWords('empty.yaml', '# nothing\n').words).toEqual([]);
  });

  it.each([
    ['listen: [a\nserver: x', /^bad\.yaml:\d: /],
    ['server: a\nserver: b\n', /^bad\.yaml:2: .*[Mm]ap keys must be unique/],
    ['- listen\n- server\n', /^bad\.yaml:1: expected one "flag: value" per line$/],
    ['listen: 1\n--server: x\n', /^bad\.yaml:2: a setting is a flag's long name without the dashes, such as "listen"$/],
    ['listen: 1\nwindow:\n', /^bad\.yaml:2: window wants a value/],
    ['listen:\n  host: a\n', /^bad\.yaml:1: listen wants a value/],
    ['config: other.yaml\n', /^bad\.yaml:1: a config file cannot name another$/],
  ])('refuses %j naming the line', (text, message) => {
    const error = catchError(() => configFileWords('bad.yaml', text));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(message);
  });

  it('finds --config FILE or --config=FILE, and wants a FILE', () => {
    expect(takeConfigFlag(['-L', 'x', '--config', 'f.yaml', '--window', '1'])).toEqual({ path: 'f.yaml', rest: ['-L', 'x', '--window', '1'] });
    expect(takeConfigFlag(['--config=f.yaml'])).toEqual({ path: 'f.yaml', rest: [] });
    expect(takeConfigFlag(['--window', '1'])).toBeNull();
    expect(() => takeConfigFlag(['--config'])).toThrow('--config needs a FILE');
  });

  it('puts the file before the command line, names the line of a bad setting, and not of one the command line gave', () => {
    const repeatable = (args: string[]): string[] => args;
    const forwards = file('forwards.yaml', 'local-forward: [5200:a:1]\nallow: x:1\n');
    expect(parseWithConfigFile(['--config', forwards, '--local-forward', '5201:b:2', '--allow', 'y:2'], repeatable)).toEqual([
      '--local-forward', '5200:a:1', '--allow', 'x:1', '--local-forward', '5201:b:2', '--allow', 'y:2',
    ]);
    const seen: string[][] = [];
    const parse = (args: string[]): string[] => {
      seen.push(args);
      const window = args.lastIndexOf('--window');
      if (window >= 0 && !/^\d+$/.test(args[window + 1] ?? '')) throw new ConfigError(`--window must be a whole number, got "${args[window + 1]}"`);
      return args;
    };
    const good = file('good.yaml', 'window: 64\nserver: a:1\n');
    // The command line's --window overrides the file's, which is left out.
    expect(parseWithConfigFile(['--config', good, '--window', '128'], parse)).toEqual(['--server', 'a:1', '--window', '128']);
    expect(parseWithConfigFile(['--window', '128', '--config', good], parse)).toEqual(['--server', 'a:1', '--window', '128']);
    const bad = file('bad.yaml', 'server: a:1\nwindow: lots\n');
    expect(() => parseWithConfigFile(['--config', bad], parse)).toThrow(`${bad}:2: --window must be a whole number, got "lots"`);
    // The command line's own bad value is not the file's.
    expect(() => parseWithConfigFile(['--config', good, '--window', 'x'], parse)).toThrow(/^--window must be a whole number, got "x"$/);
    expect(() => parseWithConfigFile(['--config', join(dir, 'missing.yaml')], parse)).toThrow(/^--config: cannot read .*missing\.yaml: /);
  });
});
