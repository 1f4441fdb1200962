import type { CaptureOptions, PublishOptions, RemoteSource, Source } from '../types.js';
import { captureScreen, captureUserMedia } from './capture.js';

/**
 * What the SDK captures itself for publishing: how each source is captured (as the app last
 * asked), and which tracks it opened, since those, and only those, are the SDK's to stop (a
 * track the app gave stays the app's).
 */
export class LocalCapture {
  /** Tracks the SDK captured itself, and therefore stops. */
  private readonly owned = new WeakSet<MediaStreamTrack>();
  /** How to capture each source, as set by setEnabled() and switchDevice(). */
  private readonly options = new Map<Source, CaptureOptions>();

  /** Whether the SDK captured the track (and so stops it when it is no longer published). */
  owns(track: MediaStreamTrack): boolean {
    return this.owned.has(track);
  }

  /** Stops the track if the SDK captured it; the app's own tracks are left running. */
  release(track: MediaStreamTrack): void {
    if (this.owned.has(track)) track.stop();
  }

  setOptions(source: Source, options: CaptureOptions): void {
    this.options.set(source, options);
  }

  /**
   * Merges a device choice into the source's capture options and returns what undoes it (for
   * a switch whose new device fails). A device id chosen now replaces a facing mode chosen
   * before, and the other way round.
   */
  chooseDevice(source: Source, choice: CaptureOptions): () => void {
    const previous = this.options.get(source);
    const merged: CaptureOptions = { ...previous, ...choice };
    if (choice.facingMode && !choice.deviceId) delete merged.deviceId;
    if (choice.deviceId) delete merged.facingMode;
    this.options.set(source, merged);
    return () => {
      if (previous) this.options.set(source, previous);
      else this.options.delete(source);
    };
  }

  /**
   * The tracks to publish: those given, and captures of the sources set to `true` that have no
   * live track (`published` says which have one), or all of them, with `always`.
   */
  async tracksFor(options: PublishOptions, sources: Source[], published: (source: Source) => boolean, always = false): Promise<Array<[RemoteSource, MediaStreamTrack]>> {
    const out: Array<[RemoteSource, MediaStreamTrack]> = [];
    const capture = (s: Source) => options[s] === true && (always || !published(s));
    if (capture('camera') || capture('microphone')) {
      const how = { camera: this.options.get('camera'), microphone: this.options.get('microphone') };
      const captured = await captureUserMedia({ camera: capture('camera'), microphone: capture('microphone') }, how);
      for (const source of ['camera', 'microphone'] as const) {
        const track = captured[source];
        if (track) this.owned.add(track);
        if (track) out.push([source, track]);
      }
    }
    if (capture('screen')) {
      const { video, audio } = await captureScreen(this.options.get('screen'));
      this.owned.add(video);
      out.push(['screen', video]);
      if (audio) {
        this.owned.add(audio);
        out.push(['screen_audio', audio]);
      }
    }
    for (const source of sources) {
      const given = options[source];
      if (typeof given === 'object') out.push([source, given]);
    }
    if (options.screenAudio) out.push(['screen_audio', options.screenAudio]);
    return out;
  }

  /** Captures one source afresh, whatever is published for it (a device switch, an unmute of a stopped camera). */
  async recapture(source: Source): Promise<MediaStreamTrack | undefined> {
    return (await this.tracksFor({ [source]: true }, [source], () => false, true))[0]?.[1];
  }
}
