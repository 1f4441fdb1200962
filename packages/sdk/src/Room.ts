import { Chat } from './chat/Chat.js';
import { ErrorCode, GatewayError } from './errors.js';
import { Emitter, type Emit } from './events.js';
import { watchDevices } from './media/devices.js';
import { Playback } from './media/Playback.js';
import { Publisher } from './media/Publisher.js';
import { Subscriber } from './media/Subscriber.js';
import type { TrackStats } from './media/trackStats.js';
import { TrackStatsReader } from './media/TrackStatsReader.js';
import { Transports } from './media/Transports.js';
import { Recording } from './recording/Recording.js';
import { Roster } from './Roster.js';
import { leaveOnPageHide, watchVisibility } from './session/page.js';
import { RoomSync } from './session/RoomSync.js';
import { SignalingClient } from './signaling/SignalingClient.js';
import { signalingHttpBase } from './signaling/urls.js';
import { SmartActions } from './smartActions/SmartActions.js';
import type {
  CameraOptions,
  ChatMessage,
  ConnectOptions,
  DeviceKind,
  Grants,
  MicrophoneOptions,
  Participant,
  PublishOptions,
  RecordingEvent,
  RemoteSource,
  RoomEvents,
  RoomState,
  ScreenShareOptions,
  SendDataOptions,
  SmartAction,
  SmartActionKind,
  SmartActionUpload,
  Source,
  TrackPublication,
} from './types.js';

/**
 * A joined room. Publishes local tracks, receives everyone else's, and keeps itself in line
 * with the server's view of the session (session/RoomSync.ts: after the first join, a resume
 * and a rejoin alike).
 *
 * The room is the public face; the work is done by its parts (roster, transports, publisher,
 * subscriber, recording, chat, Smart Actions, the sync), each given only what it needs of the room.
 */
export class Room extends Emitter<RoomEvents> {
  /** The room's name. */
  name = '';
  /** The participant id of the active speaker; '' in silence. */
  private speakerId = '';
  private granted: Grants = { canPublish: false, canSubscribe: false, sources: [], canRecord: false };
  private closed = false;

  private readonly client: SignalingClient;
  private readonly roster: Roster;
  private readonly transports: Transports;
  private readonly publisher: Publisher;
  private readonly subscriber: Subscriber;
  private readonly recorder: Recording;
  private readonly chat: Chat;
  private readonly actions: SmartActions;
  private readonly session: RoomSync;
  private readonly playback: Playback;
  private readonly trackStats: TrackStatsReader;
  /** What stops listening to the browser's device changes and page lifecycle. */
  private readonly unwatch: Array<() => void> = [];

  private constructor(options: ConnectOptions) {
    super();
    // Where uploads and attachment URLs go: the signaling server's HTTP side.
    const httpBase = signalingHttpBase(options.url);
    const client = new SignalingClient({ ...options, restore: (response) => this.session.sync(response) });
    this.client = client;
    const emit: Emit<RoomEvents> = (event, ...args) => this.emit(event, ...args);
    const isClosed = () => this.closed;
    const assertOpen = () => this.assertOpen();
    const announceHeldBack = () => this.session.announce();
    const localParticipantId = () => this.roster.local.id;

    this.subscriber = new Subscriber({
      signaling: client,
      isClosed,
      recvTransport: () => this.transports.recv,
      recvRtpCapabilities: () => this.transports.recvRtpCapabilities,
      participant: (id) => this.roster.others.get(id),
      emit,
      adaptiveStream: options.adaptiveStream !== false,
    });
    this.roster = new Roster({ tracks: this.subscriber, emit });
    this.publisher = new Publisher({
      signaling: client,
      sendTransport: () => this.transports.send,
      localParticipant: () => this.roster.local,
      emit,
      dynacast: options.dynacast !== false,
    });
    // A closed transport takes what it carried along: consumers (received again on a new one), or producers.
    const onClose = (direction: 'send' | 'recv') => (direction === 'recv' ? this.subscriber.detachAll() : this.publisher.forgetProducers());
    this.transports = new Transports({ signaling: client, handlerFactory: options.handlerFactory, iceTransportPolicy: options.iceTransportPolicy ?? 'all', isClosed, onClose });
    this.recorder = new Recording({ signaling: client, participantById: (id) => this.roster.byId(id), emit });
    const isOwn = (id: string) => this.roster.isOwn(id);
    const participantOf = (id: string | undefined) => this.roster.participantOf(id);
    this.chat = new Chat({ signaling: client, assertOpen, announceHeldBack, isOwn, participantOf, localParticipantId, emit });
    this.playback = new Playback(emit, (track) => [...this.publisher.localTracks.values()].includes(track));
    const liveLocalTrack = (source: Source) => this.publisher.liveTrack(source);
    this.actions = new SmartActions({ signaling: client, httpBase, assertOpen, announceHeldBack, localParticipantId, liveLocalTrack, emit });
    this.trackStats = new TrackStatsReader({ publisher: this.publisher, subscriber: this.subscriber, localParticipantId });
    const { roster, transports, publisher, subscriber, recorder, chat, actions } = this;
    this.session = new RoomSync({
      isClosed,
      roster,
      transports,
      publisher,
      subscriber,
      recorder,
      chat,
      actions,
      emit,
      setActiveSpeaker: (id) => this.setActiveSpeaker(id),
      joined: ({ name, grants, activeSpeakerId }) => {
        this.name = name;
        this.granted = grants;
        this.speakerId = activeSpeakerId;
      },
    });

    this.unwatch.push(watchDevices((devices) => this.emit('devicesChanged', devices)));
    if (options.leaveOnPageHide !== false) this.unwatch.push(leaveOnPageHide(() => this.leave()));
    if (options.pauseVideoWhenHidden) this.unwatch.push(watchVisibility((hidden) => void this.subscriber.holdVideo(hidden)));

    client.on('notification', (event) => this.session.notify(event));
    client.on('reconnecting', () => {
      this.transports.cancelIceRestarts();
      this.emit('reconnecting');
    });
    client.on('reconnected', (info) => {
      // What was wished of received tracks while away reaches the server; what it said of our
      // layers meanwhile may be lost, so every layer goes on until it says again.
      void this.subscriber.resync();
      this.publisher.resetLayers();
      this.emit('reconnected', info);
    });
    client.on('disconnected', (info) => {
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
    setTimeout(() => room.session.announce(), 0);
    return room;
  }

  get localParticipant(): Participant {
    return this.roster.local;
  }

  /** Everyone else, by participant id. */
  get participants(): Map<string, Participant> {
    return this.roster.others;
  }

  /** What this participant publishes, by source (kept across reconnections and republished). */
  get localTracks(): Map<RemoteSource, MediaStreamTrack> {
    return this.publisher.localTracks;
  }

  /** What the join token allows: publishing (and which sources), subscribing. */
  get grants(): Readonly<Grants> {
    return this.granted;
  }

  get state(): RoomState {
    const state = this.client.state;
    return state === 'reconnecting' ? 'reconnecting' : state === 'connected' ? 'connected' : 'disconnected';
  }

  /** Who speaks now (the loudest voice the room's media node hears), or undefined in silence. */
  get activeSpeaker(): Participant | undefined {
    if (!this.speakerId) return undefined;
    return this.roster.byId(this.speakerId);
  }

  /**
   * Publishes the given sources; `true` captures them (camera and microphone with one prompt),
   * a MediaStreamTrack is published as given (and replaces what the source published before).
   */
  async publish(options: PublishOptions): Promise<void> {
    this.assertOpen();
    await this.publisher.publish(options, this.granted);
  }

  /** Stops publishing a source (and stops its track if the SDK captured it); the others see its track end. */
  unpublish(source: RemoteSource): Promise<void> {
    return this.publisher.unpublish(source);
  }

  /** What this participant publishes, by source, muted or not. */
  get localPublications(): ReadonlyMap<RemoteSource, TrackPublication> {
    return this.publisher.publications;
  }

  /**
   * Turns the microphone on (captured and published the first time, unmuted afterwards) or off
   * (muted: it stays published, nothing is sent, the others see it muted; no new track for
   * them when it comes back). Rejects with PERMISSION_DENIED when the token does not allow it
   * or the user refuses the microphone.
   */
  setMicrophoneEnabled(enabled: boolean, options?: MicrophoneOptions): Promise<void> {
    return this.setEnabled('microphone', enabled, options);
  }

  /**
   * Turns the camera on or off like setMicrophoneEnabled(); off also stops a camera the SDK
   * captured (its light goes off), and on captures it again into the same producer.
   */
  setCameraEnabled(enabled: boolean, options?: CameraOptions): Promise<void> {
    return this.setEnabled('camera', enabled, options);
  }

  /**
   * Shares the screen (the browser asks what) or stops sharing: the screen share is published and
   * unpublished, not muted. With `{audio: true}` its sound is shared too where the browser offers
   * it, as the `screen_audio` source, which ends with the screen share.
   */
  setScreenShareEnabled(enabled: boolean, options?: ScreenShareOptions): Promise<void> {
    return this.setEnabled('screen', enabled, options);
  }

  /** Mutes a published source (see setMicrophoneEnabled); rejects with NOT_FOUND when it is not published. */
  muteTrack(source: Source): Promise<void> {
    this.assertOpen();
    return this.publisher.setMuted(source, true);
  }

  /** Unmutes a muted source (capturing a stopped camera again); rejects with NOT_FOUND when it is not published. */
  unmuteTrack(source: Source): Promise<void> {
    this.assertOpen();
    return this.publisher.setMuted(source, false);
  }

  private setEnabled(source: Source, enabled: boolean, options: MicrophoneOptions | CameraOptions | ScreenShareOptions | undefined): Promise<void> {
    this.assertOpen();
    if (enabled && (!this.granted.canPublish || !this.granted.sources.includes(source))) {
      return Promise.reject(new GatewayError(ErrorCode.PERMISSION_DENIED, `this token may not publish the ${source}`));
    }
    return this.publisher.setEnabled(source, enabled, this.granted, options);
  }

  /** Changes the local participant's name on screen; the token must grant canUpdateMetadata (PERMISSION_DENIED otherwise). */
  setName(name: string): Promise<void> {
    return this.updateParticipant({ name });
  }

  /** Changes the app's metadata about the local participant (4 KiB at most); needs canUpdateMetadata like setName(). */
  setMetadata(metadata: string): Promise<void> {
    return this.updateParticipant({ metadata });
  }

  private async updateParticipant(change: { name?: string; metadata?: string }): Promise<void> {
    this.assertOpen();
    const updated = await this.client.request('updateParticipant', change);
    this.roster.update({ participantId: this.roster.local.id, name: updated.name, metadata: updated.metadata });
  }

  // ------------------------------------------------------------------------- devices and playback

  /**
   * Captures the camera from another device, by id (listDevices('videoinput')) or facing mode
   * (`environment`: the rear camera of a phone), without renegotiation: the same track publication,
   * the others' video goes on. Muted or not published yet, the choice applies at the next capture.
   */
  async switchCamera(options: CameraOptions): Promise<void> {
    this.assertOpen();
    const track = await this.publisher.switchDevice('camera', options);
    if (track) this.emit('activeDeviceChanged', { kind: 'videoinput', deviceId: track.getSettings().deviceId ?? '' });
  }

  /** Captures the microphone from another device (listDevices('audioinput')); a mute stays. */
  async switchMicrophone(options: MicrophoneOptions): Promise<void> {
    this.assertOpen();
    const track = await this.publisher.switchDevice('microphone', options);
    if (track) this.emit('activeDeviceChanged', { kind: 'audioinput', deviceId: track.getSettings().deviceId ?? '' });
  }

  /** Plays the room's sound on an audio output of listDevices('audiooutput') (an agent's headset). */
  async setAudioOutput(deviceId: string): Promise<void> {
    await this.playback.setAudioOutput(deviceId);
    this.emit('activeDeviceChanged', { kind: 'audiooutput', deviceId });
  }

  /** The device in use for a kind: the published camera's or microphone's, the audio output chosen ('' for the default). */
  activeDevice(kind: DeviceKind): string | undefined {
    if (kind === 'audiooutput') return this.playback.audioOutput;
    const track = this.publisher.liveTrack(kind === 'videoinput' ? 'camera' : 'microphone');
    return track?.getSettings().deviceId;
  }

  /**
   * Plays a track in a media element, made for it (`<video>` or `<audio>`) or the one given,
   * and returns the element. The audio output chosen applies; one's own tracks play muted.
   */
  attach(track: MediaStreamTrack, element?: HTMLMediaElement): HTMLMediaElement {
    return this.playback.attach(track, element);
  }

  /** Takes a track out of the element given, or of every element it was attached to. */
  detach(track: MediaStreamTrack, element?: HTMLMediaElement): HTMLMediaElement[] {
    return this.playback.detach(track, element);
  }

  /** False while the browser holds the room's sound back until the user touches the page (see audioPlaybackChanged). */
  get canPlaybackAudio(): boolean {
    return this.playback.canPlaybackAudio;
  }

  /** Starts the sound the browser held back; call it from a click or tap handler. */
  startAudio(): Promise<void> {
    return this.playback.startAudio();
  }

  // ------------------------------------------------------------------------- recording

  /** The room's recording as last heard of (undefined when not recorded). */
  get recording(): RecordingEvent | undefined {
    return this.recorder.current;
  }

  /** Starts recording the room (agents whose token grants canRecord). */
  startRecording(): Promise<RecordingEvent> {
    return this.recorder.start();
  }

  /** PCI pause: nothing is recorded until resumeRecording(). */
  pauseRecording(): Promise<RecordingEvent> {
    return this.recorder.pause();
  }

  resumeRecording(): Promise<RecordingEvent> {
    return this.recorder.resume();
  }

  stopRecording(): Promise<RecordingEvent> {
    return this.recorder.stop();
  }

  // ------------------------------------------------------------------------- chat

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
  sendMessage(text: string): Promise<ChatMessage> {
    return this.chat.send(text);
  }

  /**
   * Agents: redacts a message for everyone (its text is emptied, here and in the stored copy).
   * Rejects with PERMISSION_DENIED (not an agent) or NOT_FOUND (no such message in the room).
   */
  redactMessage(messageId: string): Promise<void> {
    return this.chat.redact(messageId);
  }

  /**
   * Sends an ephemeral message (a typing indicator, an app's own signal) to the room, or to the
   * participants named in `to`: not stored, not part of the chat, not sent back to us. Text, at
   * most 16 KiB; rate limited (RATE_LIMITED with retryAfterMs). Resolves with the server's time.
   */
  async sendData(payload: string, options: SendDataOptions = {}): Promise<{ sentAtMs: number }> {
    this.assertOpen();
    const sent = await this.client.request('sendData', { topic: options.topic ?? '', payload, destinationParticipantIds: options.to ?? [] });
    return { sentAtMs: sent.sentAtMs };
  }

  // ------------------------------------------------------------------------- Smart Actions

  /** The conversation's Smart Actions, oldest request first: those the room had when we joined, and every one since. */
  get smartActions(): readonly SmartAction[] {
    return this.actions.actions;
  }

  /**
   * Agents: asks an end user for a photo, a screenshot or a verification; `participantId` may be
   * left out when the room has exactly one end user. Resolves with the action as stored:
   * 'requested', or 'failed' at once for a verification of an end user without a registered
   * device key (see `reason`). Rejects with PERMISSION_DENIED (not an agent), BAD_REQUEST (an
   * unknown kind; no participantId while the room has no or several end users) or NOT_FOUND.
   * Not repeated after a cut connection (it would ask twice): the `smartAction` event tells.
   */
  requestSmartAction(kind: SmartActionKind, participantId = ''): Promise<SmartAction> {
    return this.actions.request(kind, participantId);
  }

  /**
   * Agents: an absolute URL of an attachment (a completed photo or screenshot's `artifactId`),
   * for an <img src> or a download. It is signed for the agent's tenant and expires after a few
   * minutes: ask again rather than keeping it. Rejects with NOT_FOUND (no such attachment in the
   * room) or PERMISSION_DENIED (not an agent).
   */
  attachmentUrl(artifactId: string): Promise<string> {
    return this.actions.attachmentUrl(artifactId);
  }

  /** Agents: an attachment's bytes (an image/jpeg, image/png or image/webp Blob), through a fresh attachmentUrl(). */
  fetchAttachment(artifactId: string): Promise<Blob> {
    return this.actions.fetchAttachment(artifactId);
  }

  /**
   * End users: answers a photo request with an image (a JPEG, PNG or WebP File or Blob, from an
   * <input type=file accept="image/*" capture>, say). The server checks what the bytes are,
   * strips all metadata (the GPS position in a phone's EXIF included) and stores it; the agent
   * hears of it through the `smartAction` event. Rejects with MESSAGE_TOO_LARGE,
   * UNSUPPORTED_CONTENT (not such an image), INVALID_STATE (already answered), NOT_FOUND,
   * PERMISSION_DENIED (asked of someone else) or UNAVAILABLE (the server could not be reached).
   */
  sendPhoto(actionId: string, photo: Blob): Promise<SmartActionUpload> {
    return this.actions.sendPhoto(actionId, photo);
  }

  /**
   * End users: answers a screenshot request with a PNG the SDK captures: a frame of the screen
   * share being published if there is one, else of `source` (what a canvas shows, or a frame of
   * a video track, e.g. a one-off getDisplayMedia() capture, left running), else a frame of the
   * published camera. Rejects with INVALID_STATE when there is nothing to capture (share the
   * screen first), and like sendPhoto().
   */
  sendScreenshot(actionId: string, source?: HTMLCanvasElement | MediaStreamTrack): Promise<SmartActionUpload> {
    return this.actions.sendScreenshot(actionId, source);
  }

  /** End users: declines a request. Resolves with the action, now 'declined'. */
  declineSmartAction(actionId: string): Promise<SmartAction> {
    return this.actions.decline(actionId);
  }

  /**
   * End users: answers a verification request by signing its challenge with this device's
   * registered key (the browser may ask for a fingerprint, face or PIN). Resolves with the
   * action, 'completed' with `verified` true or false; an action already answered or failed
   * (no device key registered: see `reason`) is returned as it is. Rejects with
   * PERMISSION_DENIED when the user cancels or the browser refuses, UNSUPPORTED without WebAuthn.
   */
  verifyDevice(actionId: string): Promise<SmartAction> {
    return this.actions.verifyDevice(actionId);
  }

  /**
   * End users: registers a key of this device (a passkey, behind the device's fingerprint, face
   * or PIN) so that agents can later ask for a verification. Once per device is enough; the key
   * belongs to the end user's identity, not to this call. Resolves with the credential id.
   * Rejects with INVALID_STATE when this device already holds a registered key, PERMISSION_DENIED
   * when the user cancels, UNSUPPORTED without WebAuthn (it needs https or localhost).
   */
  registerDeviceKey(): Promise<string> {
    return this.actions.registerDeviceKey();
  }

  // ------------------------------------------------------------------------- connection

  /** Leaves the room: the others see us go at once, and nothing reconnects. */
  async leave(): Promise<void> {
    await this.client.leave();
  }

  /** WebRTC statistics of the two transports (for quality indicators and tests). */
  getStats(): Promise<{ send?: RTCStatsReport; recv?: RTCStatsReport }> {
    return this.transports.getStats();
  }

  /** Receive statistics per remote track, as the browser gives them (see getTrackStats() for figures). */
  getReceiveStats(): Promise<Array<{ participantId: string; trackId: string; source: RemoteSource; kind: 'audio' | 'video'; stats: RTCStatsReport }>> {
    return this.subscriber.getReceiveStats();
  }

  /**
   * Every sent and received track's figures, alike in every browser: bitrate, loss (a fraction)
   * and packets lost, jitter, round trip, and for video the frame rate and size. Rates and loss
   * are over the time since the previous call: call it every second or few for a quality display.
   */
  getTrackStats(): Promise<TrackStats[]> {
    return this.trackStats.read();
  }

  /** Test hook: closes the WebSocket as a network cut would (no leave), so the session resumes. */
  _debugDropSocket(): void {
    this.client.dropSocket();
  }

  private setActiveSpeaker(participantId: string): void {
    this.speakerId = participantId;
    const participant = this.activeSpeaker;
    if (participant) this.emit('activeSpeaker', participant);
  }

  private assertOpen(): void {
    if (this.closed || this.client.state === 'disconnected') throw new GatewayError(ErrorCode.ROOM_CLOSED, 'the room was left or disconnected');
  }

  /** Releases everything; the room is unusable afterwards. */
  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.unwatch.splice(0)) stop();
    this.playback.clear();
    this.transports.closeAll();
    this.subscriber.clear();
    this.publisher.stopAll();
  }
}
