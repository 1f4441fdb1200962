import { Room, type ConnectOptions } from './Room.js';

export { Room, signalingUrl } from './Room.js';
export type { ConnectOptions, Participant, PublishOptions, RoomEvents, Source, RemoteSource, TrackEvent } from './Room.js';
export { GatewayError, type ErrorCode } from './errors.js';
export { SignalingClient, HEARTBEAT_LOST } from './SignalingClient.js';

/** Joins a room: `const room = await Gateway.connect({ url, token })`. */
export function connect(options: ConnectOptions): Promise<Room> {
  return Room.connect(options);
}
