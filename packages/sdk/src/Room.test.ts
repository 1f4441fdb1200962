import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket from 'ws';
import { FakeHandler } from 'mediasoup-client';
import * as fakeParameters from 'mediasoup-client/fakeParameters';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import { DISABLE_DELAY_MS } from './media/Dynacast.js';
import { Room } from './Room.js';
import type { WebSocketConstructor } from './signaling/Socket.js';
import { FakeSignaling, agent, type Frame } from './testing/FakeSignaling.js';
import { cameraTrack, connectOptions, micTrack, record, until } from './testing/roomHelpers.js';
import type { ConnectOptions } from './types.js';

// Chat and Smart Actions through the room are tested in chat/ and smartActions/.
describe('Room', () => {
  let server: FakeSignaling;
  let room: Room | undefined;
  afterEach(async () => {
    vi.useRealTimers();
    await room?.leave();
    await server?.stop();
    room = undefined;
    vi.unstubAllGlobals();
  });

  /** A browser's getUserMedia, handing out fake tracks; `captured` lists them in order. */
  function fakeCapture() {
    const captured: MediaStreamTrack[] = [];
    const getUserMedia = vi.fn(async (constraints: { audio: unknown; video: unknown }) => {
      const video = constraints.video ? [cameraTrack()] : [];
      const audio = constraints.audio ? [micTrack()] : [];
      captured.push(...video, ...audio);
      return { getVideoTracks: () => video, getAudioTracks: () => audio };
    });
    vi.stubGlobal('navigator', { mediaDevices: { getUserMedia } });
    return { getUserMedia, captured };
  }

  /** Mute events as short strings, the local participant as "me". */
  function recordMutes(r: Room): string[] {
    const out: string[] = [];
    const who = (p: { id: string; isLocal: boolean }) => (p.isLocal ? 'me' : p.id);
    r.on('trackMuted', (e) => out.push(`muted:${who(e.participant)}:${e.source}:${e.publication.muted}`));
    r.on('trackUnmuted', (e) => out.push(`unmuted:${who(e.participant)}:${e.source}:${e.publication.muted}`));
    return out;
  }

  async function connect(extra: Partial<ConnectOptions> = {}): Promise<{ room: Room; events: string[] }> {
    room = await Room.connect(connectOptions(server, extra));
    return { room, events: record(room) };
  }

  it('announces who is already there after connect resolves, and receives their tracks', async () => {
    server = await FakeSignaling.start();
    server.others.set(
      'PA_a',
      agent('PA_a', [
        { producerId: 'PR_cam', source: 'camera', kind: 'video' },
        { producerId: 'PR_mic', source: 'microphone', kind: 'audio' },
      ]),
    );
    const { room, events } = await connect();
    expect(room.participants.size).toBe(0);
    await until(() => events.length === 3, 'participant and tracks');
    expect(events).toEqual(['joined:PA_a', 'track:PA_a:camera', 'track:PA_a:microphone']);
    expect(room.participants.get('PA_a')!.tracks.get('camera')!.kind).toBe('video');
    expect(server.methods()).toEqual(['join', 'createTransport', 'createTransport', 'consume', 'connectTransport', 'resumeConsumer', 'consume', 'resumeConsumer']);
    const consume = server.log.find((l) => l.method === 'consume')!.params;
    expect(consume.rtpCapabilities.codecs.length).toBeGreaterThan(0);
    // The receive transport (send is TR_2, made first).
    expect(consume.transportId).toBe('TR_3');
  });

  it('holds received video at the server while the page is hidden, when asked; leaves when the page goes for good', async () => {
    const listeners = new Map<string, () => void>();
    const page = { visibilityState: 'visible', addEventListener: (type: string, l: () => void) => listeners.set(type, l), removeEventListener: (type: string) => listeners.delete(type) };
    const windowListeners = new Map<string, (event: { persisted: boolean }) => void>();
    vi.stubGlobal('document', page);
    vi.stubGlobal('addEventListener', (type: string, l: (event: { persisted: boolean }) => void) => windowListeners.set(type, l));
    vi.stubGlobal('removeEventListener', (type: string) => windowListeners.delete(type));
    server = await FakeSignaling.start();
    server.others.set(
      'PA_a',
      agent('PA_a', [
        { producerId: 'PR_cam', source: 'camera', kind: 'video' },
        { producerId: 'PR_mic', source: 'microphone', kind: 'audio' },
      ]),
    );
    const { room: r, events } = await connect({ pauseVideoWhenHidden: true });
    await until(() => events.length === 3, 'participant and tracks');
    const consumerOf = (producerId: string) => server.log.filter((l) => l.method === 'consume').findIndex((l) => l.params.producerId === producerId);
    const consumerIds = server.log.filter((l) => l.method === 'resumeConsumer').map((l) => l.params.consumerId);
    const videoConsumer = consumerIds[consumerOf('PR_cam')];
    const held = () => server.log.filter((l) => l.method === 'pauseConsumer' || l.method === 'resumeConsumer').map((l) => `${l.method}:${l.params.consumerId === videoConsumer ? 'video' : 'audio'}`);

    page.visibilityState = 'hidden';
    listeners.get('visibilitychange')!();
    await until(() => held().includes('pauseConsumer:video'), 'the video held');
    page.visibilityState = 'visible';
    listeners.get('visibilitychange')!();
    await until(() => held().filter((h) => h === 'resumeConsumer:video').length === 2, 'the video released');
    // Sound was never held.
    expect(held()).toEqual(['resumeConsumer:video', 'resumeConsumer:audio', 'pauseConsumer:video', 'resumeConsumer:video']);

    // Into the back-forward cache: still here. Closed: left at once.
    windowListeners.get('pagehide')!({ persisted: true });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.methods()).not.toContain('leave');
    windowListeners.get('pagehide')!({ persisted: false });
    await until(() => server.methods().includes('leave'), 'left');
    expect(r.state).toBe('disconnected');
    // Listeners go with the room.
    await until(() => !listeners.has('visibilitychange') && !windowListeners.has('pagehide'), 'listeners removed');
    room = undefined;
  });

  it('follows notifications: joins, new producers, closed producers, leaves', async () => {
    server = await FakeSignaling.start();
    const { events } = await connect();
    await new Promise((r) => setTimeout(r, 20));
    const a = agent('PA_a');
    server.others.set('PA_a', a);
    server.notify({ participantJoined: a });
    const track = { producerId: 'PR_x', source: 'screen', kind: 'video' };
    a.tracks.push(track);
    server.notify({ producerAdded: { participantId: 'PA_a', track } });
    await until(() => events.includes('track:PA_a:screen'), 'the screen track');
    server.notify({ producerClosed: { participantId: 'PA_a', producerId: 'PR_x' } });
    server.notify({ participantLeft: { participantId: 'PA_a', reason: 'left' } });
    await until(() => events.includes('left:PA_a'), 'the leave');
    expect(events).toEqual(['joined:PA_a', 'track:PA_a:screen', 'trackEnded:PA_a:screen', 'left:PA_a']);
  });

  it('reports the recording: at connect when already recorded, then every change, and when it started', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a'));
    server.recording = { recordingId: 'RC_0', state: 'paused', by: 'PA_a' };
    const room = await Room.connect({
      url: server.url,
      token: 'jwt',
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      handlerFactory: FakeHandler.createFactory(fakeParameters),
    });
    const seen: string[] = [];
    room.on('recording', (e) => seen.push(`${e.recordingId}:${e.state}:${e.by?.id ?? 'system'}`));
    await until(() => seen.length === 1, 'the recording at connect');
    expect(seen).toEqual(['RC_0:paused:PA_a']);
    server.notify({ recording: { recordingId: 'RC_0', state: 'stopped' } });
    await until(() => seen.length === 2, 'the stop');
    const started = await room.startRecording();
    expect(started).toMatchObject({ recordingId: 'RC_1', state: 'started' });
    expect(started.by).toBe(room.localParticipant);
    await until(() => seen.length === 3, 'the start notification');
    expect(seen).toEqual(['RC_0:paused:PA_a', 'RC_0:stopped:system', `RC_1:started:${room.localParticipant.id}`]);
    expect(room.recording?.state).toBe('started');
    await room.leave();
  });

  it('publishes the camera with three simulcast layers, the screen alone, and unpublishes a screen share that ends', async () => {
    server = await FakeSignaling.start();
    const { room, events } = await connect();
    const screen = new FakeMediaStreamTrack({ kind: 'video' });
    await room.publish({ camera: cameraTrack(), microphone: micTrack(), screen: screen as unknown as MediaStreamTrack });
    const produced = server.log.filter((l) => l.method === 'produce').map((l) => l.params);
    expect(produced.map((p) => p.source)).toEqual(['microphone', 'camera', 'screen']);
    expect(produced[1].rtpParameters.encodings.map((e: Frame) => e.scaleResolutionDownBy)).toEqual([4, 2, 1]);
    expect(produced[2].rtpParameters.encodings).toHaveLength(1);
    expect(screen.contentHint).toBe('detail');
    expect([...room.localTracks.keys()]).toEqual(['microphone', 'camera', 'screen']);
    // The user presses the browser's "Stop sharing".
    screen.remoteStop();
    await until(() => events.includes('unpublished:screen'), 'the screen unpublished');
    await until(() => server.methods().includes('closeProducer'), 'closeProducer');
    expect(room.localTracks.has('screen')).toBe(false);
  });

  it("shares the screen's sound with the screen when asked, as screen_audio, and ends it with the screen share", async () => {
    server = await FakeSignaling.start();
    const video = new FakeMediaStreamTrack({ kind: 'video' });
    const audio = new FakeMediaStreamTrack({ kind: 'audio' });
    const getDisplayMedia = vi.fn(async () => ({ getVideoTracks: () => [video], getAudioTracks: () => [audio] }));
    vi.stubGlobal('navigator', { mediaDevices: { getDisplayMedia } });
    const { room, events } = await connect();
    await room.setScreenShareEnabled(true, { audio: true });
    expect(getDisplayMedia.mock.calls[0]).toEqual([expect.objectContaining({ audio: true })]);
    const produced = server.log.filter((l) => l.method === 'produce').map((l) => l.params);
    expect(produced.map((p) => [p.source, p.kind])).toEqual([
      ['screen', 'video'],
      ['screen_audio', 'audio'],
    ]);
    expect([...room.localTracks.keys()]).toEqual(['screen', 'screen_audio']);
    // The user stops sharing: both go, and the sound the SDK captured is stopped.
    video.remoteStop();
    await until(() => events.includes('unpublished:screen_audio'), 'the screen audio unpublished');
    expect(room.localTracks.size).toBe(0);
    expect(audio.readyState).toBe('ended');
    expect(server.log.filter((l) => l.method === 'closeProducer')).toHaveLength(2);
    // An audio track of the app's own goes with a screen share only, under the screen grant.
    await expect(room.publish({ screenAudio: new FakeMediaStreamTrack({ kind: 'audio' }) as unknown as MediaStreamTrack })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    await room.leave();
  });

  it('mutes without unpublishing: the same producer paused and resumed, the camera stopped and captured again', async () => {
    server = await FakeSignaling.start();
    const { getUserMedia, captured } = fakeCapture();
    const { room, events } = await connect();
    const mutes = recordMutes(room);
    await room.setMicrophoneEnabled(true);
    await room.setCameraEnabled(true, { deviceId: 'cam-2' });
    expect(getUserMedia.mock.calls[1]![0].video).toMatchObject({ deviceId: { exact: 'cam-2' } });
    const onServer = () => server.tracksOf(room.localParticipant.id).map((t) => `${t.source}:${t.producerId}:${t.paused ? 'paused' : 'live'}`);
    const published = onServer();
    expect(published).toEqual([expect.stringMatching(/^microphone:PR_\d+:live$/), expect.stringMatching(/^camera:PR_\d+:live$/)]);
    const [mic, firstCamera] = captured as [MediaStreamTrack, MediaStreamTrack];

    await room.setCameraEnabled(false);
    await room.setMicrophoneEnabled(false);
    expect(onServer()).toEqual(published.map((t) => t.replace('live', 'paused')));
    // The camera light goes off; the microphone is only silenced.
    expect(firstCamera.readyState).toBe('ended');
    expect(mic.readyState).toBe('live');
    expect(mic.enabled).toBe(false);
    expect(room.localPublications.get('camera')).toMatchObject({ source: 'camera', kind: 'video', muted: true, track: undefined });
    expect(room.localParticipant.publications.get('microphone')).toMatchObject({ muted: true, track: mic });
    expect(room.localTracks.has('camera')).toBe(false);
    // Disabling again changes nothing.
    await room.setCameraEnabled(false);

    await room.setCameraEnabled(true);
    await room.unmuteTrack('microphone');
    expect(onServer()).toEqual(published);
    const secondCamera = room.localTracks.get('camera')!;
    expect(secondCamera).not.toBe(firstCamera);
    expect(secondCamera.readyState).toBe('live');
    expect(room.localPublications.get('camera')!.track).toBe(secondCamera);
    expect(room.localPublications.get('camera')!.trackId).toBe(published[1]!.split(':')[1]);
    expect(mic.enabled).toBe(true);
    expect(getUserMedia).toHaveBeenCalledTimes(3);
    const methods = server.methods().filter((m) => /Producer|produce/.test(m));
    expect(methods).toEqual(['produce', 'produce', 'pauseProducer', 'pauseProducer', 'resumeProducer', 'resumeProducer']);
    expect(mutes).toEqual(['muted:me:camera:true', 'muted:me:microphone:true', 'unmuted:me:camera:false', 'unmuted:me:microphone:false']);
    expect(events).toEqual(['published:microphone', 'published:camera']);
    await expect(room.muteTrack('screen')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('shows what others mute: their publications say so from the join on, changes are announced, no new track on unmute', async () => {
    server = await FakeSignaling.start();
    server.others.set(
      'PA_a',
      agent('PA_a', [
        { producerId: 'PR_cam', source: 'camera', kind: 'video' },
        { producerId: 'PR_mic', source: 'microphone', kind: 'audio', paused: true },
      ]),
    );
    const { room, events } = await connect();
    const mutes = recordMutes(room);
    await until(() => events.includes('track:PA_a:microphone'), 'the tracks');
    const a = room.participants.get('PA_a')!;
    expect(a.publications.get('microphone')).toMatchObject({ muted: true, kind: 'audio', track: a.tracks.get('microphone') });
    expect(a.publications.get('camera')!.muted).toBe(false);
    const camera = a.tracks.get('camera');
    server.notify({ producerPaused: { participantId: 'PA_a', producerId: 'PR_cam' } });
    server.notify({ producerResumed: { participantId: 'PA_a', producerId: 'PR_mic' } });
    await until(() => mutes.length === 2, 'the mute changes');
    server.notify({ producerResumed: { participantId: 'PA_a', producerId: 'PR_cam' } });
    await until(() => mutes.length === 3, 'the camera back');
    expect(mutes).toEqual(['muted:PA_a:camera:true', 'unmuted:PA_a:microphone:false', 'unmuted:PA_a:camera:false']);
    expect(a.tracks.get('camera')).toBe(camera);
    expect(a.publications.get('camera')!.trackId).toBe('PR_cam');
    expect(server.methods().filter((m) => m === 'consume')).toHaveLength(2);
    expect(events).toEqual(['joined:PA_a', 'track:PA_a:camera', 'track:PA_a:microphone']);
  });

  it('keeps the muted state through a cut connection: told to the server on resume, published paused after a rejoin', async () => {
    server = await FakeSignaling.start();
    fakeCapture();
    const { room, events } = await connect();
    await room.setMicrophoneEnabled(true);
    await room.setCameraEnabled(true);
    const producers = server.tracksOf(room.localParticipant.id).map((t) => t.producerId);
    // Muted while away: the server hears of it once the session is resumed.
    room._debugDropSocket();
    await room.setMicrophoneEnabled(false);
    await until(() => events.includes('reconnected:resumed'), 'the resume');
    expect(server.tracksOf(room.localParticipant.id)).toEqual([
      expect.objectContaining({ producerId: producers[0], source: 'microphone', paused: true }),
      expect.objectContaining({ producerId: producers[1], source: 'camera', paused: false }),
    ]);
    // A rejoin: the microphone is published again, paused from the start; the stopped camera waits for its unmute.
    await room.setCameraEnabled(false);
    server.resumable = false;
    room._debugDropSocket();
    await until(() => events.includes('reconnected:rejoined'), 'the rejoin');
    expect(server.tracksOf(room.localParticipant.id)).toEqual([expect.objectContaining({ source: 'microphone', paused: true })]);
    expect(room.localPublications.get('camera')!.muted).toBe(true);
    await room.setCameraEnabled(true);
    expect(server.tracksOf(room.localParticipant.id).map((t) => `${t.source}:${t.paused}`)).toEqual(['microphone:true', 'camera:false']);
    expect(events.filter((e) => e.startsWith('unpublished'))).toEqual([]);
  });

  it('switches the camera into the same producer; muted, the choice waits for the unmute; a failed switch keeps the camera as it was', async () => {
    server = await FakeSignaling.start();
    const { getUserMedia, captured } = fakeCapture();
    const { room, events } = await connect();
    const switched: string[] = [];
    room.on('activeDeviceChanged', (e) => switched.push(e.kind));
    await room.setCameraEnabled(true);
    const producer = room.localPublications.get('camera')!.trackId;
    await room.switchCamera({ facingMode: 'environment' });
    const videoOf = (call: number) => (getUserMedia.mock.calls[call]![0] as { video: Record<string, unknown> }).video;
    expect(videoOf(1)).toMatchObject({ facingMode: { exact: 'environment' } });
    expect(captured[0]!.readyState).toBe('ended');
    expect(room.localTracks.get('camera')).toBe(captured[1]);
    expect(room.localPublications.get('camera')!.trackId).toBe(producer);
    expect(server.log.filter((l) => l.method === 'produce')).toHaveLength(1);
    expect(switched).toEqual(['videoinput']);

    // Muted (the camera stopped): nothing is captured now; the unmute uses the new choice.
    await room.setCameraEnabled(false);
    await room.switchCamera({ deviceId: 'cam-3' });
    expect(getUserMedia).toHaveBeenCalledTimes(2);
    await room.setCameraEnabled(true);
    expect(videoOf(2)).toMatchObject({ deviceId: { exact: 'cam-3' } });
    expect(videoOf(2).facingMode).toBeUndefined();
    expect(room.localPublications.get('camera')!.trackId).toBe(producer);

    // A device that fails: the error is the device's, and the camera is captured again as it was.
    getUserMedia.mockImplementationOnce(async () => {
      throw Object.assign(new Error('no such camera'), { name: 'OverconstrainedError' });
    });
    await expect(room.switchCamera({ deviceId: 'cam-9' })).rejects.toMatchObject({ code: 'DEVICE_NOT_FOUND' });
    expect(videoOf(4)).toMatchObject({ deviceId: { exact: 'cam-3' } });
    expect(room.localTracks.get('camera')?.readyState).toBe('live');
    expect(room.localPublications.get('camera')!.trackId).toBe(producer);
    expect(events.filter((e) => e.startsWith('unpublished:') && !e.includes('camera'))).toEqual([]);
  });

  it('refuses to enable a source the token does not allow', async () => {
    server = await FakeSignaling.start();
    fakeCapture();
    const { room } = await connect();
    (room as unknown as { granted: { sources: string[] } }).granted.sources = ['microphone'];
    await expect(room.setCameraEnabled(true)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    // Disabling what is not published is no error.
    await room.setCameraEnabled(false);
  });

  it('refuses a track of the wrong kind for its source', async () => {
    server = await FakeSignaling.start();
    const { room } = await connect();
    await expect(room.publish({ camera: micTrack() })).rejects.toMatchObject({ code: 'BAD_REQUEST' });
  });

  it('resumes after the socket drops: resume first, reconciles the room, keeps transports and restarts ICE', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a', [{ producerId: 'PR_a1', source: 'camera', kind: 'video' }]));
    server.others.set('PA_b', agent('PA_b'));
    const { room, events } = await connect();
    await room.publish({ camera: cameraTrack() });
    await until(() => events.includes('track:PA_a:camera'), 'the first track');
    const me = room.localParticipant.id;
    const before = server.log.length;

    // While the socket is away: PA_b leaves, PA_a swaps its camera for a screen share, PA_c arrives.
    room._debugDropSocket();
    server.others.delete('PA_b');
    server.others.get('PA_a')!.tracks = [{ producerId: 'PR_a2', source: 'screen', kind: 'video' }];
    server.others.set('PA_c', agent('PA_c', [{ producerId: 'PR_c1', source: 'microphone', kind: 'audio' }]));
    await until(() => events.includes('reconnected:resumed'), 'reconnected');

    const after = server.log.slice(before);
    expect(after[0]!.method).toBe('resume');
    expect(after.map((l) => l.method).filter((m) => m !== 'ping')).toEqual(['resume', 'consume', 'resumeConsumer', 'consume', 'resumeConsumer', 'restartIce', 'restartIce']);
    expect(events.slice(events.indexOf('reconnecting'))).toEqual([
      'reconnecting',
      'left:PA_b',
      'trackEnded:PA_a:camera',
      'joined:PA_c',
      'track:PA_a:screen',
      'track:PA_c:microphone',
      'reconnected:resumed',
    ]);
    expect(room.localParticipant.id).toBe(me);
    expect(room.state).toBe('connected');
  });

  it('joins afresh when the session expired: new transports, republished tracks, tracks received again', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a', [{ producerId: 'PR_a1', source: 'camera', kind: 'video' }]));
    const { room, events } = await connect();
    const camera = cameraTrack();
    await room.publish({ camera });
    await until(() => events.includes('track:PA_a:camera'), 'the first track');
    const me = room.localParticipant.id;
    const before = server.log.length;

    server.resumable = false;
    room._debugDropSocket();
    await until(() => events.includes('reconnected:rejoined'), 'reconnected');

    const after = server.log
      .slice(before)
      .map((l) => l.method)
      .filter((m) => m !== 'ping');
    expect(after).toEqual(['resume', 'join', 'createTransport', 'createTransport', 'connectTransport', 'produce', 'consume', 'connectTransport', 'resumeConsumer']);
    expect(events.slice(events.indexOf('reconnecting'))).toEqual(['reconnecting', 'trackEnded:PA_a:camera', 'track:PA_a:camera', 'reconnected:rejoined']);
    expect(room.localParticipant.id).not.toBe(me);
    expect(room.localTracks.get('camera')).toBe(camera);
  });

  it('encodes every simulcast layer after a reconnection until the SFU says again: the kept camera producer on resume, a new one after a rejoin', async () => {
    // Fake setTimeout only, running with real time: the layer switch-off delay is skipped, sockets and reconnection go on.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'], shouldAdvanceTime: true });
    server = await FakeSignaling.start();
    const { room, events } = await connect();
    await room.publish({ camera: cameraTrack() });
    type CameraProducer = { id: string; closed: boolean; maxSpatialLayer: number | undefined };
    const producers = (room as unknown as { parts: { publisher: { producers: Map<string, CameraProducer> } } }).parts.publisher.producers;
    const camera = () => producers.get('camera')!;
    // The SFU's word, applied once sendData's answer is back: the server sends both down one socket, in order.
    const layersWanted = async (producerId: string, maxSpatialLayer: number) => {
      server.notify({ videoLayersWanted: { participantId: room.localParticipant.id, producerId, maxSpatialLayer } });
      await room.sendData('after the notification');
    };
    const first = camera();
    await layersWanted(first.id, 0);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS);
    expect(first.maxSpatialLayer).toBe(0);

    // Resumed: the same producer, every layer on again, though the SFU said nothing new.
    room._debugDropSocket();
    await until(() => events.includes('reconnected:resumed'), 'resumed');
    expect(camera()).toBe(first);
    expect(first.maxSpatialLayer).toBe(2);
    // What the SFU says afterwards holds again.
    await layersWanted(first.id, 1);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS);
    expect(first.maxSpatialLayer).toBe(1);

    // Rejoined with a switch-off still pending from before the cut: the producer on the new
    // transport is never held to it.
    await layersWanted(first.id, 0);
    server.resumable = false;
    room._debugDropSocket();
    await until(() => events.includes('reconnected:rejoined'), 'rejoined');
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS * 2);
    expect(first.closed).toBe(true);
    expect(camera().id).not.toBe(first.id);
    expect(camera().maxSpatialLayer).toBeUndefined();

    // What the SFU says of the new producer during the restore (here when the restore goes on to
    // receive PA_a's camera) holds: it does not say it again.
    server.others.set('PA_a', agent('PA_a', [{ producerId: 'PR_a1', source: 'camera', kind: 'video' }]));
    const logRequest = server.log.push.bind(server.log);
    server.log.push = (...entries) => {
      if (entries.some((e) => e.method === 'consume')) void layersWanted(camera().id, 0);
      return logRequest(...entries);
    };
    room._debugDropSocket();
    await until(() => events.filter((e) => e === 'reconnected:rejoined').length === 2, 'rejoined again');
    const third = camera();
    expect(third.id).not.toBe(first.id);
    await vi.advanceTimersByTimeAsync(DISABLE_DELAY_MS);
    expect(third.maxSpatialLayer).toBe(0);
  });

  it('restarts ICE when a transport fails while signaling is fine', async () => {
    server = await FakeSignaling.start();
    const { room } = await connect();
    await room.publish({ microphone: micTrack() });
    const send = (room as unknown as { parts: { transports: { send: { id: string } } } }).parts.transports.send;
    // What the browser reports when the media path breaks (FakeHandler lets us say it).
    (send as unknown as { _handler: { setConnectionState(s: string): void } })._handler.setConnectionState('failed');
    await until(() => server.log.some((l) => l.method === 'restartIce' && l.params.transportId === send.id), 'restartIce');
    expect(server.log.filter((l) => l.method === 'restartIce')).toHaveLength(1);
  });

  it('shows names and metadata, follows changes, and renames the local participant', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_agent', { participantId: 'PA_agent', identity: 'agent-1', role: 'agent', tracks: [], name: 'Ann', metadata: '' });
    const { room: r } = await connect();
    const updates: string[] = [];
    r.on('participantUpdated', (p) => updates.push(`${p.isLocal ? 'me' : p.id}:${p.name}:${p.metadata}`));
    await until(() => r.participants.has('PA_agent'), 'the agent announced');
    expect(r.participants.get('PA_agent')).toMatchObject({ name: 'Ann', metadata: '' });
    server.notify({ participantUpdated: { participantId: 'PA_agent', identity: 'agent-1', role: 'agent', name: 'Ann (Billing)', metadata: '{"queue":"billing"}' } });
    await until(() => updates.length === 1, 'the update');
    expect(r.participants.get('PA_agent')).toMatchObject({ name: 'Ann (Billing)', metadata: '{"queue":"billing"}' });
    // The same again changes nothing, and announces nothing.
    server.notify({ participantUpdated: { participantId: 'PA_agent', identity: 'agent-1', role: 'agent', name: 'Ann (Billing)', metadata: '{"queue":"billing"}' } });
    await r.setName('Sam');
    expect(server.log.filter((l) => l.method === 'updateParticipant').map((l) => l.params)).toEqual([{ name: 'Sam' }]);
    expect(r.localParticipant.name).toBe('Sam');
    expect(updates).toEqual(['PA_agent:Ann (Billing):{"queue":"billing"}', 'me:Sam:']);
  });

  it('follows connection quality: the local and remote participants, changes only, unknown levels left out', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_agent', { participantId: 'PA_agent', identity: 'agent-1', role: 'agent', tracks: [], name: 'Ann', metadata: '' });
    const { room: r } = await connect();
    const changes: string[] = [];
    r.on('connectionQualityChanged', (p, quality) => changes.push(`${p.isLocal ? 'me' : p.id}:${quality}:${p.connectionQuality}`));
    await until(() => r.participants.has('PA_agent'), 'the agent announced');
    expect(r.participants.get('PA_agent')!.connectionQuality).toBe('unknown');
    const me = r.localParticipant.id;
    server.notify({ connectionQuality: { participantId: 'PA_agent', quality: 'excellent', upstream: 'excellent', downstream: 'unknown' } });
    server.notify({ connectionQuality: { participantId: me, quality: 'poor', upstream: 'excellent', downstream: 'poor' } });
    server.notify({ connectionQuality: { participantId: 'PA_agent', quality: 'excellent', upstream: 'excellent', downstream: 'unknown' } });
    server.notify({ connectionQuality: { participantId: 'PA_agent', quality: 'splendid', upstream: 'splendid', downstream: 'unknown' } });
    server.notify({ connectionQuality: { participantId: 'PA_agent', quality: 'lost', upstream: 'lost', downstream: 'unknown' } });
    await until(() => changes.length === 3, 'three changes');
    expect(changes).toEqual(['PA_agent:excellent:excellent', 'me:poor:poor', 'PA_agent:lost:lost']);
    expect(r.localParticipant.connectionQuality).toBe('poor');
  });

  it('sends data messages to the room or to some, and names the participant a message came from', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_agent', { participantId: 'PA_agent', identity: 'agent-1', role: 'agent', tracks: [] });
    const { room: r } = await connect();
    const received: string[] = [];
    r.on('data', (m) => received.push(`${m.participant?.identity ?? 'backend'}:${m.topic}:${m.payload}`));
    expect(await r.sendData('{"typing":true}', { topic: 'typing', to: ['PA_agent'] })).toEqual({ sentAtMs: 1700000000001 });
    await r.sendData('hello');
    expect(server.log.filter((l) => l.method === 'sendData').map((l) => l.params)).toEqual([
      { topic: 'typing', payload: '{"typing":true}', destinationParticipantIds: ['PA_agent'] },
      { topic: '', payload: 'hello', destinationParticipantIds: [] },
    ]);
    await until(() => r.participants.has('PA_agent'), 'the agent announced');
    server.notify({ dataMessage: { topic: 'typing', payload: '1', sentAtMs: '1700000000002', participantId: 'PA_agent' } });
    server.notify({ dataMessage: { topic: 'crm', payload: '2', sentAtMs: '1700000000003' } });
    await until(() => received.length === 2, 'both data messages');
    expect(received).toEqual(['agent-1:typing:1', 'backend:crm:2']);
  });

  it("follows the customer's backend: a muted local track, data messages, and a removal that ends the room for good", async () => {
    server = await FakeSignaling.start();
    const { room: r, events } = await connect();
    const muted: string[] = [];
    const data: string[] = [];
    r.on('localTrackMuted', (e) => muted.push(`${e.source}:${e.by}`));
    r.on('data', (m) => data.push(`${m.topic}:${m.payload}`));
    await r.publish({ microphone: micTrack() });
    const producerId = server.produced[0]!;
    server.notify({ trackMuted: { producerId, by: 'server' } });
    server.notify({ trackMuted: { producerId: 'PR_not_ours', by: 'server' } });
    server.notify({ dataMessage: { topic: 'crm', payload: 'case updated', sentAtMs: '1700000000000' } });
    await until(() => data.length === 1, 'the data message');
    expect(muted).toEqual(['microphone:server']);
    expect(data).toEqual(['crm:case updated']);
    // Muted like any mute, so the app shows it and may unmute: the same producer resumes.
    expect(r.localPublications.get('microphone')?.muted).toBe(true);
    await r.unmuteTrack('microphone');
    expect(server.log.filter((l) => l.method === 'resumeProducer').map((l) => l.params.producerId)).toEqual([producerId]);
    expect(r.localPublications.get('microphone')?.muted).toBe(false);
    server.sockets[0]!.close(4005, 'removed from the room');
    await until(() => events.includes('disconnected:removed'), 'disconnected as removed');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(server.sockets).toHaveLength(1);
    room = undefined;
  });

  it('leaves for good', async () => {
    server = await FakeSignaling.start();
    const { room: r, events } = await connect();
    await r.leave();
    room = undefined;
    expect(events).toEqual(['disconnected:left']);
    expect(server.methods()).toContain('leave');
    await expect(r.publish({ microphone: micTrack() })).rejects.toMatchObject({ code: 'ROOM_CLOSED' });
  });
});
