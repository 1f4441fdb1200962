import { Device } from 'mediasoup-client';
import type { types } from 'mediasoup-client';
import { browserSupportsWebAuthn, startAuthentication, startRegistration, type PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/browser';
import type {
  ChatMessage as ChatMessageInfo,
  JoinResponse,
  MessageRedacted,
  ParticipantInfo,
  RecordingStatus,
  SmartAction as SmartActionInfo,
  TrackInfo,
} from '@gateway/proto/gateway/signaling/v1/signaling';
import { ChatLog } from './ChatLog.js';
import { Emitter } from './events.js';
import { ErrorCode, GatewayError, hasCode } from './errors.js';
import { httpError, httpFetch } from './http.js';
import { canvasToPng, captureFrame, captureScreen, captureUserMedia, kindOf, producerOptions } from './media.js';
import { SignalingClient, backoffDelay, signalingHttpBase, type NotificationEvent } from './SignalingClient.js';
import { SmartActionLog, smartActionFrom } from './SmartActionLog.js';
import type {
  ChatMessage,
  ConnectOptions,
  Grants,
  Participant,
  PublishOptions,
  RecordingEvent,
  RemoteSource,
  RoomEvents,
  RoomState,
  SmartAction,
  SmartActionKind,
  SmartActionUpload,
  Source,
} from './types.js';

const SOURCES: readonly Source[] = ['microphone', 'camera', 'screen'];
/**
 * Chat text whose JSON encoding is over this many bytes is refused before it is sent: far over
 * the server's limit (4,000 characters, which it answers with MESSAGE_TOO_LARGE), and under the
 * frame limit, so an oversized message never gets the connection closed.
 */
const MAX_MESSAGE_BYTES = 32_768;
/** A chat request cut off by the connection is sent again once reconnected, this many times in all. */
const CHAT_ATTEMPTS = 5;

interface MutableParticipant extends Participant {
  tracks: Map<RemoteSource, MediaStreamTrack>;
}

/** A remote producer we know of, consumed or waiting to be. */
interface RemoteTrack {
  readonly producerId: string;
  readonly participantId: string;
  readonly source: RemoteSource;
  paused: boolean;
  consumer?: types.Consumer;
  /** `track` was emitted for the consumer (so `trackEnded` is owed). */
  announced: boolean;
  /** Consuming failed for a reason retrying won't fix. */
  failed: boolean;
}

type Direction = 'send' | 'recv';

/**
 * A joined room. Publishes local tracks, receives everyone else's, and keeps itself in line
 * with the server's view of the session: `sync()` runs after the first join, after a resume
 * and after a rejoin, and reconciles participants, tracks, transports and producers, so there
 * is one path to a consistent state whatever happened while the connection was away.
 */
export class Room extends Emitter<RoomEvents> {
  /** The room's name. */
  name = '';
  localParticipant!: Participant;
  /** Everyone else, by participant id. */
  readonly participants = new Map<string, Participant>();
  /** The participant id of the active speaker; '' in silence. */
  private speakerId = '';
  /** What this participant publishes, by source (kept across reconnections and republished). */
  readonly localTracks = new Map<Source, MediaStreamTrack>();

  private readonly client: SignalingClient;
  private device: Device | undefined;
  private deviceCapabilities = '';
  private readonly transports: Partial<Record<Direction, types.Transport>> = {};
  private readonly producers = new Map<Source, types.Producer>();
  private readonly remoteTracks = new Map<string, RemoteTrack>();
  /** Tracks the SDK captured itself, and therefore stops. */
  private readonly ownedTracks = new WeakSet<MediaStreamTrack>();
  /** Our participant ids from sessions replaced by a rejoin: never treat them as someone else. */
  private readonly formerLocalIds = new Set<string>();
  private granted: Grants = { canPublish: false, canSubscribe: false, sources: [], canRecord: false };
  /** The room's recording as last heard of (undefined when not recorded). */
  recording: RecordingEvent | undefined;
  private initialRecording: RecordingStatus | undefined;
  private closed = false;
  /** Until the app had a chance to add listeners, room state is held back (see connect()). */
  private announced = false;
  private initialParticipants: ParticipantInfo[] = [];
  private initialMessages: ChatMessageInfo[] = [];
  private readonly chat = new ChatLog();
  private initialSmartActions: SmartActionInfo[] = [];
  private readonly actionLog = new SmartActionLog();
  /** Where uploads and attachment URLs go: the signaling server's HTTP side. */
  private readonly httpBase: string;
  private backlog: NotificationEvent[] = [];
  private pumpRun: Promise<void> | undefined;
  private pumpAgain = false;
  private readonly iceRestarts = new Map<types.Transport, { timer?: ReturnType<typeof setTimeout>; attempts: number }>();

  private constructor(private readonly options: ConnectOptions) {
    super();
    this.httpBase = signalingHttpBase(options.url);
    this.client = new SignalingClient({ ...options, restore: (response, how) => this.sync(response, how) });
    this.client.on('notification', (event) => this.onNotification(event));
    this.client.on('reconnecting', () => {
      this.cancelIceRestarts();
      this.emit('reconnecting');
    });
    this.client.on('reconnected', (info) => this.emit('reconnected', info));
    this.client.on('disconnected', (info) => {
      this.teardown();
      this.emit('disconnected', info);
    });
  }

  /** Joins a room: `const room = await Room.connect({ url, token })`. */
  static async connect(options: ConnectOptions): Promise<Room> {
    const room = new Room(options);
    try {
      await room.client.connect();
    } catch (error) {
      room.teardown();
      throw error;
    }
    // Who is already here, and their tracks, are announced after connect() has resolved, so
    // listeners the app adds right after it see every participant and every track.
    setTimeout(() => room.announce(), 0);
    return room;
  }

  /** What the join token allows: publishing (and which sources), subscribing. */
  get grants(): Readonly<Grants> {
    return this.granted;
  }

  get state(): RoomState {
    const state = this.client.state;
    return state === 'reconnecting' ? 'reconnecting' : state === 'connected' ? 'connected' : 'disconnected';
  }

  /**
   * Publishes the given sources; `true` captures them (camera and microphone with one prompt),
   * a MediaStreamTrack is published as given (and replaces what the source published before).
   */
  async publish(options: PublishOptions): Promise<void> {
    this.assertOpen();
    const sources = SOURCES.filter((s) => options[s]);
    for (const source of sources) {
      if (!this.granted.canPublish || !this.granted.sources.includes(source)) {
        throw new GatewayError(ErrorCode.PERMISSION_DENIED, `this token may not publish the ${source}`);
      }
      const given = options[source];
      if (typeof given === 'object' && given.kind !== kindOf[source]) {
        throw new GatewayError(ErrorCode.BAD_REQUEST, `the ${source} needs a ${kindOf[source]} track`);
      }
    }
    const tracks = await this.tracksFor(options, sources);
    try {
      await this.client.whenConnected();
      for (const [source, track] of tracks) await this.publishTrack(source, track);
    } catch (error) {
      // Nothing captured for a publish that failed stays open (the camera light would stay on).
      for (const [source, track] of tracks) if (this.ownedTracks.has(track) && this.localTracks.get(source) !== track) track.stop();
      throw error;
    }
  }

  /** Stops publishing a source (and stops its track if the SDK captured it). */
  async unpublish(source: Source): Promise<void> {
    const track = this.localTracks.get(source);
    const producer = this.producers.get(source);
    this.localTracks.delete(source);
    this.producers.delete(source);
    if (producer) {
      producer.close();
      // When not connected, the reconciliation after a resume closes it on the server.
      if (this.client.state === 'connected') await this.client.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
    }
    if (track) {
      if (this.ownedTracks.has(track)) track.stop();
      this.emit('localTrackUnpublished', { source, track });
    }
  }

  /** Starts recording the room (agents whose token grants canRecord). */
  async startRecording(): Promise<RecordingEvent> {
    return this.recordingStatus(await this.client.request('startRecording', {}, 30_000));
  }

  /** PCI pause: nothing is recorded until resumeRecording(). */
  async pauseRecording(): Promise<RecordingEvent> {
    return this.recordingStatus(await this.client.request('pauseRecording', {}));
  }

  async resumeRecording(): Promise<RecordingEvent> {
    return this.recordingStatus(await this.client.request('resumeRecording', {}));
  }

  async stopRecording(): Promise<RecordingEvent> {
    return this.recordingStatus(await this.client.request('stopRecording', {}, 60_000));
  }

  private recordingStatus(status: RecordingStatus): RecordingEvent {
    const by = status.by === this.localParticipant.id ? this.localParticipant : this.participants.get(status.by);
    return { recordingId: status.recordingId, state: status.state as RecordingEvent['state'], by };
  }

  /** Updates `recording` and tells the app when the state changed. */
  private onRecordingStatus(status: RecordingStatus | undefined): void {
    if (!status) {
      // Not recorded (any more): a recording that ended while we were away is reported stopped.
      if (this.recording && this.recording.state !== 'stopped') this.onRecordingStatus({ recordingId: this.recording.recordingId, state: 'stopped', by: '' });
      return;
    }
    if (this.recording?.recordingId === status.recordingId && this.recording.state === status.state) return;
    this.recording = this.recordingStatus(status);
    this.emit('recording', this.recording);
  }

  /** The room's chat, oldest first (ordered by messageId): the history it had when we joined, and everything since. */
  get messages(): readonly ChatMessage[] {
    return this.chat.messages;
  }

  /**
   * Sends a chat message; resolves with it as the server stored it (text redacted, id and time
   * assigned), which `message` also announces. While the connection is away the send waits for
   * it and is repeated with the same clientMessageId, so the server stores it once. Rejects
   * with MESSAGE_TOO_LARGE, RATE_LIMITED (see retryAfterMs), BAD_REQUEST (empty) or ROOM_CLOSED.
   */
  async sendMessage(text: string): Promise<ChatMessage> {
    this.assertOpen();
    if (typeof text !== 'string') throw new GatewayError(ErrorCode.BAD_REQUEST, 'a chat message is text');
    if (new TextEncoder().encode(JSON.stringify(text)).length > MAX_MESSAGE_BYTES) {
      throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, 'the message is too long');
    }
    const clientMessageId = randomUuid();
    try {
      return await this.deliver(
        async () => this.onChatMessage(await this.client.request('sendMessage', { text, clientMessageId })),
        () => this.chat.sentWith(clientMessageId),
      );
    } catch (error) {
      // The server's frame limit is set lower than a message's: for the app it is the same thing.
      if (hasCode(error, ErrorCode.FRAME_TOO_LARGE)) throw new GatewayError(ErrorCode.MESSAGE_TOO_LARGE, 'the message is too long', { cause: error });
      throw error;
    }
  }

  /**
   * Agents: redacts a message for everyone (its text is emptied, here and in the stored copy).
   * Rejects with PERMISSION_DENIED (not an agent) or NOT_FOUND (no such message in the room).
   */
  async redactMessage(messageId: string): Promise<void> {
    this.assertOpen();
    await this.deliver(
      async () => {
        await this.client.request('redactMessage', { messageId });
        this.onChatRedacted({ messageId, by: this.localParticipant.id });
        return true;
      },
      () => (this.chat.get(messageId)?.redacted ? true : undefined),
    );
  }

  /**
   * Runs a request that is safe to repeat, waiting for the connection when it is away: cut off
   * (or unanswered), it is sent again once connected. `delivered` checks first whether an earlier
   * attempt went through after all (a resume or rejoin brings back what the server has).
   */
  private async deliver<T>(send: () => Promise<T>, delivered: () => T | undefined): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      await this.client.whenConnected();
      const done = delivered();
      if (done !== undefined) return done;
      try {
        return await send();
      } catch (error) {
        if (attempt >= CHAT_ATTEMPTS || !hasCode(error, ErrorCode.CONNECTION_CLOSED, ErrorCode.TIMEOUT)) throw error;
      }
    }
  }

  // ------------------------------------------------------------------------- Smart Actions

  /** The conversation's Smart Actions, oldest request first: those the room had when we joined, and every one since. */
  /** Who speaks now (the loudest voice the room's media node hears), or undefined in silence. */
  get activeSpeaker(): Participant | undefined {
    if (!this.speakerId) return undefined;
    return this.speakerId === this.localParticipant?.id ? this.localParticipant : this.participants.get(this.speakerId);
  }

  get smartActions(): readonly SmartAction[] {
    return this.actionLog.actions;
  }

  /**
   * Agents: asks an end user for a photo, a screenshot or a verification; `participantId` may be
   * left out when the room has exactly one end user. Resolves with the action as stored:
   * 'requested', or 'failed' at once for a verification of an end user without a registered
   * device key (see `reason`). Rejects with PERMISSION_DENIED (not an agent), BAD_REQUEST (an
   * unknown kind; no participantId while the room has no or several end users) or NOT_FOUND.
   * Not repeated after a cut connection (it would ask twice): the `smartAction` event tells.
   */
  async requestSmartAction(kind: SmartActionKind, participantId = ''): Promise<SmartAction> {
    this.assertOpen();
    await this.client.whenConnected();
    return this.onSmartAction(await this.client.request('requestSmartAction', { kind, participantId }));
  }

  /**
   * Agents: an absolute URL of an attachment (a completed photo or screenshot's `artifactId`),
   * for an <img src> or a download. It is signed for the agent's tenant and expires after a few
   * minutes: ask again rather than keeping it. Rejects with NOT_FOUND (no such attachment in the
   * room) or PERMISSION_DENIED (not an agent).
   */
  async attachmentUrl(artifactId: string): Promise<string> {
    this.assertOpen();
    const { url } = await this.deliver(() => this.client.request('artifactUrl', { artifactId }), () => undefined);
    return /^https?:\/\//.test(url) ? url : `${this.httpBase}${url.startsWith('/') ? '' : '/'}${url}`;
  }

  /** Agents: an attachment's bytes (an image/jpeg, image/png or image/webp Blob), through a fresh attachmentUrl(). */
  async fetchAttachment(artifactId: string): Promise<Blob> {
    const response = await httpFetch(await this.attachmentUrl(artifactId), { cache: 'no-store' });
    if (!response.ok) throw await httpError(response);
    return response.blob();
  }

  /**
   * End users: answers a photo request with an image (a JPEG, PNG or WebP File or Blob, from an
   * <input type=file accept="image/*" capture>, say). The server checks what the bytes are,
   * strips all metadata (the GPS position in a phone's EXIF included) and stores it; the agent
   * hears of it through the `smartAction` event. Rejects with MESSAGE_TOO_LARGE,
   * UNSUPPORTED_CONTENT (not such an image), INVALID_STATE (already answered), NOT_FOUND,
   * PERMISSION_DENIED (asked of someone else) or UNAVAILABLE (the server could not be reached).
   */
  async sendPhoto(actionId: string, photo: Blob): Promise<SmartActionUpload> {
    this.pendingForMe(actionId, 'photo');
    if (!(photo instanceof Blob)) throw new GatewayError(ErrorCode.BAD_REQUEST, 'a photo is a Blob or File');
    return this.upload(actionId, photo);
  }

  /**
   * End users: answers a screenshot request with a PNG the SDK captures: a frame of the screen
   * share being published if there is one, else of `source` (what a canvas shows, or a frame of
   * a video track, e.g. a one-off getDisplayMedia() capture, left running), else a frame of the
   * published camera. Rejects with INVALID_STATE when there is nothing to capture (share the
   * screen first), and like sendPhoto().
   */
  async sendScreenshot(actionId: string, source?: HTMLCanvasElement | MediaStreamTrack): Promise<SmartActionUpload> {
    this.pendingForMe(actionId, 'screenshot');
    const live = (source: Source) => {
      const track = this.localTracks.get(source);
      return track && track.readyState === 'live' ? track : undefined;
    };
    const screen = live('screen');
    const camera = live('camera');
    let png: Blob;
    if (screen) png = await captureFrame(screen);
    else if (source && isTrack(source)) png = await captureFrame(source);
    else if (source) png = await canvasToPng(source);
    else if (camera) png = await captureFrame(camera);
    else throw new GatewayError(ErrorCode.INVALID_STATE, 'nothing to capture: share the screen first');
    return this.upload(actionId, png);
  }

  /** End users: declines a request. Resolves with the action, now 'declined'. */
  async declineSmartAction(actionId: string): Promise<SmartAction> {
    this.pendingForMe(actionId);
    return this.answerSmartAction(actionId, { decline: true, webauthnResponse: undefined });
  }

  /**
   * End users: answers a verification request by signing its challenge with this device's
   * registered key (the browser may ask for a fingerprint, face or PIN). Resolves with the
   * action, 'completed' with `verified` true or false; an action already answered or failed
   * (no device key registered: see `reason`) is returned as it is. Rejects with
   * PERMISSION_DENIED when the user cancels or the browser refuses, UNSUPPORTED without WebAuthn.
   */
  async verifyDevice(actionId: string): Promise<SmartAction> {
    this.assertOpen();
    const action = this.actionLog.get(actionId);
    if (!action) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such Smart Action in this room');
    if (action.kind !== 'verification') throw new GatewayError(ErrorCode.BAD_REQUEST, `a ${action.kind} is answered by uploading it`);
    if (action.state !== 'requested') return action;
    this.pendingForMe(actionId, 'verification');
    const optionsJSON = action.webauthnOptions;
    if (!optionsJSON) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the verification carries no WebAuthn options');
    const response = await webauthnCeremony(() => startAuthentication({ optionsJSON }), 'the verification');
    return this.answerSmartAction(actionId, { decline: false, webauthnResponse: response as unknown as Record<string, unknown> });
  }

  /**
   * End users: registers a key of this device (a passkey, behind the device's fingerprint, face
   * or PIN) so that agents can later ask for a verification. Once per device is enough; the key
   * belongs to the end user's identity, not to this call. Resolves with the credential id.
   * Rejects with INVALID_STATE when this device already holds a registered key, PERMISSION_DENIED
   * when the user cancels, UNSUPPORTED without WebAuthn (it needs https or localhost).
   */
  async registerDeviceKey(): Promise<string> {
    this.assertOpen();
    await this.client.whenConnected();
    const options = await this.client.request('deviceKeyOptions', {});
    if (!options) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the server sent no registration options');
    const optionsJSON = options as unknown as PublicKeyCredentialCreationOptionsJSON;
    const response = await webauthnCeremony(() => startRegistration({ optionsJSON }), 'the registration');
    // On the same connection when possible: the server keeps the challenge with the session.
    const { credentialId } = await this.client.request('registerDeviceKey', { response: response as unknown as Record<string, unknown> });
    return credentialId;
  }

  /** Sends the end user's answer, once: repeated after a cut only if the action is still open. */
  private answerSmartAction(actionId: string, answer: { decline: boolean; webauthnResponse: Record<string, unknown> | undefined }): Promise<SmartAction> {
    return this.deliver(
      async () => this.onSmartAction(await this.client.request('answerSmartAction', { actionId, ...answer })),
      () => {
        const action = this.actionLog.get(actionId);
        return action && action.state !== 'requested' ? action : undefined;
      },
    );
  }

  /** Checks locally what the server would refuse anyway, before asking the user for anything. */
  private pendingForMe(actionId: string, kind?: SmartActionKind): SmartAction {
    this.assertOpen();
    const action = this.actionLog.get(actionId);
    if (!action) throw new GatewayError(ErrorCode.NOT_FOUND, 'no such Smart Action in this room');
    if (kind && action.kind !== kind) throw new GatewayError(ErrorCode.BAD_REQUEST, `this Smart Action asks for a ${action.kind}, not a ${kind}`);
    if (action.participantId !== this.localParticipant.id) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this Smart Action asks someone else');
    if (action.state !== 'requested') throw new GatewayError(ErrorCode.INVALID_STATE, `this Smart Action is already ${action.state}`);
    return action;
  }

  /** Uploads a photo or screenshot over HTTP, authenticated by the session's token. */
  private async upload(actionId: string, image: Blob): Promise<SmartActionUpload> {
    await this.client.whenConnected();
    const response = await httpFetch(`${this.httpBase}/v1/smart-actions/${encodeURIComponent(actionId)}/upload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.client.sessionToken}`, 'content-type': image.type || 'application/octet-stream' },
      body: image,
    });
    if (response.status !== 201) throw await httpError(response);
    const body = (await response.json()) as Partial<SmartActionUpload>;
    return { actionId: body.actionId ?? actionId, artifactId: body.artifactId ?? '', contentType: body.contentType ?? '', sizeBytes: Number(body.sizeBytes ?? 0) };
  }

  /** Leaves the room: the others see us go at once, and nothing reconnects. */
  async leave(): Promise<void> {
    await this.client.leave();
  }

  /** WebRTC statistics of the two transports (for quality indicators and tests). */
  async getStats(): Promise<{ send?: RTCStatsReport; recv?: RTCStatsReport }> {
    const [send, recv] = await Promise.all([this.transports.send?.getStats(), this.transports.recv?.getStats()]);
    return { send, recv };
  }

  /** Receive statistics per remote track. */
  async getReceiveStats(): Promise<Array<{ participantId: string; source: RemoteSource; kind: string; stats: RTCStatsReport }>> {
    const consumed = [...this.remoteTracks.values()].filter((r) => r.consumer && !r.consumer.closed);
    return Promise.all(
      consumed.map(async (r) => ({ participantId: r.participantId, source: r.source, kind: r.consumer!.kind, stats: await r.consumer!.getStats() })),
    );
  }

  /** Test hook: closes the WebSocket as a network cut would (no leave), so the session resumes. */
  _debugDropSocket(): void {
    this.client.dropSocket();
  }

  // ------------------------------------------------------------------------- session state

  /** Brings everything in line with a fresh JoinResponse (first join, resume or rejoin). */
  private async sync(response: JoinResponse, how: 'joined' | 'resumed' | 'rejoined'): Promise<void> {
    if (this.closed) throw new GatewayError(ErrorCode.ROOM_CLOSED, 'the room was left');
    const me = response.participant;
    if (!me) throw new GatewayError(ErrorCode.MALFORMED_MESSAGE, 'the join response names no participant');
    if (this.localParticipant && this.localParticipant.id !== me.participantId) this.formerLocalIds.add(this.localParticipant.id);
    this.localParticipant = this.participantFrom(me, true, this.localTracks);
    this.name = response.room;
    const grants = response.grants;
    this.granted = {
      canPublish: grants?.canPublish ?? false,
      canSubscribe: grants?.canSubscribe ?? false,
      sources: (grants?.sources ?? []) as Source[],
      canRecord: grants?.canRecord ?? false,
    };
    if (this.announced) this.onRecordingStatus(response.recording);
    else this.initialRecording = response.recording;
    this.speakerId = response.activeSpeakerParticipantId ?? '';
    // The chat history: merged, so messages seen before are not announced again, those missed
    // while away are, and redactions made meanwhile are applied.
    if (this.announced) for (const message of response.messages) this.onChatMessage(message);
    else this.initialMessages = [...this.initialMessages, ...response.messages];
    // Smart Actions likewise: those that changed while away are announced, the rest not again.
    if (this.announced) for (const action of response.smartActions) this.onSmartAction(action);
    else this.initialSmartActions = [...this.initialSmartActions, ...response.smartActions];

    // Who is here first, before any await: notifications from now on are newer than this snapshot.
    const others = response.participants.filter((p) => !this.formerLocalIds.has(p.participantId));
    if (this.announced) this.reconcileParticipants(others);
    else {
      this.initialParticipants = others;
      this.backlog = [];
    }

    await this.loadDevice(response.routerRtpCapabilities ?? {});
    const kept = await this.ensureTransports(new Set(response.transportIds));
    await this.reconcileProducers(me.tracks);
    if (this.announced) await this.pump();
    // The network may have changed under the media too (a resumed session keeps its transports).
    for (const transport of kept) await this.restartIce(transport);
  }

  private async loadDevice(routerRtpCapabilities: Record<string, unknown>): Promise<void> {
    const key = JSON.stringify(routerRtpCapabilities);
    if (this.device && key === this.deviceCapabilities) return;
    let device: Device;
    try {
      device = this.options.handlerFactory ? new Device({ handlerFactory: this.options.handlerFactory }) : await Device.factory();
    } catch (error) {
      throw GatewayError.from(error, ErrorCode.UNSUPPORTED);
    }
    await device.load({ routerRtpCapabilities: routerRtpCapabilities as types.RtpCapabilities });
    // Transports belong to the device they were made with.
    this.closeTransport('send');
    this.closeTransport('recv');
    this.device = device;
    this.deviceCapabilities = key;
  }

  /** Keeps the transports the session still has on the server, makes the missing ones. Returns the kept ones. */
  private async ensureTransports(live: Set<string>): Promise<types.Transport[]> {
    const kept: types.Transport[] = [];
    for (const direction of ['send', 'recv'] as const) {
      const wanted = direction === 'send' ? this.granted.canPublish : this.granted.canSubscribe;
      const current = this.transports[direction];
      if (current && wanted && !current.closed && live.has(current.id)) {
        kept.push(current);
        continue;
      }
      this.closeTransport(direction);
      if (wanted) this.transports[direction] = await this.createTransport(direction);
    }
    return kept;
  }

  private async createTransport(direction: Direction): Promise<types.Transport> {
    const info = await this.client.request('createTransport', { direction });
    const options: types.TransportOptions = {
      id: info.transportId,
      iceParameters: info.iceParameters as types.IceParameters,
      iceCandidates: info.iceCandidates as types.IceCandidate[],
      dtlsParameters: info.dtlsParameters as types.DtlsParameters,
    };
    const transport = direction === 'send' ? this.device!.createSendTransport(options) : this.device!.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.client.request('connectTransport', { transportId: transport.id, dtlsParameters: asStruct(dtlsParameters) }).then(() => callback(), errback);
    });
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      this.client
        .request('produce', { transportId: transport.id, kind, rtpParameters: asStruct(rtpParameters), source: String(appData.source), paused: false })
        .then(({ producerId }) => callback({ id: producerId }), errback);
    });
    transport.on('connectionstatechange', (state) => this.onTransportState(transport, state));
    return transport;
  }

  private closeTransport(direction: Direction): void {
    const transport = this.transports[direction];
    if (!transport) return;
    delete this.transports[direction];
    const restart = this.iceRestarts.get(transport);
    clearTimeout(restart?.timer);
    this.iceRestarts.delete(transport);
    if (direction === 'recv') {
      // Its consumers die with it; the tracks stay known and are consumed again on a new one.
      for (const remote of this.remoteTracks.values()) this.detachConsumer(remote);
    } else {
      // Its producers die with it; localTracks still says what to publish again.
      this.producers.clear();
    }
    transport.close();
  }

  // ------------------------------------------------------------------------- publishing

  private async tracksFor(options: PublishOptions, sources: Source[]): Promise<Array<[Source, MediaStreamTrack]>> {
    const out: Array<[Source, MediaStreamTrack]> = [];
    const capture = (s: Source) => options[s] === true && !this.localTracks.has(s);
    if (capture('camera') || capture('microphone')) {
      const captured = await captureUserMedia({ camera: capture('camera'), microphone: capture('microphone') });
      for (const source of ['camera', 'microphone'] as const) {
        const track = captured[source];
        if (track) this.ownedTracks.add(track);
        if (track) out.push([source, track]);
      }
    }
    if (capture('screen')) {
      const track = await captureScreen();
      this.ownedTracks.add(track);
      out.push(['screen', track]);
    }
    for (const source of sources) {
      const given = options[source];
      if (typeof given === 'object') out.push([source, given]);
    }
    return out;
  }

  private async publishTrack(source: Source, track: MediaStreamTrack): Promise<void> {
    const previous = this.localTracks.get(source);
    if (previous === track) return;
    const producer = this.producers.get(source);
    if (producer && previous) {
      await producer.replaceTrack({ track });
      this.localTracks.set(source, track);
      if (this.ownedTracks.has(previous)) previous.stop();
      this.emit('localTrackUnpublished', { source, track: previous });
      this.emit('localTrackPublished', { source, track });
      return;
    }
    this.localTracks.set(source, track);
    try {
      await this.produce(source, track);
    } catch (error) {
      if (this.localTracks.get(source) === track) this.localTracks.delete(source);
      throw error;
    }
    this.emit('localTrackPublished', { source, track });
  }

  private async produce(source: Source, track: MediaStreamTrack): Promise<void> {
    const transport = this.transports.send;
    if (!transport) throw new GatewayError(ErrorCode.PERMISSION_DENIED, 'this token may not publish');
    const producer = await transport.produce({ track, ...producerOptions(source, track), stopTracks: false, appData: { source } });
    if (this.localTracks.get(source) !== track || this.transports.send !== transport) {
      // Unpublished (or the transport replaced) while the server was creating it.
      producer.close();
      await this.client.request('closeProducer', { producerId: producer.id }).catch(() => undefined);
      return;
    }
    // The browser's "Stop sharing" button (or an unplugged camera) ends the track.
    producer.on('trackended', () => void this.unpublish(source).catch(() => undefined));
    this.producers.set(source, producer);
  }

  /**
   * Makes the server's producers match localTracks: closes the ones we no longer publish,
   * publishes again what the server lost (always the case after a rejoin).
   */
  private async reconcileProducers(onServer: TrackInfo[]): Promise<void> {
    const serverIds = new Set(onServer.map((t) => t.producerId));
    for (const [source, producer] of [...this.producers]) {
      if (serverIds.has(producer.id)) continue;
      producer.close();
      this.producers.delete(source);
    }
    const ours = new Set([...this.producers.values()].map((p) => p.id));
    for (const track of onServer) {
      if (!ours.has(track.producerId)) await this.client.request('closeProducer', { producerId: track.producerId }).catch(() => undefined);
    }
    for (const [source, track] of [...this.localTracks]) {
      if (this.producers.has(source)) continue;
      try {
        if (track.readyState === 'ended') throw new GatewayError(ErrorCode.NOT_FOUND, 'the track ended');
        await this.produce(source, track);
      } catch (error) {
        if (hasCode(error, ErrorCode.CONNECTION_CLOSED, ErrorCode.TIMEOUT)) throw error;
        // Cannot come back (e.g. the new token does not allow it): tell the app it is gone.
        warn(`could not publish the ${source} again`, error);
        this.localTracks.delete(source);
        if (this.ownedTracks.has(track)) track.stop();
        this.emit('localTrackUnpublished', { source, track });
      }
    }
  }

  // ------------------------------------------------------------------------- receiving

  /**
   * Announces the participants present at join and replays what arrived since, then receives.
   * Runs once, on the task after connect() resolved or earlier when an answer to the app needs it.
   */
  private announce(): void {
    if (this.closed || this.announced) return;
    this.announced = true;
    this.reconcileParticipants(this.initialParticipants);
    this.onRecordingStatus(this.initialRecording);
    for (const message of this.initialMessages) this.onChatMessage(message);
    for (const action of this.initialSmartActions) this.onSmartAction(action);
    const backlog = this.backlog;
    this.initialParticipants = [];
    this.initialMessages = [];
    this.initialSmartActions = [];
    this.backlog = [];
    for (const event of backlog) this.onNotification(event);
    void this.pump();
  }

  private onNotification(event: NotificationEvent): void {
    if (this.closed) return;
    if (!this.announced) {
      this.backlog.push(event);
      return;
    }
    switch (event.$case) {
      case 'participantJoined':
        this.upsertParticipant(event.value);
        void this.pump();
        return;
      case 'participantLeft':
        this.removeParticipant(event.value.participantId);
        return;
      case 'producerAdded': {
        const { participantId, track } = event.value;
        if (!track || !this.participants.has(participantId)) return;
        this.addRemoteTrack(participantId, track);
        void this.pump();
        return;
      }
      case 'producerClosed':
        this.dropRemoteTrack(event.value.producerId);
        return;
      case 'producerPaused':
      case 'producerResumed':
        this.setRemotePaused(event.value.producerId, event.$case === 'producerPaused');
        return;
      case 'activeSpeaker': {
        this.speakerId = event.value.participantId;
        const participant = this.activeSpeaker;
        if (participant) this.emit('activeSpeaker', participant);
        return;
      }
      case 'recording':
        this.onRecordingStatus(event.value);
        return;
      case 'message':
        this.onChatMessage(event.value);
        return;
      case 'messageRedacted':
        this.onChatRedacted(event.value);
        return;
      case 'smartAction':
        this.onSmartAction(event.value);
        return;
      case 'rejoinRequired':
        // The socket closes with 4010 right after; the client joins again.
        return;
    }
  }

  // ------------------------------------------------------------------------- chat

  /** Takes in a copy of a chat message (a notification, history, the sender's response) and returns the room's copy. */
  private onChatMessage(info: ChatMessageInfo): ChatMessage {
    // An answer to the app can come before the room was announced (connect() resolved a moment
    // ago): announce now, so the history comes before it and `messages` holds it on return.
    this.announce();
    const { added, redacted, redactedBy } = this.chat.upsert(info, this.isOwn(info.participantId));
    if (added) this.emit('message', added);
    if (redacted) this.emit('messageRedacted', redacted, this.participantOf(redactedBy));
    return this.chat.get(info.messageId) ?? chatMessageFrom(info, this.isOwn(info.participantId));
  }

  /** Takes in a copy of a Smart Action (a notification, a snapshot, a response) and returns the room's copy. */
  private onSmartAction(info: SmartActionInfo): SmartAction {
    this.announce();
    const changed = this.actionLog.upsert(info);
    if (changed) this.emit('smartAction', changed);
    return this.actionLog.get(info.actionId) ?? smartActionFrom(info);
  }

  private onChatRedacted(event: MessageRedacted): void {
    this.announce();
    const message = this.chat.redact(event.messageId);
    if (message) this.emit('messageRedacted', message, this.participantOf(event.by));
  }

  /** The local participant or someone in the room; undefined for anyone else (gone, or not said). */
  private participantOf(participantId: string | undefined): Participant | undefined {
    if (!participantId) return undefined;
    return this.isOwn(participantId) ? this.localParticipant : this.participants.get(participantId);
  }

  /** Whether a participant id is ours, in this session or one a rejoin replaced. */
  private isOwn(participantId: string): boolean {
    return participantId === this.localParticipant?.id || this.formerLocalIds.has(participantId);
  }

  /** Makes participants and their tracks match a snapshot, announcing every difference. */
  private reconcileParticipants(snapshot: ParticipantInfo[]): void {
    const present = new Map(snapshot.map((p) => [p.participantId, p]));
    for (const id of [...this.participants.keys()]) if (!present.has(id)) this.removeParticipant(id);
    for (const info of snapshot) {
      this.upsertParticipant(info);
      const live = new Set(info.tracks.map((t) => t.producerId));
      for (const remote of [...this.remoteTracks.values()]) {
        if (remote.participantId === info.participantId && !live.has(remote.producerId)) this.dropRemoteTrack(remote.producerId);
      }
    }
  }

  private upsertParticipant(info: ParticipantInfo): void {
    if (this.formerLocalIds.has(info.participantId)) return;
    if (!this.participants.has(info.participantId)) {
      const participant = this.participantFrom(info, false, new Map());
      this.participants.set(participant.id, participant);
      this.emit('participantJoined', participant);
    }
    for (const track of info.tracks) this.addRemoteTrack(info.participantId, track);
  }

  private removeParticipant(participantId: string): void {
    const participant = this.participants.get(participantId);
    if (!participant) return;
    for (const remote of [...this.remoteTracks.values()]) if (remote.participantId === participantId) this.dropRemoteTrack(remote.producerId);
    this.participants.delete(participantId);
    this.emit('participantLeft', participant);
  }

  private addRemoteTrack(participantId: string, info: TrackInfo): void {
    const existing = this.remoteTracks.get(info.producerId);
    if (existing) {
      this.setRemotePaused(info.producerId, info.paused);
      return;
    }
    this.remoteTracks.set(info.producerId, {
      producerId: info.producerId,
      participantId,
      source: info.source as RemoteSource,
      paused: info.paused,
      announced: false,
      failed: false,
    });
  }

  private dropRemoteTrack(producerId: string): void {
    const remote = this.remoteTracks.get(producerId);
    if (!remote) return;
    this.remoteTracks.delete(producerId);
    this.detachConsumer(remote);
  }

  /** Closes the consumer of a remote track (which stays known) and tells the app. */
  private detachConsumer(remote: RemoteTrack): void {
    const consumer = remote.consumer;
    if (!consumer) return;
    remote.consumer = undefined;
    consumer.close();
    const participant = this.participants.get(remote.participantId) as MutableParticipant | undefined;
    if (!remote.announced) return;
    remote.announced = false;
    if (participant?.tracks.get(remote.source) === consumer.track) participant.tracks.delete(remote.source);
    if (participant) this.emit('trackEnded', { participant, source: remote.source, track: consumer.track });
  }

  private setRemotePaused(producerId: string, paused: boolean): void {
    const remote = this.remoteTracks.get(producerId);
    if (!remote || remote.paused === paused) return;
    remote.paused = paused;
    const consumer = remote.consumer;
    const participant = this.participants.get(remote.participantId);
    if (!consumer || !participant || !remote.announced) return;
    // Locally too, so the receiver stops expecting media instead of showing a stall.
    if (paused) consumer.pause();
    else consumer.resume();
    this.emit(paused ? 'trackPaused' : 'trackResumed', { participant, source: remote.source, track: consumer.track });
  }

  /**
   * Consumes every known remote track that has no consumer yet, one at a time. Level-triggered:
   * anything that changes what should be received calls it again; concurrent calls share one run.
   */
  private pump(): Promise<void> {
    this.pumpAgain = true;
    this.pumpRun ??= this.runPump();
    return this.pumpRun;
  }

  private async runPump(): Promise<void> {
    // Yield once, so pump() has stored this run before it can finish.
    await Promise.resolve();
    try {
      while (this.pumpAgain) {
        this.pumpAgain = false;
        for (const remote of [...this.remoteTracks.values()]) {
          if (this.closed || !this.transports.recv || this.client.state === 'disconnected') return;
          if (remote.consumer || remote.failed || this.remoteTracks.get(remote.producerId) !== remote) continue;
          if (!(await this.consume(remote))) return;
        }
      }
    } finally {
      this.pumpRun = undefined;
    }
  }

  /** Returns false when the connection failed (stop for now: a reconnection pumps again). */
  private async consume(remote: RemoteTrack): Promise<boolean> {
    const transport = this.transports.recv!;
    const stale = () => this.closed || this.transports.recv !== transport || this.remoteTracks.get(remote.producerId) !== remote;
    try {
      const info = await this.client.request('consume', {
        producerId: remote.producerId,
        rtpCapabilities: asStruct(this.device!.recvRtpCapabilities),
        transportId: transport.id,
      });
      if (stale()) return true;
      const consumer = await transport.consume({
        id: info.consumerId,
        producerId: info.producerId,
        kind: info.kind as types.MediaKind,
        rtpParameters: info.rtpParameters as types.RtpParameters,
        appData: { participantId: remote.participantId, source: remote.source },
      });
      if (stale()) {
        consumer.close();
        return true;
      }
      remote.consumer = consumer;
      // Created paused on the server; resuming it there also asks the sender for a key frame.
      await this.client.request('resumeConsumer', { consumerId: consumer.id });
      if (remote.consumer !== consumer || stale()) return true;
      const participant = this.participants.get(remote.participantId) as MutableParticipant | undefined;
      if (!participant) return true;
      if (remote.paused) consumer.pause();
      remote.announced = true;
      participant.tracks.set(remote.source, consumer.track);
      this.emit('track', { participant, source: remote.source, track: consumer.track });
      return true;
    } catch (error) {
      if (remote.consumer && this.remoteTracks.get(remote.producerId) === remote) {
        remote.consumer.close();
        remote.consumer = undefined;
      }
      if (hasCode(error, ErrorCode.CONNECTION_CLOSED)) return false;
      if (hasCode(error, ErrorCode.TIMEOUT)) {
        // A live but slow connection: try again a little later.
        setTimeout(() => void this.pump(), 2_000);
        return false;
      }
      if (hasCode(error, ErrorCode.NOT_FOUND)) {
        // The producer closed meanwhile; its producerClosed notification is on its way.
        this.remoteTracks.delete(remote.producerId);
        return true;
      }
      remote.failed = true;
      warn(`could not receive a ${remote.source} track`, error);
      return true;
    }
  }

  // ------------------------------------------------------------------------- media path recovery

  private onTransportState(transport: types.Transport, state: types.ConnectionState): void {
    if (state === 'connected') {
      clearTimeout(this.iceRestarts.get(transport)?.timer);
      this.iceRestarts.delete(transport);
    } else if (state === 'failed' || state === 'disconnected') {
      // 'disconnected' often heals by itself within a second or two; 'failed' never does.
      this.scheduleIceRestart(transport, state === 'failed' ? 0 : 1_500);
    }
  }

  private scheduleIceRestart(transport: types.Transport, delayMs: number): void {
    const entry = this.iceRestarts.get(transport) ?? { attempts: 0 };
    if (entry.timer) return;
    this.iceRestarts.set(transport, entry);
    entry.timer = setTimeout(async () => {
      entry.timer = undefined;
      if (this.closed || transport.closed || transport.connectionState === 'connected') return;
      // While signaling reconnects, its restore restarts ICE anyway.
      if (this.client.state !== 'connected') return;
      entry.attempts++;
      await this.restartIce(transport).catch(() => undefined);
      // New credentials do not guarantee a path: look again later, backing off.
      if (this.iceRestarts.get(transport) === entry) this.scheduleIceRestart(transport, backoffDelay(entry.attempts, 2_000, 15_000));
    }, delayMs);
  }

  private async restartIce(transport: types.Transport): Promise<void> {
    const { iceParameters } = await this.client.request('restartIce', { transportId: transport.id });
    if (!transport.closed) await transport.restartIce({ iceParameters: iceParameters as types.IceParameters });
  }

  private cancelIceRestarts(): void {
    for (const entry of this.iceRestarts.values()) clearTimeout(entry.timer);
    this.iceRestarts.clear();
  }

  // ------------------------------------------------------------------------- helpers

  private participantFrom(info: ParticipantInfo, isLocal: boolean, tracks: Map<RemoteSource, MediaStreamTrack>): MutableParticipant {
    return { id: info.participantId, identity: info.identity, role: info.role, joinedAtMs: info.joinedAtMs, isLocal, tracks };
  }

  private assertOpen(): void {
    if (this.closed || this.client.state === 'disconnected') throw new GatewayError(ErrorCode.ROOM_CLOSED, 'the room was left or disconnected');
  }

  /** Releases everything; the room is unusable afterwards. */
  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelIceRestarts();
    this.closeTransport('recv');
    this.closeTransport('send');
    this.remoteTracks.clear();
    for (const [source, track] of [...this.localTracks]) {
      if (this.ownedTracks.has(track)) track.stop();
      this.localTracks.delete(source);
    }
  }
}

/**
 * Runs a WebAuthn ceremony (the browser's prompt for the device's key), turning what browsers
 * throw into GatewayErrors: cancelled or refused, already registered, or not possible here.
 */
async function webauthnCeremony<T>(run: () => Promise<T>, what: string): Promise<T> {
  if (!browserSupportsWebAuthn()) throw new GatewayError(ErrorCode.UNSUPPORTED, 'this browser cannot use device keys (WebAuthn needs https or localhost)');
  try {
    return await run();
  } catch (error) {
    const { name, code } = (error ?? {}) as { name?: string; code?: string };
    if (code === 'ERROR_AUTHENTICATOR_PREVIOUSLY_REGISTERED' || name === 'InvalidStateError') {
      return Promise.reject(new GatewayError(ErrorCode.INVALID_STATE, 'this device already holds a registered key', { cause: error }));
    }
    if (name === 'NotAllowedError' || name === 'AbortError') return Promise.reject(new GatewayError(ErrorCode.PERMISSION_DENIED, `${what} was cancelled or not allowed`, { cause: error }));
    if (name === 'SecurityError' || name === 'NotSupportedError') return Promise.reject(new GatewayError(ErrorCode.UNSUPPORTED, `${what} is not possible on this page or device`, { cause: error }));
    throw GatewayError.from(error);
  }
}

function isTrack(source: HTMLCanvasElement | MediaStreamTrack): source is MediaStreamTrack {
  return typeof (source as MediaStreamTrack).kind === 'string' && typeof (source as MediaStreamTrack).readyState === 'string';
}

function chatMessageFrom(info: ChatMessageInfo, isLocal: boolean): ChatMessage {
  const { messageId, participantId, identity, role, text, sentAtMs, redacted, redactedKinds } = info;
  return { messageId, participantId, identity, role, text: redacted ? '' : text, sentAtMs, isLocal, redacted, redactedKinds: redacted ? [] : [...redactedKinds] };
}

/** A random UUID; crypto.randomUUID() exists only in secure contexts (https, localhost), getRandomValues everywhere. */
function randomUuid(): string {
  const c = globalThis.crypto;
  if (typeof c.randomUUID === 'function') return c.randomUUID();
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** mediasoup parameter objects travel as google.protobuf.Struct, i.e. plain JSON objects. */
function asStruct(value: object): Record<string, unknown> {
  return value as Record<string, unknown>;
}

function warn(message: string, error: unknown): void {
  const code = error instanceof GatewayError ? error.code : (error as { name?: string } | undefined)?.name;
  console.warn(`[gateway] ${message}: ${code ?? 'error'}`, error);
}
