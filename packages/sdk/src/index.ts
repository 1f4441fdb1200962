/**
 * The Gateway client SDK: `const room = await connect({ url, token })`, then `room.publish(...)`
 * and `room.on('track', ...)`. Also bundled as the browser global `Gateway` (served at /sdk.js).
 */
import { version } from '../package.json';
import { Room } from './Room.js';
import { AgentDesk } from './desk/AgentDesk.js';
import type { DeskOptions } from './desk/DeskClient.js';
import { SupervisorDesk } from './desk/SupervisorDesk.js';
import { SupportRequest, type SupportRequestOptions } from './desk/SupportRequest.js';
import type { ConnectOptions } from './types.js';

/** This SDK's version (semantic versioning; also in the bundle's first line and its URL, /sdk/<version>/gateway.min.js). */
export const VERSION: string = version;

export { Room } from './Room.js';
export { preflight } from './preflight.js';
export type { PreflightOptions, PreflightResult } from './preflight.js';
export { listDevices } from './media/devices.js';
export { ErrorCode, GatewayError } from './errors.js';
export { LocalCloseCode } from './signaling/Socket.js';
export { signalingHttpBase, signalingUrl } from './signaling/urls.js';
export { AgentDesk } from './desk/AgentDesk.js';
export { SupervisorDesk } from './desk/SupervisorDesk.js';
export { SupportRequest } from './desk/SupportRequest.js';
export type { AgentDeskEvents, TransferOptions, TransferTarget, WrapUpOptions } from './desk/AgentDesk.js';
export type { DeskOptions } from './desk/DeskClient.js';
export type { SupervisionMode, SupervisorDeskEvents } from './desk/SupervisorDesk.js';
export type { SupportConnected, SupportRequestEvents, SupportRequestOptions } from './desk/SupportRequest.js';
export type { AgentState, AgentStatus, AgentSummary, Contact, ContactPhase, DeskJoin, Offer, OfferWithdrawn, QueueStats, QueueView, SupportChannel } from './desk/types.js';
export type { TrackStats } from './media/trackStats.js';
export type { ConnectionOptions, DisconnectInfo, DisconnectReason } from './signaling/SignalingClient.js';
export type { WebSocketConstructor, WebSocketLike } from './signaling/Socket.js';
export type {
  CameraOptions,
  ChatMessage,
  ConnectionQuality,
  ConnectOptions,
  Grants,
  DataMessage,
  DeviceKind,
  LocalTrackEvent,
  MediaDevice,
  MicrophoneOptions,
  Participant,
  PublishOptions,
  RecordingEvent,
  RemoteSource,
  RemoteTrackPublication,
  Role,
  RoomEvents,
  RoomState,
  ScreenShareOptions,
  SendDataOptions,
  SmartAction,
  SmartActionKind,
  SmartActionState,
  SmartActionUpload,
  Source,
  TrackEvent,
  TrackMuteEvent,
  TrackPublication,
  VideoLayers,
  VideoQuality,
  Visibility,
} from './types.js';

/** Joins a room. Resolves once joined and ready to publish; rejects with a GatewayError. */
export function connect(options: ConnectOptions): Promise<Room> {
  return Room.connect(options);
}

/**
 * Contact center, end user: asks for support in a queue. Resolves once the request is queued
 * (its `position` and `estimatedWaitSeconds` set); `connected` then gives the room an agent is
 * in. Rejects with a GatewayError.
 */
export function requestSupport(options: SupportRequestOptions): Promise<SupportRequest> {
  return SupportRequest.create(options);
}

/** Contact center, agent: opens the agent's desk (offers, status, contacts) with an agent's desk token. */
export function agent(options: DeskOptions): Promise<AgentDesk> {
  return AgentDesk.create(options);
}

/** Contact center, supervisor: opens the supervisor's desk (queues and agents) with a supervisor's desk token. */
export function supervisor(options: DeskOptions): Promise<SupervisorDesk> {
  return SupervisorDesk.create(options);
}
