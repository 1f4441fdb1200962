export * from './SfuDirectory.js';
