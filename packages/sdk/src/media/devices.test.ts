import { afterEach, describe, expect, it, vi } from 'vitest';
import { captureError, captureUserMedia } from './capture.js';
import { listDevices, watchDevices } from './devices.js';
import { Playback } from './Playback.js';

const device = (kind: string, deviceId: string, label = '') => ({ kind, deviceId, label, groupId: `g-${deviceId}`, toJSON: () => ({}) });

/** A media element as far as Playback uses it; `refuse` makes play() fail as an autoplay policy does. */
class FakeElement {
  autoplay = false;
  muted = false;
  playsInline = false;
  paused = true;
  srcObject: { getTracks(): unknown[] } | null = null;
  sinkId = '';
  refuse = false;
  play = vi.fn(async () => {
    if (this.refuse) throw Object.assign(new Error('play() needs a user gesture'), { name: 'NotAllowedError' });
    this.paused = false;
  });
  pause = vi.fn(() => {
    this.paused = true;
  });
  setSinkId = vi.fn(async (id: string) => {
    if (id === 'gone') throw Object.assign(new Error('not found'), { name: 'NotFoundError' });
    this.sinkId = id;
  });
}

describe('devices', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('tells device failures apart: refused by the user, no such device, in use', () => {
    const named = (name: string) => Object.assign(new Error(name), { name });
    expect(captureError(named('NotAllowedError'), 'camera').code).toBe('DEVICE_PERMISSION_DENIED');
    expect(captureError(named('SecurityError'), 'camera').code).toBe('DEVICE_PERMISSION_DENIED');
    expect(captureError(named('NotFoundError'), 'camera').code).toBe('DEVICE_NOT_FOUND');
    expect(captureError(named('OverconstrainedError'), 'camera').code).toBe('DEVICE_NOT_FOUND');
    expect(captureError(named('NotReadableError'), 'camera').code).toBe('DEVICE_IN_USE');
    expect(captureError(named('AbortError'), 'camera').code).toBe('DEVICE_IN_USE');
    expect(captureError(named('TypeError'), 'camera').code).toBe('UNAVAILABLE');
  });

  it('asks for the rear camera by facing mode, required; a device id wins over it', async () => {
    const getUserMedia = vi.fn(async () => ({ getVideoTracks: () => [{}], getAudioTracks: () => [] }));
    vi.stubGlobal('navigator', { mediaDevices: { getUserMedia } });
    await captureUserMedia({ camera: true, microphone: false }, { camera: { facingMode: 'environment' } });
    await captureUserMedia({ camera: true, microphone: false }, { camera: { facingMode: 'environment', deviceId: 'cam-2' } });
    const calls = getUserMedia.mock.calls as unknown as Array<[{ video: Record<string, unknown> }]>;
    expect(calls[0]![0].video).toMatchObject({ facingMode: { exact: 'environment' } });
    expect(calls[1]![0].video).toMatchObject({ deviceId: { exact: 'cam-2' } });
    expect(calls[1]![0].video.facingMode).toBeUndefined();
  });

  it('lists devices by kind and tells of changes until stopped', async () => {
    let listed = [device('videoinput', 'cam-1', 'Front'), device('audioinput', 'mic-1'), device('audiooutput', 'out-1'), device('other', 'x')];
    const listeners = new Set<() => void>();
    vi.stubGlobal('navigator', {
      mediaDevices: {
        enumerateDevices: async () => listed,
        addEventListener: (_: string, l: () => void) => listeners.add(l),
        removeEventListener: (_: string, l: () => void) => listeners.delete(l),
      },
    });
    expect(await listDevices('videoinput')).toEqual([{ kind: 'videoinput', deviceId: 'cam-1', label: 'Front', groupId: 'g-cam-1' }]);
    expect((await listDevices()).map((d) => d.deviceId)).toEqual(['cam-1', 'mic-1', 'out-1']);

    const seen: string[][] = [];
    const stop = watchDevices((devices) => seen.push(devices.map((d) => d.deviceId)));
    listed = [...listed, device('videoinput', 'cam-2')];
    for (const l of listeners) l();
    await vi.waitFor(() => expect(seen).toEqual([['cam-1', 'mic-1', 'out-1', 'cam-2']]));
    stop();
    expect(listeners.size).toBe(0);
  });
});

describe('playback', () => {
  afterEach(() => vi.unstubAllGlobals());

  const setUp = (outputs = ['out-1']) => {
    const made: FakeElement[] = [];
    vi.stubGlobal('document', { createElement: () => made[made.push(new FakeElement()) - 1] });
    vi.stubGlobal(
      'MediaStream',
      class {
        constructor(private readonly tracks: unknown[]) {}
        getTracks() {
          return this.tracks;
        }
      },
    );
    vi.stubGlobal('HTMLMediaElement', { prototype: FakeElement.prototype });
    Object.assign(FakeElement.prototype, { setSinkId: () => Promise.resolve() });
    vi.stubGlobal('navigator', { mediaDevices: { enumerateDevices: async () => outputs.map((id) => device('audiooutput', id)) } });
    const changes: boolean[] = [];
    const local = { kind: 'video' } as MediaStreamTrack;
    const playback = new Playback(
      (_event, can) => changes.push(can),
      (track) => track === local,
    );
    return { made, changes, local, playback };
  };

  it('attaches tracks to elements it makes, plays its own muted, and detaches them', async () => {
    const { made, local, playback } = setUp();
    const remote = { kind: 'audio' } as MediaStreamTrack;
    const audio = playback.attach(remote) as unknown as FakeElement;
    const self = playback.attach(local) as unknown as FakeElement;
    expect(made).toEqual([audio, self]);
    expect({ autoplay: audio.autoplay, muted: audio.muted, playing: audio.play.mock.calls.length }).toEqual({ autoplay: true, muted: false, playing: 1 });
    expect(self.muted).toBe(true);
    expect(playback.detach(remote)).toEqual([audio]);
    expect(audio.srcObject).toBeNull();
    expect(playback.detach(remote)).toEqual([]);
  });

  it('plays every attached element, and later ones, on the chosen output; refuses an unknown one', async () => {
    const { playback } = setUp(['out-1', 'out-2']);
    const first = playback.attach({ kind: 'audio' } as MediaStreamTrack) as unknown as FakeElement;
    await playback.setAudioOutput('out-2');
    expect(first.setSinkId).toHaveBeenCalledWith('out-2');
    const later = playback.attach({ kind: 'audio' } as MediaStreamTrack) as unknown as FakeElement;
    await vi.waitFor(() => expect(later.setSinkId).toHaveBeenCalledWith('out-2'));
    expect(playback.audioOutput).toBe('out-2');
    await expect(playback.setAudioOutput('out-9')).rejects.toMatchObject({ code: 'DEVICE_NOT_FOUND' });
    expect(playback.audioOutput).toBe('out-2');
  });

  it('says when the browser holds sound back, and startAudio() plays it', async () => {
    const { made, changes, playback } = setUp();
    const original = document.createElement;
    vi.stubGlobal('document', {
      createElement: () => {
        const el = (original as unknown as () => FakeElement)();
        el.refuse = true;
        return el;
      },
    });
    playback.attach({ kind: 'audio' } as MediaStreamTrack);
    await vi.waitFor(() => expect(changes).toEqual([false]));
    expect(playback.canPlaybackAudio).toBe(false);
    made[0]!.refuse = false;
    await playback.startAudio();
    expect(changes).toEqual([false, true]);
    expect(made[0]!.paused).toBe(false);
  });
});
