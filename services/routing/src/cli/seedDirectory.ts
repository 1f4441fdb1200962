/**
 * Seeds a tenant's routing directory from a directory file ({people, teams, queues, profiles}),
 * checked as a whole, when the tenant has none yet: a directory its admins changed is left as it
 * is. `make up` seeds the demo tenant from services/routing/demo-directory.json. Runs as the
 * routing identity (NATS_* as the service has them).
 *
 *   node --import tsx services/routing/src/cli/seedDirectory.ts <tenant> <file>
 */
import { readFileSync } from 'node:fs';
import { assertSubjectToken, buckets, connectNats, createLogger, env, loadConfig, natsShape, openBucket, readNatsSettings, runMain } from '@gateway/common';
import { DirectoryStore, seedDirectory } from '../directory/DirectoryStore.js';

runMain(async () => {
  const [tenant, file, ...extra] = process.argv.slice(2);
  if (!tenant || !file || extra.length > 0) {
    process.stderr.write('usage: seedDirectory.ts <tenant> <directory.json>\n');
    process.exit(2);
  }
  assertSubjectToken('tenant', tenant);
  const directory = JSON.parse(readFileSync(file, 'utf8')) as unknown;
  const c = loadConfig({ ...natsShape, LOG_LEVEL: env.logLevel() });
  const log = createLogger('routing-seed', c.LOG_LEVEL);
  const nc = await connectNats(readNatsSettings(c, 'routing'), 'routing-seed', log);
  try {
    const store = new DirectoryStore(await openBucket(nc, buckets.routingDirectory), log);
    const current = await store.snapshot(tenant);
    if (current.revision > 0 || current.people.length + current.teams.length + current.queues.length + current.profiles.length > 0) {
      log.info({ tenant }, 'the tenant has a directory; left as it is');
      return;
    }
    log.info({ tenant, ...(await seedDirectory(store, tenant, directory)) }, 'directory seeded');
  } finally {
    await nc.drain().catch(() => undefined);
  }
});
