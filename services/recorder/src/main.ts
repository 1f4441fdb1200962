import { createLogger, handleSignals, runMain } from '@gateway/common';
import { readRecorderConfig } from './config.js';
import { RecorderNode } from './RecorderNode.js';

runMain(async () => {
  const config = readRecorderConfig();
  const log = createLogger('recorder', config.logLevel);
  const node = await RecorderNode.start(config, log);
  log.info({ nodeId: config.nodeId, grpcPort: node.grpcPort, opsPort: node.opsPort, cpuBudget: config.cpuBudget }, 'recorder ready');
  // Either signal finishes the running recordings and stores what they have.
  handleSignals(log, (mode) => node.close(mode));
});
