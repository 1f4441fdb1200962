import { afterEach, describe, expect, it, vi } from 'vitest';
import type { types } from 'mediasoup-client';
import { ErrorCode, GatewayError } from '../errors.js';
import { fakeElement, fakeViewEnvironment } from '../testing/fakeViews.js';
import { remoteAgent } from '../testing/roomHelpers.js';
import type { TrackEvent } from '../types.js';
import { Subscriber, type SubscriberContext } from './Subscriber.js';
import { HIDE_DELAY_MS, RESIZE_DEBOUNCE_MS } from './VideoViews.js';

const camera = (producerId: string) => ({ producerId, source: 'camera', kind: 'video', paused: false });

/** A receive transport and a server that answer every consume, unless `refuse` says otherwise. */
function setup(extra: Partial<SubscriberContext> = {}) {
  const consumers: Array<{ id: string; closed: boolean; pause: () => void; resume: () => void }> = [];
  const transport = {
    id: 'TR_recv',
    consume: vi.fn(async ({ id, kind }: { id: string; kind: string }) => {
      const consumer = {
        id,
        kind,
        closed: false,
        track: { id: `track-${id}` },
        rtpParameters: { encodings: [{ scalabilityMode: 'L3T3' }] },
        close: () => void (consumer.closed = true),
        pause: vi.fn(),
        resume: vi.fn(),
      };
      consumers.push(consumer);
      return consumer;
    }),
  };
  const refuse = new Map<string, GatewayError>();
  const request = vi.fn(async (method: string, params: { producerId?: string }) => {
    const refusal = params.producerId && refuse.get(params.producerId);
    if (method === 'consume' && refusal) throw refusal;
    return method === 'consume' ? { consumerId: `CO_${params.producerId}`, producerId: params.producerId, kind: 'video', rtpParameters: {} } : {};
  });
  const participant = remoteAgent();
  const events: string[] = [];
  const context = {
    signaling: { request, state: 'connected' },
    isClosed: () => false,
    recvTransport: () => transport as unknown as types.Transport,
    recvRtpCapabilities: () => ({ codecs: [] }),
    participant: (id: string) => (id === participant.id ? participant : undefined),
    emit: (event: string, e: TrackEvent) => void events.push(`${event}:${e.participant.id}:${e.source}`),
    adaptiveStream: false,
    ...extra,
  };
  return { subscriber: new Subscriber(context as unknown as SubscriberContext), transport, consumers, refuse, request, participant, events };
}

describe('Subscriber', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('consumes a remote track, resumes it on the server, and tells the app', async () => {
    const { subscriber, request, participant, consumers, events } = setup();
    subscriber.add('PA_a', camera('PR_1'));
    await subscriber.pump();
    expect(request.mock.calls.map(([method]) => method)).toEqual(['consume', 'resumeConsumer']);
    expect(events).toEqual(['track:PA_a:camera']);
    expect(participant.tracks.get('camera')).toBe((consumers[0] as unknown as { track: MediaStreamTrack }).track);
    // Known already: nothing asked again.
    subscriber.add('PA_a', camera('PR_1'));
    await subscriber.pump();
    expect(request).toHaveBeenCalledTimes(2);
  });

  it('follows the sender pausing and resuming, and ends the track when it is dropped', async () => {
    const { subscriber, participant, consumers, events } = setup();
    subscriber.add('PA_a', camera('PR_1'));
    await subscriber.pump();
    subscriber.setPaused('PR_1', true);
    subscriber.setPaused('PR_1', true);
    subscriber.setPaused('PR_1', false);
    expect(consumers[0]!.pause).toHaveBeenCalledTimes(1);
    expect(consumers[0]!.resume).toHaveBeenCalledTimes(1);
    subscriber.dropTracksOf('PA_a', new Set(['PR_1']));
    expect(consumers[0]!.closed).toBe(false);
    subscriber.dropTracksOf('PA_a');
    expect(consumers[0]!.closed).toBe(true);
    expect(participant.tracks.size).toBe(0);
    expect(events).toEqual(['track:PA_a:camera', 'trackMuted:PA_a:camera', 'trackPaused:PA_a:camera', 'trackUnmuted:PA_a:camera', 'trackResumed:PA_a:camera', 'trackEnded:PA_a:camera']);
  });

  it('shows a track muted before it is received in its publication, receives it paused, and announces the unmute', async () => {
    const { subscriber, participant, consumers, request, events } = setup();
    subscriber.add('PA_a', { ...camera('PR_1'), paused: true });
    const publication = participant.publications.get('camera')!;
    expect(publication).toMatchObject({ source: 'camera', kind: 'video', muted: true, track: undefined });
    await subscriber.pump();
    expect(consumers[0]!.pause).toHaveBeenCalledTimes(1);
    expect(publication.track).toBe(participant.tracks.get('camera'));
    // A snapshot after a resume that says it is unmuted now: the same consumer goes on.
    subscriber.add('PA_a', { ...camera('PR_1'), paused: false });
    expect(publication.muted).toBe(false);
    expect(consumers[0]!.resume).toHaveBeenCalledTimes(1);
    expect(request.mock.calls.filter(([method]) => method === 'consume')).toHaveLength(1);
    expect(events).toEqual(['track:PA_a:camera', 'trackUnmuted:PA_a:camera', 'trackResumed:PA_a:camera']);
    subscriber.drop('PR_1');
    expect(participant.publications.size).toBe(0);
    expect(publication.track).toBeUndefined();
  });

  it('receives again on a new transport what the old one carried', async () => {
    const { subscriber, transport, events } = setup();
    subscriber.add('PA_a', camera('PR_1'));
    await subscriber.pump();
    subscriber.detachAll();
    await subscriber.pump();
    expect(transport.consume).toHaveBeenCalledTimes(2);
    expect(events).toEqual(['track:PA_a:camera', 'trackEnded:PA_a:camera', 'track:PA_a:camera']);
  });

  it('forgets a producer that closed meanwhile, and does not retry one it cannot receive', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { subscriber, refuse, request, events } = setup();
    refuse.set('PR_gone', new GatewayError(ErrorCode.NOT_FOUND, 'no such producer'));
    refuse.set('PR_odd', new GatewayError(ErrorCode.BAD_REQUEST, 'cannot consume'));
    subscriber.add('PA_a', camera('PR_gone'));
    subscriber.add('PA_a', { ...camera('PR_odd'), source: 'screen' });
    subscriber.add('PA_a', { ...camera('PR_ok'), source: 'microphone', kind: 'audio' });
    await subscriber.pump();
    await subscriber.pump();
    expect(request.mock.calls.filter(([method]) => method === 'consume').map(([, params]) => params.producerId)).toEqual(['PR_gone', 'PR_odd', 'PR_ok']);
    expect(events).toEqual(['track:PA_a:microphone']);
  });

  it('stops at a cut connection, to go on when pumped again', async () => {
    const { subscriber, refuse, events } = setup();
    refuse.set('PR_1', new GatewayError(ErrorCode.CONNECTION_CLOSED, 'cut'));
    subscriber.add('PA_a', camera('PR_1'));
    subscriber.add('PA_a', { ...camera('PR_2'), source: 'screen' });
    await subscriber.pump();
    expect(events).toEqual([]);
    refuse.clear();
    await subscriber.pump();
    expect(events).toEqual(['track:PA_a:camera', 'track:PA_a:screen']);
  });

  describe('adaptive stream', () => {
    afterEach(() => {
      vi.useRealTimers();
      vi.unstubAllGlobals();
    });

    /** A received camera attached to an element; `asked()` is what the server was asked about the consumer since. */
    async function attached(width: number, height: number) {
      vi.useFakeTimers();
      vi.stubGlobal(
        'MediaStream',
        class {
          constructor(private readonly tracks: unknown[]) {}
          getTracks() {
            return this.tracks;
          }
        },
      );
      const browser = fakeViewEnvironment();
      const parts = setup({ adaptiveStream: true, viewEnvironment: browser.env });
      parts.subscriber.add('PA_a', camera('PR_1'));
      await parts.subscriber.pump();
      const publication = parts.participant.publications.get('camera') as unknown as import('../types.js').RemoteTrackPublication;
      const element = fakeElement(width, height);
      const from = parts.request.mock.calls.length;
      const asked = () => parts.request.mock.calls.slice(from).map(([method, params]) => (method === 'setPreferredLayers' ? `layers:${(params as { spatialLayer: number }).spatialLayer}` : method));
      const settle = async (ms = 0) => {
        await vi.advanceTimersByTimeAsync(ms);
        await publication.setEnabled(publication.enabled);
      };
      publication.attach(element);
      await settle();
      return { ...parts, browser, publication, element, asked, settle };
    }

    it('asks for the layer that fits the element, and again when it has been resized', async () => {
      const { browser, element, asked, settle } = await attached(320, 180);
      expect(element.srcObject).toBeTruthy();
      expect(asked()).toEqual(['layers:0']);
      browser.resize(element, 1280, 720);
      browser.resize(element, 1260, 700);
      browser.resize(element, 1280, 720);
      await settle(RESIZE_DEBOUNCE_MS);
      expect(asked()).toEqual(['layers:0', 'layers:2']);
      // A size within the same layer asks nothing.
      browser.resize(element, 1200, 675);
      await settle(RESIZE_DEBOUNCE_MS);
      expect(asked()).toEqual(['layers:0', 'layers:2']);
    });

    it('pauses a video nobody can see, after a delay, and resumes it at once when it shows', async () => {
      const { browser, element, asked, settle } = await attached(320, 180);
      browser.scroll(element, false);
      await settle(HIDE_DELAY_MS - 10);
      expect(asked()).toEqual(['layers:0']);
      await settle(10);
      expect(asked()).toEqual(['layers:0', 'pauseConsumer']);
      browser.scroll(element, true);
      await settle();
      expect(asked()).toEqual(['layers:0', 'pauseConsumer', 'resumeConsumer']);
      // The page hidden counts too; detaching the last element as well.
      browser.setPageHidden(true);
      await settle(HIDE_DELAY_MS);
      browser.setPageHidden(false);
      await settle();
      expect(asked().slice(3)).toEqual(['pauseConsumer', 'resumeConsumer']);
    });

    it("puts the app's choice over the element's, and its setEnabled(false) over everything", async () => {
      const { publication, asked, browser, element, settle } = await attached(320, 180);
      await publication.setVideoQuality('high');
      browser.resize(element, 160, 90);
      await settle(RESIZE_DEBOUNCE_MS);
      await publication.setEnabled(false);
      await publication.setEnabled(false);
      expect(asked()).toEqual(['layers:0', 'layers:2', 'pauseConsumer']);
      await publication.setEnabled(true);
      // Back to adaptive stream: the element's layer.
      await publication.setPreferredLayers(undefined);
      expect(asked()).toEqual(['layers:0', 'layers:2', 'pauseConsumer', 'resumeConsumer', 'layers:0']);
    });

    it('leaves a video the app shows on its own (no attach) as it is', async () => {
      vi.useFakeTimers();
      const { subscriber, request } = setup({ adaptiveStream: true, viewEnvironment: fakeViewEnvironment().env });
      subscriber.add('PA_a', camera('PR_1'));
      await subscriber.pump();
      await vi.advanceTimersByTimeAsync(HIDE_DELAY_MS * 2);
      expect(request.mock.calls.map(([method]) => method)).toEqual(['consume', 'resumeConsumer']);
    });
  });
});
