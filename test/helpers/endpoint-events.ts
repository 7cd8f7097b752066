import type { ClientEndpointEvents } from '../../common/endpoints/client-endpoint.js';
import type { ServerEndpointEvents } from '../../common/endpoints/server-endpoint.js';
import type { FinishReason, Session } from '../../common/engine/session.js';

/** What the endpoints emit, as the endpoint tests record it. */
export type UpInfo = ClientEndpointEvents['up'][0];
export type RetryInfo = ClientEndpointEvents['retry'][0];
export type ClientUpInfo = ServerEndpointEvents['client-up'][0];
export type LinkDownInfo = ServerEndpointEvents['link-down'][0];
export type ExpiredInfo = ServerEndpointEvents['client-expired'][0];

/** A 'session-finished' event, recorded. */
export interface Finished {
  session: Session;
  reason: FinishReason;
  detail: string;
}
