import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { FakeHandler } from 'mediasoup-client';
import * as fakeParameters from 'mediasoup-client/fakeParameters';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import { Room } from './Room.js';
import type { WebSocketConstructor } from './SignalingClient.js';
import type { ConnectOptions, Participant, TrackEvent } from './types.js';

type Frame = Record<string, any>;
interface TrackJson {
  producerId: string;
  source: string;
  kind: string;
  paused?: boolean;
}
interface ParticipantJson {
  participantId: string;
  identity: string;
  role: string;
  tracks: TrackJson[];
}

/**
 * Just enough of signaling and the SFU for the Room: sessions with transports and producers,
 * other participants scripted by the test, resume that works or reports the session expired.
 */
class FakeSignaling {
  readonly others = new Map<string, ParticipantJson>();
  readonly log: Array<{ conn: number; method: string; params: Frame }> = [];
  readonly sockets: ServerSocket[] = [];
  resumable = true;
  /** The room's recording, as join and resume responses report it. */
  recording: Frame | undefined;
  /** The room's chat as stored, in the proto3 JSON mapping (empty strings and false left out). */
  readonly messages: Frame[] = [];
  /** Decides how the next sendMessage goes: answered (default), or the socket cut before or after storing it. */
  onSendMessage: (params: Frame) => 'answer' | 'cut-before' | 'cut-after' | Frame = () => 'answer';
  /** Sends the notification of a new message before the sender's response (the other order is the default). */
  notifyBeforeAnswer = false;
  private readonly sessions = new Map<string, { transports: string[]; tracks: TrackJson[] }>();
  private seq = 0;

  private constructor(
    private readonly wss: WebSocketServer,
    readonly url: string,
  ) {
    wss.on('connection', (ws) => {
      const conn = this.sockets.push(ws) - 1;
      let session: string | undefined;
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        const method = Object.keys(frame).find((k) => k !== 'id')!;
        this.log.push({ conn, method, params: frame[method] });
        const reply = (result: Frame) => ws.send(JSON.stringify({ response: { id: frame.id, ...result } }));
        const fail = (code: string) => reply({ error: { code, message: code } });
        const params = frame[method];
        switch (method) {
          case 'join':
            session = `PA_${++this.seq}`;
            this.sessions.set(session, { transports: [], tracks: [] });
            return reply({ join: this.joinResponse(session) });
          case 'resume': {
            const id = params.resumeToken.replace('rt-', '');
            if (!this.resumable || !this.sessions.has(id)) return fail('SESSION_EXPIRED');
            session = id;
            return reply({ resume: this.joinResponse(id) });
          }
        }
        const state = this.sessions.get(session!)!;
        switch (method) {
          case 'createTransport': {
            const t = fakeParameters.generateTransportRemoteParameters();
            const transportId = `TR_${++this.seq}`;
            state.transports.push(transportId);
            return reply({ createTransport: { transportId, direction: params.direction, iceParameters: t.iceParameters, iceCandidates: t.iceCandidates, dtlsParameters: t.dtlsParameters } });
          }
          case 'produce': {
            const producerId = `PR_${++this.seq}`;
            state.tracks.push({ producerId, source: params.source, kind: params.kind });
            return reply({ produce: { producerId } });
          }
          case 'closeProducer':
            state.tracks = state.tracks.filter((t) => t.producerId !== params.producerId);
            return reply({ closeProducer: {} });
          case 'consume': {
            const owner = [...this.others.values()].find((p) => p.tracks.some((t) => t.producerId === params.producerId));
            const track = owner?.tracks.find((t) => t.producerId === params.producerId);
            if (!owner || !track) return fail('NOT_FOUND');
            const c = fakeParameters.generateConsumerRemoteParameters({ codecMimeType: track.kind === 'audio' ? 'audio/opus' : 'video/VP8' });
            return reply({
              consume: { consumerId: `CO_${++this.seq}`, producerId: track.producerId, participantId: owner.participantId, source: track.source, kind: track.kind, rtpParameters: c.rtpParameters, type: 'simple' },
            });
          }
          case 'restartIce':
            return reply({ restartIce: { iceParameters: { usernameFragment: `u${++this.seq}`, password: 'p', iceLite: true } } });
          case 'sendMessage': {
            const how = this.onSendMessage(params);
            if (how === 'cut-before') return ws.terminate();
            if (typeof how === 'object') return reply({ error: how });
            const message = this.messages.find((m) => m.clientMessageId === params.clientMessageId) ?? this.storeMessage(session!, params);
            if (how === 'cut-after') return ws.terminate();
            if (this.notifyBeforeAnswer) this.notify({ message });
            reply({ sendMessage: message });
            if (!this.notifyBeforeAnswer) this.notify({ message });
            return;
          }
          case 'redactMessage': {
            const message = this.messages.find((m) => m.messageId === params.messageId);
            if (!message) return fail('NOT_FOUND');
            message.redacted = true;
            delete message.text;
            reply({ redactMessage: {} });
            return this.notify({ messageRedacted: { messageId: params.messageId, by: session } });
          }
          case 'startRecording':
            this.recording = { recordingId: 'RC_1', state: 'started', by: session };
            this.notify({ recording: this.recording });
            return reply({ startRecording: this.recording });
          case 'leave':
            this.sessions.delete(session!);
            setTimeout(() => ws.close(4000, 'left'), 5);
            return reply({ leave: {} });
          default:
            return reply({ [method]: method === 'ping' ? { clientTimeMs: params.clientTimeMs, serverTimeMs: 1 } : {} });
        }
      });
    });
  }

  static async start(): Promise<FakeSignaling> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((resolve) => wss.once('listening', resolve));
    return new FakeSignaling(wss, `http://127.0.0.1:${(wss.address() as { port: number }).port}`);
  }

  private joinResponse(participantId: string) {
    const state = this.sessions.get(participantId)!;
    return {
      participant: { participantId, identity: 'me', role: 'end_user', tracks: state.tracks },
      room: 'room-1',
      routerRtpCapabilities: fakeParameters.generateRouterRtpCapabilities(),
      participants: [...this.others.values()],
      resumeToken: `rt-${participantId}`,
      grants: { canPublish: true, canSubscribe: true, sources: ['camera', 'microphone', 'screen'] },
      protocolVersion: 1,
      transportIds: state.transports,
      recording: this.recording,
      messages: this.messages.map((m) => ({ ...m })),
    };
  }

  /** Stores a message as the server would (ids that sort as strings), and returns it. */
  storeMessage(participantId: string, params: Frame, extra: Frame = {}): Frame {
    const message: Frame = {
      messageId: `MS_${String(this.messages.length + 1).padStart(6, '0')}`,
      participantId,
      identity: participantId === 'PA_a' ? 'agent-PA_a' : 'me',
      role: participantId === 'PA_a' ? 'agent' : 'end_user',
      text: params.text.replace(/\d{4} \d{4} \d{4} \d{4}/, '[CARD]'),
      sentAtMs: String(1_700_000_000_000 + this.messages.length),
      ...(params.clientMessageId ? { clientMessageId: params.clientMessageId } : {}),
      ...(/\d{4} \d{4}/.test(params.text) ? { redactedKinds: ['card'] } : {}),
      ...extra,
    };
    this.messages.push(message);
    return message;
  }

  /** Sends a notification to every open socket. */
  notify(notification: Frame): void {
    for (const ws of this.sockets) if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ notification }));
  }

  methods(conn?: number): string[] {
    return this.log.filter((l) => conn === undefined || l.conn === conn).map((l) => l.method).filter((m) => m !== 'ping');
  }

  async stop(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
  }
}

const agent = (id: string, tracks: TrackJson[] = []): ParticipantJson => ({ participantId: id, identity: `agent-${id}`, role: 'agent', tracks });

async function until(check: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Records the room's chat events as short strings. */
function recordChat(room: Room): string[] {
  const out: string[] = [];
  room.on('message', (m) => out.push(`message:${m.messageId}:${m.isLocal ? 'local' : m.participantId}:${m.text}`));
  room.on('messageRedacted', (m, by) => out.push(`redacted:${m.messageId}:${by?.id ?? '?'}`));
  return out;
}

/** Records the room's events as short strings. */
function record(room: Room): string[] {
  const out: string[] = [];
  const t = (name: string) => (e: TrackEvent) => out.push(`${name}:${e.participant.id}:${e.source}`);
  room.on('participantJoined', (p: Participant) => out.push(`joined:${p.id}`));
  room.on('participantLeft', (p: Participant) => out.push(`left:${p.id}`));
  room.on('track', t('track'));
  room.on('trackEnded', t('trackEnded'));
  room.on('localTrackPublished', (e) => out.push(`published:${e.source}`));
  room.on('localTrackUnpublished', (e) => out.push(`unpublished:${e.source}`));
  room.on('reconnecting', () => out.push('reconnecting'));
  room.on('reconnected', (i) => out.push(`reconnected:${i.resumed ? 'resumed' : 'rejoined'}`));
  room.on('disconnected', (i) => out.push(`disconnected:${i.reason}`));
  return out;
}

const cameraTrack = () => new FakeMediaStreamTrack({ kind: 'video', settings: { width: 1280, height: 720 } }) as unknown as MediaStreamTrack;
const micTrack = () => new FakeMediaStreamTrack({ kind: 'audio' }) as unknown as MediaStreamTrack;

describe('Room', () => {
  let server: FakeSignaling;
  let room: Room | undefined;
  afterEach(async () => {
    await room?.leave();
    await server?.stop();
    room = undefined;
  });

  async function connect(extra: Partial<ConnectOptions> = {}): Promise<{ room: Room; events: string[] }> {
    room = await Room.connect({
      url: server.url,
      token: 'jwt',
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      handlerFactory: FakeHandler.createFactory(fakeParameters),
      reconnectInitialDelayMs: 10,
      reconnectMaxDelayMs: 50,
      ...extra,
    });
    return { room, events: record(room) };
  }

  it('announces who is already there after connect resolves, and receives their tracks', async () => {
    server = await FakeSignaling.start();
    server.others.set('PA_a', agent('PA_a', [{ producerId: 'PR_cam', source: 'camera', kind: 'video' }, { producerId: 'PR_mic', source: 'microphone', kind: 'audio' }]));
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

    const after = server.log.slice(before).map((l) => l.method).filter((m) => m !== 'ping');
    expect(after).toEqual(['resume', 'join', 'createTransport', 'createTransport', 'connectTransport', 'produce', 'consume', 'connectTransport', 'resumeConsumer']);
    expect(events.slice(events.indexOf('reconnecting'))).toEqual(['reconnecting', 'trackEnded:PA_a:camera', 'track:PA_a:camera', 'reconnected:rejoined']);
    expect(room.localParticipant.id).not.toBe(me);
    expect(room.localTracks.get('camera')).toBe(camera);
  });

  it('restarts ICE when a transport fails while signaling is fine', async () => {
    server = await FakeSignaling.start();
    const { room } = await connect();
    await room.publish({ microphone: micTrack() });
    const send = (room as unknown as { transports: { send: { id: string } } }).transports.send;
    // What the browser reports when the media path breaks (FakeHandler lets us say it).
    (send as unknown as { _handler: { setConnectionState(s: string): void } })._handler.setConnectionState('failed');
    await until(() => server.log.some((l) => l.method === 'restartIce' && l.params.transportId === send.id), 'restartIce');
    expect(server.log.filter((l) => l.method === 'restartIce')).toHaveLength(1);
  });

  describe('chat', () => {
    it('announces the history after connect, then each message once although the sender gets it twice', async () => {
      server = await FakeSignaling.start();
      server.others.set('PA_a', agent('PA_a'));
      server.storeMessage('PA_a', { text: 'hello, how can I help?' });
      const { room } = await connect();
      const chat = recordChat(room);
      expect(room.messages).toEqual([]);
      await until(() => chat.length === 1, 'the history');

      server.notifyBeforeAnswer = true;
      const first = await room.sendMessage('my card is 4111 1111 1111 1111');
      server.notifyBeforeAnswer = false;
      const second = await room.sendMessage('thanks');
      await new Promise((r) => setTimeout(r, 30));
      expect(chat).toEqual(['message:MS_000001:PA_a:hello, how can I help?', 'message:MS_000002:local:my card is [CARD]', 'message:MS_000003:local:thanks']);
      expect(first).toEqual({
        messageId: 'MS_000002',
        participantId: room.localParticipant.id,
        identity: 'me',
        role: 'end_user',
        text: 'my card is [CARD]',
        sentAtMs: 1_700_000_000_001,
        isLocal: true,
        redacted: false,
        redactedKinds: ['card'],
      });
      // The one object the room holds, whichever copy came first.
      expect(room.messages).toEqual([room.messages[0], first, second]);
      expect(room.messages[1]).toBe(first);
      // Omitted fields are defaulted.
      expect(room.messages[0]).toMatchObject({ redacted: false, redactedKinds: [], isLocal: false, role: 'agent' });
      const sent = server.log.filter((l) => l.method === 'sendMessage').map((l) => l.params);
      expect(sent.map((p) => p.clientMessageId)).toEqual([expect.stringMatching(/^[0-9a-f-]{36}$/), expect.stringMatching(/^[0-9a-f-]{36}$/)]);
      expect(sent[0]!.clientMessageId).not.toBe(sent[1]!.clientMessageId);
    });

    it('merges the history of a resume: nothing announced twice, what was missed announced, redactions applied', async () => {
      server = await FakeSignaling.start();
      server.others.set('PA_a', agent('PA_a'));
      const { room, events } = await connect();
      const chat = recordChat(room);
      await room.sendMessage('one');
      const two = server.storeMessage('PA_a', { text: 'two' });
      server.notify({ message: two });
      await until(() => chat.length === 2, 'two messages');

      room._debugDropSocket();
      // While away: the agent redacts "one" and writes "three"; the history also holds an older
      // message sorted before the others (ids decide the order, not arrival).
      server.messages[0]!.redacted = true;
      server.messages[0]!.redactedBy = 'PA_a';
      delete server.messages[0]!.text;
      server.storeMessage('PA_a', { text: 'three' });
      server.messages.push({ messageId: 'MS_000000', participantId: 'PA_a', identity: 'agent-PA_a', role: 'agent', text: 'zero', sentAtMs: '1' });
      await until(() => events.includes('reconnected:resumed'), 'the resume');

      expect(chat).toEqual([
        'message:MS_000001:local:one',
        'message:MS_000002:PA_a:two',
        'redacted:MS_000001:PA_a',
        'message:MS_000003:PA_a:three',
        'message:MS_000000:PA_a:zero',
      ]);
      expect(room.messages.map((m) => `${m.messageId}:${m.text}:${m.redacted}`)).toEqual([
        'MS_000000:zero:false',
        'MS_000001::true',
        'MS_000002:two:false',
        'MS_000003:three:false',
      ]);
      expect(room.messages[1]!.isLocal).toBe(true);
    });

    it('keeps our messages ours after a rejoin (new participant id) and merges the new session history', async () => {
      server = await FakeSignaling.start();
      const { room, events } = await connect();
      const chat = recordChat(room);
      await room.sendMessage('before');
      server.resumable = false;
      room._debugDropSocket();
      await until(() => events.includes('reconnected:rejoined'), 'the rejoin');
      await room.sendMessage('after');
      await until(() => chat.length === 2, 'the second message');
      expect(room.messages.map((m) => [m.text, m.isLocal])).toEqual([
        ['before', true],
        ['after', true],
      ]);
      expect(room.messages[0]!.participantId).not.toBe(room.messages[1]!.participantId);
    });

    it('redacts: the room copy is replaced and messageRedacted fires once, with who did it', async () => {
      server = await FakeSignaling.start();
      server.others.set('PA_a', agent('PA_a'));
      const { room } = await connect();
      const chat = recordChat(room);
      const sent = await room.sendMessage('my ssn is 123-45-6789');
      // As the agent would; the server tells everyone.
      server.messages[0]!.redacted = true;
      server.notify({ messageRedacted: { messageId: sent.messageId, by: 'PA_a' } });
      await until(() => chat.length === 2, 'the redaction');
      expect(chat[1]).toBe(`redacted:${sent.messageId}:PA_a`);
      expect(room.messages[0]).toMatchObject({ messageId: sent.messageId, text: '', redacted: true });
      expect(sent.text).toBe('my ssn is 123-45-6789');
      // A redaction of our own (the server's notification follows the answer): one event.
      const other = server.storeMessage('PA_a', { text: 'call me at +1 415 555 0100' });
      server.notify({ message: other });
      await until(() => chat.length === 3, 'the agent message');
      await room.redactMessage(other.messageId);
      await new Promise((r) => setTimeout(r, 30));
      expect(chat.slice(3)).toEqual([`redacted:${other.messageId}:${room.localParticipant.id}`]);
      expect(room.messages[1]).toMatchObject({ text: '', redacted: true });
      // Already redacted: nothing to ask.
      const before = server.methods().length;
      await room.redactMessage(other.messageId);
      expect(server.methods().length).toBe(before);
    });

    it('sends again with the same clientMessageId when the connection is cut before the answer, and stores it once', async () => {
      server = await FakeSignaling.start();
      const { room, events } = await connect();
      const chat = recordChat(room);
      let sends = 0;
      server.onSendMessage = () => (++sends === 1 ? 'cut-before' : 'answer');
      const message = await room.sendMessage('first try lost');
      expect(events).toContain('reconnected:resumed');
      const ids = server.log.filter((l) => l.method === 'sendMessage').map((l) => l.params.clientMessageId);
      expect(ids).toHaveLength(2);
      expect(ids[0]).toBe(ids[1]);
      expect(message.text).toBe('first try lost');

      // Stored, then cut before the answer: the resume's history settles it without sending again.
      sends = 0;
      server.onSendMessage = () => (++sends === 1 ? 'cut-after' : 'answer');
      const second = await room.sendMessage('stored before the cut');
      expect(sends).toBe(1);
      expect(second.messageId).toBe(server.messages[1]!.messageId);
      await new Promise((r) => setTimeout(r, 30));
      expect(server.messages).toHaveLength(2);
      expect(chat).toHaveLength(2);
    });

    it('waits for the connection when sent while reconnecting', async () => {
      server = await FakeSignaling.start();
      const { room, events } = await connect();
      room._debugDropSocket();
      expect(room.state).toBe('reconnecting');
      const message = await room.sendMessage('sent while away');
      expect(events).toContain('reconnected:resumed');
      expect(message.isLocal).toBe(true);
      expect(server.methods().filter((m) => m === 'sendMessage')).toHaveLength(1);
    });

    it('rejects with the server error codes, and refuses text far over any limit without sending it', async () => {
      server = await FakeSignaling.start();
      const { room } = await connect();
      server.onSendMessage = (p) =>
        p.text === ''
          ? { code: 'BAD_REQUEST', message: 'empty' }
          : p.text.length > 4_000
            ? { code: 'MESSAGE_TOO_LARGE', message: 'over 4000 characters' }
            : { code: 'RATE_LIMITED', message: 'slow down', retryAfterMs: 800 };
      await expect(room.sendMessage('')).rejects.toMatchObject({ name: 'GatewayError', code: 'BAD_REQUEST' });
      await expect(room.sendMessage('x'.repeat(4_001))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
      await expect(room.sendMessage('hi')).rejects.toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 800 });
      const sent = server.methods().filter((m) => m === 'sendMessage').length;
      await expect(room.sendMessage('x'.repeat(40_000))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
      expect(server.methods().filter((m) => m === 'sendMessage')).toHaveLength(sent);
      await expect(room.redactMessage('MS_nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      expect(room.messages).toEqual([]);
    });

    it('keeps the messages readable after leaving, and refuses to send', async () => {
      server = await FakeSignaling.start();
      const { room: r } = await connect();
      const chat = recordChat(r);
      // At once after connect: resolved, it is in `messages` and was announced.
      const bye = await r.sendMessage('bye');
      expect(r.messages).toEqual([bye]);
      expect(chat).toEqual([`message:${bye.messageId}:local:bye`]);
      await r.leave();
      room = undefined;
      expect(r.messages.map((m) => m.text)).toEqual(['bye']);
      await expect(r.sendMessage('again')).rejects.toMatchObject({ code: 'ROOM_CLOSED' });
    });
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
