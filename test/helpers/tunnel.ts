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

export interface TunnelOptions {
  target?: TargetServer;
  sproxyArgs?: string[];
  cproxyArgs?: string[];
  /** Puts something in the link's path: given sproxy's port, returns the port cproxy should dial. */
  via?: (sproxyPort: number) => Promise<number>;
  /** Wait for the link to come up (default); false where it is not meant to. */
  waitForLink?: boolean;
}

export async function startTunnel(defer: Defer, options: TunnelOptions = {}): Promise<Tunnel> {
  const target = options.target ?? (await startEchoTarget());
  defer(() => target.close());
  const sproxy = await startSproxy(target.port, options.sproxyArgs);
  defer(() => sproxy.proc.stop());
  const serverPort = options.via === undefined ? sproxy.port : await options.via(sproxy.port);
  const cproxy = await startCproxy(serverPort, options.cproxyArgs);
  defer(() => cproxy.proc.stop());
  if (options.waitForLink !== false) await cproxy.proc.waitForLog(isLinkUp);
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
