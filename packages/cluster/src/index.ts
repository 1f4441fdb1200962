export * from './SfuDirectory.js';
export * from './SfuRegistry.js';
export * from './RecorderDirectory.js';
export * from './ParticipantStore.js';
export * from './RoomEventBus.js';
export * from './nodeLiveness.js';
export * from './schemas.js';
export * from './ReplicaLiveness.js';
