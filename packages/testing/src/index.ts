export * from './NatsServer.js';
export * from './ServiceProcess.js';
