/** Where an sshd for measurements and tests listens, and whose key it takes. */
export interface SshdConfigOptions {
  hostKey: string;
  listenAddress: string;
  port: number;
  authorizedKeysFile: string;
  /** Lines added at the end (a forwarding or subsystem setting). */
  extraLines?: string[];
}

/**
 * An sshd_config for a throwaway sshd run as root: root logs in with the one authorized key only,
 * nothing else is asked, and no PAM, pid file or owner checks get in the way. The bench and the
 * end-to-end tests both start one.
 */
export function sshdConfig(options: SshdConfigOptions): string {
  return [
    `HostKey ${options.hostKey}`,
    `ListenAddress ${options.listenAddress}`,
    `Port ${options.port}`,
    'PermitRootLogin prohibit-password',
    `AuthorizedKeysFile ${options.authorizedKeysFile}`,
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'StrictModes no',
    'UsePAM no',
    'PidFile none',
    ...(options.extraLines ?? []),
    '',
  ].join('\n');
}
