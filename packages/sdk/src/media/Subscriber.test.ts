import { afterEach, describe, expect, it, vi } from 'vitest';
import type { types } from 'mediasoup-client';
import { ErrorCode, GatewayError } from '../errors.js';
import { remoteAgent } from '../testing/roomHelpers.js';
import type { TrackEvent } from '../types.js';
import { Subscriber, type SubscriberContext } from './Subscriber.js';

const camera = (producerId: string) => ({ producerId, source: 'camera', kind: 'video', paused: false });

/** A receive transport and a server that answer every consume, unless `refuse` says otherwise. */
function setup() {
  const consumers: Array<{ id: string; closed: boolean; pause: () => void; resume: () => void }> = [];
  const transport = {
    id: 'TR_recv',
    consume: vi.fn(async ({ id, kind }: { id: string; kind: string }) => {
      const consumer = { id, kind, closed: false, track: { id: `track-${id}` }, close: () => void (consumer.closed = true), pause: vi.fn(), resume: vi.fn() };
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
});
