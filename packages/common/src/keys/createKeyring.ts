import type { Logger } from 'pino';
import { ErrorCode, GatewayError } from '../errors.js';
import { WatchedFiles } from '../runtime/watchedFiles.js';
import type { ManagedKeyring } from './keyring.js';
import { type KeysFile, type KeyringSettings, type Parsed, parseKmsAliases, parseStaticKeys } from './settings.js';
import { StaticKeyring } from './StaticKeyring.js';

/**
 * Takes up a keys file again when it changes (a Secret updated in place): checked with the same
 * parser as at start-up; contents that do not parse are refused (logged without them, counted)
 * and the keys in use stay.
 */
function watchKeysFile<T>(file: KeysFile, source: string, parse: (raw: string) => Parsed<T>, use: (value: T) => void, log: Logger): WatchedFiles {
  return new WatchedFiles({
    source,
    files: [file.path],
    initial: [file.contents],
    apply: ([contents]) => {
      const parsed = parse(contents!.toString('utf8'));
      if (!parsed.ok) throw new GatewayError(ErrorCode.CONFIG_INVALID, `the new file ${parsed.problem}`);
      use(parsed.value);
    },
    log,
  });
}

/** The one place a service's keyring is built. */
export async function createKeyring(settings: KeyringSettings, log: Logger): Promise<ManagedKeyring> {
  if (settings.kind === 'static') {
    const keyring = new StaticKeyring(settings.tenants);
    if (settings.file) keyring.takeUpChanges(watchKeysFile(settings.file, 'tenant-keys', parseStaticKeys, (keys) => keyring.replace(keys), log));
    return keyring;
  }
  // Loaded only when used: a static deployment never loads the AWS SDK.
  const { KmsKeyring } = await import('./kmsKeyring.js');
  const keyring = new KmsKeyring(settings);
  if (settings.file) keyring.takeUpChanges(watchKeysFile(settings.file, 'kms-keys', parseKmsAliases, (aliases) => keyring.replaceAliases(aliases), log));
  return keyring;
}
