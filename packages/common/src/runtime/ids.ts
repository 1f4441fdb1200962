import { randomBytes } from 'node:crypto';

/** Prefixed random ids (e.g. PA_3kq9...), URL- and subject-safe. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`;
}
