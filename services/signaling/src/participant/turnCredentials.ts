import { createHmac } from 'node:crypto';
import { type Logger, type Parsed, type SecretFile, watchSecretFile, type WatchedFiles } from '@gateway/common';
import type { IceServer } from '@gateway/proto/gateway/signaling/v1/signaling';

/** The TURN servers signaling hands out, and the secret it shares with them (SIGNALING_TURN_*). */
export interface TurnSettings {
  /** The secret coturn checks credentials with (its turn_secret rows, docs/turn.md), as read at start-up. */
  secret: string;
  /** `turn:host:3478?transport=udp`, `turns:host:443?transport=tcp`, ... */
  urls: string[];
  /**
   * How long a credential may start an allocation. An allocation made in time outlives it:
   * coturn checks the credential when an allocation is made and refreshed with the same one,
   * so a call lasts past the expiry without a new one (docs/turn.md).
   */
  ttlSeconds: number;
  /** The file the secret came from (a mounted Secret), taken up again when it changes. */
  file?: SecretFile;
}

/** The shared secret's file: one secret of printable characters, surrounding whitespace aside; the problem never quotes it. */
export function parseTurnSecret(raw: string): Parsed<string> {
  const secret = raw.trim();
  if (!/^[\x21-\x7e]{32,4096}$/.test(secret)) return { ok: false, problem: 'must hold a secret of at least 32 printable characters' };
  return { ok: true, value: secret };
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

/**
 * The TURN servers as they are now. The secret's file is taken up again when it changes (a
 * rotation, docs/turn.md): credentials handed out from then on are signed with the new secret.
 * A file that cannot be read or holds no valid secret keeps the secret in use (logged without
 * its contents, counted in `gateway_config_reloads_total{source="turn-secret",outcome="rejected"}`).
 */
export class TurnCredentials {
  #settings: TurnSettings | undefined;
  #watch: WatchedFiles | undefined;

  private constructor(settings: TurnSettings | undefined) {
    this.#settings = settings;
  }

  /** The settings' servers, their secret's file watched when there is one; none without settings. */
  static start(settings: TurnSettings | undefined, log: Logger): TurnCredentials {
    const turn = new TurnCredentials(settings);
    if (settings?.file) {
      turn.#watch = watchSecretFile(
        settings.file,
        'turn-secret',
        parseTurnSecret,
        (secret) => {
          turn.#settings = { ...settings, secret };
          log.info('TURN secret changed: new credentials are signed with it');
        },
        log,
      );
    }
    return turn;
  }

  /** The ICE servers of one participant's transports, signed with the secret in use now. */
  iceServersFor(participantId: string, nowMs = Date.now()): IceServer[] {
    return iceServersFor(this.#settings, participantId, nowMs);
  }

  /** Stops watching the file; credentials are still signed with the secret in use. Safe to repeat. */
  close(): void {
    this.#watch?.close();
    this.#watch = undefined;
  }

  /** Reads the file now (tests: no waiting for the watch). */
  async check(): Promise<void> {
    await this.#watch?.check();
  }
}
