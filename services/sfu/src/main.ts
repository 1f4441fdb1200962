import { createLogger, handleSignals, runMain } from '@gateway/common';
import { readSfuConfig } from './config.js';
import { SfuNode } from './SfuNode.js';

runMain(async () => {
  const config = readSfuConfig();
  const log = createLogger('sfu', config.logLevel);
  const node = await SfuNode.start(config, log);
  log.info({ nodeId: config.nodeId, grpcAddress: node.grpcAddress, opsPort: node.opsPort, workers: config.workers, rtcPortMin: config.rtcPortMin }, 'sfu ready');
  // SIGTERM drains (no new rooms; existing rooms run until they end or the grace period
  // passes), SIGINT stops at once.
  handleSignals(log, (mode) => node.close(mode));
});
