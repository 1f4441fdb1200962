/**
 * The Gateway client SDK: `const room = await connect({ url, token })`, then `room.publish(...)`
 * and `room.on('track', ...)`. Also bundled as the browser global `Gateway` (served at /sdk.js).
 */
import { version } from '../package.json';
import { Room } from './Room.js';
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
} from './types.js';

/** Joins a room. Resolves once joined and ready to publish; rejects with a GatewayError. */
export function connect(options: ConnectOptions): Promise<Room> {
  return Room.connect(options);
}
