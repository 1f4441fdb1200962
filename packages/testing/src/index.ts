export * from './NatsServer.js';
