import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ErrorCode, GatewayError } from '../errors.js';

/**
 * Artifacts are sealed in segments (`segmented-v1`): the plaintext is cut into segments of
 * `segmentBytes` (the last may be shorter, or empty), each sealed with AES-256-GCM under the
 * artifact's data key, with the object's name as additional data and a nonce made of a
 * per-artifact random prefix (7 bytes), the segment's index (4 bytes, big-endian) and a final
 * flag (1 byte). Each segment is checked before its bytes are released, so a large artifact is
 * read in constant memory without handing out anything unauthenticated; a segment moved,
 * dropped or appended fails its check, and so does a truncation (the new last segment was not
 * sealed as the last). The plaintext's size and SHA-256 are kept in the data-key record and
 * checked at the end of every read (artifacts.ts).
 */
export const SEGMENT_BYTES = 256 * 1024;
const TAG_BYTES = 16;
const NONCE_PREFIX_BYTES = 7;

/** An artifact's key, nonce prefix and additional data: what every one of its segments is sealed with. */
export interface SegmentKey {
  dataKey: Buffer;
  noncePrefix: Buffer;
  /** The object's name: a segment cannot be moved to another artifact. */
  aad: Buffer;
}

export const integrityFailure = (cause?: unknown) => new GatewayError(ErrorCode.INTERNAL, 'artifact failed its integrity check', { cause });

/** A fresh artifact's random nonce prefix. */
export function newNoncePrefix(): Buffer {
  return randomBytes(NONCE_PREFIX_BYTES);
}

/**
 * Seals a plaintext stream in segments of SEGMENT_BYTES, in constant memory. `onPlaintext` sees
 * every plaintext segment before it is sealed (for the artifact's size and hash).
 */
export async function* sealSegments(plaintext: AsyncIterable<Uint8Array>, key: SegmentKey, onPlaintext: (segment: Buffer) => void): AsyncGenerator<Buffer> {
  let index = 0;
  for await (const { piece, last } of exactPieces(plaintext, SEGMENT_BYTES)) {
    onPlaintext(piece);
    yield sealSegment(key, index++, last, piece);
  }
}

/**
 * Opens sealed segments of `segmentBytes` one by one, each released only once it is authenticated
 * (the last may be empty). Throws INTERNAL on the first that fails its check.
 */
export async function* openSegments(sealed: AsyncIterable<Uint8Array>, key: SegmentKey, segmentBytes: number): AsyncGenerator<Buffer> {
  let index = 0;
  for await (const { piece, last } of exactPieces(sealed, segmentBytes + TAG_BYTES)) yield openSegment(key, index++, last, piece);
}

function segmentNonce(prefix: Buffer, index: number, last: boolean): Buffer {
  const nonce = Buffer.alloc(12);
  prefix.copy(nonce, 0, 0, NONCE_PREFIX_BYTES);
  nonce.writeUInt32BE(index, NONCE_PREFIX_BYTES);
  nonce[11] = last ? 1 : 0;
  return nonce;
}

function sealSegment({ dataKey, noncePrefix, aad }: SegmentKey, index: number, last: boolean, plaintext: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', dataKey, segmentNonce(noncePrefix, index, last)).setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

function openSegment({ dataKey, noncePrefix, aad }: SegmentKey, index: number, last: boolean, sealed: Buffer): Buffer {
  if (sealed.length < TAG_BYTES) throw integrityFailure();
  const decipher = createDecipheriv('aes-256-gcm', dataKey, segmentNonce(noncePrefix, index, last)).setAAD(aad);
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch (error) {
    throw integrityFailure(error);
  }
}

/** Cuts a byte stream into pieces of exactly `size` bytes, keeping back the last (it may be exactly `size` or empty). */
async function* exactPieces(source: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<{ piece: Buffer; last: boolean }> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const chunk of source) {
    if (chunk.length === 0) continue;
    pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    pendingBytes += chunk.length;
    // Strictly more than one piece: the last piece is only known at the end.
    if (pendingBytes > size) {
      let all = Buffer.concat(pending, pendingBytes);
      while (all.length > size) {
        yield { piece: all.subarray(0, size), last: false };
        all = all.subarray(size);
      }
      pending = [all];
      pendingBytes = all.length;
    }
  }
  yield { piece: Buffer.concat(pending, pendingBytes), last: true };
}
