import { createLogger, handleSignals, runMain } from '@gateway/common';
import { readRoutingConfig } from './config.js';
import { RoutingService } from './RoutingService.js';

runMain(async () => {
  const config = readRoutingConfig();
  const log = createLogger('routing', config.logLevel);
  const service = await RoutingService.start(config, log);
  log.info({ replicaId: config.replicaId, port: service.port, opsPort: service.opsPort }, 'routing ready');
  handleSignals(log, () => service.close());
});
