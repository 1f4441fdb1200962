import { ErrorCode, GatewayError } from '../errors.js';
import type { Emit } from '../events.js';
import type { RoomEvents } from '../types.js';
import { captureError } from './capture.js';
import { listDevices } from './devices.js';

/** HTMLMediaElement.setSinkId, not yet in every browser (nor in TypeScript's DOM types of old). */
type SinkElement = HTMLMediaElement & { setSinkId?: (sinkId: string) => Promise<void> };

/**
 * Plays tracks in media elements: attach() makes (or takes) an element for a track and starts
 * it, detach() takes it out. The audio output chosen for the room (an agent's headset) applies
 * to every attached element, now and later. Browsers refuse to start sound before the user has
 * touched the page: then `audioPlaybackChanged(false)` tells the app to show a button whose
 * click calls startAudio().
 */
export class Playback {
  private readonly attached = new Set<HTMLMediaElement>();
  private sinkId = '';
  private canPlayAudio = true;

  constructor(
    private readonly emit: Emit<Pick<RoomEvents, 'audioPlaybackChanged'>>,
    /** Whether a track is one of ours (a self view plays muted: no echo of one's own voice). */
    private readonly isLocal: (track: MediaStreamTrack) => boolean,
  ) {}

  /** False while the browser blocks sound until the user interacts with the page (see startAudio()). */
  get canPlaybackAudio(): boolean {
    return this.canPlayAudio;
  }

  /** The audio output sound plays on; '' for the system's default. */
  get audioOutput(): string {
    return this.sinkId;
  }

  attach(track: MediaStreamTrack, element?: HTMLMediaElement): HTMLMediaElement {
    const doc = (globalThis as { document?: Document }).document;
    if (!element && !doc) throw new GatewayError(ErrorCode.UNSUPPORTED, 'attaching a track needs a document');
    const target = element ?? doc!.createElement(track.kind === 'video' ? 'video' : 'audio');
    target.autoplay = true;
    // iOS plays video full screen unless told not to.
    if ('playsInline' in target) (target as HTMLVideoElement).playsInline = true;
    // One's own microphone is never played back; a local video plays muted like any self view.
    target.muted = this.isLocal(track);
    target.srcObject = new (globalThis as { MediaStream: typeof MediaStream }).MediaStream([track]);
    this.attached.add(target);
    if (this.sinkId && track.kind === 'audio') void this.applySink(target, this.sinkId).catch(() => undefined);
    this.play(target);
    return target;
  }

  /** Takes the track out of the element given, or of every element it was attached to; returns those elements. */
  detach(track: MediaStreamTrack, element?: HTMLMediaElement): HTMLMediaElement[] {
    const candidates = element ? [element] : [...this.attached];
    const detached: HTMLMediaElement[] = [];
    for (const el of candidates) {
      const stream = el.srcObject as MediaStream | null;
      if (!stream?.getTracks().includes(track)) continue;
      el.pause();
      el.srcObject = null;
      this.attached.delete(el);
      detached.push(el);
    }
    return detached;
  }

  /** Plays every attached element that the browser held back; call it from a click or a tap. */
  async startAudio(): Promise<void> {
    const held = [...this.attached].filter((el) => el.paused && el.srcObject);
    try {
      await Promise.all(held.map((el) => el.play()));
    } catch (error) {
      this.setCanPlay(false);
      throw captureError(error, 'audio output');
    }
    this.setCanPlay(true);
  }

  /** Sends every attached element's sound to an audio output of listDevices('audiooutput'). */
  async setAudioOutput(deviceId: string): Promise<void> {
    const probe = (globalThis as { HTMLMediaElement?: { prototype: SinkElement } }).HTMLMediaElement?.prototype;
    if (!probe || typeof probe.setSinkId !== 'function') throw new GatewayError(ErrorCode.UNSUPPORTED, 'this browser cannot choose where sound plays');
    // Checked even with nothing attached yet: a wrong id would fail only at the first sound.
    if (deviceId !== '' && !(await listDevices('audiooutput')).some((d) => d.deviceId === deviceId)) {
      throw new GatewayError(ErrorCode.DEVICE_NOT_FOUND, 'no such audio output');
    }
    for (const el of this.attached) await this.applySink(el, deviceId);
    this.sinkId = deviceId;
  }

  /** Every element is let go (the room is over). */
  clear(): void {
    for (const el of this.attached) {
      el.pause();
      el.srcObject = null;
    }
    this.attached.clear();
  }

  private async applySink(element: SinkElement, deviceId: string): Promise<void> {
    if (typeof element.setSinkId !== 'function') return;
    try {
      await element.setSinkId(deviceId);
    } catch (error) {
      throw captureError(error, 'audio output');
    }
  }

  private play(element: HTMLMediaElement): void {
    const playing = element.play?.();
    if (!playing) return;
    playing.then(
      () => {
        if (!element.muted) this.setCanPlay(true);
      },
      (error: unknown) => {
        // Autoplay policy: sound waits for a user gesture (startAudio()); muted video plays anyway.
        if ((error as { name?: string }).name === 'NotAllowedError' && !element.muted) this.setCanPlay(false);
      },
    );
  }

  private setCanPlay(can: boolean): void {
    if (this.canPlayAudio === can) return;
    this.canPlayAudio = can;
    this.emit('audioPlaybackChanged', can);
  }
}
