import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ErrorCode, GatewayError } from '../errors.js';
import type { Keyring, WrappedKey } from '../keys/keyring.js';

/** A small value (connector secrets, contact details) sealed under its own data key, wrapped by the tenant's KEK. */
export interface SealedValue {
  wrapped: WrappedKey;
  /** base64 of iv (12) | ciphertext | tag (16). */
  value: string;
}

/** Seals JSON for a tenant; `context` is bound to it (AAD), so a sealed value cannot be moved elsewhere. */
export async function sealJson(keyring: Keyring, tenant: string, context: string, value: unknown): Promise<SealedValue> {
  const dataKey = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', dataKey, iv).setAAD(Buffer.from(`${tenant}:${context}`));
  const body = Buffer.concat([cipher.update(JSON.stringify(value)), cipher.final()]);
  const sealed = { wrapped: await keyring.wrap(tenant, dataKey), value: Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64') };
  dataKey.fill(0);
  return sealed;
}

/** Opens what sealJson sealed for the same tenant and context; INTERNAL when it fails its check. */
export async function openJson<T>(keyring: Keyring, tenant: string, context: string, sealed: SealedValue): Promise<T> {
  const dataKey = await keyring.unwrap(tenant, sealed.wrapped);
  const raw = Buffer.from(sealed.value, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', dataKey, raw.subarray(0, 12)).setAAD(Buffer.from(`${tenant}:${context}`));
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  try {
    return JSON.parse(Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8')) as T;
  } catch (error) {
    throw new GatewayError(ErrorCode.INTERNAL, 'a sealed value failed its integrity check', { cause: error });
  } finally {
    dataKey.fill(0);
  }
}
