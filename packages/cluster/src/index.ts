export * from './SfuDirectory.js';
export * from './RecorderDirectory.js';
export * from './ParticipantStore.js';
export * from './schemas.js';
