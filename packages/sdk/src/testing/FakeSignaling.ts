import http from 'node:http';
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import * as fakeParameters from 'mediasoup-client/fakeParameters';

/** A frame of the signaling protocol, as JSON. */
export type Frame = Record<string, any>;

/** The first bytes of a PNG and of a JPEG: enough for the fake upload endpoint to tell them apart. */
export const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
export const JPEG = Buffer.from('ffd8ffe000104a464946', 'hex');
export interface TrackJson {
  producerId: string;
  source: string;
  kind: string;
  paused?: boolean;
}
export interface ParticipantJson {
  participantId: string;
  identity: string;
  role: string;
  tracks: TrackJson[];
  name?: string;
  metadata?: string;
}

/**
 * Just enough of signaling and the SFU for the Room: sessions with transports and producers,
 * other participants scripted by the test, resume that works or reports the session expired.
 */
export class FakeSignaling {
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
  /** The producer ids handed out, in order. */
  readonly produced: string[] = [];
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
            this.produced.push(producerId);
            state.tracks.push({ producerId, source: params.source, kind: params.kind, paused: params.paused === true });
            return reply({ produce: { producerId } });
          }
          case 'pauseProducer':
          case 'resumeProducer': {
            const track = state.tracks.find((t) => t.producerId === params.producerId);
            if (!track) return fail('NOT_FOUND');
            track.paused = method === 'pauseProducer';
            return reply({ [method]: {} });
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
              consume: {
                consumerId: `CO_${++this.seq}`,
                producerId: track.producerId,
                participantId: owner.participantId,
                source: track.source,
                kind: track.kind,
                rtpParameters: c.rtpParameters,
                type: 'simple',
              },
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
              ...(params.kind === 'verification'
                ? this.deviceKey
                  ? { webauthnOptions: { challenge: `ch-${this.seq}`, rpId: 'localhost' } }
                  : { reason: 'no device key is registered for this end user', completedAtMs: String(1_700_000_000_100 + this.seq) }
                : {}),
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
            else
              Object.assign(action, { state: 'completed', verified: params.webauthnResponse?.id === this.deviceKey && params.webauthnResponse?.response?.signed === action.webauthnOptions.challenge });
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
          case 'updateParticipant':
            return reply({ updateParticipant: { participantId: session, identity: 'me', role: 'end_user', name: params.name ?? '', metadata: params.metadata ?? '' } });
          case 'sendData':
            return reply({ sendData: { sentAtMs: '1700000000001' } });
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

  /** The producers a session of ours has on the server (published tracks, with their paused state). */
  tracksOf(participantId: string): TrackJson[] {
    return this.sessions.get(participantId)?.tracks ?? [];
  }

  /** Sends a notification to every open socket. */
  notify(notification: Frame): void {
    for (const ws of this.sockets) if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ notification }));
  }

  methods(conn?: number): string[] {
    return this.log
      .filter((l) => conn === undefined || l.conn === conn)
      .map((l) => l.method)
      .filter((m) => m !== 'ping');
  }

  async stop(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise((resolve) => this.wss.close(resolve));
    this.httpServer.closeAllConnections();
    await new Promise((resolve) => this.httpServer.close(resolve));
  }
}

/** Another participant as the fake server lists it: an agent, with the tracks it publishes. */
export const agent = (id: string, tracks: TrackJson[] = []): ParticipantJson => ({ participantId: id, identity: `agent-${id}`, role: 'agent', tracks });
