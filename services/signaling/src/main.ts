import { createLogger, handleSignals, runMain } from '@gateway/common';
import { readSignalingConfig } from './config.js';
import { SignalingServer } from './SignalingServer.js';

runMain(async () => {
  const config = readSignalingConfig();
  const log = createLogger('signaling', config.logLevel);
  if (config.tenants.demo) {
    log.warn('neither GATEWAY_TENANTS nor GATEWAY_TENANTS_FILE is set: only the built-in "demo" tenant with its well-known secret is configured');
  }
  const server = await SignalingServer.start(config, log);
  log.info({ replicaId: config.replicaId, port: server.port, opsPort: server.opsPort, tenants: config.tenants.tenants.length }, 'signaling ready');
  // Sessions stay resumable through another replica, so both signals stop the same way.
  handleSignals(log, () => server.close());
});
