export * from './SfuDirectory.js';
export * from './RecorderDirectory.js';
