/**
 * One word for a POSIX shell: as it is when it holds only characters no shell treats specially,
 * else in single quotes (a quote inside closed, escaped and reopened). For command lines a remote
 * shell will read (cproxy --ssh) and commands a log line suggests pasting.
 */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
