import { createLogger, handleSignals, runMain } from '@gateway/common';
import { readCrmSyncConfig } from './config.js';
import { CrmSync } from './CrmSync.js';

runMain(async () => {
  const config = readCrmSyncConfig();
  const log = createLogger('crm-sync', config.logLevel);
  const service = await CrmSync.start(config, log);
  log.info({ nodeId: config.nodeId, port: service.port, opsPort: service.opsPort }, 'crm-sync ready');
  handleSignals(log, () => service.close());
});
