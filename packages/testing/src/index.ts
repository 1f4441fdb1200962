export * from './NatsServer.js';
export * from './ServiceProcess.js';
export * from './pki.js';
export * from './PostgresServer.js';
export * from './TurnServer.js';
export * from './SecretVolume.js';
