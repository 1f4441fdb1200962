import { afterEach, describe, expect, it, vi } from 'vitest';
import type { types } from 'mediasoup-client';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import { ErrorCode, GatewayError } from '../errors.js';
import type { Grants, LocalTrackEvent } from '../types.js';
import { Publisher, type PublisherContext } from './Publisher.js';

const camera = () => new FakeMediaStreamTrack({ kind: 'video', settings: { width: 1280, height: 720 } }) as unknown as MediaStreamTrack;
const microphone = () => new FakeMediaStreamTrack({ kind: 'audio' }) as unknown as MediaStreamTrack;
const grants: Grants = { canPublish: true, canSubscribe: true, sources: ['camera', 'microphone'], canRecord: false };

/** A send transport whose producers are named after their source and a counter. */
function setup() {
  let produced = 0;
  const producers: Array<{ id: string; closed: boolean; paused: boolean; replaceTrack: ReturnType<typeof vi.fn> }> = [];
  const transport = {
    produce: vi.fn(async ({ appData }: { appData: { source: string } }) => {
      const producer = {
        id: `PR_${appData.source}_${++produced}`,
        closed: false,
        paused: false,
        close: () => void (producer.closed = true),
        on: () => undefined,
        observer: { once: () => undefined },
        replaceTrack: vi.fn(async (_: { track: MediaStreamTrack | null }) => undefined),
        pause: () => void (producer.paused = true),
        resume: () => void (producer.paused = false),
      };
      producers.push(producer);
      return producer;
    }),
  };
  const request = vi.fn(async (_method: string, _params: Record<string, unknown>) => ({}));
  const signaling = { request, whenConnected: async () => undefined, state: 'connected' };
  const events: string[] = [];
  const context = {
    signaling,
    sendTransport: () => transport as unknown as types.Transport,
    localParticipant: () => ({ id: 'PA_me', isLocal: true }),
    emit: (event: string, { source }: LocalTrackEvent) => void events.push(`${event}:${source}`),
  };
  return { publisher: new Publisher(context as unknown as PublisherContext), transport, producers, request, signaling, events };
}

describe('Publisher', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('refuses what the token does not allow, and tracks of the wrong kind, before capturing anything', async () => {
    const { publisher, transport } = setup();
    await expect(publisher.publish({ camera: camera() }, { ...grants, sources: ['microphone'] })).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(publisher.publish({ microphone: microphone() }, { ...grants, canPublish: false })).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(publisher.publish({ camera: microphone() }, grants)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    expect(transport.produce).not.toHaveBeenCalled();
    expect(publisher.localTracks.size).toBe(0);
  });

  it('publishes each source once, and replaces the track of a source published again', async () => {
    const { publisher, transport, events } = setup();
    const first = camera();
    await publisher.publish({ camera: first, microphone: microphone() }, grants);
    await publisher.publish({ camera: first }, grants);
    expect(transport.produce).toHaveBeenCalledTimes(2);
    const second = camera();
    await publisher.publish({ camera: second }, grants);
    expect(transport.produce).toHaveBeenCalledTimes(2);
    expect(publisher.localTracks.get('camera')).toBe(second);
    expect(events).toEqual(['localTrackPublished:microphone', 'localTrackPublished:camera', 'localTrackUnpublished:camera', 'localTrackPublished:camera']);
  });

  it('closes the producer on the server when unpublishing while connected, not while away', async () => {
    const { publisher, request, signaling, events } = setup();
    await publisher.publish({ camera: camera(), microphone: microphone() }, grants);
    await publisher.unpublish('camera');
    expect(request).toHaveBeenCalledWith('closeProducer', { producerId: 'PR_camera_2' });
    signaling.state = 'reconnecting';
    await publisher.unpublish('microphone');
    expect(request).toHaveBeenCalledTimes(1);
    expect(events.slice(2)).toEqual(['localTrackUnpublished:camera', 'localTrackUnpublished:microphone']);
  });

  it('reconciles with the server: closes producers not ours, publishes again what it lost, gives up on ended tracks', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { publisher, transport, request, events } = setup();
    const mic = microphone();
    await publisher.publish({ camera: camera(), microphone: mic }, grants);
    // A rejoin: the new session has a producer we do not know, and none of ours.
    publisher.forgetProducers();
    mic.stop();
    await publisher.reconcile([{ producerId: 'PR_stranger', source: 'camera', kind: 'video', paused: false }]);
    expect(request.mock.calls.map(([method, params]) => `${method}:${String(params.producerId)}`)).toEqual(['closeProducer:PR_stranger']);
    expect(transport.produce).toHaveBeenCalledTimes(3);
    expect(transport.produce.mock.calls[2]![0].appData.source).toBe('camera');
    expect([...publisher.localTracks.keys()]).toEqual(['camera']);
    expect(events.slice(2)).toEqual(['localTrackUnpublished:microphone']);
  });

  it('keeps the producers the server still has', async () => {
    const { publisher, transport, producers } = setup();
    await publisher.publish({ camera: camera() }, grants);
    await publisher.reconcile([{ producerId: producers[0]!.id, source: 'camera', kind: 'video', paused: false }]);
    expect(transport.produce).toHaveBeenCalledTimes(1);
    expect(producers[0]!.closed).toBe(false);
  });

  it('mutes a track the app gave without stopping it, and undoes a mute the server refused', async () => {
    const { publisher, request, producers, events } = setup();
    const given = camera();
    await publisher.publish({ camera: given }, grants);
    await publisher.setMuted('camera', true);
    // Not the SDK's capture: paused and left running (the app owns it).
    expect(given.readyState).toBe('live');
    expect(producers[0]!.paused).toBe(true);
    expect(producers[0]!.replaceTrack).not.toHaveBeenCalled();
    expect(publisher.publications.get('camera')).toMatchObject({ muted: true, track: given, trackId: producers[0]!.id });
    request.mockRejectedValueOnce(new GatewayError(ErrorCode.INVALID_STATE, 'no'));
    await expect(publisher.setMuted('camera', false)).rejects.toMatchObject({ code: 'INVALID_STATE' });
    expect(producers[0]!.paused).toBe(true);
    expect(publisher.publications.get('camera')!.muted).toBe(true);
    expect(events).toEqual(['localTrackPublished:camera', 'trackMuted:camera']);
  });

  it('runs mutes one after another, in the order asked, and tells the server only once connected', async () => {
    const { publisher, request, signaling, producers } = setup();
    await publisher.publish({ microphone: microphone() }, grants);
    await Promise.all([publisher.setMuted('microphone', true), publisher.setMuted('microphone', false), publisher.setMuted('microphone', true)]);
    expect(request.mock.calls.map(([method]) => method)).toEqual(['pauseProducer', 'resumeProducer', 'pauseProducer']);
    signaling.state = 'reconnecting';
    await publisher.setMuted('microphone', false);
    expect(request).toHaveBeenCalledTimes(3);
    expect(producers[0]!.paused).toBe(false);
    // The reconciliation after the resume tells the server what it missed.
    signaling.state = 'connected';
    await publisher.reconcile([{ producerId: producers[0]!.id, source: 'microphone', kind: 'audio', paused: true }]);
    expect(request.mock.calls.at(-1)).toEqual(['resumeProducer', { producerId: producers[0]!.id }]);
  });
});
