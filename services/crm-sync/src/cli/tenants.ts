/**
 * Operations on a whole tenant, for operators: rotating its key-encryption key and offboarding
 * it. Runs as the NATS admin identity (NATS_NKEY_SEED_FILE names the admin's seed) with the
 * keyring configuration of the services (GATEWAY_KEYRING...) and, for KMS, credentials allowed
 * to create, disable and schedule the deletion of keys, which no service holds. Prints its
 * report as JSON (counts and key ids only).
 *
 *   npm run --silent tenants -- rotate-keys <tenant> [--resume] [--wait-seconds 3600]
 *   npm run --silent tenants -- offboard <tenant> --deliver last|none [--wait-seconds 660]
 *
 * Exit status: 0 done; 3 a rotation whose old key is still needed by undelivered sessions
 * (run again later with --resume); 2 bad arguments; 1 failed.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { assertSubjectToken, connectNats, createKeyring, createLogger, env, loadConfig, natsShape, readKeyringSettings, readNatsSettings, runMain, tenantKeysShape } from '@gateway/common';
import { offboardTenant, rotateTenantKeys } from '../tenants/TenantOperations.js';

const usage = `usage: npm run --silent tenants -- rotate-keys <tenant> [--resume] [--wait-seconds N]
       npm run --silent tenants -- offboard <tenant> --deliver last|none [--wait-seconds N]`;

function fail(message: string): never {
  process.stderr.write(`${message}\n${usage}\n`);
  process.exit(2);
}

runMain(async () => {
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, strict: true, options: { resume: { type: 'boolean' }, deliver: { type: 'string' }, 'wait-seconds': { type: 'string' } } });
  } catch (error) {
    fail((error as Error).message);
  }
  const [command, tenant, ...extra] = parsed.positionals;
  if (!command || !tenant || extra.length > 0) fail('give a command and a tenant');
  try {
    assertSubjectToken('tenant', tenant);
  } catch (error) {
    fail((error as Error).message);
  }
  const wait = z.coerce
    .number()
    .min(0)
    .max(7 * 86_400)
    .safeParse(parsed.values['wait-seconds'] ?? (command === 'offboard' ? 660 : 3600));
  if (!wait.success) fail('--wait-seconds must be a number of seconds (at most a week)');
  if (command === 'offboard' && parsed.values.deliver !== 'last' && parsed.values.deliver !== 'none') fail('offboard needs --deliver last or --deliver none');
  if (command !== 'offboard' && command !== 'rotate-keys') fail(`unknown command ${command}`);

  const c = loadConfig({ ...natsShape, ...tenantKeysShape, LOG_LEVEL: env.logLevel().default('warn') });
  // The report is stdout; logs go to stderr.
  const log = createLogger('tenants', c.LOG_LEVEL, { stderr: true });
  const keyring = await createKeyring(readKeyringSettings(c), log);
  const nc = await connectNats(readNatsSettings(c, 'admin'), 'tenants-cli', log);
  try {
    const deps = { nc, keyring, log };
    const waitMs = wait.data * 1000;
    const report =
      command === 'offboard'
        ? await offboardTenant(deps, tenant, { deliver: parsed.values.deliver as 'last' | 'none', waitMs })
        : await rotateTenantKeys(deps, tenant, { resume: parsed.values.resume === true, waitMs });
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if ('pendingUnderOldKeys' in report && report.pendingUnderOldKeys > 0) process.exitCode = 3;
  } finally {
    await nc.drain().catch(() => undefined);
    keyring.close();
  }
});
