import { describe, expect, it } from 'vitest';
import sharp from 'sharp';
import exifReader from 'exif-reader';
import { sanitizeImage } from './images.js';

const canvas = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: { r: 10, g: 200, b: 90 } } });

describe('sanitizeImage', () => {
  it('keeps the format, drops EXIF and GPS, and applies the orientation to the pixels', async () => {
    // A 40x20 picture whose EXIF says "rotate 90°": a viewer shows it 20 wide and 40 high.
    const input = await canvas(40, 20)
      .jpeg()
      .withExif({ IFD0: { Make: 'PhoneCo' }, IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '1/1 2/1 3/1' } })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    expect((await sharp(input).metadata()).orientation).toBe(6);
    expect(exifReader((await sharp(input).metadata()).exif!).GPSInfo).toBeDefined();
    const { data, contentType } = await sanitizeImage(input);
    const meta = await sharp(data).metadata();
    expect(contentType).toBe('image/jpeg');
    expect(meta.exif).toBeUndefined();
    expect([meta.width, meta.height]).toEqual([20, 40]);
  });

  it('accepts PNG and WebP by their bytes', async () => {
    expect((await sanitizeImage(await canvas(8, 8).png().toBuffer())).contentType).toBe('image/png');
    expect((await sanitizeImage(await canvas(8, 8).webp().toBuffer())).contentType).toBe('image/webp');
  });

  it('refuses other images, non-images and truncated files with UNSUPPORTED_CONTENT', async () => {
    const gif = await canvas(8, 8).gif().toBuffer();
    const jpeg = await canvas(64, 64).jpeg().toBuffer();
    for (const bad of [gif, Buffer.from('%PDF-1.7 not an image'), Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), jpeg.subarray(0, 40)]) {
      await expect(sanitizeImage(bad)).rejects.toMatchObject({ code: 'UNSUPPORTED_CONTENT' });
    }
  });
});
