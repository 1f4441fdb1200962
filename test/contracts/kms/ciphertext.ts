import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { KmsError } from './protocol.js';

/**
 * The CiphertextBlob, opaque to clients as in AWS: version (1) | key id (36) | iv (12) |
 * ciphertext | tag (16), AES-256-GCM under the key's material; the header and the encryption
 * context are authenticated, so a blob opens only under the key it names and the same context.
 */

const BLOB_VERSION = 1;

/** What sealing needs of a key. */
interface KeyMaterial {
  keyId: string;
  material: Buffer;
}

export function seal(key: KeyMaterial, plaintext: Buffer, encryptionContext: Buffer): Buffer {
  const head = Buffer.concat([Buffer.from([BLOB_VERSION]), Buffer.from(key.keyId, 'latin1')]);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key.material, iv).setAAD(Buffer.concat([head, encryptionContext]));
  return Buffer.concat([head, iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** The key id a blob names; InvalidCiphertextException when it is too short or not of our version. */
export function sealedKeyId(ciphertext: Buffer): string {
  if (ciphertext.length < 1 + 36 + 12 + 16 || ciphertext[0] !== BLOB_VERSION) throw new KmsError('InvalidCiphertextException', '');
  return ciphertext.subarray(1, 37).toString('latin1');
}

/** The plaintext of a blob sealed under `key` with this context. */
export function unseal(key: KeyMaterial, ciphertext: Buffer, encryptionContext: Buffer): Buffer {
  const iv = ciphertext.subarray(37, 49);
  const decipher = createDecipheriv('aes-256-gcm', key.material, iv).setAAD(Buffer.concat([ciphertext.subarray(0, 37), encryptionContext]));
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
  try {
    return Buffer.concat([decipher.update(ciphertext.subarray(49, ciphertext.length - 16)), decipher.final()]);
  } catch {
    // AWS says nothing more, whatever did not match (the context, the bytes).
    throw new KmsError('InvalidCiphertextException', '');
  }
}

/** The EncryptionContext, canonical (sorted), as bytes bound to a ciphertext. */
export function context(value: unknown): Buffer {
  if (value === undefined) return Buffer.alloc(0);
  if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
    throw new KmsError('ValidationException', 'EncryptionContext must be a map of strings.');
  }
  return Buffer.from(JSON.stringify(Object.entries(value as Record<string, string>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
}

/** A base64 blob field of the request, between 1 and `max` bytes. */
export function blob(value: unknown, field: string, max: number): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new KmsError('SerializationException', `${field} must be a base64 blob`);
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length < 1 || bytes.length > max)
    throw new KmsError('ValidationException', `1 validation error detected: Value at '${field}' failed to satisfy constraint: Member must have length between 1 and ${max}`);
  return bytes;
}
