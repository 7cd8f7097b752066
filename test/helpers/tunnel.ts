import { isLinkUp, startCproxy, startSproxy, type StartedProxy } from './proxies.js';
import { connectUser, startEchoTarget, type TargetServer, type UserConnection } from './targets.js';

/** The usual fixture: a target, sproxy in front of it, cproxy linked to sproxy, the link up. */
export interface Tunnel {
  target: TargetServer;
  sproxy: StartedProxy;
  cproxy: StartedProxy;
  /** A user connection to cproxy, closed after the test. */
  connect(): Promise<UserConnection>;
}

export type Defer = (cleanup: () => unknown) => void;

export async function startTunnel(
  defer: Defer,
  options: { target?: TargetServer; sproxyArgs?: string[]; cproxyArgs?: string[] } = {},
): Promise<Tunnel> {
  const target = options.target ?? (await startEchoTarget());
  defer(() => target.close());
  const sproxy = await startSproxy(target.port, options.sproxyArgs);
  defer(() => sproxy.proc.stop());
  const cproxy = await startCproxy(sproxy.port, options.cproxyArgs);
  defer(() => cproxy.proc.stop());
  await cproxy.proc.waitForLog(isLinkUp);
  return {
    target,
    sproxy,
    cproxy,
    connect: async () => {
      const user = await connectUser(cproxy.port);
      defer(() => user.socket.destroy());
      return user;
    },
  };
}
