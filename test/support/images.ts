import sharp from 'sharp';
import exifReader from 'exif-reader';

/** A JPEG as a phone takes it: EXIF with the device and a GPS position. */
export async function photoWithGps(width = 320, height = 240): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 120, b: 40 } } })
    .jpeg()
    .withExif({
      IFD0: { Make: 'PhoneCo', Model: 'X1' },
      IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '48/1 51/1 2964/100', GPSLongitudeRef: 'E', GPSLongitude: '2/1 17/1 4020/100' },
    })
    .toBuffer();
}

/** The image's EXIF, parsed; undefined when it has none. */
export async function exifOf(image: Buffer): Promise<ReturnType<typeof exifReader> | undefined> {
  const { exif } = await sharp(image).metadata();
  return exif ? exifReader(exif) : undefined;
}

export async function imageFormat(image: Buffer): Promise<string | undefined> {
  return (await sharp(image).metadata()).format;
}
