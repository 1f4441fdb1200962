import { readFileSync } from 'node:fs';
import { createLogger, handleSignals, runMain } from '@gateway/common';
import { readRoutingConfig } from './config.js';
import type { DirectoryView } from './ownership/TenantRouting.js';
import { RoutingService } from './RoutingService.js';

runMain(async () => {
  const config = readRoutingConfig();
  const log = createLogger('routing', config.logLevel);
  const seeds = config.directorySeedFile ? (JSON.parse(readFileSync(config.directorySeedFile, 'utf8')) as Record<string, DirectoryView>) : {};
  const service = await RoutingService.start(config, log, async (tenant) => seeds[tenant]);
  log.info({ replicaId: config.replicaId, opsPort: service.opsPort }, 'routing ready');
  handleSignals(log, () => service.close());
});
