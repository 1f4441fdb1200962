import http from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import WebSocket, { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { FakeHandler } from 'mediasoup-client';
import * as fakeParameters from 'mediasoup-client/fakeParameters';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import { Room } from './Room.js';
import type { WebSocketConstructor } from './SignalingClient.js';
import type { ConnectOptions, Participant, TrackEvent } from './types.js';

type Frame = Record<string, any>;

// The browser's WebAuthn prompt, as a device holding the key 'cred-1' would answer it.
const webauthn = vi.hoisted(() => ({
  startAuthentication: vi.fn(async ({ optionsJSON }: { optionsJSON: Record<string, any> }) => ({ id: 'cred-1', rawId: 'cred-1', type: 'public-key', response: { signed: optionsJSON.challenge }, clientExtensionResults: {} })),
  startRegistration: vi.fn(async ({ optionsJSON }: { optionsJSON: Record<string, any> }) => ({ id: 'cred-1', rawId: 'cred-1', type: 'public-key', response: { attested: optionsJSON.challenge }, clientExtensionResults: {} })),
}));
vi.mock('@simplewebauthn/browser', () => ({ browserSupportsWebAuthn: () => true, ...webauthn }));

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
const JPEG = Buffer.from('ffd8ffe000104a464946', 'hex');
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
  /** The room's Smart Actions as stored, in the proto3 JSON mapping (int64 fields as strings). */
  readonly smartActions: Frame[] = [];
  /** What reached the upload endpoint. */
  readonly uploads: Array<{ actionId: string; authorization: string; contentType: string; body: Buffer }> = [];
  /** Overrides the upload's answer (a status and JSON body). */
  onUpload: ((actionId: string) => { status: number; body: Frame } | undefined) | undefined;
  private readonly sessions = new Map<string, { transports: string[]; tracks: TrackJson[] }>();
  private seq = 0;

  private constructor(
    private readonly wss: WebSocketServer,
    private readonly httpServer: http.Server,
    readonly url: string,
  ) {
    httpServer.on('request', (req, res) => void this.onHttp(req, res));
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
          case 'requestSmartAction': {
            const action: Frame = {
              actionId: `SA_${++this.seq}`,
              kind: params.kind,
              state: params.kind === 'verification' && !this.deviceKey ? 'failed' : 'requested',
              requestedBy: session,
              participantId: params.participantId || 'PA_u',
              requestedAtMs: String(1_700_000_000_000 + this.seq),
              externalId: 'ext-1',
              ...(params.kind === 'verification' ? (this.deviceKey ? { webauthnOptions: { challenge: `ch-${this.seq}`, rpId: 'localhost' } } : { reason: 'no device key is registered for this end user', completedAtMs: String(1_700_000_000_100 + this.seq) }) : {}),
            };
            this.smartActions.push(action);
            reply({ requestSmartAction: action });
            return this.notify({ smartAction: action });
          }
          case 'answerSmartAction': {
            const action = this.smartActions.find((a) => a.actionId === params.actionId);
            if (!action) return fail('NOT_FOUND');
            if (action.state !== 'requested') return fail('INVALID_STATE');
            if (params.decline) Object.assign(action, { state: 'declined', reason: 'the end user declined' });
            else Object.assign(action, { state: 'completed', verified: params.webauthnResponse?.id === this.deviceKey && params.webauthnResponse?.response?.signed === action.webauthnOptions.challenge });
            action.completedAtMs = String(1_700_000_001_000 + this.seq++);
            this.notify({ smartAction: action });
            return reply({ answerSmartAction: action });
          }
          case 'artifactUrl':
            if (!this.smartActions.some((a) => a.artifactId === params.artifactId)) return fail('NOT_FOUND');
            return reply({ artifactUrl: { url: `/v1/artifacts/${params.artifactId}?token=tk`, expiresAtMs: '1700000300000' } });
          case 'deviceKeyOptions':
            return reply({ deviceKeyOptions: { challenge: 'reg-1', rp: { id: 'localhost', name: 'Gateway' } } });
          case 'registerDeviceKey':
            if (params.response?.response?.attested !== 'reg-1') return fail('BAD_REQUEST');
            this.deviceKey = params.response.id;
            return reply({ registerDeviceKey: { credentialId: params.response.id } });
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
    const httpServer = http.createServer();
    const wss = new WebSocketServer({ server: httpServer });
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    return new FakeSignaling(wss, httpServer, `http://127.0.0.1:${(httpServer.address() as { port: number }).port}`);
  }

  /** The device key registered by the end user ('cred-1' once registered). */
  deviceKey: string | undefined;

  /** Uploads (session token as bearer; images by their first bytes) and attachment downloads, as signaling serves them. */
  private async onHttp(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (status: number, body: Frame | Buffer, type = 'application/json') => {
      res.writeHead(status, { 'content-type': type });
      res.end(Buffer.isBuffer(body) ? body : JSON.stringify(body));
    };
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://x');
    const upload = /^\/v1\/smart-actions\/([^/]+)\/upload$/.exec(url.pathname);
    if (upload && req.method === 'POST') {
      const actionId = upload[1]!;
      this.uploads.push({ actionId, authorization: req.headers.authorization ?? '', contentType: req.headers['content-type'] ?? '', body });
      const override = this.onUpload?.(actionId);
      if (override) return send(override.status, override.body);
      const action = this.smartActions.find((a) => a.actionId === actionId);
      if (!action) return send(404, { error: { code: 'NOT_FOUND', message: 'no such Smart Action in this room' } });
      if (req.headers.authorization !== `Bearer rt-${action.participantId}`) return send(401, { error: { code: 'UNAUTHENTICATED', message: 'the session token is not valid' } });
      if (action.state !== 'requested') return send(409, { error: { code: 'INVALID_STATE', message: `already ${action.state}` } });
      const contentType = body.subarray(0, 8).equals(PNG.subarray(0, 8)) ? 'image/png' : body.subarray(0, 3).equals(JPEG.subarray(0, 3)) ? 'image/jpeg' : '';
      if (!contentType) return send(415, { error: { code: 'UNSUPPORTED_CONTENT', message: 'the file is not a JPEG, PNG or WebP image' } });
      Object.assign(action, { state: 'completed', artifactId: `AT_${++this.seq}`, contentType, sizeBytes: String(body.length), completedAtMs: String(1_700_000_002_000 + this.seq) });
      this.artifacts.set(action.artifactId, body);
      this.notify({ smartAction: action });
      return send(201, { actionId, artifactId: action.artifactId, contentType, sizeBytes: body.length });
    }
    const artifact = /^\/v1\/artifacts\/([^/]+)$/.exec(url.pathname);
    const data = artifact && this.artifacts.get(artifact[1]!);
    if (data && url.searchParams.get('token') === 'tk') return send(200, data, 'image/png');
    send(artifact ? 401 : 404, { error: { code: artifact ? 'UNAUTHENTICATED' : 'NOT_FOUND', message: 'no' } });
  }

  private readonly artifacts = new Map<string, Buffer>();

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
      smartActions: this.smartActions.map((a) => ({ ...a })),
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
    this.httpServer.closeAllConnections();
    await new Promise((resolve) => this.httpServer.close(resolve));
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

  describe('Smart Actions', () => {
    /** Records the room's smartAction events as short strings. */
    function recordActions(room: Room): string[] {
      const out: string[] = [];
      room.on('smartAction', (a) => out.push(`${a.actionId}:${a.kind}:${a.state}`));
      return out;
    }
    /** The agent (another participant) asks us, as the server announces it. */
    function askMe(room: Room, kind: string, extra: Frame = {}): Frame {
      const action: Frame = { actionId: `SA_${kind}`, kind, state: 'requested', requestedBy: 'PA_a', participantId: room.localParticipant.id, requestedAtMs: '1700000000500', externalId: 'me', ...extra };
      server.smartActions.push(action);
      server.notify({ smartAction: action });
      return action;
    }

    it('announces the actions the room had after connect, then each new action and change of state once, with numbers', async () => {
      server = await FakeSignaling.start();
      server.others.set('PA_a', agent('PA_a'));
      server.smartActions.push({
        actionId: 'SA_old', kind: 'photo', state: 'completed', requestedBy: 'PA_a', participantId: 'PA_1', requestedAtMs: '1700000000000',
        completedAtMs: '1700000000200', artifactId: 'AT_old', contentType: 'image/jpeg', sizeBytes: '1234', externalId: 'me',
      });
      const { room } = await connect();
      const actions = recordActions(room);
      expect(room.smartActions).toEqual([]);
      await until(() => actions.length === 1, 'the actions of the join');
      expect(room.smartActions[0]).toEqual({
        actionId: 'SA_old', kind: 'photo', state: 'completed', requestedBy: 'PA_a', participantId: 'PA_1', externalId: 'me', requestedAtMs: 1_700_000_000_000,
        completedAtMs: 1_700_000_000_200, artifactId: 'AT_old', contentType: 'image/jpeg', sizeBytes: 1234, webauthnOptions: undefined, verified: false, reason: '',
      });

      const asked = askMe(room, 'screenshot');
      server.notify({ smartAction: asked });
      await until(() => actions.length === 2, 'the request');
      // Answered elsewhere; then a late copy of the request, which must not undo it.
      server.notify({ smartAction: { ...asked, state: 'declined', reason: 'the end user declined', completedAtMs: 1_700_000_000_900 } });
      server.notify({ smartAction: asked });
      await until(() => actions.length === 3, 'the decline');
      await new Promise((r) => setTimeout(r, 30));
      expect(actions).toEqual(['SA_old:photo:completed', 'SA_screenshot:screenshot:requested', 'SA_screenshot:screenshot:declined']);
      expect(room.smartActions.map((a) => `${a.actionId}:${a.state}`)).toEqual(['SA_old:completed', 'SA_screenshot:declined']);
      expect(room.smartActions[1]).toMatchObject({ completedAtMs: 1_700_000_000_900, reason: 'the end user declined' });
    });

    it('agents: requests an action (announced once although the notification comes too) and gets absolute attachment URLs', async () => {
      server = await FakeSignaling.start();
      const { room } = await connect();
      const actions = recordActions(room);
      const action = await room.requestSmartAction('photo', 'PA_u');
      expect(action).toMatchObject({ kind: 'photo', state: 'requested', participantId: 'PA_u', requestedAtMs: expect.any(Number) });
      expect(room.smartActions).toEqual([action]);
      expect(server.log.find((l) => l.method === 'requestSmartAction')!.params).toEqual({ kind: 'photo', participantId: 'PA_u' });
      // A verification of someone without a device key fails at once, with the reason.
      const verification = await room.requestSmartAction('verification');
      expect(verification).toMatchObject({ state: 'failed', reason: 'no device key is registered for this end user' });

      // The end user uploads (as signaling would take it); the agent sees it and fetches the picture.
      const upload = await fetch(`${server.url}/v1/smart-actions/${action.actionId}/upload`, { method: 'POST', headers: { authorization: 'Bearer rt-PA_u' }, body: new Uint8Array(PNG) });
      expect(upload.status).toBe(201);
      await until(() => room.smartActions[0]!.state === 'completed', 'the completion');
      await new Promise((r) => setTimeout(r, 30));
      expect(actions).toEqual([`${action.actionId}:photo:requested`, `${verification.actionId}:verification:failed`, `${action.actionId}:photo:completed`]);
      const { artifactId, sizeBytes, contentType } = room.smartActions[0]!;
      expect({ sizeBytes, contentType }).toEqual({ sizeBytes: PNG.length, contentType: 'image/png' });
      const url = await room.attachmentUrl(artifactId);
      expect(url).toBe(`${server.url}/v1/artifacts/${artifactId}?token=tk`);
      const blob = await room.fetchAttachment(artifactId);
      expect(Buffer.from(await blob.arrayBuffer())).toEqual(PNG);
      await expect(room.attachmentUrl('AT_nope')).rejects.toMatchObject({ name: 'GatewayError', code: 'NOT_FOUND' });
    });

    it('end users: uploads a photo with the session token as bearer, and rejects with the server\'s codes', async () => {
      server = await FakeSignaling.start();
      server.others.set('PA_a', agent('PA_a'));
      const { room } = await connect();
      const actions = recordActions(room);
      const { actionId } = askMe(room, 'photo');
      await until(() => actions.length === 1, 'the request');

      await expect(room.sendPhoto(actionId, new Blob(['<script>'], { type: 'image/jpeg' }))).rejects.toMatchObject({ code: 'UNSUPPORTED_CONTENT', message: 'the file is not a JPEG, PNG or WebP image' });
      server.onUpload = () => ({ status: 413, body: { error: { code: 'MESSAGE_TOO_LARGE', message: 'a photo is limited to 10 bytes' } } });
      await expect(room.sendPhoto(actionId, new Blob([JPEG], { type: 'image/jpeg' }))).rejects.toMatchObject({ code: 'MESSAGE_TOO_LARGE' });
      // A proxy's answer without the server's body: the status says it.
      server.onUpload = () => ({ status: 403, body: {} });
      await expect(room.sendPhoto(actionId, new Blob([JPEG]))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      server.onUpload = undefined;

      const sent = await room.sendPhoto(actionId, new Blob([JPEG], { type: 'image/jpeg' }));
      expect(sent).toEqual({ actionId, artifactId: expect.stringMatching(/^AT_/), contentType: 'image/jpeg', sizeBytes: JPEG.length });
      const last = server.uploads.at(-1)!;
      expect(last).toMatchObject({ authorization: `Bearer rt-${room.localParticipant.id}`, contentType: 'image/jpeg' });
      expect(last.body).toEqual(JPEG);
      await until(() => actions.length === 2, 'the completion');
      expect(room.smartActions[0]).toMatchObject({ state: 'completed', artifactId: sent.artifactId });

      // Refused before anything is sent: answered already, unknown, someone else's, the wrong kind.
      const uploads = server.uploads.length;
      await expect(room.sendPhoto(actionId, new Blob([JPEG]))).rejects.toMatchObject({ code: 'INVALID_STATE' });
      await expect(room.sendPhoto('SA_nope', new Blob([JPEG]))).rejects.toMatchObject({ code: 'NOT_FOUND' });
      askMe(room, 'screenshot', { participantId: 'PA_other' });
      await until(() => actions.length === 3, 'the other request');
      await expect(room.sendScreenshot('SA_screenshot')).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      await expect(room.sendPhoto('SA_screenshot', new Blob([JPEG]))).rejects.toMatchObject({ code: 'BAD_REQUEST' });
      expect(server.uploads.length).toBe(uploads);
    });

    it('end users: a screenshot is a PNG of the given canvas when nothing is shared; without either there is nothing to capture', async () => {
      server = await FakeSignaling.start();
      const { room } = await connect();
      const actions = recordActions(room);
      const { actionId } = askMe(room, 'screenshot');
      await until(() => actions.length === 1, 'the request');
      await expect(room.sendScreenshot(actionId)).rejects.toMatchObject({ code: 'INVALID_STATE', message: expect.stringContaining('share the screen') });
      const canvas = { toBlob: (done: (b: Blob | null) => void, type: string) => done(new Blob([PNG], { type })) } as unknown as HTMLCanvasElement;
      const sent = await room.sendScreenshot(actionId, canvas);
      expect(sent.contentType).toBe('image/png');
      expect(server.uploads.at(-1)).toMatchObject({ contentType: 'image/png', body: PNG });
    });

    it('end users: declines; registers a device key and verifies with it; a failed verification needs nothing', async () => {
      server = await FakeSignaling.start();
      const { room } = await connect();
      const actions = recordActions(room);
      const photo = askMe(room, 'photo');
      await until(() => actions.length === 1, 'the request');
      const declined = await room.declineSmartAction(photo.actionId);
      expect(declined).toMatchObject({ actionId: photo.actionId, state: 'declined', reason: 'the end user declined' });
      expect(server.log.find((l) => l.method === 'answerSmartAction')!.params).toEqual({ actionId: photo.actionId, decline: true });

      expect(await room.registerDeviceKey()).toBe('cred-1');
      expect(webauthn.startRegistration).toHaveBeenCalledWith({ optionsJSON: { challenge: 'reg-1', rp: { id: 'localhost', name: 'Gateway' } } });
      const verification = askMe(room, 'verification', { webauthnOptions: { challenge: 'ch-v', rpId: 'localhost' } });
      await until(() => actions.length === 3, 'the verification request');
      const verified = await room.verifyDevice(verification.actionId);
      expect(verified).toMatchObject({ state: 'completed', verified: true, completedAtMs: expect.any(Number) });
      expect(webauthn.startAuthentication).toHaveBeenCalledWith({ optionsJSON: { challenge: 'ch-v', rpId: 'localhost' } });
      // Asked again for the same action: the answer stands, nothing is signed again.
      const calls = webauthn.startAuthentication.mock.calls.length;
      expect(await room.verifyDevice(verification.actionId)).toBe(verified);
      expect(webauthn.startAuthentication.mock.calls.length).toBe(calls);

      // The user cancels the prompt: PERMISSION_DENIED, and the action stays open.
      const second = askMe(room, 'verification', { actionId: 'SA_v2', webauthnOptions: { challenge: 'ch-2' } });
      await until(() => actions.length === 5, 'the second request');
      webauthn.startAuthentication.mockRejectedValueOnce(Object.assign(new Error('The operation either timed out or was not allowed.'), { name: 'NotAllowedError' }));
      await expect(room.verifyDevice(second.actionId)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
      expect(room.smartActions.find((a) => a.actionId === 'SA_v2')!.state).toBe('requested');

      const failed = askMe(room, 'verification', { actionId: 'SA_v3', state: 'failed', reason: 'no device key is registered for this end user' });
      await until(() => actions.length === 6, 'the failed request');
      expect(await room.verifyDevice(failed.actionId)).toMatchObject({ state: 'failed' });
      expect(webauthn.startAuthentication.mock.calls.length).toBe(calls + 1);
    });

    it('announces what changed while the connection was away, once', async () => {
      server = await FakeSignaling.start();
      const { room, events } = await connect();
      const actions = recordActions(room);
      const asked = askMe(room, 'photo');
      await until(() => actions.length === 1, 'the request');
      room._debugDropSocket();
      Object.assign(asked, { state: 'declined', completedAtMs: '1700000000900' });
      await until(() => events.includes('reconnected:resumed'), 'the resume');
      await until(() => actions.length === 2, 'the change');
      await new Promise((r) => setTimeout(r, 30));
      expect(actions).toEqual(['SA_photo:photo:requested', 'SA_photo:photo:declined']);
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
