import sharp from 'sharp';
import { ErrorCode, GatewayError } from '@gateway/common';

/** Formats an end user may send, by what the bytes are (libvips reads the content, not the name or declared type). */
const allowed = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp' } as const;
type AllowedFormat = keyof typeof allowed;

/** Pixels an upload may decode to (a small file can still claim a huge canvas). */
const MAX_PIXELS = 50_000_000;

/**
 * Checks that the bytes are an image of an allowed type and re-encodes it without any metadata:
 * EXIF (GPS position, device, time), XMP, IPTC and ICC are dropped; the orientation is applied
 * to the pixels first so the picture still shows the right way up. Re-encoding also means that
 * nothing but pixels from the upload reaches the agent or the CRM.
 */
export async function sanitizeImage(input: Buffer): Promise<{ data: Buffer; contentType: string }> {
  let format: string | undefined;
  try {
    format = (await sharp(input, { limitInputPixels: MAX_PIXELS }).metadata()).format;
  } catch (error) {
    throw new GatewayError(ErrorCode.UNSUPPORTED_CONTENT, 'the file is not a JPEG, PNG or WebP image', { cause: error });
  }
  if (!format || !(format in allowed)) throw new GatewayError(ErrorCode.UNSUPPORTED_CONTENT, 'the file is not a JPEG, PNG or WebP image');
  const image = sharp(input, { limitInputPixels: MAX_PIXELS }).rotate();
  const encoded = format === 'png' ? image.png() : format === 'webp' ? image.webp({ quality: 90 }) : image.jpeg({ quality: 90, mozjpeg: true });
  try {
    return { data: await encoded.toBuffer(), contentType: allowed[format as AllowedFormat] };
  } catch (error) {
    throw new GatewayError(ErrorCode.UNSUPPORTED_CONTENT, 'the image could not be decoded', { cause: error });
  }
}
