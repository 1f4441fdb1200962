import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ID_PATTERN } from '@gateway/common';

/**
 * A session's own credential, `<tenant>.<room>.<participantId>.<secret>`: it names the record to
 * take back and proves the holder is the client that joined. Only the secret's hash is stored
 * (in the participant record), so a reader of the store cannot resume anyone's session.
 */
export interface ResumeToken {
  tenant: string;
  room: string;
  participantId: string;
  secret: string;
}

/** Longest resume token accepted (the frame schema's limit too). */
const MAX_TOKEN_CHARS = 512;

export function hashResumeSecret(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** A new token for a joining participant, and the hash its record keeps. */
export function mintResumeToken(tenant: string, room: string, participantId: string): { token: string; hash: Buffer } {
  const secret = randomBytes(24).toString('base64url');
  return { token: `${tenant}.${room}.${participantId}.${secret}`, hash: hashResumeSecret(secret) };
}

/** The token's parts, or undefined when it is not four ids joined by dots. Says nothing of validity. */
export function parseResumeToken(token: string): ResumeToken | undefined {
  if (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS) return undefined;
  const parts = token.split('.');
  if (parts.length !== 4 || parts.some((p) => !ID_PATTERN.test(p))) return undefined;
  const [tenant, room, participantId, secret] = parts as [string, string, string, string];
  return { tenant, room, participantId, secret };
}

/** Whether a presented secret is the one whose hash was stored; constant-time. */
export function resumeSecretMatches(storedHash: Uint8Array, secret: string): boolean {
  const presented = hashResumeSecret(secret);
  return storedHash.length === presented.length && timingSafeEqual(Buffer.from(storedHash), presented);
}
