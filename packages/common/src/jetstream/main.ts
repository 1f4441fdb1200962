import { z } from 'zod';
import { env, loadConfig } from '../runtime/config.js';
import { ErrorCode, GatewayError } from '../errors.js';
import { createLogger } from '../runtime/logger.js';
import { connectNats, natsShape, readNatsSettings } from '../nats/connection.js';
import { runMain } from '../runtime/shutdown.js';
import { catalogSettings, catalogShape } from './catalog.js';
import { provisionJetStream } from './provision.js';

/**
 * The provisioning step: creates or updates every stream, bucket and object store of the
 * catalog, as the admin identity (NATS_NKEY_SEED_FILE names the admin's seed). `make up` runs it
 * before the services; Kubernetes runs it as the nats-provision Job. Idempotent.
 *
 *   node --import tsx packages/common/src/jetstream/main.ts
 */
runMain(async () => {
  const c = loadConfig({
    ...natsShape,
    ...catalogShape,
    LOG_LEVEL: env.logLevel(),
    /** How long to wait for NATS and a JetStream leader (a cluster that is still starting). */
    NATS_PROVISION_TIMEOUT_SECONDS: z.coerce.number().positive().default(120),
  });
  const log = createLogger('nats-provision', c.LOG_LEVEL);
  const deadline = Date.now() + c.NATS_PROVISION_TIMEOUT_SECONDS * 1000;
  const settings = catalogSettings(c);
  for (let attempt = 1; ; attempt++) {
    try {
      const nc = await connectNats(readNatsSettings(c, 'admin'), 'nats-provision', log);
      try {
        for (const result of await provisionJetStream(nc, settings)) log.info(result, `stream ${result.action}`);
      } finally {
        await nc.drain().catch(() => undefined);
      }
      log.info({ replicas: settings.replicas, budgetBytes: settings.budgetBytes }, 'JetStream provisioned');
      return;
    } catch (error) {
      // A configuration error stays one; anything else may be a cluster still starting.
      if (Date.now() > deadline || (error instanceof GatewayError && error.code === ErrorCode.CONFIG_INVALID)) throw error;
      log.warn({ err: error, attempt }, 'provisioning failed; trying again');
      await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 500 * attempt)));
    }
  }
});
