import { describe, expect, it } from 'vitest';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import { producerOptions } from './encodings.js';

const video = (width: number, height: number) => new FakeMediaStreamTrack({ kind: 'video', settings: { width, height } }) as unknown as MediaStreamTrack;

describe('producerOptions', () => {
  it('sends the camera in three layers when its picture is large enough, else in one', () => {
    expect(producerOptions('camera', video(1280, 720)).encodings?.map((e) => e.scaleResolutionDownBy)).toEqual([4, 2, 1]);
    expect(producerOptions('camera', video(640, 360)).encodings).toHaveLength(3);
    expect(producerOptions('camera', video(640, 480)).encodings).toHaveLength(3);
    expect(producerOptions('camera', video(480, 320)).encodings).toEqual([{ maxBitrate: 500_000 }]);
  });

  it('gives each publication its own copy of the layers', () => {
    const first = producerOptions('camera', video(1280, 720)).encodings!;
    first[0]!.maxBitrate = 1;
    expect(producerOptions('camera', video(1280, 720)).encodings![0]!.maxBitrate).toBe(150_000);
  });

  it('keeps a shared screen readable, and the microphone robust to loss', () => {
    const screen = video(1920, 1080);
    expect(producerOptions('screen', screen).encodings).toEqual([{ maxBitrate: 2_500_000 }]);
    expect(screen.contentHint).toBe('detail');
    expect(producerOptions('microphone', new FakeMediaStreamTrack({ kind: 'audio' }) as unknown as MediaStreamTrack)).toEqual({ codecOptions: { opusFec: true, opusDtx: true } });
  });
});
