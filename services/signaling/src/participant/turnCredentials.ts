import { createHmac } from 'node:crypto';
import type { IceServer } from '@gateway/proto/gateway/signaling/v1/signaling';

/** The TURN servers signaling hands out, and the secret it shares with them (SIGNALING_TURN_*). */
export interface TurnSettings {
  /** coturn's `static-auth-secret`. */
  secret: string;
  /** `turn:host:3478?transport=udp`, `turns:host:443?transport=tcp`, ... */
  urls: string[];
  /**
   * How long a credential may start an allocation. An allocation made in time outlives it:
   * coturn checks the credential when an allocation is made and refreshed with the same one,
   * so a call lasts past the expiry without a new one (docs/turn.md).
   */
  ttlSeconds: number;
}

/**
 * A credential in coturn's REST-API scheme (`use-auth-secret`): the username is
 * `<unix expiry seconds>:<opaque id>`, the password base64(HMAC-SHA1(secret, username)). The
 * TURN server recomputes the password from the username and refuses one past its expiry, so
 * nothing is stored or exchanged between signaling and the TURN servers but the secret.
 */
export function turnCredential(secret: string, opaqueId: string, expiresAtSeconds: number): { username: string; credential: string } {
  const username = `${expiresAtSeconds}:${opaqueId}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

/**
 * The ICE servers of one participant's transports: none without TURN settings. The opaque id
 * is the participant id (random, per session): a TURN server's logs name no person, and an
 * operator can still find the session a relay served.
 */
export function iceServersFor(turn: TurnSettings | undefined, participantId: string, nowMs = Date.now()): IceServer[] {
  if (!turn) return [];
  const expiresAt = Math.floor(nowMs / 1000) + turn.ttlSeconds;
  return [{ urls: turn.urls, ...turnCredential(turn.secret, participantId, expiresAt) }];
}
