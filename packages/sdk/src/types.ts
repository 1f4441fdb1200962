import type { types } from 'mediasoup-client';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/browser';
import type { ConnectionQuality } from '@gateway/common/quality';
import type { GatewayError } from './errors.js';
import type { ConnectionOptions, DisconnectReason } from './signaling/SignalingClient.js';

/** What a device is for: a camera, a microphone, or where sound plays (speakers, a headset). */
export type DeviceKind = 'videoinput' | 'audioinput' | 'audiooutput';

/** A camera, microphone or audio output of this browser. */
export interface MediaDevice {
  /** Pass it as `deviceId` (setCameraEnabled, switchCamera, setAudioOutput, ...). Stable for this origin. */
  readonly deviceId: string;
  readonly kind: DeviceKind;
  /** Its name ("FaceTime HD Camera"); empty until the user has allowed a capture on this page. */
  readonly label: string;
  /** Devices of one piece of hardware share it (a headset's microphone and its earphones). */
  readonly groupId: string;
}

/** What a participant can publish. */
export type Source = 'camera' | 'microphone' | 'screen';
/** What a remote participant's track can be (other SDKs may send the screen share's audio). */
export type RemoteSource = Source | 'screen_audio';
export type Role = 'agent' | 'end_user' | 'supervisor' | 'observer' | (string & {});
/**
 * Who sees a participant: everyone (''), or, for a supervisor, the agents and supervisors only
 * (whispering to the agent) or the supervisors only (monitoring). End users are never told of a
 * hidden participant.
 */
export type Visibility = '' | 'agents' | 'supervisors';
export type { ConnectionQuality };

export interface Participant {
  readonly id: string;
  /** The identity from the join token. */
  readonly identity: string;
  readonly role: Role;
  /** Who else sees them: '' for everyone; a whispering or monitoring supervisor is hidden from end users. */
  readonly visibleTo: Visibility;
  /** What to call them on screen ("Ann, Support"): from their join token or set since; may be empty. */
  readonly name: string;
  /** The app's own data about them (often JSON), as their join token or room.setMetadata() set it. */
  readonly metadata: string;
  readonly joinedAtMs: number;
  readonly isLocal: boolean;
  /** Received tracks (remote participant) or published ones (local participant), by source. */
  readonly tracks: ReadonlyMap<RemoteSource, MediaStreamTrack>;
  /** What the participant publishes, by source, muted or not (a remote one also before its track is received). */
  readonly publications: ReadonlyMap<RemoteSource, TrackPublication>;
  /**
   * How well its media gets through, as the media node judges it: for another participant what
   * everyone receives of it; for the local one the worse of what it sends and what it receives.
   * 'unknown' until there is media to judge (see connectionQualityChanged).
   */
  readonly connectionQuality: ConnectionQuality;
}

/**
 * A published track, local or remote. Muting keeps it published (the same producer, paused on
 * the server): the others see `muted` and receive nothing meanwhile, and no new track on unmute.
 */
export interface TrackPublication {
  /** The server's id of the track (its producer): the same across mute and unmute; '' while a local one is not on the server. */
  readonly trackId: string;
  readonly source: RemoteSource;
  readonly kind: 'audio' | 'video';
  readonly muted: boolean;
  /**
   * The track: a remote one once it is received; a local one while there is a capture (a camera
   * the SDK captured is stopped while muted, so its light goes off, and captured again on unmute).
   */
  readonly track: MediaStreamTrack | undefined;
}

/** Simulcast layers of a received video: spatial 0 is the smallest picture, temporal 0 the lowest frame rate. */
export interface VideoLayers {
  spatial: number;
  /** Every frame rate the layer has when left out. */
  temporal?: number;
}

/** A received video's quality by name: 'low' is its smallest layer, 'high' its largest. */
export type VideoQuality = 'low' | 'medium' | 'high';

/**
 * A track another participant publishes, as this participant receives it. With adaptive stream
 * (ConnectOptions.adaptiveStream, on by default) a video attached with `attach()` is received in
 * the layer that fits the largest element showing it, and not at all while no element can be
 * seen (the page hidden, scrolled out of view, collapsed to no size, or detached): the SFU holds
 * it, and asks the sender for a key frame when it shows again.
 */
export interface RemoteTrackPublication extends TrackPublication {
  /** False after setEnabled(false): nothing is received. */
  readonly enabled: boolean;
  /**
   * Shows the track in a media element (now, or when it is received; again with the new track
   * after a rejoin) and, for a video, follows the element's size and visibility. Returns the
   * element. (The room plays every received sound by itself; an audio track attached plays twice.)
   */
  attach(element: HTMLMediaElement): HTMLMediaElement;
  /** Stops showing the track in `element`, or in every element when left out; returns those detached. */
  detach(element?: HTMLMediaElement): HTMLMediaElement[];
  /**
   * Receives the track or not (the SFU pauses it: nothing is sent). Video comes back at a key
   * frame. Resolves once the server has it.
   */
  setEnabled(enabled: boolean): Promise<void>;
  /**
   * The video layers to receive, whatever size its elements have; `undefined` gives the choice
   * back to adaptive stream (or to the largest layer without it). The SFU may send less when the
   * network cannot carry them.
   */
  setPreferredLayers(layers: VideoLayers | undefined): Promise<void>;
  /** setPreferredLayers by name: 'low', 'medium' or 'high'; `undefined` as there. */
  setVideoQuality(quality: VideoQuality | undefined): Promise<void>;
}

export interface Grants {
  canPublish: boolean;
  canSubscribe: boolean;
  sources: Source[];
  /** May start, pause, resume and stop the room's recording. */
  canRecord: boolean;
}

/** The room's recording: every participant is told when it starts, pauses, resumes or stops. */
export interface RecordingEvent {
  recordingId: string;
  state: 'started' | 'paused' | 'resumed' | 'stopped';
  /** The participant who did it, or undefined when the system did (automatic start, the call ending). */
  by?: Participant;
}

/**
 * One chat message of the room, as the server stored it. `text` is already redacted under the
 * tenant's policy (card numbers, SSNs, phone numbers and emails become "[CARD]", "[SSN]",
 * "[PHONE]", "[EMAIL]"), and is empty once an agent redacted the whole message. Messages are
 * immutable: a redaction replaces the room's copy with a new object.
 */
export interface ChatMessage {
  /** Assigned by the server; the room's messages are ordered by it. */
  readonly messageId: string;
  /** The sender's participant id (it may have left since, or be a former session of ours). */
  readonly participantId: string;
  readonly identity: string;
  readonly role: Role;
  readonly text: string;
  /** When the server stored it (ms since the epoch, the server's clock). */
  readonly sentAtMs: number;
  /** Sent by this room's local participant (in this session or one a rejoin replaced). */
  readonly isLocal: boolean;
  /** An agent redacted the whole message after it was sent (`text` is then empty). */
  readonly redacted: boolean;
  /** What the server replaced with placeholders when it was sent: "card", "ssn", "phone", "email" (none once redacted). */
  readonly redactedKinds: readonly string[];
}

export type SmartActionKind = 'photo' | 'screenshot' | 'verification';
/** 'requested' until the end user answers; then 'completed', 'declined' or 'failed' for good. */
export type SmartActionState = 'requested' | 'completed' | 'declined' | 'failed';

/**
 * Something an agent asked an end user for: a photo, a screenshot, or a verification with the
 * end user's registered device key. Immutable: a change of state replaces the room's copy.
 */
export interface SmartAction {
  readonly actionId: string;
  readonly kind: SmartActionKind | (string & {});
  readonly state: SmartActionState | (string & {});
  /** The participant id of the agent who asked. */
  readonly requestedBy: string;
  /** The participant id of the end user asked (compare with `room.localParticipant.id`). */
  readonly participantId: string;
  /** The end user's identity from their join token (the customer's external id). */
  readonly externalId: string;
  /** Server clock, ms since the epoch. */
  readonly requestedAtMs: number;
  /** When it was answered or failed; 0 while requested. */
  readonly completedAtMs: number;
  /** Photo and screenshot, once completed: the attachment, for `attachmentUrl()` (agents). Metadata already stripped. */
  readonly artifactId: string;
  readonly contentType: string;
  readonly sizeBytes: number;
  /** Verification: what the end user's device signs (used by `verifyDevice()`). */
  readonly webauthnOptions: PublicKeyCredentialRequestOptionsJSON | undefined;
  /** Verification, once completed: whether the end user proved possession of their registered device key. */
  readonly verified: boolean;
  /** Why it failed, was declined or did not verify; safe to show. */
  readonly reason: string;
}

/** The server's answer to a photo or screenshot upload (the completed action follows as a `smartAction` event). */
export interface SmartActionUpload {
  actionId: string;
  artifactId: string;
  /** What the server stored: image/jpeg, image/png or image/webp, re-encoded without metadata. */
  contentType: string;
  sizeBytes: number;
}

export interface TrackEvent {
  participant: Participant;
  source: RemoteSource;
  track: MediaStreamTrack;
  /** What the app controls of it: attach it to an element, choose its quality, pause it. */
  publication: RemoteTrackPublication;
}

/** A participant (local or remote) muted or unmuted one of its tracks. */
export interface TrackMuteEvent {
  participant: Participant;
  source: RemoteSource;
  publication: TrackPublication;
}

export interface LocalTrackEvent {
  source: RemoteSource;
  track: MediaStreamTrack;
}

export interface DataMessage {
  /** Chosen by the sender; empty when none. */
  topic: string;
  payload: string;
  sentAtMs: number;
  /** Who sent it; undefined when the customer's backend did (the room API). */
  participant?: Participant;
}

/** How room.sendData() sends. */
export interface SendDataOptions {
  /** Lets receivers tell kinds of message apart (1-64 letters, digits, _ or -). */
  topic?: string;
  /** Participant ids to send it to; everyone else in the room when left out. */
  to?: string[];
}

export type RoomState = 'connected' | 'reconnecting' | 'disconnected';

export type RoomEvents = {
  /** Someone is in the room: fired for those already there too, right after connect() resolves. */
  participantJoined: [participant: Participant];
  participantLeft: [participant: Participant];
  /** Someone's name or metadata changed (the local participant's too). */
  participantUpdated: [participant: Participant];
  /** A remote track is being received; attach it to a media element. */
  track: [event: TrackEvent];
  /** A remote track stopped (unpublished, its owner left, or it is being replaced after a rejoin). */
  trackEnded: [event: TrackEvent];
  /** The sender paused or resumed a track being received (no media flows meanwhile); see also trackMuted. */
  trackPaused: [event: TrackEvent];
  trackResumed: [event: TrackEvent];
  /**
   * A participant muted a published track, the local participant included (muteTrack,
   * setMicrophoneEnabled(false), ...): it stays published, `publication.muted` says so. A
   * participant already muted when we first hear of it is not announced: see its publications.
   */
  trackMuted: [event: TrackMuteEvent];
  trackUnmuted: [event: TrackMuteEvent];
  /** The room's recording started, paused (PCI), resumed or stopped. Also fired after connect() when the room is being recorded. */
  recording: [event: RecordingEvent];
  /**
   * A chat message, once per message: the local participant's own too, and the history the
   * room already had (announced right after connect() resolves, and what arrived while the
   * connection was away); never twice for the same messageId.
   */
  message: [message: ChatMessage];
  /** An agent redacted a message: `message` is the updated copy; `by` is who did it, when they are (or were) here. */
  messageRedacted: [message: ChatMessage, by: Participant | undefined];
  /**
   * A Smart Action was requested or changed state (completed, declined, failed): once per
   * action and state, also for those the room already had (announced right after connect()
   * resolves) and those that changed while the connection was away.
   */
  smartAction: [action: SmartAction];
  /**
   * A participant's connection quality changed (the local participant's too): at most once every
   * two seconds per participant, only when the level changes.
   */
  connectionQualityChanged: [participant: Participant, quality: ConnectionQuality];
  /** Whoever speaks loudest now (may be the local participant). */
  activeSpeaker: [participant: Participant];
  localTrackPublished: [event: LocalTrackEvent];
  /** The server muted a local track (the customer's backend, through the room API): nothing is sent for it until it is published again. */
  localTrackMuted: [event: LocalTrackEvent & { by: 'server' }];
  /** An ephemeral message from another participant (room.sendData) or from the customer's backend: not stored, not chat. */
  data: [message: DataMessage];
  /** Unpublished by the app, or because the track ended (the browser's "Stop sharing" button). */
  localTrackUnpublished: [event: LocalTrackEvent];
  /** A camera, microphone or audio output was plugged in or out: the browser's devices now. */
  devicesChanged: [devices: MediaDevice[]];
  /** The room switched a device (switchCamera, switchMicrophone, setAudioOutput). */
  activeDeviceChanged: [event: { kind: DeviceKind; deviceId: string }];
  /**
   * False when the browser refused to start the room's sound until the user touches the page
   * (autoplay policy): show a button that calls startAudio(). True once sound plays again.
   */
  audioPlaybackChanged: [canPlayback: boolean];
  /** The connection dropped; the SDK is getting it back. Media may freeze meanwhile. */
  reconnecting: [];
  /** Back: `resumed` is false when a new session had to be joined (the local participant id changed). */
  reconnected: [info: { resumed: boolean }];
  /** Over for good; `reason` says why. */
  disconnected: [info: { reason: DisconnectReason; code: number; error?: GatewayError }];
};

export interface ConnectOptions extends ConnectionOptions {
  /** Leave the room when the page is closed or navigated away from (true by default). */
  leaveOnPageHide?: boolean;
  /**
   * While the page is hidden (another tab, the app in the background), have the server send no
   * video; sound goes on, and the picture is back at once when the page shows again. False by
   * default: an agent may watch the customer in a picture-in-picture window while the tab is hidden.
   */
  pauseVideoWhenHidden?: boolean;
  /**
   * Adaptive stream (true by default): each received video shown with `publication.attach()` comes
   * in the simulcast layer that fits the largest element showing it, and is paused at the server
   * while no element can be seen (hidden page unless picture-in-picture, out of view, no size,
   * detached). A video the app shows without attach() is received as before.
   */
  adaptiveStream?: boolean;
  /**
   * Dynacast (true by default): the camera stops encoding the simulcast layers nobody in the room
   * receives, and encodes them again as soon as someone needs them; the lowest always goes on.
   */
  dynacast?: boolean;
  /**
   * Which ICE candidates the media may use: `'all'` (the default) tries a direct path to the media
   * server first and the TURN servers the server names after; `'relay'` sends everything through
   * TURN, as a network that lets nothing else out would anyway (and hides the device's addresses
   * from the media server). Without TURN servers on the server side, `'relay'` cannot connect.
   */
  iceTransportPolicy?: 'all' | 'relay';
  /**
   * A mediasoup-client handler factory, for runtimes without WebRTC (tests use mediasoup-client's
   * FakeHandler). Browsers detect their own.
   */
  handlerFactory?: types.HandlerFactory;
}

export interface PublishOptions {
  /** `true` captures the default camera; or pass a video track. Published with simulcast. */
  camera?: boolean | MediaStreamTrack;
  /** `true` captures the default microphone; or pass an audio track. */
  microphone?: boolean | MediaStreamTrack;
  /** `true` asks the user what to share; or pass a video track. */
  screen?: boolean | MediaStreamTrack;
  /**
   * The sound that goes with the screen share (an audio track, e.g. of your own getDisplayMedia
   * call), published as the `screen_audio` source; it ends with the screen share. With
   * `screen: true`, ask for the sound with setScreenShareEnabled's `audio` option instead.
   */
  screenAudio?: MediaStreamTrack;
}

/** How setCameraEnabled() captures the camera. */
export interface CameraOptions {
  /** A camera of listDevices('videoinput'); wins over `facingMode`. */
  deviceId?: string;
  /** `environment` for the rear camera of a phone, `user` for the front one; DEVICE_NOT_FOUND when there is none. */
  facingMode?: 'user' | 'environment';
  /** Ideal size and rate; 1280x720 at 30 fps by default. */
  width?: number;
  height?: number;
  frameRate?: number;
}

/** How setMicrophoneEnabled() captures the microphone. */
export interface MicrophoneOptions {
  /** A microphone of listDevices('audioinput'). */
  deviceId?: string;
}

/** How setScreenShareEnabled() captures the screen. */
export interface ScreenShareOptions {
  /** Ideal frame rate; 15 by default (at most 30). */
  frameRate?: number;
  /**
   * Also share the sound of what is shared, when the browser offers it (Chrome: a tab's sound, or
   * the whole system's on Windows and ChromeOS; the user may untick it). Published as the
   * `screen_audio` source, stereo; it ends with the screen share.
   */
  audio?: boolean;
}

/** Capture options of any source, as the publisher takes them. */
export type CaptureOptions = CameraOptions & MicrophoneOptions & ScreenShareOptions;
